/*  fuzz_jsonl: libFuzzer target for job files (sq_jsonl_parse) and the
 *  result lines written for them (sq_jsonl_format_result).
 *
 *  The input is a job file, parsed twice: with the default limits and with
 *  small caps (its last byte picks one of two sets), so that every cap path
 *  is reached by mutants of the same seeds. What sq_jsonl.h promises is
 *  checked, and a broken promise calls abort() so that libFuzzer reports it
 *  as a crash:
 *    - success: every task within the caps, its strings NUL-terminated at
 *      their lengths, kind and numbers in range, line_no a line of the file,
 *      custom_ids unique, one model, one endpoint;
 *    - failure: a negative SQ_E* code, no object, and a detail that names
 *      the line ("line N: ...") unless the whole file is at fault;
 *    - caps only refuse: a file the small caps accept gives the same tasks
 *      with the defaults, and a file both refuse fails no later under the
 *      small caps (the first problem is reported);
 *    - result lines: valid UTF-8 that parses back as JSON holding the same
 *      custom_id, text and error (with U+FFFD for each invalid byte);
 *    - sq_jsonl_utf8_valid_prefix agrees with jansson and sq_utf8_sanitize.
 *  Strings for the formatter come from the parsed tasks and from raw byte
 *  windows of the input (any bytes); token counts from input bytes, with
 *  the range the client can pass (-1, or 0 to INT64_MAX).
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "sq_error.h"
#include "sq_jsonl.h"
#include "sq_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small caps, each reachable with a few KiB of input; an odd last byte
 * (a file ending in '}') picks the second set. */
static const sq_jsonl_limits_t s_small[2] = {
    {.max_line_bytes = 4096, .max_file_bytes = 8192, .max_tasks = 16,
     .max_custom_id_bytes = 24, .max_prompt_bytes = 256, .refuse_nul = 1},
    {.max_line_bytes = 200, .max_file_bytes = 2048, .max_tasks = 3,
     .max_custom_id_bytes = 4, .max_prompt_bytes = 0, .refuse_nul = 0},
};

static size_t s_count_lines(const char *s, size_t n)
{
    size_t lines = 0, pos = 0;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    while (pos < n) {
        const char *nl = memchr(s + pos, '\n', n - pos);
        lines++;
        pos = nl ? (size_t)(nl - s) + 1 : n;
    }
    return lines;
}

/* Little-endian u64 from up to 8 bytes at off (zeros past the end). */
static uint64_t s_u64_at(const uint8_t *data, size_t size, size_t off)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8 && off + i < size; i++)
        v |= (uint64_t)data[off + i] << (8 * i);
    return v;
}

/* ------------------------------------------------------------ UTF-8 */

/* Two other UTF-8 validators in the tree must agree with this one. */
static void s_check_utf8(const char *s, size_t n)
{
    size_t ok = sq_jsonl_utf8_valid_prefix(s, n);
    SQ_FUZZ_CHECK(ok <= n);
    SQ_FUZZ_CHECK(sq_jsonl_utf8_valid_prefix(s, ok) == ok);
    json_t *j = json_stringn(s, n);
    SQ_FUZZ_CHECK((j != NULL) == (ok == n));
    json_decref(j);
    size_t clean_n = 0;
    char *clean = sq_utf8_sanitize(s, n, &clean_n);
    SQ_FUZZ_CHECK(clean);
    SQ_FUZZ_CHECK(sq_jsonl_utf8_valid_prefix(clean, clean_n) == clean_n);
    SQ_FUZZ_CHECK(clean[clean_n] == '\0');
    if (ok == n && !memchr(s, '\0', n))
        SQ_FUZZ_CHECK(clean_n == n && memcmp(clean, s, n) == 0);
    free(clean);
}

/* ------------------------------------------------------------- parse */

static int s_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 128 && s[0] != '.' &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static void s_check_task(const sq_jsonl_t *j, const sq_jsonl_task_t *t,
                         const sq_jsonl_limits_t *lim, size_t n_lines)
{
    size_t id_cap = lim && lim->max_custom_id_bytes ? lim->max_custom_id_bytes
                                                    : SQ_JSONL_MAX_CUSTOM_ID_BYTES;
    SQ_FUZZ_CHECK(t->line_no >= 1 && (size_t)t->line_no <= n_lines);
    SQ_FUZZ_CHECK(t->kind == SQ_JSONL_KIND_SIMPLE || t->kind == SQ_JSONL_KIND_COMPLETION ||
            t->kind == SQ_JSONL_KIND_CHAT);
    SQ_FUZZ_CHECK((t->kind == SQ_JSONL_KIND_CHAT) == (sq_jsonl_kind(j) == SQ_JSONL_KIND_CHAT));
    SQ_FUZZ_CHECK(t->custom_id && t->custom_id_len >= 1 && t->custom_id_len <= id_cap);
    SQ_FUZZ_CHECK(t->custom_id[t->custom_id_len] == '\0');
    SQ_FUZZ_CHECK(sq_jsonl_utf8_valid_prefix(t->custom_id, t->custom_id_len) == t->custom_id_len);
    SQ_FUZZ_CHECK(t->prompt && t->prompt[t->prompt_len] == '\0');
    SQ_FUZZ_CHECK(sq_jsonl_utf8_valid_prefix(t->prompt, t->prompt_len) == t->prompt_len);
    if (lim && lim->refuse_nul) {
        SQ_FUZZ_CHECK(!memchr(t->custom_id, '\0', t->custom_id_len));
        SQ_FUZZ_CHECK(!memchr(t->prompt, '\0', t->prompt_len));
    }
    if (lim && lim->max_prompt_bytes)
        SQ_FUZZ_CHECK(t->prompt_len <= lim->max_prompt_bytes);
    if (t->kind == SQ_JSONL_KIND_CHAT) {
        static const char tail[] = "<|assistant|>\n";
        size_t n_tail = sizeof tail - 1;
        SQ_FUZZ_CHECK(t->prompt_len > n_tail + 2 && memcmp(t->prompt, "<|", 2) == 0 &&
                memcmp(t->prompt + t->prompt_len - n_tail, tail, n_tail) == 0);
    }
    SQ_FUZZ_CHECK(t->max_tokens == -1 || (t->max_tokens >= 1 && t->max_tokens <= 1000000));
    SQ_FUZZ_CHECK(isnan(t->temperature) || (t->temperature >= 0 && t->temperature <= 2));
    SQ_FUZZ_CHECK(isnan(t->top_p) || (t->top_p > 0 && t->top_p <= 1));
    SQ_FUZZ_CHECK(t->seed >= -1);
    SQ_FUZZ_CHECK(t->n_stop >= 0 && t->n_stop <= SQ_JSONL_MAX_STOP);
    for (int i = 0; i < t->n_stop; i++)
        SQ_FUZZ_CHECK(t->stop[i] && strlen(t->stop[i]) >= 1 && strlen(t->stop[i]) <= 256);
    if (t->model) {
        SQ_FUZZ_CHECK(strlen(t->model) >= 1 && strlen(t->model) <= SQ_JSONL_MAX_MODEL_BYTES);
        SQ_FUZZ_CHECK(sq_jsonl_model(j) && strcmp(t->model, sq_jsonl_model(j)) == 0);
    }
    SQ_FUZZ_CHECK(!t->adapter || s_name_ok(t->adapter));
    SQ_FUZZ_CHECK(!t->adapter_version || (t->adapter && s_name_ok(t->adapter_version)));
    if (t->kind == SQ_JSONL_KIND_SIMPLE)
        SQ_FUZZ_CHECK((t->body_json != NULL) == (t->n_stop > 0));
    else
        SQ_FUZZ_CHECK(t->body_json != NULL);
    if (t->body_json) {
        SQ_FUZZ_CHECK(strlen(t->body_json) == t->body_json_len);
        json_error_t err;
        json_t *b = json_loadb(t->body_json, t->body_json_len,
                               JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
        SQ_FUZZ_CHECK(json_is_object(b));
        json_decref(b);
    }
    if (t->kind == SQ_JSONL_KIND_CHAT) {
        /* a worker's turns from the body join to the prompt, byte for byte */
        sq_jsonl_chat_t chat;
        char *joined = NULL;
        size_t len = 0;
        SQ_FUZZ_CHECK(sq_jsonl_body_chat(t->body_json, t->body_json_len, &chat) == 0);
        SQ_FUZZ_CHECK(chat.n_turns >= 2 && chat.ends[chat.n_turns - 1] == chat.len);
        SQ_FUZZ_CHECK(sq_jsonl_chat_prompt(&chat, &joined, &len) == 0);
        SQ_FUZZ_CHECK(len == t->prompt_len && memcmp(joined, t->prompt, len) == 0);
        free(joined);
        sq_jsonl_chat_free(&chat);
    }
}

/* custom_ids are unique: sort indexes by id and compare neighbours. */
static const sq_jsonl_task_t *s_sort_tasks;

static int s_cmp_id(const void *a, const void *b)
{
    const sq_jsonl_task_t *x = &s_sort_tasks[*(const size_t *)a];
    const sq_jsonl_task_t *y = &s_sort_tasks[*(const size_t *)b];
    size_t n = x->custom_id_len < y->custom_id_len ? x->custom_id_len : y->custom_id_len;
    int c = memcmp(x->custom_id, y->custom_id, n);
    return c ? c : (x->custom_id_len > y->custom_id_len) - (x->custom_id_len < y->custom_id_len);
}

static void s_check_unique(const sq_jsonl_t *j)
{
    size_t n = sq_jsonl_size(j);
    size_t *idx = malloc(n * sizeof *idx);
    SQ_FUZZ_CHECK(idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    s_sort_tasks = sq_jsonl_tasks(j);
    qsort(idx, n, sizeof *idx, s_cmp_id);
    for (size_t i = 1; i < n; i++)
        SQ_FUZZ_CHECK(s_cmp_id(&idx[i - 1], &idx[i]) != 0);
    free(idx);
}

static void s_check_parsed(const sq_jsonl_t *j, const sq_jsonl_limits_t *lim, size_t n_lines)
{
    size_t n = sq_jsonl_size(j);
    SQ_FUZZ_CHECK(n >= 1 && n <= n_lines);
    SQ_FUZZ_CHECK(!lim || n <= lim->max_tasks);
    SQ_FUZZ_CHECK(sq_jsonl_task(j, n) == NULL);
    int any_completion = 0, prev_line = 0;
    for (size_t i = 0; i < n; i++) {
        const sq_jsonl_task_t *t = sq_jsonl_task(j, i);
        SQ_FUZZ_CHECK(t == &sq_jsonl_tasks(j)[i]);
        s_check_task(j, t, lim, n_lines);
        SQ_FUZZ_CHECK(t->line_no > prev_line);
        prev_line = t->line_no;
        any_completion |= t->kind == SQ_JSONL_KIND_COMPLETION;
    }
    if (sq_jsonl_kind(j) != SQ_JSONL_KIND_CHAT)
        SQ_FUZZ_CHECK(sq_jsonl_kind(j) ==
                (any_completion ? SQ_JSONL_KIND_COMPLETION : SQ_JSONL_KIND_SIMPLE));
    s_check_unique(j);
}

/* A failed parse: a code and a detail that names the line at fault.
 * Returns that line; 0 when the file is over its cap (nothing was read),
 * n_lines + 1 when it holds no tasks (every line was read). */
static size_t s_check_failed(int rc, const sq_jsonl_t *j, size_t n_lines)
{
    const char *d = sq_error_detail();
    SQ_FUZZ_CHECK(rc == SQ_EFORMAT || rc == SQ_EINVAL || rc == SQ_ETOOBIG || rc == SQ_ENOMEM);
    SQ_FUZZ_CHECK(j == NULL);
    SQ_FUZZ_CHECK(d && d[0] != '\0');
    if (strncmp(d, "file is ", 8) == 0)
        return 0;
    if (strcmp(d, "the file holds no tasks") == 0)
        return n_lines + 1;
    long line = -1;
    SQ_FUZZ_CHECK(sscanf(d, "line %ld:", &line) == 1);
    SQ_FUZZ_CHECK(line >= 1 && (size_t)line <= n_lines);
    return (size_t)line;
}

static int s_same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int s_same_num(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/* Caps only refuse: what the small caps accept parses the same without. */
static void s_check_same(const sq_jsonl_t *a, const sq_jsonl_t *b)
{
    SQ_FUZZ_CHECK(sq_jsonl_size(a) == sq_jsonl_size(b) && sq_jsonl_kind(a) == sq_jsonl_kind(b));
    SQ_FUZZ_CHECK(s_same_str(sq_jsonl_model(a), sq_jsonl_model(b)));
    for (size_t i = 0; i < sq_jsonl_size(a); i++) {
        const sq_jsonl_task_t *x = sq_jsonl_task(a, i), *y = sq_jsonl_task(b, i);
        SQ_FUZZ_CHECK(x->line_no == y->line_no && x->kind == y->kind);
        SQ_FUZZ_CHECK(x->custom_id_len == y->custom_id_len &&
                memcmp(x->custom_id, y->custom_id, x->custom_id_len) == 0);
        SQ_FUZZ_CHECK(x->prompt_len == y->prompt_len &&
                      memcmp(x->prompt, y->prompt, x->prompt_len) == 0);
        SQ_FUZZ_CHECK(s_same_str(x->model, y->model) && s_same_str(x->adapter, y->adapter) &&
                s_same_str(x->adapter_version, y->adapter_version) &&
                s_same_str(x->body_json, y->body_json));
        SQ_FUZZ_CHECK(x->max_tokens == y->max_tokens && x->seed == y->seed &&
                s_same_num(x->temperature, y->temperature) && s_same_num(x->top_p, y->top_p));
        SQ_FUZZ_CHECK(x->n_stop == y->n_stop);
        for (int k = 0; k < x->n_stop; k++)
            SQ_FUZZ_CHECK(strcmp(x->stop[k], y->stop[k]) == 0);
    }
}

/* ------------------------------------------------------------ results */

/* The text the formatter must produce for s[0..n): s itself when valid,
 * else each invalid byte as U+FFFD. */
static char *s_expected_text(const char *s, size_t n, size_t *out_n)
{
    char *buf = malloc(3 * n + 1);
    size_t o = 0, pos = 0;
    SQ_FUZZ_CHECK(buf);
    while (pos < n) {
        size_t ok = sq_jsonl_utf8_valid_prefix(s + pos, n - pos);
        memcpy(buf + o, s + pos, ok);
        o += ok;
        pos += ok;
        if (pos < n) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            pos++;
        }
    }
    *out_n = o;
    return buf;
}

static void s_check_string(json_t *v, const char *s, size_t n)
{
    size_t want_n;
    char *want = s_expected_text(s, n, &want_n);
    SQ_FUZZ_CHECK(json_is_string(v));
    SQ_FUZZ_CHECK(json_string_length(v) == want_n);
    SQ_FUZZ_CHECK(memcmp(json_string_value(v), want, want_n) == 0);
    free(want);
}

static void s_check_result(const sq_jsonl_result_t *r)
{
    char *line = NULL;
    size_t len = 0;
    int rc = sq_jsonl_format_result(r, &line, &len);
    SQ_FUZZ_CHECK(rc == 0 && line);
    SQ_FUZZ_CHECK(strlen(line) == len);
    SQ_FUZZ_CHECK(sq_jsonl_utf8_valid_prefix(line, len) == len);
    json_error_t err;
    json_t *o = json_loadb(line, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
    if (!o)
        fprintf(stderr, "fuzz_jsonl: result line does not parse: %s\n%s\n", err.text, line);
    SQ_FUZZ_CHECK(json_is_object(o));
    char id[160];
    snprintf(id, sizeof id, "batch_req_%s-%llu", r->job_id, (unsigned long long)r->task_id);
    SQ_FUZZ_CHECK(json_is_string(json_object_get(o, "id")) &&
            strcmp(json_string_value(json_object_get(o, "id")), id) == 0);
    s_check_string(json_object_get(o, "custom_id"), r->custom_id, r->custom_id_len);
    json_t *resp = json_object_get(o, "response"), *error = json_object_get(o, "error");
    if (r->outcome == SQ_JSONL_RESULT_OK) {
        SQ_FUZZ_CHECK(json_is_object(resp) && json_is_null(error));
        json_t *body = json_object_get(resp, "body");
        json_t *choice = json_array_get(json_object_get(body, "choices"), 0);
        json_t *text = r->kind == SQ_JSONL_KIND_CHAT
                           ? json_object_get(json_object_get(choice, "message"), "content")
                           : json_object_get(choice, "text");
        s_check_string(text, r->text, r->text_len);
        json_t *total = json_object_get(json_object_get(body, "usage"), "total_tokens");
        if (r->prompt_tokens >= 0 && r->completion_tokens >= 0 &&
            r->completion_tokens <= INT64_MAX - r->prompt_tokens)
            SQ_FUZZ_CHECK(json_is_integer(total) &&
                    json_integer_value(total) == r->prompt_tokens + r->completion_tokens);
        else
            SQ_FUZZ_CHECK(json_is_null(total));
    } else {
        SQ_FUZZ_CHECK(json_is_null(resp) && json_is_object(error));
        json_t *msg = json_object_get(error, "message");
        if (r->error_len)
            s_check_string(msg, r->error, r->error_len);
        else
            SQ_FUZZ_CHECK(json_is_string(msg) && json_string_length(msg) > 0);
    }
    json_decref(o);
    free(line);
}

/* A count as the client passes it: -1 (unknown) or 0 .. INT64_MAX. */
static int64_t s_count(uint64_t v)
{
    return (v & 1) ? -1 : (int64_t)(v >> 1);
}

static void s_format_some(const sq_jsonl_t *j, const uint8_t *data, size_t size)
{
    static const char *const finish[] = {NULL, "stop", "length", "stop"};
    const char *raw = (const char *)data;
    char job_id[32];
    uint64_t k = s_u64_at(data, size, 0);
    snprintf(job_id, sizeof job_id, "%llu", (unsigned long long)(k % 1000000007u));
    sq_jsonl_result_t r = {
        .job_id = job_id,
        .kind = (sq_jsonl_kind_t)(k % 3),
        .outcome = (sq_jsonl_outcome_t)((k >> 2) % 4),
        .model = j ? sq_jsonl_model(j) : NULL,
        .finish_reason = finish[(k >> 4) & 3],
        .prompt_tokens = s_count(s_u64_at(data, size, 8)),
        .completion_tokens = s_count(s_u64_at(data, size, 16)),
        .cached_tokens = s_count(s_u64_at(data, size, 24)),
        .created_s = (int64_t)(s_u64_at(data, size, 32) >> 1),
    };
    /* raw windows: custom_id, text and error split the input in three */
    size_t third = size / 3;
    r.task_id = k;
    r.custom_id = raw, r.custom_id_len = third;
    r.text = raw + third, r.text_len = third;
    r.error = raw + 2 * third, r.error_len = size - 2 * third;
    s_check_result(&r);
    /* the parsed tasks' own strings, as the client writes them */
    for (size_t i = 0; j && i < sq_jsonl_size(j) && i < 8; i++) {
        const sq_jsonl_task_t *t = sq_jsonl_task(j, i);
        r.task_id = i + 1;
        r.kind = t->kind;
        r.outcome = (sq_jsonl_outcome_t)((k >> (6 + 2 * i)) % 4);
        r.custom_id = t->custom_id, r.custom_id_len = t->custom_id_len;
        r.text = t->prompt, r.text_len = t->prompt_len;
        r.error = t->prompt, r.error_len = t->prompt_len;
        s_check_result(&r);
    }
}

/* One parse and its checks; the line it failed at (see s_check_failed),
 * or SIZE_MAX when it succeeded. */
static size_t s_parse(const char *text, size_t size, const sq_jsonl_limits_t *lim,
                      size_t n_lines, sq_jsonl_t **out)
{
    sq_error_clear();
    int rc = sq_jsonl_parse(text, size, lim, out);
    if (rc)
        return s_check_failed(rc, *out, n_lines);
    SQ_FUZZ_CHECK(*out != NULL);
    s_check_parsed(*out, lim, n_lines);
    return SIZE_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const sq_jsonl_limits_t *small = &s_small[size > 0 && (data[size - 1] & 1)];
    size_t n_lines = s_count_lines(text, size);
    sq_jsonl_t *j = NULL, *js = NULL;
    size_t fail = s_parse(text, size, NULL, n_lines, &j);
    size_t fail_small = s_parse(text, size, small, n_lines, &js);
    if (fail_small == SIZE_MAX)
        SQ_FUZZ_CHECK(fail == SIZE_MAX);
    if (fail == SIZE_MAX && fail_small == SIZE_MAX)
        s_check_same(js, j);
    SQ_FUZZ_CHECK(fail_small <= fail);
    s_check_utf8(text, size);
    s_format_some(j ? j : js, data, size);
    SQ_FUZZ_CHECK(sq_jsonl_kind_parse(sq_jsonl_kind_name((sq_jsonl_kind_t)(size % 3))) ==
            (sq_jsonl_kind_t)(size % 3));
    sq_jsonl_destroy(&j);
    sq_jsonl_destroy(&js);
    SQ_FUZZ_CHECK(j == NULL && js == NULL);
    return 0;
}

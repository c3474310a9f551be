/*  sq_jsonl: job-file validation and OpenAI-Batch result formatting.
 *
 *  Parsing is two passes over nothing: each line is checked for size and
 *  UTF-8 before jansson sees it (so the error can name the line and byte),
 *  decoded with JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, then its fields are
 *  checked one by one against the shape it claims. Nothing is returned to
 *  the caller until every line passed, so a bad line 90,000 means no task
 *  is ever sent. The only state is the task array and a custom_id hash set
 *  that finds duplicates in O(1) per line.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_jsonl.h"
#include "sq_error.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SQ_JSONL_MAX_TOKENS_CAP 1000000

struct sq_jsonl_t {
    sq_jsonl_task_t *tasks;
    size_t n_tasks, cap_tasks;
    char *model;          /* first model named in the file, or NULL */
    int model_line;
    sq_jsonl_kind_t kind; /* see sq_jsonl_kind() */
    int kind_line;        /* first line that fixed chat vs. not chat */
    sq_jsonl_limits_t lim;
    size_t *idset;        /* open addressing: task index + 1, 0 = empty */
    size_t idset_cap;     /* power of two */
};

/* Keys each shape accepts; anything else is refused so that a typo such as
 * "max_token" is an error rather than a silently ignored parameter. */
static const char *const s_simple_keys[] = {
    "custom_id", "prompt", "max_tokens", "temperature", "top_p", "stop", "seed", "model", NULL};
static const char *const s_batch_keys[] = {"custom_id", "method", "url", "body", NULL};
static const char *const s_completion_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "stop", "seed", "n", "stream", "user",
    NULL};
static const char *const s_chat_keys[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "seed", "n", "stream", "user", NULL};
static const char *const s_message_keys[] = {"role", "content", "name", NULL};

const char *
sq_jsonl_kind_name(sq_jsonl_kind_t kind)
{
    switch (kind) {
    case SQ_JSONL_KIND_COMPLETION: return "completion";
    case SQ_JSONL_KIND_CHAT: return "chat";
    default: return "simple";
    }
}

sq_jsonl_kind_t
sq_jsonl_kind_parse(const char *name)
{
    if (name && strcmp(name, "completion") == 0)
        return SQ_JSONL_KIND_COMPLETION;
    if (name && strcmp(name, "chat") == 0)
        return SQ_JSONL_KIND_CHAT;
    return SQ_JSONL_KIND_SIMPLE;
}

/* ---------------------------------------------------------------- UTF-8 */

size_t
sq_jsonl_utf8_valid_prefix(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return i;
        if (i + n >= len) /* truncated sequence */
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* overlong 3/4-byte forms, UTF-16 surrogates, past U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return i;
        i += n + 1;
    }
    return len;
}

/* ------------------------------------------------------- field checking */

/* Every validation failure goes through here so all messages share one
 * shape: line N: field "F": problem. */
__attribute__((format(printf, 4, 5))) static int
s_field_err(int rc, int line, const char *field, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return sq_error_set(rc, __FILE__, __LINE__, "line %d: field \"%s\": %s", line, field, what);
}

/* "body" + "max_tokens" -> "body.max_tokens" (prefix may be ""). */
static const char *
s_path(char *buf, size_t size, const char *prefix, const char *key)
{
    snprintf(buf, size, "%s%s%s", prefix, *prefix ? "." : "", key);
    return buf;
}

static int
s_check_keys(json_t *obj, const char *const *allowed, const char *prefix, int line)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char p[300];
            return s_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                               "unknown or unsupported field");
        }
    }
    return 0;
}

/* A string field. max_bytes 0 = no cap beyond the line cap; allow_nul 0
 * refuses embedded NUL (for values used as C strings). */
static int
s_get_string(json_t *obj, const char *key, const char *prefix, int line, int required,
             size_t max_bytes, int allow_nul, const char **out, size_t *len_out)
{
    char p[300];
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    *len_out = 0;
    if (!v) {
        if (required)
            return s_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                               "missing (required)");
        return 0;
    }
    if (!json_is_string(v))
        return s_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key), "expected a string");
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (max_bytes && len > max_bytes)
        return s_field_err(SQ_ETOOBIG, line, s_path(p, sizeof p, prefix, key),
                           "%zu bytes, over the cap of %zu", len, max_bytes);
    if (!allow_nul && memchr(s, '\0', len))
        return s_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                           "must not contain NUL (\\u0000)");
    *out = s;
    *len_out = len;
    return 0;
}

/* An integer field in [lo, hi]; absent leaves *out untouched. */
static int
s_get_int(json_t *obj, const char *key, const char *prefix, int line, int64_t lo, int64_t hi,
          const char *expect, int64_t *out)
{
    char p[300];
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return s_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key), "expected %s",
                           expect);
    *out = json_integer_value(v);
    return 0;
}

/* A number field in [lo, hi] (lo exclusive when lo_open). */
static int
s_get_number(json_t *obj, const char *key, const char *prefix, int line, double lo, int lo_open,
             double hi, double *out)
{
    char p[300];
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_number(v) || isnan(d) || d > hi || d < lo || (lo_open && d == lo))
        return s_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                           "expected a number in %c%g, %g]", lo_open ? '(' : '[', lo, hi);
    *out = d;
    return 0;
}

static char *
s_dup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* "stop": a string or an array of up to 4 non-empty strings. */
static int
s_get_stop(json_t *obj, const char *prefix, int line, sq_jsonl_task_t *t)
{
    char p[300];
    json_t *v = json_object_get(obj, "stop");
    s_path(p, sizeof p, prefix, "stop");
    if (!v || json_is_null(v))
        return 0;
    json_t *one = json_array();
    if (!one)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    json_t *arr = json_is_string(v) ? (json_array_append(one, v), one) : v;
    int rc = 0;
    if (!json_is_array(arr) || json_array_size(arr) > SQ_JSONL_MAX_STOP)
        rc = s_field_err(SQ_EINVAL, line, p, "expected a string or an array of at most %d strings",
                         SQ_JSONL_MAX_STOP);
    for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
        json_t *s = json_array_get(arr, i);
        size_t len = json_is_string(s) ? json_string_length(s) : 0;
        if (!json_is_string(s) || len == 0 || len > 256 || memchr(json_string_value(s), 0, len))
            rc = s_field_err(SQ_EINVAL, line, p,
                             "entry %zu: expected a non-empty string of at most 256 bytes "
                             "without NUL", i);
        else if (!(t->stop[t->n_stop++] = s_dup(json_string_value(s), len)))
            rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
    }
    json_decref(one);
    return rc;
}

/* Sampling parameters shared by the simple shape and both body shapes. */
static int
s_get_params(json_t *obj, const char *prefix, int line, sq_jsonl_task_t *t)
{
    int rc;
    const char *model;
    size_t model_len;
    if ((rc = s_get_int(obj, "max_tokens", prefix, line, 1, SQ_JSONL_MAX_TOKENS_CAP,
                        "a positive integer (at most 1000000)", &t->max_tokens)) ||
        (rc = s_get_number(obj, "temperature", prefix, line, 0, 0, 2, &t->temperature)) ||
        (rc = s_get_number(obj, "top_p", prefix, line, 0, 1, 1, &t->top_p)) ||
        (rc = s_get_int(obj, "seed", prefix, line, 0, INT64_MAX, "a non-negative integer",
                        &t->seed)) ||
        (rc = s_get_stop(obj, prefix, line, t)) ||
        (rc = s_get_string(obj, "model", prefix, line, 0, SQ_JSONL_MAX_MODEL_BYTES, 0, &model,
                           &model_len)))
        return rc;
    if (model && model_len == 0) {
        char p[300];
        return s_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, "model"),
                           "must not be empty");
    }
    if (model && !(t->model = s_dup(model, model_len)))
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    return 0;
}

/* Body fields that OpenAI accepts but shardq cannot honour are refused
 * with a reason rather than ignored: n > 1 and streaming. */
static int
s_check_openai_extras(json_t *body, int line)
{
    json_t *n = json_object_get(body, "n");
    json_t *stream = json_object_get(body, "stream");
    json_t *user = json_object_get(body, "user");
    if (n && !(json_is_integer(n) && json_integer_value(n) == 1))
        return s_field_err(SQ_EINVAL, line, "body.n", "only n = 1 is supported");
    if (stream && !json_is_false(stream))
        return s_field_err(SQ_EINVAL, line, "body.stream", "streaming is not supported in batch");
    if (user && !json_is_string(user))
        return s_field_err(SQ_EINVAL, line, "body.user", "expected a string");
    return 0;
}

/* ----------------------------------------------------------- chat prompt */

typedef struct {
    char *buf;
    size_t len, cap;
} s_buf_t;

static int
s_buf_add(s_buf_t *b, const char *s, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb)
            return SQ_FAIL(SQ_ENOMEM, "out of memory");
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, len);
    b->len += len;
    b->buf[b->len] = '\0';
    return 0;
}

/* content: a string, or an array of {"type":"text","text":"..."} parts
 * (the multi-part form), whose texts are concatenated. */
static int
s_add_content(s_buf_t *b, json_t *content, const char *field, int line)
{
    if (json_is_string(content))
        return s_buf_add(b, json_string_value(content), json_string_length(content));
    if (!json_is_array(content))
        return s_field_err(SQ_EINVAL, line, field, "expected a string or an array of text parts");
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0 || !json_is_string(text))
            return s_field_err(SQ_EINVAL, line, field,
                               "part %zu: expected {\"type\":\"text\",\"text\":string}", i);
        int rc = s_buf_add(b, json_string_value(text), json_string_length(text));
        if (rc)
            return rc;
    }
    return 0;
}

/* Render messages with the Zephyr/TinyLlama template (see sq_jsonl.h). */
static int
s_chat_prompt(json_t *body, int line, sq_jsonl_task_t *t)
{
    static const char *const roles[] = {"system", "developer", "user", "assistant", NULL};
    json_t *msgs = json_object_get(body, "messages");
    char field[80];
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return s_field_err(SQ_EINVAL, line, "body.messages", "expected a non-empty array");
    s_buf_t b = {0};
    size_t i;
    json_t *m;
    int rc = 0;
    json_array_foreach(msgs, i, m) {
        snprintf(field, sizeof field, "body.messages[%zu]", i);
        if (!json_is_object(m)) {
            rc = s_field_err(SQ_EINVAL, line, field, "expected an object");
            break;
        }
        if ((rc = s_check_keys(m, s_message_keys, field, line)))
            break;
        const char *role = json_string_value(json_object_get(m, "role"));
        int known = 0;
        for (int r = 0; role && roles[r] && !known; r++)
            known = strcmp(role, roles[r]) == 0;
        snprintf(field, sizeof field, "body.messages[%zu].role", i);
        if (!known) {
            rc = s_field_err(SQ_EINVAL, line, field,
                             "expected \"system\", \"developer\", \"user\" or \"assistant\"");
            break;
        }
        /* developer is OpenAI's newer name for system */
        const char *tag = strcmp(role, "developer") == 0 ? "system" : role;
        snprintf(field, sizeof field, "body.messages[%zu].content", i);
        json_t *content = json_object_get(m, "content");
        if (!content) {
            rc = s_field_err(SQ_EINVAL, line, field, "missing (required)");
            break;
        }
        if ((rc = s_buf_add(&b, "<|", 2)) || (rc = s_buf_add(&b, tag, strlen(tag))) ||
            (rc = s_buf_add(&b, "|>\n", 3)) || (rc = s_add_content(&b, content, field, line)) ||
            (rc = s_buf_add(&b, "</s>\n", 5)))
            break;
    }
    if (rc == 0)
        rc = s_buf_add(&b, "<|assistant|>\n", 14);
    if (rc) {
        free(b.buf);
        return rc;
    }
    t->prompt = b.buf;
    t->prompt_len = b.len;
    return 0;
}

/* --------------------------------------------------------------- shapes */

static int
s_set_prompt(sq_jsonl_task_t *t, const char *s, size_t len)
{
    if (!(t->prompt = s_dup(s, len)))
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    t->prompt_len = len;
    return 0;
}

/* Keep a JSON value as compact text for the task's "body" (wire field). */
static int
s_set_body(sq_jsonl_task_t *t, json_t *body)
{
    if (!(t->body_json = json_dumps(body, JSON_COMPACT)))
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    t->body_json_len = strlen(t->body_json);
    return 0;
}

static int
s_parse_simple(json_t *obj, int line, sq_jsonl_task_t *t)
{
    const char *prompt;
    size_t len;
    int rc;
    if ((rc = s_check_keys(obj, s_simple_keys, "", line)) ||
        (rc = s_get_string(obj, "prompt", "", line, 1, 0, 1, &prompt, &len)) ||
        (rc = s_get_params(obj, "", line, t)))
        return rc;
    t->kind = SQ_JSONL_KIND_SIMPLE;
    json_t *stop = json_object_get(obj, "stop");
    if (t->n_stop > 0) {
        /* the wire task has no stop field: it travels in "body" */
        json_t *body = json_pack("{s:O}", "stop", stop);
        rc = body ? s_set_body(t, body) : SQ_FAIL(SQ_ENOMEM, "out of memory");
        json_decref(body);
        if (rc)
            return rc;
    }
    return s_set_prompt(t, prompt, len);
}

static int
s_parse_batch(json_t *obj, int line, sq_jsonl_task_t *t)
{
    const char *method, *url, *prompt;
    size_t len;
    int rc;
    if ((rc = s_check_keys(obj, s_batch_keys, "", line)) ||
        (rc = s_get_string(obj, "method", "", line, 1, 16, 0, &method, &len)) ||
        (rc = s_get_string(obj, "url", "", line, 1, 64, 0, &url, &len)))
        return rc;
    if (strcmp(method, "POST") != 0)
        return s_field_err(SQ_EINVAL, line, "method", "expected \"POST\"");
    if (strcmp(url, "/v1/completions") == 0)
        t->kind = SQ_JSONL_KIND_COMPLETION;
    else if (strcmp(url, "/v1/chat/completions") == 0)
        t->kind = SQ_JSONL_KIND_CHAT;
    else
        return s_field_err(SQ_EINVAL, line, "url",
                           "expected \"/v1/completions\" or \"/v1/chat/completions\"");
    json_t *body = json_object_get(obj, "body");
    if (!body)
        return s_field_err(SQ_EINVAL, line, "body", "missing (required)");
    if (!json_is_object(body))
        return s_field_err(SQ_EINVAL, line, "body", "expected an object");
    int chat = t->kind == SQ_JSONL_KIND_CHAT;
    if ((rc = s_check_keys(body, chat ? s_chat_keys : s_completion_keys, "body", line)) ||
        (rc = s_check_openai_extras(body, line)) || (rc = s_get_params(body, "body", line, t)))
        return rc;
    if (chat) {
        if ((rc = s_get_int(body, "max_completion_tokens", "body", line, 1,
                            SQ_JSONL_MAX_TOKENS_CAP, "a positive integer (at most 1000000)",
                            &t->max_tokens)) ||
            (rc = s_chat_prompt(body, line, t)))
            return rc;
    } else if ((rc = s_get_string(body, "prompt", "body", line, 1, 0, 1, &prompt, &len)) ||
               (rc = s_set_prompt(t, prompt, len))) {
        return rc;
    }
    return s_set_body(t, body);
}

/* ------------------------------------------------------- the task array */

static uint64_t
s_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Insert task i's custom_id; if an equal one exists, return its index + 1
 * in *dup_of (and insert nothing). */
static int
s_idset_insert(sq_jsonl_t *self, size_t i, size_t *dup_of)
{
    *dup_of = 0;
    if ((self->n_tasks + 1) * 2 > self->idset_cap) {
        size_t cap = self->idset_cap ? self->idset_cap * 2 : 1024;
        size_t *set = calloc(cap, sizeof *set);
        if (!set)
            return SQ_FAIL(SQ_ENOMEM, "out of memory");
        for (size_t k = 0; k < self->idset_cap; k++) {
            size_t v = self->idset[k];
            if (!v)
                continue;
            const sq_jsonl_task_t *t = &self->tasks[v - 1];
            size_t h = s_hash(t->custom_id, t->custom_id_len) & (cap - 1);
            while (set[h])
                h = (h + 1) & (cap - 1);
            set[h] = v;
        }
        free(self->idset);
        self->idset = set;
        self->idset_cap = cap;
    }
    const sq_jsonl_task_t *t = &self->tasks[i];
    size_t h = s_hash(t->custom_id, t->custom_id_len) & (self->idset_cap - 1);
    while (self->idset[h]) {
        const sq_jsonl_task_t *o = &self->tasks[self->idset[h] - 1];
        if (o->custom_id_len == t->custom_id_len &&
            memcmp(o->custom_id, t->custom_id, t->custom_id_len) == 0) {
            *dup_of = self->idset[h];
            return 0;
        }
        h = (h + 1) & (self->idset_cap - 1);
    }
    self->idset[h] = i + 1;
    return 0;
}

static void
s_task_free(sq_jsonl_task_t *t)
{
    free(t->custom_id);
    free(t->prompt);
    free(t->model);
    free(t->body_json);
    for (int i = 0; i < t->n_stop; i++)
        free(t->stop[i]);
    memset(t, 0, sizeof *t);
}

/* All lines that name a model must agree: one job runs one model. */
static int
s_check_model(sq_jsonl_t *self, const sq_jsonl_task_t *t)
{
    if (!t->model)
        return 0;
    const char *field = t->kind == SQ_JSONL_KIND_SIMPLE ? "model" : "body.model";
    if (!self->model) {
        if (!(self->model = strdup(t->model)))
            return SQ_FAIL(SQ_ENOMEM, "out of memory");
        self->model_line = t->line_no;
        return 0;
    }
    if (strcmp(self->model, t->model) != 0)
        return s_field_err(SQ_EINVAL, t->line_no, field,
                           "\"%.64s\" differs from \"%.64s\" on line %d (one job runs one model)",
                           t->model, self->model, self->model_line);
    return 0;
}

/* Caps and NUL rules of the consumer (sq_jsonl_limits_t), checked once
 * on the final prompt so chat content is covered too. */
static int
s_check_stored(const sq_jsonl_t *self, const sq_jsonl_task_t *t)
{
    const char *field = t->kind == SQ_JSONL_KIND_SIMPLE       ? "prompt"
                        : t->kind == SQ_JSONL_KIND_COMPLETION ? "body.prompt"
                                                              : "body.messages";
    if (self->lim.refuse_nul && memchr(t->custom_id, '\0', t->custom_id_len))
        return s_field_err(SQ_EINVAL, t->line_no, "custom_id",
                           "contains NUL (\\u0000), which shardq cannot store");
    if (self->lim.refuse_nul && memchr(t->prompt, '\0', t->prompt_len))
        return s_field_err(SQ_EINVAL, t->line_no, field,
                           "contains NUL (\\u0000), which shardq cannot store");
    if (self->lim.max_prompt_bytes && t->prompt_len > self->lim.max_prompt_bytes)
        return s_field_err(SQ_ETOOBIG, t->line_no, field,
                           "prompt of %zu bytes%s, over the cap of %zu", t->prompt_len,
                           t->kind == SQ_JSONL_KIND_CHAT ? " (templated)" : "",
                           self->lim.max_prompt_bytes);
    return 0;
}

/* Chat lines make chat.completion results, the others text_completion
 * ones; a job has one result shape, so the two cannot mix. */
static int
s_check_kind(sq_jsonl_t *self, const sq_jsonl_task_t *t)
{
    int chat = t->kind == SQ_JSONL_KIND_CHAT;
    if (self->n_tasks == 0) {
        self->kind = t->kind;
        self->kind_line = t->line_no;
        return 0;
    }
    if (chat != (self->kind == SQ_JSONL_KIND_CHAT))
        return s_field_err(SQ_EINVAL, t->line_no, t->kind == SQ_JSONL_KIND_SIMPLE ? "prompt" : "url",
                           "a %s task cannot join the %s tasks of line %d (one job, one endpoint)",
                           chat ? "chat" : "completion", chat ? "completion" : "chat",
                           self->kind_line);
    if (t->kind == SQ_JSONL_KIND_COMPLETION)
        self->kind = SQ_JSONL_KIND_COMPLETION;
    return 0;
}

/* Validate one decoded line into the next task slot. */
static int
s_add_task(sq_jsonl_t *self, json_t *obj, int line)
{
    if (self->n_tasks == self->cap_tasks) {
        size_t cap = self->cap_tasks ? self->cap_tasks * 2 : 64;
        sq_jsonl_task_t *nt = realloc(self->tasks, cap * sizeof *nt);
        if (!nt)
            return SQ_FAIL(SQ_ENOMEM, "out of memory");
        self->tasks = nt;
        self->cap_tasks = cap;
    }
    sq_jsonl_task_t *t = &self->tasks[self->n_tasks];
    memset(t, 0, sizeof *t);
    t->line_no = line;
    t->max_tokens = -1;
    t->seed = -1;
    t->temperature = NAN;
    t->top_p = NAN;
    const char *id;
    size_t id_len, dup_of;
    int batch = json_object_get(obj, "method") || json_object_get(obj, "url") ||
                json_object_get(obj, "body");
    int rc = s_get_string(obj, "custom_id", "", line, 1, self->lim.max_custom_id_bytes, 1, &id,
                          &id_len);
    if (rc == 0 && id_len == 0)
        rc = s_field_err(SQ_EINVAL, line, "custom_id", "must not be empty");
    if (rc == 0 && !(t->custom_id = s_dup(id, id_len)))
        rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
    t->custom_id_len = id_len;
    if (rc == 0)
        rc = batch ? s_parse_batch(obj, line, t) : s_parse_simple(obj, line, t);
    if (rc == 0)
        rc = s_check_stored(self, t);
    if (rc == 0)
        rc = s_check_model(self, t);
    if (rc == 0)
        rc = s_check_kind(self, t);
    if (rc == 0)
        rc = s_idset_insert(self, self->n_tasks, &dup_of);
    if (rc == 0 && dup_of)
        rc = s_field_err(SQ_EINVAL, line, "custom_id", "duplicate of line %d",
                         self->tasks[dup_of - 1].line_no);
    if (rc) {
        s_task_free(t);
        return rc;
    }
    self->n_tasks++;
    return 0;
}

static int
s_is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* Size, UTF-8 and JSON checks of one line, then its fields. */
static int
s_parse_line(sq_jsonl_t *self, const char *s, size_t len, int line)
{
    const sq_jsonl_limits_t *lim = &self->lim;
    if (len > lim->max_line_bytes)
        return SQ_FAIL(SQ_ETOOBIG, "line %d: %zu bytes, over the cap of %zu bytes per line", line,
                       len, lim->max_line_bytes);
    size_t ok = sq_jsonl_utf8_valid_prefix(s, len);
    if (ok < len)
        return SQ_FAIL(SQ_EFORMAT, "line %d: invalid UTF-8 at byte %zu (0x%02x)", line, ok + 1,
                       (unsigned char)s[ok]);
    if (self->n_tasks >= lim->max_tasks)
        return SQ_FAIL(SQ_ETOOBIG, "line %d: more than %zu tasks in one job (the cap)", line,
                       lim->max_tasks);
    json_error_t err;
    json_t *obj = json_loadb(s, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!obj)
        return SQ_FAIL(SQ_EFORMAT, "line %d: column %d: invalid JSON: %s", line, err.column,
                       err.text);
    int rc = json_is_object(obj) ? s_add_task(self, obj, line)
                                 : SQ_FAIL(SQ_EFORMAT, "line %d: expected a JSON object", line);
    json_decref(obj);
    return rc;
}

int
sq_jsonl_parse(const char *data, size_t size, const sq_jsonl_limits_t *limits,
               sq_jsonl_t **out_p)
{
    sq_jsonl_limits_t lim = {SQ_JSONL_DEFAULT_MAX_LINE_BYTES, SQ_JSONL_DEFAULT_MAX_FILE_BYTES,
                             SQ_JSONL_DEFAULT_MAX_TASKS, SQ_JSONL_MAX_CUSTOM_ID_BYTES, 0, 0};
    if (limits) {
        lim.max_line_bytes = limits->max_line_bytes ? limits->max_line_bytes : lim.max_line_bytes;
        lim.max_file_bytes = limits->max_file_bytes ? limits->max_file_bytes : lim.max_file_bytes;
        lim.max_tasks = limits->max_tasks ? limits->max_tasks : lim.max_tasks;
        lim.max_custom_id_bytes =
            limits->max_custom_id_bytes ? limits->max_custom_id_bytes : lim.max_custom_id_bytes;
        lim.max_prompt_bytes = limits->max_prompt_bytes;
        lim.refuse_nul = limits->refuse_nul;
    }
    *out_p = NULL;
    if (size > lim.max_file_bytes)
        return SQ_FAIL(SQ_ETOOBIG, "file is %zu bytes, over the cap of %zu bytes", size,
                       lim.max_file_bytes);
    sq_jsonl_t *self = calloc(1, sizeof *self);
    if (!self)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    self->lim = lim;
    int rc = 0, line = 0;
    size_t pos = 0;
    if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        pos = 3; /* a UTF-8 byte order mark, as some editors write */
    while (rc == 0 && pos < size) {
        const char *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
        line++;
        if (!s_is_blank(data + pos, len))
            rc = s_parse_line(self, data + pos, len, line);
        pos += len + 1;
    }
    if (rc == 0 && self->n_tasks == 0)
        rc = SQ_FAIL(SQ_EINVAL, "the file holds no tasks");
    if (rc) {
        sq_jsonl_destroy(&self);
        return rc;
    }
    *out_p = self;
    return 0;
}

/* Read a whole file (or stdin for "-"), refusing more than cap bytes. */
static int
s_read_all(const char *path, size_t cap, char **data_p, size_t *size_p)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return SQ_FAIL(-errno, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > cap)
        rc = SQ_FAIL(SQ_ETOOBIG, "%s: file is %lld bytes, over the cap of %zu bytes", path,
                     (long long)st.st_size, cap);
    while (rc == 0) {
        if (len == bcap) {
            bcap = bcap ? bcap * 2 : 65536;
            char *nb = realloc(buf, bcap);
            if (!nb) {
                rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, bcap - len, f);
        len += n;
        if (len > cap)
            rc = SQ_FAIL(SQ_ETOOBIG, "%s: over the cap of %zu bytes", path, cap);
        else if (n == 0 && ferror(f))
            rc = SQ_FAIL(SQ_EIO, "%s: read error", path);
        else if (n == 0)
            break;
    }
    if (f != stdin)
        fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *data_p = buf;
    *size_p = len;
    return 0;
}

int
sq_jsonl_load(const char *path, const sq_jsonl_limits_t *limits, sq_jsonl_t **out_p)
{
    size_t cap = limits && limits->max_file_bytes ? limits->max_file_bytes
                                                  : SQ_JSONL_DEFAULT_MAX_FILE_BYTES;
    char *data = NULL;
    size_t size = 0;
    *out_p = NULL;
    int rc = s_read_all(path, cap, &data, &size);
    if (rc == 0)
        rc = sq_jsonl_parse(data ? data : "", size, limits, out_p);
    free(data);
    return rc;
}

void
sq_jsonl_destroy(sq_jsonl_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_jsonl_t *self = *self_p;
    for (size_t i = 0; i < self->n_tasks; i++)
        s_task_free(&self->tasks[i]);
    free(self->tasks);
    free(self->idset);
    free(self->model);
    free(self);
    *self_p = NULL;
}

size_t
sq_jsonl_size(const sq_jsonl_t *self)
{
    return self->n_tasks;
}

const sq_jsonl_task_t *
sq_jsonl_tasks(const sq_jsonl_t *self)
{
    return self->tasks;
}

const sq_jsonl_task_t *
sq_jsonl_task(const sq_jsonl_t *self, size_t i)
{
    return i < self->n_tasks ? &self->tasks[i] : NULL;
}

const char *
sq_jsonl_model(const sq_jsonl_t *self)
{
    return self->model;
}

sq_jsonl_kind_t
sq_jsonl_kind(const sq_jsonl_t *self)
{
    return self->kind;
}

/*  sq_jsonl_task: one decoded JSONL line -> one validated task.
 *
 *  The two shapes of sq_jsonl.h and their fields live here: every field
 *  is checked for presence, type and range, unknown fields are refused,
 *  and chat messages are rendered into the prompt. Whole-file rules
 *  (caps, duplicate ids, one model, one endpoint) stay in sq_jsonl.c.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_jsonl_internal.h"
#include "sq_error.h"
#include "sq_utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQ_JSONL_MAX_TOKENS_CAP 1000000

/* Keys each shape accepts; anything else is refused so that a typo such as
 * "max_token" is an error rather than a silently ignored parameter. */
static const char *const s_simple_keys[] = {
    "custom_id", "prompt", "max_tokens", "temperature", "top_p", "stop", "seed", "model",
    "adapter", "adapter_version", NULL};
static const char *const s_batch_keys[] = {"custom_id", "method", "url", "body", NULL};
static const char *const s_completion_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "stop", "seed", "user", "adapter",
    "adapter_version", "metadata", "service_tier", NULL};
static const char *const s_chat_keys[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "seed", "user", "adapter", "adapter_version", "metadata", "service_tier", NULL};
static const char *const s_message_keys[] = {"role", "content", "name", NULL};
static const char *const s_part_keys[] = {"type", "text", NULL};

/* OpenAI body fields shardq does not implement, taken at their default
 * value only (files written by SDKs often spell defaults out); any other
 * value is refused naming the default. `kinds`: the endpoints that have
 * the field (bits of S_COMPLETION, S_CHAT); elsewhere it is unknown. */
enum { S_COMPLETION = 1, S_CHAT = 2 };
static const struct {
    const char *key, *value; /* the default, as JSON ("null": any value is refused) */
    int kinds;
} s_default_only[] = {
    {"n", "1", S_COMPLETION | S_CHAT},
    {"stream", "false", S_COMPLETION | S_CHAT},
    {"stream_options", "null", S_COMPLETION | S_CHAT},
    {"presence_penalty", "0", S_COMPLETION | S_CHAT},
    {"frequency_penalty", "0", S_COMPLETION | S_CHAT},
    {"logit_bias", "{}", S_COMPLETION | S_CHAT},
    {"logprobs", "null", S_COMPLETION}, /* an integer there */
    {"echo", "false", S_COMPLETION},
    {"best_of", "1", S_COMPLETION},
    {"suffix", "null", S_COMPLETION},
    {"logprobs", "false", S_CHAT},
    {"top_logprobs", "0", S_CHAT},
    {"tools", "[]", S_CHAT},
    {"tool_choice", "\"none\"", S_CHAT},
    {"parallel_tool_calls", "true", S_CHAT},
    {"response_format", "{\"type\":\"text\"}", S_CHAT},
    {"store", "false", S_CHAT},
};

/* obj's key, NULL when absent or null (null is "not given", s_check_keys). */
static json_t *
s_given(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* Is key one of s_default_only's for an endpoint in kinds? */
static bool
s_default_only_key(const char *key, int kinds)
{
    for (size_t i = 0; i < sizeof s_default_only / sizeof s_default_only[0]; i++)
        if ((s_default_only[i].kinds & kinds) && strcmp(key, s_default_only[i].key) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------- field checking */

/* Every validation failure goes through here so all messages share one
 * shape: line N: field "F": problem. */
int
sq_jsonl_field_err(int rc, int line, const char *field, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    sq_utf8_fit(what, sizeof what, vsnprintf(what, sizeof what, fmt, ap));
    va_end(ap);
    if (line <= 0)   /* not from a file (a task's body on a worker) */
        return sq_error_set(rc, __FILE__, __LINE__, "field \"%s\": %s", field, what);
    return sq_error_set(rc, __FILE__, __LINE__, "line %d: field \"%s\": %s", line, field, what);
}

/* "body" + "max_tokens" -> "body.max_tokens" (prefix may be ""); a long
 * key is cut to the buffer on a whole character. */
static const char *
s_path(char *buf, size_t size, const char *prefix, const char *key)
{
    sq_utf8_fit(buf, size, snprintf(buf, size, "%s%s%s", prefix, *prefix ? "." : "", key));
    return buf;
}

/* Every key of obj is allowed, or given as null (= not given: OpenAI's SDKs
 * write unset optional fields as null), or (in an OpenAI body: `body`, the
 * endpoints' S_ bits) one of s_default_only's, whose values
 * s_check_openai_extras checks. */
static int
s_check_keys(json_t *obj, const char *const *allowed, const char *prefix, int line, int body)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = json_is_null(v) || (body && s_default_only_key(key, body));
        for (int i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char p[300];
            return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                               "unknown or unsupported field");
        }
    }
    return 0;
}

/* A string field; absent or null leaves *out NULL. max_bytes 0 = no cap
 * beyond the line cap; allow_nul 0 refuses embedded NUL (for values used
 * as C strings). */
static int
s_get_string(json_t *obj, const char *key, const char *prefix, int line, int required,
             size_t max_bytes, int allow_nul, const char **out, size_t *len_out)
{
    char p[300];
    json_t *v = s_given(obj, key);
    *out = NULL;
    *len_out = 0;
    if (!v) {
        if (required)
            return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                               "missing (required)");
        return 0;
    }
    if (!json_is_string(v))
        return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                                  "expected a string");
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (max_bytes && len > max_bytes)
        return sq_jsonl_field_err(SQ_ETOOBIG, line, s_path(p, sizeof p, prefix, key),
                           "%zu bytes, over the cap of %zu", len, max_bytes);
    if (!allow_nul && memchr(s, '\0', len))
        return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                           "must not contain NUL (\\u0000)");
    *out = s;
    *len_out = len;
    return 0;
}

/* An integer field in [lo, hi]; absent (or null) leaves *out untouched. */
static int
s_get_int(json_t *obj, const char *key, const char *prefix, int line, int64_t lo, int64_t hi,
          const char *expect, int64_t *out)
{
    char p[300];
    json_t *v = s_given(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key), "expected %s",
                           expect);
    *out = json_integer_value(v);
    return 0;
}

/* A number field in [lo, hi]; absent (or null) leaves *out untouched. */
static int
s_get_number(json_t *obj, const char *key, const char *prefix, int line, double lo, double hi,
             double *out)
{
    char p[300];
    json_t *v = s_given(obj, key);
    if (!v)
        return 0;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!json_is_number(v) || isnan(d) || d > hi || d < lo)
        return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                           "expected a number in [%g, %g]", lo, hi);
    *out = d;
    return 0;
}

char *
sq_jsonl_dup(const char *s, size_t len)
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
    json_t *v = s_given(obj, "stop");
    s_path(p, sizeof p, prefix, "stop");
    if (!v)
        return 0;
    json_t *one = json_array();
    if (!one)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    json_t *arr = json_is_string(v) ? (json_array_append(one, v), one) : v;
    int rc = 0;
    if (!json_is_array(arr) || json_array_size(arr) > SQ_JSONL_MAX_STOP)
        rc = sq_jsonl_field_err(SQ_EINVAL, line, p,
                                "expected a string or an array of at most %d strings",
                                SQ_JSONL_MAX_STOP);
    for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
        json_t *s = json_array_get(arr, i);
        size_t len = json_is_string(s) ? json_string_length(s) : 0;
        if (!json_is_string(s) || len == 0 || len > 256 || memchr(json_string_value(s), 0, len))
            rc = sq_jsonl_field_err(SQ_EINVAL, line, p,
                             "entry %zu: expected a non-empty string of at most 256 bytes "
                             "without NUL", i);
        else if (!(t->stop[t->n_stop++] = sq_jsonl_dup(json_string_value(s), len)))
            rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
    }
    json_decref(one);
    return rc;
}

/* An adapter name or version: it becomes a file name on the workers, so
 * 1-128 of [A-Za-z0-9._-], not starting with '.' (the broker's rule). */
static int
s_get_adapter_name(json_t *obj, const char *key, const char *prefix, int line, char **out)
{
    const char *s;
    size_t n;
    int rc = s_get_string(obj, key, prefix, line, 0, 128, 0, &s, &n);
    if (rc || !s)
        return rc;
    char p[300];
    if (n == 0 || s[0] == '.' || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789._-") != n)
        return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, key),
                                  "use 1-128 of [A-Za-z0-9._-], not starting with '.'");
    return (*out = sq_jsonl_dup(s, n)) ? 0 : SQ_FAIL(SQ_ENOMEM, "out of memory");
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
        (rc = s_get_number(obj, "temperature", prefix, line, 0, 2, &t->temperature)) ||
        (rc = s_get_number(obj, "top_p", prefix, line, 0, 1, &t->top_p)) ||
        (rc = s_get_int(obj, "seed", prefix, line, 0, INT64_MAX, "a non-negative integer",
                        &t->seed)) ||
        (rc = s_get_stop(obj, prefix, line, t)) ||
        (rc = s_get_string(obj, "model", prefix, line, 0, SQ_JSONL_MAX_MODEL_BYTES, 0, &model,
                           &model_len)))
        return rc;
    if (model && model_len == 0) {
        char p[300];
        return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, "model"),
                           "must not be empty");
    }
    if (model && !(t->model = sq_jsonl_dup(model, model_len)))
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    if ((rc = s_get_adapter_name(obj, "adapter", prefix, line, &t->adapter)) ||
        (rc = s_get_adapter_name(obj, "adapter_version", prefix, line, &t->adapter_version)))
        return rc;
    if (t->adapter_version && !t->adapter) {
        char p[300];
        return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, prefix, "adapter_version"),
                                  "needs \"adapter\"");
    }
    return 0;
}

/* Body fields that OpenAI accepts but shardq cannot honour: at their
 * default they are taken, any other value is refused with the reason
 * rather than ignored. */
static int
s_check_openai_extras(json_t *body, int line, int kind)
{
    for (size_t i = 0; i < sizeof s_default_only / sizeof s_default_only[0]; i++) {
        json_t *v = s_given(body, s_default_only[i].key);
        if (!v || !(s_default_only[i].kinds & kind))
            continue;
        json_t *def = json_loads(s_default_only[i].value, JSON_DECODE_ANY, NULL);
        if (!def)
            return SQ_FAIL(SQ_ENOMEM, "out of memory");
        bool same = json_is_number(v) && json_is_number(def)
                        ? json_number_value(v) == json_number_value(def)
                        : json_equal(v, def);
        json_decref(def);
        if (!same) {
            char p[300];
            return sq_jsonl_field_err(SQ_EINVAL, line, s_path(p, sizeof p, "body",
                                                              s_default_only[i].key),
                                      "not supported: only its default, %s, is accepted",
                                      s_default_only[i].value);
        }
    }
    /* taken and ignored: tags for OpenAI's own use */
    json_t *user = s_given(body, "user"), *tier = s_given(body, "service_tier");
    json_t *meta = s_given(body, "metadata");
    if (user && !json_is_string(user))
        return sq_jsonl_field_err(SQ_EINVAL, line, "body.user", "expected a string");
    if (tier && !json_is_string(tier))
        return sq_jsonl_field_err(SQ_EINVAL, line, "body.service_tier", "expected a string");
    if (meta && !json_is_object(meta))
        return sq_jsonl_field_err(SQ_EINVAL, line, "body.metadata", "expected an object");
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
        return sq_jsonl_field_err(SQ_EINVAL, line, field,
                                  "expected a string or an array of text parts");
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || json_string_length(type) != 4 ||
            memcmp(json_string_value(type), "text", 4) != 0 || !json_is_string(text))
            return sq_jsonl_field_err(SQ_EINVAL, line, field,
                               "part %zu: expected {\"type\":\"text\",\"text\":string} (only "
                               "text parts)", i);
        /* then its other keys: a cache_control or the like is refused too */
        char where[120];
        snprintf(where, sizeof where, "%s[%zu]", field, i);
        int rc = s_check_keys(part, s_part_keys, where, line, 0);
        if (rc == 0)
            rc = s_buf_add(b, json_string_value(text), json_string_length(text));
        if (rc)
            return rc;
    }
    return 0;
}

/* Close the turn that ends at b->len (s_chat_turns). */
static void
s_end_turn(sq_jsonl_chat_t *chat, const s_buf_t *b)
{
    chat->ends[chat->n_turns++] = b->len;
}

/* Validate messages and render them with the Zephyr/TinyLlama template
 * into its turns (see sq_jsonl.h): the one renderer of the template, for
 * the job's prompt (the turns joined by SQ_JSONL_CHAT_SEP) and for the
 * workers' token ids (the turns with the EOS token between them). */
static int
s_chat_turns(json_t *body, int line, sq_jsonl_chat_t *chat)
{
    static const char *const roles[] = {"system", "developer", "user", "assistant", NULL};
    json_t *msgs = s_given(body, "messages");
    char field[80];
    memset(chat, 0, sizeof *chat);
    if (!msgs)
        return sq_jsonl_field_err(SQ_EINVAL, line, "body.messages", "missing (required)");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return sq_jsonl_field_err(SQ_EINVAL, line, "body.messages", "expected a non-empty array");
    /* a turn per message, then the assistant header */
    if (!(chat->ends = malloc((json_array_size(msgs) + 1) * sizeof *chat->ends)))
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    s_buf_t b = {0};
    size_t i;
    json_t *m;
    int rc = 0;
    json_array_foreach(msgs, i, m) {
        snprintf(field, sizeof field, "body.messages[%zu]", i);
        if (!json_is_object(m)) {
            rc = sq_jsonl_field_err(SQ_EINVAL, line, field, "expected an object");
            break;
        }
        if ((rc = s_check_keys(m, s_message_keys, field, line, 0)))
            break;
        /* a string without NUL, so that "user\u0000..." is no "user";
         * name is OpenAI's optional participant name, kept out of the
         * prompt but still a string */
        const char *role, *name;
        size_t role_len, name_len;
        if ((rc = s_get_string(m, "role", field, line, 1, 0, 0, &role, &role_len)) ||
            (rc = s_get_string(m, "name", field, line, 0, 0, 1, &name, &name_len)))
            break;
        int known = 0;
        for (int r = 0; roles[r] && !known; r++)
            known = strcmp(role, roles[r]) == 0;
        snprintf(field, sizeof field, "body.messages[%zu].role", i);
        if (!known) {
            rc = sq_jsonl_field_err(SQ_EINVAL, line, field,
                             "expected \"system\", \"developer\", \"user\" or \"assistant\"");
            break;
        }
        /* developer is OpenAI's newer name for system */
        const char *tag = strcmp(role, "developer") == 0 ? "system" : role;
        snprintf(field, sizeof field, "body.messages[%zu].content", i);
        json_t *content = s_given(m, "content");
        if (!content) {
            rc = sq_jsonl_field_err(SQ_EINVAL, line, field, "missing (required)");
            break;
        }
        /* "\n" after the previous turn's separator: "</s>\n<|user|>\n..." */
        if ((i > 0 && (rc = s_buf_add(&b, "\n", 1))) || (rc = s_buf_add(&b, "<|", 2)) ||
            (rc = s_buf_add(&b, tag, strlen(tag))) || (rc = s_buf_add(&b, "|>\n", 3)) ||
            (rc = s_add_content(&b, content, field, line)))
            break;
        s_end_turn(chat, &b);
    }
    if (rc == 0 && (rc = s_buf_add(&b, "\n<|assistant|>\n", 15)) == 0)
        s_end_turn(chat, &b);
    chat->text = b.buf;
    chat->len = b.len;
    if (rc)
        sq_jsonl_chat_free(chat);
    return rc;
}

int
sq_jsonl_chat_prompt(const sq_jsonl_chat_t *chat, char **prompt_p, size_t *len_p)
{
    static const char sep[] = SQ_JSONL_CHAT_SEP;
    s_buf_t b = {0};
    int rc = s_buf_add(&b, "", 0);
    for (size_t i = 0, from = 0; rc == 0 && i < chat->n_turns; from = chat->ends[i++])
        if ((i > 0 && (rc = s_buf_add(&b, sep, sizeof sep - 1))) ||
            (rc = s_buf_add(&b, chat->text + from, chat->ends[i] - from)))
            break;
    if (rc) {
        free(b.buf);
        return rc;
    }
    *prompt_p = b.buf;
    *len_p = b.len;
    return 0;
}

void
sq_jsonl_chat_free(sq_jsonl_chat_t *chat)
{
    free(chat->text);
    free(chat->ends);
    memset(chat, 0, sizeof *chat);
}

int
sq_jsonl_body_chat(const char *body, size_t len, sq_jsonl_chat_t *chat)
{
    memset(chat, 0, sizeof *chat);
    json_error_t jerr;
    json_t *obj = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
    int rc = obj && json_is_object(obj) ? s_chat_turns(obj, 0, chat)
                                        : SQ_FAIL(SQ_EINVAL, "field \"body\": not a JSON object");
    json_decref(obj);
    return rc;
}

/* The job's prompt: messages rendered, the turns joined. */
static int
s_chat_prompt(json_t *body, int line, sq_jsonl_task_t *t)
{
    sq_jsonl_chat_t chat;
    int rc = s_chat_turns(body, line, &chat);
    if (rc == 0)
        rc = sq_jsonl_chat_prompt(&chat, &t->prompt, &t->prompt_len);
    sq_jsonl_chat_free(&chat);
    return rc;
}

/* --------------------------------------------------------------- shapes */

static int
s_set_prompt(sq_jsonl_task_t *t, const char *s, size_t len)
{
    if (!(t->prompt = sq_jsonl_dup(s, len)))
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
    if ((rc = s_check_keys(obj, s_simple_keys, "", line, 0)) ||
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
    if ((rc = s_check_keys(obj, s_batch_keys, "", line, 0)) ||
        (rc = s_get_string(obj, "method", "", line, 1, 16, 0, &method, &len)) ||
        (rc = s_get_string(obj, "url", "", line, 1, 64, 0, &url, &len)))
        return rc;
    if (strcmp(method, "POST") != 0)
        return sq_jsonl_field_err(SQ_EINVAL, line, "method", "expected \"POST\"");
    if (strcmp(url, "/v1/completions") == 0)
        t->kind = SQ_JSONL_KIND_COMPLETION;
    else if (strcmp(url, "/v1/chat/completions") == 0)
        t->kind = SQ_JSONL_KIND_CHAT;
    else
        return sq_jsonl_field_err(SQ_EINVAL, line, "url",
                           "expected \"/v1/completions\" or \"/v1/chat/completions\"");
    json_t *body = s_given(obj, "body");
    if (!body)
        return sq_jsonl_field_err(SQ_EINVAL, line, "body", "missing (required)");
    if (!json_is_object(body))
        return sq_jsonl_field_err(SQ_EINVAL, line, "body", "expected an object");
    int chat = t->kind == SQ_JSONL_KIND_CHAT;
    if ((rc = s_check_keys(body, chat ? s_chat_keys : s_completion_keys, "body", line,
                           chat ? S_CHAT : S_COMPLETION)) ||
        (rc = s_check_openai_extras(body, line, chat ? S_CHAT : S_COMPLETION)) ||
        (rc = s_get_params(body, "body", line, t)))
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
    /* OpenAI samples at temperature 1 unless told otherwise */
    if (isnan(t->temperature))
        t->temperature = 1;
    /* a completion's prompt travels once, as the task's prompt (chat
     * messages stay: the prompt is their rendering, not them) */
    json_t *kept = chat ? json_incref(body) : json_copy(body);
    if (!kept)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    if (!chat)
        json_object_del(kept, "prompt");
    rc = s_set_body(t, kept);
    json_decref(kept);
    return rc;
}

int
sq_jsonl_body_stop(const char *body, size_t len, char **stop, int *n_stop)
{
    *n_stop = 0;
    json_error_t jerr;
    json_t *obj = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
    if (!obj || !json_is_object(obj)) {
        json_decref(obj);
        return SQ_FAIL(SQ_EINVAL, "field \"body\": not a JSON object%s%s", obj ? "" : ": ",
                       obj ? "" : jerr.text);
    }
    sq_jsonl_task_t t;
    memset(&t, 0, sizeof t);
    const int rc = s_get_stop(obj, "body", 0, &t);
    json_decref(obj);
    for (int i = 0; i < t.n_stop; i++)
        if (rc == 0)
            stop[(*n_stop)++] = t.stop[i];
        else
            free(t.stop[i]);
    return rc;
}

void
sq_jsonl_task_free(sq_jsonl_task_t *t)
{
    free(t->custom_id);
    free(t->prompt);
    free(t->model);
    free(t->adapter);
    free(t->adapter_version);
    free(t->body_json);
    for (int i = 0; i < t->n_stop; i++)
        free(t->stop[i]);
    memset(t, 0, sizeof *t);
}

/* Defaults, custom_id, then the shape the line claims (sq_jsonl_internal.h). */
int
sq_jsonl_task_parse(json_t *obj, int line, size_t max_custom_id_bytes, sq_jsonl_task_t *t)
{
    memset(t, 0, sizeof *t);
    t->line_no = line;
    t->max_tokens = -1;
    t->seed = -1;
    t->temperature = NAN;
    t->top_p = NAN;
    const char *id;
    size_t id_len;
    int batch = s_given(obj, "method") || s_given(obj, "url") || s_given(obj, "body");
    int rc = s_get_string(obj, "custom_id", "", line, 1, max_custom_id_bytes, 1, &id, &id_len);
    if (rc == 0 && id_len == 0)
        rc = sq_jsonl_field_err(SQ_EINVAL, line, "custom_id", "must not be empty");
    if (rc == 0 && !(t->custom_id = sq_jsonl_dup(id, id_len)))
        rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
    t->custom_id_len = id_len;
    if (rc == 0)
        rc = batch ? s_parse_batch(obj, line, t) : s_parse_simple(obj, line, t);
    if (rc)
        sq_jsonl_task_free(t);
    return rc;
}


/*  sq_jsonl_result: one finished task as an OpenAI-Batch output line.
 *
 *  Existing batch tooling reads these files, so the shape follows OpenAI's
 *  batch output exactly (see sq_jsonl.h); the only freedom taken is null
 *  usage counts when the worker did not report them.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_jsonl.h"
#include "sq_error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ result output */

/* A JSON string of s[0..len), invalid UTF-8 sequences replaced by U+FFFD
 * (model output may split a multi-byte character; the line must stay
 * valid JSON). NUL and valid Unicode pass through unchanged. */
static json_t *
s_json_text(const char *s, size_t len)
{
    size_t ok = sq_jsonl_utf8_valid_prefix(s, len);
    if (ok == len)
        return json_stringn(s, len);
    /* each bad byte becomes 3 bytes at most */
    char *buf = malloc(3 * len + 1);
    size_t n = 0, pos = 0;
    if (!buf)
        return NULL;
    while (pos < len) {
        ok = sq_jsonl_utf8_valid_prefix(s + pos, len - pos);
        memcpy(buf + n, s + pos, ok);
        n += ok;
        pos += ok;
        if (pos < len) {
            memcpy(buf + n, "\xEF\xBF\xBD", 3);
            n += 3;
            pos++;
        }
    }
    json_t *j = json_stringn(buf, n);
    free(buf);
    return j;
}

static json_t *
s_json_count(int64_t n)
{
    return n >= 0 ? json_integer(n) : json_null();
}

/* The OpenAI-shaped completion body: text_completion for the simple and
 * completions shapes, chat.completion for chat. */
static json_t *
s_result_body(const sq_jsonl_result_t *r, const char *req_id)
{
    int chat = r->kind == SQ_JSONL_KIND_CHAT;
    json_t *text = s_json_text(r->text ? r->text : "", r->text ? r->text_len : 0);
    json_t *choice = chat ? json_pack("{s:i,s:{s:s,s:o},s:n,s:s}", "index", 0, "message", "role",
                                      "assistant", "content", text, "logprobs",
                                      "finish_reason",
                                      r->finish_reason ? r->finish_reason : "stop")
                          : json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "text", text, "logprobs",
                                      "finish_reason",
                                      r->finish_reason ? r->finish_reason : "stop");
    /* the counts come from the broker: a sum past INT64_MAX counts nothing */
    json_t *total = r->prompt_tokens >= 0 && r->completion_tokens >= 0 &&
                            r->completion_tokens <= INT64_MAX - r->prompt_tokens
                        ? json_integer(r->prompt_tokens + r->completion_tokens)
                        : json_null();
    json_t *usage = json_pack("{s:o,s:o,s:o}", "prompt_tokens", s_json_count(r->prompt_tokens),
                              "completion_tokens", s_json_count(r->completion_tokens),
                              "total_tokens", total);
    if (usage && r->cached_tokens >= 0)
        json_object_set_new(usage, "prompt_tokens_details",
                            json_pack("{s:I}", "cached_tokens", (json_int_t)r->cached_tokens));
    return json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", req_id, "object",
                     chat ? "chat.completion" : "text_completion", "created",
                     (json_int_t)r->created_s, "model", r->model ? r->model : "", "choices",
                     choice, "usage", usage);
}

static json_t *
s_result_error(const sq_jsonl_result_t *r)
{
    static const char *const codes[] = {"", "task_failed", "cancelled", "pending"};
    static const char *const fallback[] = {"", "the task failed after its attempts",
                                           "the job was cancelled before the task ran",
                                           "the task has not finished yet"};
    json_t *msg = r->error && r->error_len ? s_json_text(r->error, r->error_len)
                                           : json_string(fallback[r->outcome]);
    return json_pack("{s:s,s:o}", "code", codes[r->outcome], "message", msg);
}

int
sq_jsonl_format_result(const sq_jsonl_result_t *r, char **line_p, size_t *len_p)
{
    char id[128], req[128];
    *line_p = NULL;
    snprintf(id, sizeof id, "batch_req_%s-%llu", r->job_id ? r->job_id : "",
             (unsigned long long)r->task_id);
    snprintf(req, sizeof req, "req_%s-%llu", r->job_id ? r->job_id : "",
             (unsigned long long)r->task_id);
    int ok = r->outcome == SQ_JSONL_RESULT_OK;
    json_t *response = ok ? json_pack("{s:i,s:s,s:o}", "status_code", 200, "request_id", req,
                                      "body", s_result_body(r, req))
                          : json_null();
    json_t *line = json_pack(
        "{s:s,s:o,s:o,s:o}", "id", id, "custom_id",
        s_json_text(r->custom_id ? r->custom_id : "", r->custom_id ? r->custom_id_len : 0),
        "response", response, "error", ok ? json_null() : s_result_error(r));
    if (!line)
        return SQ_FAIL(SQ_ENOMEM, "cannot build the result line for task %llu",
                       (unsigned long long)r->task_id);
    char *s = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!s)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    *line_p = s;
    if (len_p)
        *len_p = strlen(s);
    return 0;
}

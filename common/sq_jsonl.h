/*  sq_jsonl: job files in, OpenAI-Batch result lines out.
 *
 *  A job file is JSONL, one task per line, in one of two shapes (a file may
 *  mix them):
 *
 *    simple:       {"custom_id":"r-1","prompt":"...","max_tokens":128,
 *                   "temperature":0}
 *    OpenAI Batch: {"custom_id":"r-1","method":"POST",
 *                   "url":"/v1/completions" | "/v1/chat/completions",
 *                   "body":{"model":"...","prompt":"..."      (completions)
 *                           | "messages":[{"role":..,"content":..}] (chat),
 *                           "max_tokens":128, ...}}
 *
 *  One file is one job: lines that name a model must name the same one,
 *  and chat lines cannot be mixed with completion/simple lines (as in
 *  OpenAI's Batch API, where a batch has one endpoint).
 *
 *  The whole file is validated before a single task is handed out: the
 *  first problem is reported as "line N: field \"F\": what is wrong" through
 *  SQ_FAIL (read it with sq_error_detail()), and the parse returns a
 *  negative SQ_E* code. Strings keep every byte, NUL (\u0000) included:
 *  every string carries its length and none may be treated as C strings
 *  (except model and stop entries, which refuse NUL).
 *
 *  Chat messages become one prompt with the Zephyr/TinyLlama template
 *  (the chat format of the bundled Llama-family models):
 *      <|system|>\n{content}</s>\n<|user|>\n{content}</s>\n<|assistant|>\n
 *  i.e. each message as "<|role|>\n" + content + "</s>\n", then the
 *  assistant header that the model continues from. Its "</s>" is the
 *  models' end-of-sequence token, not text: the template is rendered as
 *  its turns, the text between those separators (sq_jsonl_chat_t); the
 *  prompt is the turns joined by "</s>" (what is stored and shown), and a
 *  worker encodes each turn as text with the EOS token between them
 *  (sq_jsonl_body_chat), so a "</s>" typed in a message stays text.
 *
 *  Ownership: sq_jsonl_t owns all tasks and their strings; task pointers
 *  are borrowed until sq_jsonl_destroy().
 */
#ifndef SQ_JSONL_H
#define SQ_JSONL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Which endpoint a task imitates; it decides the shape of its result body
 * ("text_completion" with choices[0].text, or "chat.completion" with
 * choices[0].message). Travels with the task as its "kind" parameter. */
typedef enum {
    SQ_JSONL_KIND_SIMPLE = 0,     /* simple shape; results as completions */
    SQ_JSONL_KIND_COMPLETION = 1, /* /v1/completions */
    SQ_JSONL_KIND_CHAT = 2        /* /v1/chat/completions */
} sq_jsonl_kind_t;

/* Name used on the wire and in docs ("simple", "completion", "chat"). */
const char *sq_jsonl_kind_name(sq_jsonl_kind_t kind);
/* Inverse of sq_jsonl_kind_name; unknown names read as SIMPLE. */
sq_jsonl_kind_t sq_jsonl_kind_parse(const char *name);

#define SQ_JSONL_MAX_STOP 4

/* One validated task. Optional numbers hold -1 (max_tokens, seed) or NAN
 * (temperature, top_p) when the line did not give them (or gave null),
 * except an OpenAI line's temperature, which is then OpenAI's default, 1. */
typedef struct {
    int line_no;                /* 1-based line in the file */
    sq_jsonl_kind_t kind;
    char *custom_id;            /* NUL-terminated copy, may contain NULs */
    size_t custom_id_len;
    char *prompt;               /* chat messages already templated */
    size_t prompt_len;
    char *model;                /* NULL when the line names none */
    char *adapter;              /* LoRA adapter of this task, or NULL */
    char *adapter_version;      /* pinned version, or NULL (the active one) */
    int64_t max_tokens;         /* > 0, or -1 */
    double temperature;         /* [0, 2], or NAN */
    double top_p;               /* [0, 1] (0: the most likely token), or NAN */
    int64_t seed;               /* >= 0, or -1 */
    int n_stop;
    char *stop[SQ_JSONL_MAX_STOP];
    /* OpenAI shape: the line's "body" re-encoded as compact JSON, less a
     * completion's "prompt" (the task's prompt is that) (NUL kept
     * as the escape \u0000, so the text itself holds none); simple shape:
     * {"stop":...} when it names stop sequences (a string or an array, as
     * the line gave it); else NULL. */
    char *body_json;
    size_t body_json_len;
} sq_jsonl_task_t;

/* Size caps and what the consumer can store; a zero field takes the
 * default. A client sending to the broker sets them from the wire caps
 * (docs/protocol.md §2), so that a task the broker would refuse fails
 * here, naming its line, before anything is sent. */
typedef struct {
    size_t max_line_bytes;      /* default 1 MiB */
    size_t max_file_bytes;      /* default 256 MiB */
    size_t max_tasks;           /* default 1,000,000 */
    size_t max_custom_id_bytes; /* default 512 */
    size_t max_prompt_bytes;    /* after chat templating; default: none */
    int refuse_nul;             /* refuse NUL in custom_id and prompt */
} sq_jsonl_limits_t;

#define SQ_JSONL_DEFAULT_MAX_LINE_BYTES ((size_t)1 << 20)
#define SQ_JSONL_DEFAULT_MAX_FILE_BYTES ((size_t)256 << 20)
#define SQ_JSONL_DEFAULT_MAX_TASKS ((size_t)1000000)
#define SQ_JSONL_MAX_CUSTOM_ID_BYTES 512
#define SQ_JSONL_MAX_MODEL_BYTES 128

typedef struct sq_jsonl_t sq_jsonl_t;

/* Parse and validate a whole job file held in memory. On success *out_p
 * owns the tasks. Blank lines (only spaces/tabs/CR) are skipped; an empty
 * file is an error. Returns 0, SQ_EFORMAT/SQ_EINVAL (bad content),
 * SQ_ETOOBIG (a cap) or SQ_ENOMEM, with the detail naming line and field. */
int sq_jsonl_parse(const char *data, size_t size, const sq_jsonl_limits_t *limits,
                   sq_jsonl_t **out_p);
/* Same for a file on disk ("-" reads stdin). Also -errno for I/O errors. */
int sq_jsonl_load(const char *path, const sq_jsonl_limits_t *limits, sq_jsonl_t **out_p);
void sq_jsonl_destroy(sq_jsonl_t **self_p);

size_t sq_jsonl_size(const sq_jsonl_t *self);
/* All tasks as one array of sq_jsonl_size() entries (borrowed). */
const sq_jsonl_task_t *sq_jsonl_tasks(const sq_jsonl_t *self);
/* Borrowed; i < sq_jsonl_size(). */
const sq_jsonl_task_t *sq_jsonl_task(const sq_jsonl_t *self, size_t i);
/* The model the file names (all lines that name one agree), or NULL. */
const char *sq_jsonl_model(const sq_jsonl_t *self);
/* The kind shared by all tasks (simple and completion lines may mix: the
 * result is COMPLETION when any line is, else SIMPLE). */
sq_jsonl_kind_t sq_jsonl_kind(const sq_jsonl_t *self);

/* One finished (or unfinished) task, as the broker reports it. */
typedef enum {
    SQ_JSONL_RESULT_OK = 0,     /* succeeded: response with status 200 */
    SQ_JSONL_RESULT_FAILED,     /* dead after its attempts */
    SQ_JSONL_RESULT_CANCELLED,
    SQ_JSONL_RESULT_PENDING     /* not finished when results were read */
} sq_jsonl_outcome_t;

typedef struct {
    const char *job_id;         /* C string */
    uint64_t task_id;
    const char *custom_id;
    size_t custom_id_len;
    sq_jsonl_kind_t kind;
    sq_jsonl_outcome_t outcome;
    const char *text;           /* generated text (OK), may hold any bytes */
    size_t text_len;
    const char *model;          /* C string or NULL */
    const char *finish_reason;  /* "stop" | "length" | NULL ("stop") */
    int64_t prompt_tokens;      /* -1 unknown */
    int64_t completion_tokens;  /* -1 unknown */
    int64_t cached_tokens;      /* of prompt_tokens, from the KV cache; -1 unknown */
    int64_t created_s;          /* unix seconds the result was recorded */
    const char *error;          /* last error (FAILED), may be NULL */
    size_t error_len;
} sq_jsonl_result_t;

/* Format one OpenAI-Batch output line (no trailing newline) into a
 * malloc'd buffer that the caller frees:
 *   {"id":"batch_req_<job>-<task>","custom_id":...,
 *    "response":{"status_code":200,"request_id":"req_<job>-<task>",
 *                "body":{"id":..,"object":"text_completion"|"chat.completion",
 *                        "created":..,"model":..,"choices":[..],"usage":{..}}},
 *    "error":null}
 * or, for a task that did not succeed, "response":null and
 *    "error":{"code":"task_failed"|"cancelled"|"pending","message":...}.
 * Invalid UTF-8 in text/error is replaced by U+FFFD so the line is valid
 * JSON; NUL and all valid Unicode are kept (NUL as \u0000). */
int sq_jsonl_format_result(const sq_jsonl_result_t *r, char **line_p, size_t *len_p);

/* Length of the longest valid UTF-8 prefix of s[0..len); equals len when
 * s is valid. Overlong forms, surrogates and > U+10FFFF are invalid. */
size_t sq_jsonl_utf8_valid_prefix(const char *s, size_t len);

/* A chat prompt as its template's turns: the text between the turn
 * separators. Turn i is text[i ? ends[i - 1] : 0, ends[i]); one turn a
 * message ("<|role|>\n" + content, after a "\n" from the second on) and
 * the last "\n<|assistant|>\n". Owned: sq_jsonl_chat_free. */
typedef struct {
    char *text;                 /* the turns back to back (may hold NUL) */
    size_t len;
    size_t *ends;               /* n_turns offsets into text */
    size_t n_turns;
} sq_jsonl_chat_t;

/* What separates the turns in the prompt: the end-of-sequence piece of
 * the models the template is made for. */
#define SQ_JSONL_CHAT_SEP "</s>"

/* The turns of a chat task's "body" (JSON text, as a worker gets it in
 * TASKS), its "messages" checked as in a job file. OUT *chat; 0, or
 * SQ_EINVAL naming the field (no messages, or bad ones), SQ_ENOMEM. */
int sq_jsonl_body_chat(const char *body, size_t len, sq_jsonl_chat_t *chat);
/* The prompt of chat: its turns joined by SQ_JSONL_CHAT_SEP, the job
 * file's rendering. OUT *prompt_p (malloc'd, NUL-terminated) of *len_p
 * bytes; 0 or SQ_ENOMEM. */
int sq_jsonl_chat_prompt(const sq_jsonl_chat_t *chat, char **prompt_p, size_t *len_p);
void sq_jsonl_chat_free(sq_jsonl_chat_t *chat);

/* The kind a job's params (JSON text, {"kind":"chat"}, as the client
 * writes them at SUBMIT) name; SIMPLE when they name none. */
sq_jsonl_kind_t sq_jsonl_params_kind(const char *params, size_t len);

/* The stop strings of a task's "body" (JSON text, as a worker gets it in
 * TASKS): the job-file rule (a string or an array of at most
 * SQ_JSONL_MAX_STOP non-empty strings of at most 256 bytes, no NUL) into
 * stop (caller frees each, *n_stop of them); 0, or SQ_EINVAL naming the
 * field. A body without "stop" gives none. */
int sq_jsonl_body_stop(const char *body, size_t len, char **stop, int *n_stop);

#ifdef __cplusplus
}
#endif
#endif

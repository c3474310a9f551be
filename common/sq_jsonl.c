/*  sq_jsonl: a job file, validated whole.
 *
 *  One pass over the lines: each is checked for size and UTF-8 before
 *  jansson sees it (so the error can name the line and byte), decoded with
 *  JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, then handed to sq_jsonl_task.c
 *  for its fields; the rules that span lines (caps, duplicate custom_ids,
 *  one model, one endpoint) are checked here. Nothing is returned to the
 *  caller until every line passed, so a bad line 90,000 means no task is
 *  ever sent. The only state is the task array and a custom_id hash set
 *  that finds duplicates in O(1) per line. Results: sq_jsonl_result.c.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_jsonl_internal.h"
#include "sq_error.h"
#include "sq_utf8.h"
#include "sq_file.h"
#include "sq_hash.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

sq_jsonl_kind_t
sq_jsonl_params_kind(const char *params, size_t len)
{
    json_t *j = params ? json_loadb(params, len, 0, NULL) : NULL;
    sq_jsonl_kind_t kind = sq_jsonl_kind_parse(json_string_value(json_object_get(j, "kind")));
    json_decref(j);
    return kind;
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

/* ------------------------------------------------------- the task array */

static uint64_t
s_hash(const char *s, size_t len)
{
    return sq_fnv1a(SQ_FNV1A_INIT, s, len);
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
    if (strcmp(self->model, t->model) != 0) { /* names cut on a whole character */
        int n = (int)sq_utf8_cut(t->model, strnlen(t->model, 64));
        int first = (int)sq_utf8_cut(self->model, strnlen(self->model, 64));
        return sq_jsonl_field_err(SQ_EINVAL, t->line_no, field,
                                  "\"%.*s\" differs from \"%.*s\" on line %d (one job runs one "
                                  "model)", n, t->model, first, self->model, self->model_line);
    }
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
        return sq_jsonl_field_err(SQ_EINVAL, t->line_no, "custom_id",
                           "contains NUL (\\u0000), which shardq cannot store");
    if (self->lim.refuse_nul && memchr(t->prompt, '\0', t->prompt_len))
        return sq_jsonl_field_err(SQ_EINVAL, t->line_no, field,
                           "contains NUL (\\u0000), which shardq cannot store");
    if (self->lim.max_prompt_bytes && t->prompt_len > self->lim.max_prompt_bytes)
        return sq_jsonl_field_err(SQ_ETOOBIG, t->line_no, field,
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
        return sq_jsonl_field_err(
            SQ_EINVAL, t->line_no, t->kind == SQ_JSONL_KIND_SIMPLE ? "prompt" : "url",
            "a %s task cannot join the %s tasks of line %d (one job, one endpoint)",
            chat ? "chat" : "completion", chat ? "completion" : "chat", self->kind_line);
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
    size_t dup_of;
    int rc = sq_jsonl_task_parse(obj, line, self->lim.max_custom_id_bytes, t);
    if (rc)
        return rc;
    rc = s_check_stored(self, t);
    if (rc == 0)
        rc = s_check_model(self, t);
    if (rc == 0)
        rc = s_check_kind(self, t);
    if (rc == 0)
        rc = s_idset_insert(self, self->n_tasks, &dup_of);
    if (rc == 0 && dup_of)
        rc = sq_jsonl_field_err(SQ_EINVAL, line, "custom_id", "duplicate of line %d",
                                self->tasks[dup_of - 1].line_no);
    if (rc) {
        sq_jsonl_task_free(t);
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

int
sq_jsonl_load(const char *path, const sq_jsonl_limits_t *limits, sq_jsonl_t **out_p)
{
    size_t cap = limits && limits->max_file_bytes ? limits->max_file_bytes
                                                  : SQ_JSONL_DEFAULT_MAX_FILE_BYTES;
    char *data = NULL;
    size_t size = 0;
    *out_p = NULL;
    int rc = sq_file_read(path, cap, &data, &size);
    if (rc == 0)
        rc = sq_jsonl_parse(data, size, limits, out_p);
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
        sq_jsonl_task_free(&self->tasks[i]);
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

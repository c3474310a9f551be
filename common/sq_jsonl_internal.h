/*  sq_jsonl_internal: what the parts of sq_jsonl share (sq_jsonl.c, the
 *  file; sq_jsonl_task.c, one line). Not API. */
#ifndef SQ_JSONL_INTERNAL_H
#define SQ_JSONL_INTERNAL_H

#include "sq_jsonl.h"

#include <jansson.h>

/* Record "line N: field \"F\": <fmt>" as the error detail; returns rc. */
int sq_jsonl_field_err(int rc, int line, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A NUL-terminated copy of s[0..len) (which may hold NULs), or NULL. */
char *sq_jsonl_dup(const char *s, size_t len);
/* Validate one decoded line (a JSON object) into *t, which it owns on 0;
 * on failure *t is empty and the detail names line and field. */
int sq_jsonl_task_parse(json_t *obj, int line, size_t max_custom_id_bytes, sq_jsonl_task_t *t);
void sq_jsonl_task_free(sq_jsonl_task_t *t);

#endif

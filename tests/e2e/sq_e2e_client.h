/*  sq_e2e_client: the client half of the protocol as the e2e tests need it.
 *
 *  Deliberately thin and raw (not libshardq): the tests must be able to send
 *  exactly the bytes they mean — hostile strings, NUL inside msgpack
 *  strings, invalid UTF-8, broken frames — and to see the broker's ERROR
 *  replies as they are, without client-side validation or retries in the
 *  way. One DEALER socket; each request carries a fresh rid and replies
 *  with another rid are dropped.
 *
 *  Usage:  sq_wire_enc_t *e = sq_e2e_begin(c, 2);   // map with rid + 2 pairs
 *          sq_wire_kv_u64(e, "job_id", id); ...
 *          sq_wire_msg_t *reply; int code;
 *          rc = sq_e2e_call(c, SQ_WIRE_STATUS, 5000, &reply, &code);
 */
#ifndef SQ_E2E_CLIENT_H
#define SQ_E2E_CLIENT_H

#include "sq_wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sq_e2e_client_t sq_e2e_client_t;

sq_e2e_client_t *sq_e2e_client_new(const char *endpoint);
void sq_e2e_client_destroy(sq_e2e_client_t **self_p);

/* Start a request body: a map of n_pairs + 1 entries whose first is the
 * new rid. The caller adds n_pairs pairs. */
sq_wire_enc_t *sq_e2e_begin(sq_e2e_client_t *self, uint32_t n_pairs);
/* Send the body begun with sq_e2e_begin as command cmd and wait up to
 * timeout_ms for the reply with its rid. Returns 0 with *reply_out (caller
 * destroys) for a cmd|0x80 reply; SQ_EPROTO for an ERROR reply, with
 * *wire_code_out (may be NULL) its code and the message as error detail;
 * SQ_ETIMEDOUT when nothing came (the socket is replaced, so a late reply
 * cannot answer the next request). */
int sq_e2e_call(sq_e2e_client_t *self, uint8_t cmd, int timeout_ms, sq_wire_msg_t **reply_out,
                int *wire_code_out);

/* Send the body begun with sq_e2e_begin without waiting (pipelining);
 * returns its rid, or 0 when the send failed. Match replies with
 * sq_e2e_recv_any and their "rid". */
uint64_t sq_e2e_send(sq_e2e_client_t *self, uint8_t cmd);

/* Send raw frames (any count, any bytes): for malformed-input tests. */
int sq_e2e_send_frames(sq_e2e_client_t *self, const void *const frames[],
                       const size_t sizes[], int n_frames);
/* Receive any one message (parsed) within timeout_ms, or NULL. */
sq_wire_msg_t *sq_e2e_recv_any(sq_e2e_client_t *self, int timeout_ms);

/* --- conveniences on top of sq_e2e_call ------------------------------ */

/* A job of n tasks whose custom_ids and prompts come from arrays (prompt
 * lengths may contain NUL bytes when prompt_lens is given; NULL = strlen). */
typedef struct {
    const char *tenant;
    const char *model;
    int priority;           /* -1: leave out */
    int max_attempts;       /* 0: leave out */
    int n_tasks;
    const char *const *custom_ids;
    const char *const *prompts;
    const size_t *prompt_lens;
    const char *adapter;    /* LoRA adapter of the job, NULL: base model */
    int max_tokens;         /* per task; 0: leave out (broker default) */
    double temperature;     /* per task; 0: leave out (greedy) */
} sq_e2e_job_t;

/* SUBMIT. 0 and *job_id_out once acknowledged; otherwise as sq_e2e_call. */
int sq_e2e_submit(sq_e2e_client_t *self, const sq_e2e_job_t *job, int timeout_ms,
                  uint64_t *job_id_out, int *wire_code_out);
/* SUBMIT of n tasks "<prefix>-<i>" with prompt "prompt <prefix> <i>". */
int sq_e2e_submit_n(sq_e2e_client_t *self, const char *tenant, const char *model, int n,
                    const char *prefix, int max_attempts, uint64_t *job_id_out,
                    int *wire_code_out);
/* CANCEL; *n_cancelled_out (may be NULL) from the reply. */
int sq_e2e_cancel(sq_e2e_client_t *self, uint64_t job_id, uint64_t *n_cancelled_out);
/* STATUS: one count of the reply's counts map ("leased", "queued", ...). */
int sq_e2e_status_count(sq_e2e_client_t *self, uint64_t job_id, const char *count,
                        uint64_t *out);
/* Poll STATUS until counts[count] >= at_least or timeout_ms passes. */
int sq_e2e_wait_count(sq_e2e_client_t *self, uint64_t job_id, const char *count,
                      uint64_t at_least, int timeout_ms);

#endif

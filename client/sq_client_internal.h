/*  sq_client_internal: what sq_client.c shares with sq_client_results.c
 *  (the request loop and reply-field helpers). Not installed, not API. */
#ifndef SQ_CLIENT_INTERNAL_H
#define SQ_CLIENT_INTERNAL_H

#include "sq_client.h"
#include "sq_error.h"
#include "sq_wire.h"

#include <math.h>

/* Builds a request body (a map that includes "rid") into e. */
typedef int (*sq_client_build_fn)(sq_wire_enc_t *e, uint64_t rid, const void *arg);

/* Send a request of command cmd and wait for its reply, with the timeouts
 * and retries described in sq_client.h. On 0, *reply_p is the reply (never
 * an ERROR), the caller destroys it. */
int sq_client_request(sq_client_t *self, uint8_t cmd, sq_client_build_fn build, const void *arg,
                      sq_wire_msg_t **reply_p);
/* The same for a request that changes something (a LoRA publish, say):
 * sent once with SUBMIT's timeout, since after a timeout the change may
 * have been made (an error reply says it was not, and is retried). */
int sq_client_request_change(sq_client_t *self, uint8_t cmd, sq_client_build_fn build,
                             const void *arg, sq_wire_msg_t **reply_p);

/* Copy an optional string field into buf (truncated to size - 1 on a
 * whole UTF-8 character; "" when absent or of the wrong type). */
void sq_client_get_fixed(sq_wire_val_t map, const char *key, char *buf, size_t size);
/* An optional string field, whole, as a NUL-terminated copy the caller
 * frees; NULL when absent, of the wrong type, or out of memory. */
char *sq_client_get_dup(sq_wire_val_t map, const char *key);
/* An optional uint field, 0 when absent. */
uint64_t sq_client_get_u64(sq_wire_val_t map, const char *key);
/* Decode each map of body[key] with fn into a new calloc'd array. */
int sq_client_decode_array(sq_wire_val_t body, const char *key, size_t elem_size,
                           void (*fn)(sq_wire_val_t m, void *elem), void **out, size_t *n_out);

#endif

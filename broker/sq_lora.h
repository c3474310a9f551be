/*  sq_lora: LoRA adapter updates in the broker (sql/0003_lora.sql).
 *
 *  The broker owns the adapter directory workers read (--adapters DIR,
 *  shared with every worker group: DIR/NAME/VERSION.gguf and DIR/NAME/active)
 *  and the lora_updates records. LORA requests (publish, activate,
 *  rollback, list) run on a thread of their own with its own database
 *  connection, so the event loop never waits for PostgreSQL or the disk.
 *  The loop keeps a registry of each adapter's active and canary versions
 *  (refreshed after every change) and resolves the version of each task
 *  when it is leased: a canary of p % gets the tasks whose id hashes below
 *  p, so a task keeps its version across retries.
 *
 *  Ownership: sq_lora_t belongs to the server; a request's reply and its
 *  peer frame pass to the caller of sq_lora_take_done().
 */
#ifndef SQ_LORA_BROKER_H
#define SQ_LORA_BROKER_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_wire.h"

typedef struct sq_lora_t sq_lora_t;

/* Connect (its own connection), load the registry, start the thread.
 * adapters_dir may be NULL: publish is then refused, the rest works. */
sq_lora_t *sq_lora_new(const char *conninfo, const char *adapters_dir);
void sq_lora_destroy(sq_lora_t **self_p);
/* The thread's pipe: readable when a request is done. */
zsock_t *sq_lora_sock(sq_lora_t *self);

/* Loop: start a LORA request (body is copied). 0, or an error to send back
 * at once (bad fields, detail set). */
int sq_lora_request(sq_lora_t *self, zframe_t *to, uint64_t rid, sq_wire_val_t body);

typedef struct {
    zframe_t *to;               /* caller destroys */
    uint64_t rid;
    int rc;                     /* 0: reply holds the body */
    char error[512];
    sq_wire_enc_t *reply;       /* caller destroys */
} sq_lora_done_t;
/* Loop: collect a finished request (and refresh the registry). 0 or
 * SQ_EAGAIN when nothing was ready. */
int sq_lora_take_done(sq_lora_t *self, sq_lora_done_t *out);

/* True when s (n bytes) is a usable adapter name or version: 1-128 of
 * [A-Za-z0-9._-], not starting with '.' (they become file names). */
bool sq_lora_name_ok(const char *s, size_t n);

/* May a task pin version of adapter name? False when the registry manages
 * name (it has published a version of it) and version is not one of its
 * versions or was rolled back; true for a name it does not manage (its
 * files are placed by hand), and while the registry could not be read
 * back after a change (it cannot say). */
bool sq_lora_pin_ok(const sq_lora_t *self, const char *name, const char *version);

/* The version a task of adapter name gets, or NULL when the adapter has no
 * managed version (workers then read DIR/NAME/active). Borrowed. */
const char *sq_lora_resolve(const sq_lora_t *self, const char *name, uint64_t task_id);

#endif

/*  sq_broker: the broker's state and the pieces that act on it.
 *
 *  One thread (the zloop) owns every structure below. PostgreSQL is only
 *  touched by the two store threads (sq_store.c): the writer commits
 *  batches (group commit), the reader answers history queries. The loop
 *  hands a batch over, keeps collecting the next one, and acts on the
 *  outcome when the writer reports back: acknowledgements are sent and
 *  tasks become queued/terminal only after their rows are committed.
 *
 *  Task life:   SUBMITTING -> QUEUED -> LEASED -> COMPLETING -> SUCCEEDED
 *                              ^  |        |  \-> RETRYING -> QUEUED
 *                              |  |        \---> COMPLETING -> DEAD
 *                              +--+ (worker lost)   CANCELLED (any non-terminal)
 *  COMPLETING means "terminal row written, commit pending".
 */
#ifndef SQ_BROKER_H
#define SQ_BROKER_H

#include "sq_db.h"
#include "sq_log.h"
#include "sq_queue.h"
#include "sq_wire.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    SQ_T_SUBMITTING = 0,
    SQ_T_QUEUED,
    SQ_T_LEASED,
    SQ_T_RETRYING,
    SQ_T_COMPLETING,
    SQ_T_SUCCEEDED,
    SQ_T_DEAD,
    SQ_T_CANCELLED,
    SQ_T_DONE, /* terminal before this broker started (details in PG) */
    SQ_T_N
} sq_tstate_t;

typedef struct sq_group_t sq_group_t;
typedef struct sq_job_t sq_job_t;

typedef struct sq_task_t {
    sq_qitem_t q; /* first member: queue items cast back to tasks */
    sq_job_t *job;
    uint32_t idx;
    uint8_t state;
    uint8_t has_seed;
    uint16_t attempts; /* leases granted so far, including earlier broker runs */
    uint32_t max_tokens;
    double temperature, top_p;
    uint64_t seed;
    char *data; /* custom_id \0 prompt \0 body \0 (one block; NULL once terminal) */
    uint32_t prompt_off, body_off; /* body_off 0 = no body */
    uint32_t adapter_off;          /* "name\0version\0" (version may be ""); 0 = none */
    /* live lease */
    uint64_t lease_id, token;
    sq_group_t *group;
    struct sq_task_t *lprev, *lnext;
    int64_t leased_wall_ms;
} sq_task_t;

struct sq_job_t {
    uint64_t id;
    char *tenant, *model, *adapter, *params;
    size_t shared_bytes; /* model + params + 1, which every TASKS entry carries;
                          * 0 until its first dispatch measures them */
    int priority, max_attempts;
    uint32_t n_tasks;
    uint32_t counts[SQ_T_N];
    int64_t created_wall_ms;
    bool cancelled;
    char *idempotency_key; /* SUBMIT's, or NULL */
    /* set by the writer for a keyed SUBMIT whose key the tenant used
     * before: that job's id (this job is not stored), and whether this
     * SUBMIT carried anything else (then it is refused) */
    uint64_t same_as;
    bool same_as_differs;
    sq_task_t *tasks; /* n_tasks, tasks[i].idx == i + 1 */
    /* SUBMIT acknowledgement, until committed */
    zframe_t *reply_to;
    uint64_t rid;
};

struct sq_group_t {
    char key[2 * 256 + 1]; /* hex of the ZMQ identity */
    zframe_t *identity;
    char *group_id, *model, *sha, *device;
    char *kv_type;              /* READY's, NULL when the group gave none */
    uint32_t tp_size, max_batch, n_leases;
    uint32_t kv_pages;          /* READY's KV-cache pages of 32 positions, 0 when not given */
    bool kv_reported;           /* a HEARTBEAT said how its KV cache is used: */
    uint32_t kv_in_use;         /* pages its running sequences hold */
    uint64_t preemptions;       /* sequences preempted since it started */
    bool draining;
    /* a lease of it timed out (--lease-timeout-ms): it heartbeats but may
     * be hung. Until it sends a RESULT or FAIL it gets no lease while a
     * group of its model that is not suspect is connected, else one at a
     * time (probe: set by each dispatch), so that a group that is only
     * slow (its cancelled leases get no answer) can show it works */
    bool suspect, probe;
    sq_task_t *leases; /* doubly linked through lprev/lnext */
    int64_t last_recv_ms, last_send_ms;
    uint64_t completed;
};

/* Per-model counters for STATS. */
typedef struct {
    uint32_t leased;
    uint32_t retrying;
    uint32_t done_per_s[16]; /* ring indexed by second */
    int64_t ring_sec;
    /* tokens of the results accepted since the broker started, as the
     * workers reported them: prompt, of them from a KV cache, generated */
    uint64_t prompt_tokens, cached_tokens, completion_tokens;
} sq_pstat_t;

/* ---- the write batch (group commit) ---- */

typedef enum { SQ_ACK_SUBMIT, SQ_ACK_CANCEL } sq_ack_kind_t;

typedef struct {
    sq_ack_kind_t kind;
    zframe_t *to;
    uint64_t rid;
    sq_job_t *job;   /* SUBMIT: the job being stored */
    uint64_t job_id; /* CANCEL */
    uint32_t n;      /* CANCEL: tasks cancelled */
} sq_ack_t;

typedef struct {
    sq_task_t *task;
    uint8_t state; /* terminal state it reaches on commit */
} sq_done_t;

typedef struct sq_batch_t {
    sq_job_t **jobs;
    size_t n_jobs, cap_jobs;
    sq_db_copy_t *attempts, *results, *audit;
    uint64_t *cancel_ids;
    size_t n_cancel, cap_cancel;
    char **worker_rows; /* triples: group_id, model, capabilities json */
    size_t n_worker_rows, cap_worker_rows;
    sq_ack_t *acks;
    size_t n_acks, cap_acks;
    sq_done_t *dones;
    size_t n_dones, cap_dones;
    /* keys of the results rows, for the task_queue delete */
    uint64_t *res_job;
    uint32_t *res_idx;
    size_t n_res, cap_res;
    /* jobs whose SUBMITs were refused after the connection was lost during
     * their commit: they may be stored all the same, and are removed if so */
    uint64_t *withdraw_ids;
    size_t n_withdraw, cap_withdraw;
    /* a retried batch may have been committed already (ambiguous commit):
     * it goes through staging tables and ON CONFLICT DO NOTHING */
    bool retried;
    int n_failures;
    int rc; /* set by the writer */
    char error[512];
} sq_batch_t;

sq_batch_t *sq_batch_new(void);
void sq_batch_destroy(sq_batch_t **self_p);
bool sq_batch_empty(sq_batch_t *self);
int sq_batch_add_job(sq_batch_t *self, sq_job_t *job);
int sq_batch_add_ack(sq_batch_t *self, sq_ack_t ack);
int sq_batch_add_done(sq_batch_t *self, sq_task_t *task, uint8_t state);
int sq_batch_add_cancel(sq_batch_t *self, uint64_t job_id);
int sq_batch_add_withdraw(sq_batch_t *self, uint64_t job_id);
int sq_batch_add_worker(sq_batch_t *self, const char *group_id, const char *model,
                        const char *caps_json);
/* A result's token counts (-1: unknown): the prompt's, of which cached
 * came from the KV cache (never more than prompt: the RESULT's reader
 * makes a bad count unknown), and the generated ones. */
typedef struct {
    int64_t prompt, cached, completion;
} sq_usage_t;

/* Rows. Times are wall-clock unix ms. Strings may be NULL (SQL NULL). */
void sq_batch_attempt(sq_batch_t *self, sq_task_t *t, const char *outcome, const char *error,
                      int64_t now_wall_ms);
/* lineage_json: a JSON object naming the weights that produced the
 * result (docs/audit.md), or NULL. */
void sq_batch_result(sq_batch_t *self, sq_task_t *t, const char *state, const char *text,
                     size_t text_len, const char *finish_reason, const sq_usage_t *usage,
                     const char *error, const char *lineage_json, int64_t now_wall_ms);
/* details_json: a JSON object (NULL = {}). job_id 0 / idx 0 = none. */
void sq_batch_audit(sq_batch_t *self, const char *actor, const char *action, uint64_t job_id,
                    uint32_t idx, const char *subject, const char *details_json,
                    int64_t now_wall_ms);
/* Append a timestamptz field for COPY text format. */
void sq_copy_ts(sq_db_copy_t *c, int64_t wall_ms);

/* logfmt-quote s for a log value (escapes quotes and control bytes; text
 * from peers is never logged raw). Four buffers per thread rotate, so up to
 * four quoted values may share one log line. */
static inline const char *sq_q(const char *s)
{
    static _Thread_local char bufs[4][1024];
    static _Thread_local unsigned i;
    i = (i + 1) & 3;
    return sq_log_quote(s, bufs[i], sizeof bufs[i]);
}

/* qsort/bsearch order of uint64_t keys (the hash's comparator too). */
int sq_u64_cmp(const void *a, const void *b);
/* A zhashx keyed by a uint64_t the value holds (e.g. &job->id): no key
 * copies, so a key must not change while its entry is in the table. */
zhashx_t *sq_u64_hash_new(void);

/* ---- jobs ---- */

sq_job_t *sq_job_new(uint32_t n_tasks);
void sq_job_destroy(sq_job_t **self_p);
const char *sq_job_state_name(const uint32_t counts[SQ_T_N], uint32_t n_tasks, bool cancelled);
static inline const char *sq_task_custom_id(const sq_task_t *t) { return t->data; }
static inline const char *sq_task_prompt(const sq_task_t *t) { return t->data + t->prompt_off; }
static inline const char *sq_task_body(const sq_task_t *t)
{
    return t->body_off ? t->data + t->body_off : NULL;
}
/* The task's own LoRA adapter and pinned version (NULL when none). */
static inline const char *sq_task_adapter(const sq_task_t *t)
{
    return t->adapter_off ? t->data + t->adapter_off : NULL;
}
static inline const char *sq_task_adapter_version(const sq_task_t *t)
{
    const char *v = t->adapter_off ? t->data + t->adapter_off + strlen(t->data + t->adapter_off) + 1
                                   : NULL;
    return v && *v ? v : NULL;
}
static inline uint64_t sq_task_id(const sq_task_t *t) { return (t->job->id << 20) | t->idx; }
/* the job and the index a task id names */
static inline uint64_t sq_task_id_job(uint64_t task_id) { return task_id >> 20; }
static inline uint32_t sq_task_id_idx(uint64_t task_id) { return (uint32_t)(task_id & 0xFFFFFu); }

#endif

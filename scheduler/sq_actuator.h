/*  sq_actuator: what turns "pool P should run N groups" into groups.
 *
 *  One interface, two implementations:
 *    local       mpirun process groups on this host (sq_actuator_local.c)
 *    kubernetes  the worker StatefulSet's scale subresource (sq_actuator_kube.c)
 *  The control loop calls set() when a decision changes a count, poll()
 *  every tick (reap exits, escalate drains) and counts() to learn how many
 *  groups it has asked for and how many are still starting.
 */
#ifndef SQ_ACTUATOR_H
#define SQ_ACTUATOR_H

#include "sq_policy.h"

#include <stdint.h>

typedef struct {
    int requested;      /* groups asked for and not being removed */
    int starting;       /* of those, not yet ready */
    int draining;       /* being removed */
} sq_actuator_counts_t;

typedef struct sq_actuator_t sq_actuator_t;

typedef struct {
    const char *name;
    /* Make pool run `desired` groups. 0 or negative SQ_E*. */
    int (*set)(sq_actuator_t *self, const sq_pool_policy_t *pool, int desired, int64_t now_ms);
    /* Housekeeping at each tick; returns 0 or negative SQ_E*. */
    int (*poll)(sq_actuator_t *self, int64_t now_ms);
    int (*counts)(sq_actuator_t *self, const sq_pool_policy_t *pool, sq_actuator_counts_t *out);
    void (*destroy)(sq_actuator_t *self);
} sq_actuator_ops_t;

struct sq_actuator_t {
    const sq_actuator_ops_t *ops;
};

static inline int
sq_actuator_set(sq_actuator_t *a, const sq_pool_policy_t *pool, int desired, int64_t now_ms)
{
    return a->ops->set(a, pool, desired, now_ms);
}

static inline int
sq_actuator_poll(sq_actuator_t *a, int64_t now_ms)
{
    return a->ops->poll(a, now_ms);
}

static inline int
sq_actuator_counts(sq_actuator_t *a, const sq_pool_policy_t *pool, sq_actuator_counts_t *out)
{
    return a->ops->counts(a, pool, out);
}

static inline void
sq_actuator_destroy(sq_actuator_t **a_p)
{
    if (a_p && *a_p) {
        (*a_p)->ops->destroy(*a_p);
        *a_p = NULL;
    }
}

/* --- local: mpirun process groups -------------------------------------- */

/* At most this many extra mpirun flags (the spawn argv has room for them
 * and for SQ_POLICY_MAX_WORKER_FLAGS worker flags). */
#define SQ_ACTUATOR_MAX_MPIRUN_ARGS 16

/* A group that exited while it was not being removed: it died on its own
 * (a worker that refuses its flags exits at once, and the next decision
 * starts another: a respawn loop that only this report shows). */
typedef struct {
    const char *group_id, *pool;
    int status;             /* waitpid() status; -1 when it could not be read */
    double ran_s;           /* spawn -> exit seen */
    int was_ready;          /* the broker had listed the group */
} sq_group_exit_t;

typedef void (*sq_group_exit_fn)(void *arg, const sq_group_exit_t *exit);

typedef struct {
    const char *mpirun;          /* default "mpirun" (PATH) */
    const char *worker;          /* default "shardq-worker" (PATH) */
    const char *worker_endpoint; /* --broker for workers; default $SHARDQ_WORKER_ENDPOINT */
    const char *const *mpirun_args; /* extra mpirun flags (NULL-terminated, at most
                                       SQ_ACTUATOR_MAX_MPIRUN_ARGS), e.g. --oversubscribe */
    int64_t grace_ms;            /* SIGTERM -> SIGKILL; 0: at once; < 0: default 60000 */
    sq_group_exit_fn on_exit;    /* may be NULL; called from poll() */
    void *on_exit_arg;
} sq_actuator_local_opts_t;

/* Each group is `mpirun -np TP [mpirun_args] WORKER --broker EP --model M
 * --device D --max-batch B --group-id POOL-N [flags...]`, spawned with
 * posix_spawn in a process group of its own, so a drain signal reaches
 * every rank. opts NULL: all defaults. */
sq_actuator_t *sq_actuator_local_new(const sq_actuator_local_opts_t *opts);

/* Group ids are "<pool>-<n>". The loop reports what the broker says of a
 * group: ready (it sent READY) and idle (no leases). Until then a group is
 * "starting". Scale-down picks idle groups first, then starting ones, then
 * busy ones: a starting group is never removed while an idle one exists. */
/* *startup_s (OUT, may be NULL) is the spawn-to-ready time in seconds when
 * this call made the group ready, else -1: it feeds sq_decider_note_startup. */
int sq_actuator_local_mark(sq_actuator_t *self, const char *group_id, int ready, int idle,
                           int64_t now_ms, double *startup_s);
/* The pid of group_id's mpirun (its process group id), or -1. */
int sq_actuator_local_pid(sq_actuator_t *self, const char *group_id);

/* Whether the worker takes pool's worker.flags, asked of the worker
 * itself: `WORKER --check-flags --broker EP --model M --device D
 * --max-batch B --group-id POOL-check [flags...]` (a group's worker
 * command) parses them as a group would and exits, 0 or 2 with its reason
 * on stderr; a flag it refuses would end every group at once, again at
 * every decision. 0; SQ_EINVAL with the worker's reason ("shardq-worker:
 * unknown option --bogus (see --help)") as the detail; another negative
 * SQ_E* when it cannot be asked (no such binary; no answer in 10 s). */
int sq_actuator_local_check_flags(sq_actuator_t *self, const sq_pool_policy_t *pool);

/* --- kubernetes: StatefulSet scale subresource ------------------------- */

typedef struct {
    const char *api_url;     /* default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT */
    const char *token_path;  /* default /var/run/secrets/kubernetes.io/serviceaccount/token */
    const char *ca_path;     /* default .../serviceaccount/ca.crt */
    const char *namespace_;  /* default $POD_NAMESPACE, else .../serviceaccount/namespace */
    int timeout_ms;          /* per request; default 5000 */
} sq_actuator_kube_opts_t;

sq_actuator_t *sq_actuator_kube_new(const sq_actuator_kube_opts_t *opts);

/* GET the scale of pool's StatefulSet: spec.replicas (*desired) and
 * status.replicas (*current). Exposed for tests and `counts`. */
int sq_actuator_kube_get(sq_actuator_t *self, const char *statefulset, int *desired,
                         int *current);

#endif

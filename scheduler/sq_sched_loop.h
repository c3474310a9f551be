/*  sq_sched_loop: the state and one tick of the scheduler's control loop
 *  (policy, deciders per pool, actuator, broker client, database), plus
 *  its Prometheus metrics. sq_run_cmd.c owns the process around it:
 *  flags, signals, timing, the metrics socket.
 */
#ifndef SQ_SCHED_LOOP_H
#define SQ_SCHED_LOOP_H

#include "sq_actuator.h"

#include <stddef.h>
#include <stdint.h>

#define SQ_LOOP_MAX_MPIRUN_ARGS SQ_ACTUATOR_MAX_MPIRUN_ARGS

typedef struct {
    const char *db, *broker, *policy_path, *actuator, *metrics_bind;
    int64_t tick_ms;
    int metrics_port;
    int once;
    int64_t clock_start_s;      /* nonzero: the loop's clock starts here */
    sq_actuator_local_opts_t local;
    const char *mpirun_args[SQ_LOOP_MAX_MPIRUN_ARGS + 1];
    sq_actuator_kube_opts_t kube;
} sq_loop_opts_t;

void sq_loop_opts_default(sq_loop_opts_t *o);

typedef struct sq_loop_t sq_loop_t;

/* Load the policy, connect to the database (store the policy version),
 * create the broker client and the actuator. NULL with a detail. */
sq_loop_t *sq_loop_new(const sq_loop_opts_t *o);
/* Destroying the loop destroys the actuator: local groups are drained. */
void sq_loop_destroy(sq_loop_t **self_p);

/* One control period. Failures (broker, actuator, database) are logged and
 * counted; the loop carries on. */
void sq_loop_tick(sq_loop_t *self);
/* Re-read the policy file: 0 when the new one runs, else the running one
 * is kept and the refusal logged. */
int sq_loop_reload(sq_loop_t *self);

/* Prometheus text exposition of the loop's state (sq_metrics_render_fn). */
size_t sq_loop_render_metrics(void *self, char *buf, size_t size);

#endif

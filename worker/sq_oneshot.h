/*  sq_oneshot: `shardq-worker --prompt TEXT`: load the model, generate
 *  once, print from rank 0, exit. Used for testing and demos; the broker
 *  mode of shardq-worker sits next to it.
 */
#ifndef SQ_ONESHOT_H
#define SQ_ONESHOT_H

#include <stdbool.h>

#include "sq_engine.h"

typedef struct {
    const char *model_path;
    const char *prompt;
    const char *device;
    int n_threads;
    int n_ctx;
    int kv_type;                /* --kv-type (sq_kv_type_t) */
    bool json;
    sq_gen_params_t gen;
} sq_oneshot_opts_t;

/* Run under an initialised MPI (any number of ranks). Returns the
 * process exit code: 0 ok, 1 runtime failure (reported on stderr). */
int sq_oneshot_run(const sq_oneshot_opts_t *opts);

#endif

/*  sq_group: `shardq-worker --broker ENDPOINT --model PATH ...` — one
 *  worker group serving the queue. Every rank loads its shard of the
 *  model; rank 0 also runs the broker link (sq_link) and the batcher's
 *  planning (sq_batcher), the other ranks follow its plans.
 *
 *  SIGTERM drains: rank 0 announces draining (no new leases), lets running
 *  tasks finish within --grace seconds, then leaves with DISCONNECT, which
 *  hands any unfinished lease back to the broker at once; exit 0. A
 *  failing rank takes the whole group down (MPI_Abort), the broker sees the
 *  link go silent and re-queues the group's leases.
 */
#ifndef SQ_GROUP_H
#define SQ_GROUP_H

#include <stdbool.h>

/* True when argv asks for the broker mode (has --broker). */
bool sq_group_wanted(int argc, char **argv);
/* Parse flags, run the group until drained or failed. Initialises and
 * finalises MPI itself. Returns the exit code: 0 ok (drained), 1 runtime
 * failure, 2 usage. */
int sq_group_main(int argc, char **argv);

#endif

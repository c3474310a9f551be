/*  sched_fake_broker: the broker the scheduler's process-level tests talk
 *  to (sched_testutil.h): a real ROUTER speaking sq_wire, in a thread,
 *  answering STATS and WORKERS with what the test sets.
 */
#define _DEFAULT_SOURCE
#include "sched_testutil.h"

#include "sq_wire.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct sched_broker {
    zsock_t *sock;
    pthread_t thread;
    char model[64], prefix[32];
    int64_t oldest_ms;
    _Atomic long queued;
    _Atomic int n_workers, stop;
};

static void
s_reply_stats(sched_broker_t *b, zframe_t *id, uint64_t rid)
{
    sq_wire_enc_t *e = sq_wire_enc_new();
    const int n = atomic_load(&b->n_workers);
    sq_wire_map(e, 4);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "now", 0);
    sq_wire_key(e, "pools");
    sq_wire_array(e, 1);
    sq_wire_map(e, 8);
    sq_wire_kv_str(e, "model", b->model);
    sq_wire_kv_u64(e, "queued", (uint64_t)atomic_load(&b->queued));
    sq_wire_kv_u64(e, "retrying", 0);
    sq_wire_kv_u64(e, "oldest_queued_age_ms", (uint64_t)b->oldest_ms);
    sq_wire_kv_u64(e, "leased", 0);
    sq_wire_key(e, "groups");
    sq_wire_map(e, 4);
    sq_wire_kv_u64(e, "busy", 0);
    sq_wire_kv_u64(e, "idle", (uint64_t)n);
    sq_wire_kv_u64(e, "starting", 0);
    sq_wire_kv_u64(e, "draining", 0);
    sq_wire_kv_u64(e, "completed_10s", 0);
    sq_wire_kv_double(e, "throughput_per_s", 0);
    sq_wire_key(e, "tenants");
    sq_wire_array(e, 0);
    sq_wire_send(zsock_resolve(b->sock), id, SQ_WIRE_STATS | SQ_WIRE_REPLY, e);
    sq_wire_enc_destroy(&e);
}

static void
s_reply_workers(sched_broker_t *b, zframe_t *id, uint64_t rid)
{
    sq_wire_enc_t *e = sq_wire_enc_new();
    const int n = atomic_load(&b->n_workers);
    sq_wire_map(e, 2);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_key(e, "workers");
    sq_wire_array(e, (uint32_t)n);
    for (int i = 1; i <= n; i++) {
        char gid[64];
        snprintf(gid, sizeof gid, "%s-%d", b->prefix, i);
        sq_wire_map(e, 5);
        sq_wire_kv_str(e, "group_id", gid);
        sq_wire_kv_str(e, "model", b->model);
        sq_wire_kv_u64(e, "leases", 0);
        sq_wire_kv_str(e, "state", "idle");
        sq_wire_kv_u64(e, "max_batch", 16);
    }
    sq_wire_send(zsock_resolve(b->sock), id, SQ_WIRE_WORKERS | SQ_WIRE_REPLY, e);
    sq_wire_enc_destroy(&e);
}

static void *
s_run(void *arg)
{
    sched_broker_t *b = arg;
    zpoller_t *poller = zpoller_new(b->sock, NULL);
    while (!atomic_load(&b->stop)) {
        if (!zpoller_wait(poller, 50))
            continue;
        sq_wire_msg_t *msg = NULL;
        if (sq_wire_recv(zsock_resolve(b->sock), true, 1 << 20, &msg, NULL) != 0)
            continue;
        uint64_t rid = 0;
        sq_wire_get_u64(msg->body, "rid", false, UINT64_MAX, &rid);
        if (msg->cmd == SQ_WIRE_STATS)
            s_reply_stats(b, msg->identity, rid);
        else if (msg->cmd == SQ_WIRE_WORKERS)
            s_reply_workers(b, msg->identity, rid);
        sq_wire_msg_destroy(&msg);
    }
    zpoller_destroy(&poller);
    return NULL;
}

sched_broker_t *
sched_broker_start(const char *endpoint, const char *model, const char *prefix,
                   int64_t oldest_ms)
{
    sched_broker_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    snprintf(b->model, sizeof b->model, "%s", model);
    snprintf(b->prefix, sizeof b->prefix, "%s", prefix);
    b->oldest_ms = oldest_ms;
    if (!(b->sock = zsock_new_router(endpoint)) ||
        pthread_create(&b->thread, NULL, s_run, b) != 0) {
        zsock_destroy(&b->sock);
        free(b);
        return NULL;
    }
    return b;
}

void
sched_broker_set(sched_broker_t *b, long queued, int n_workers)
{
    atomic_store(&b->queued, queued);
    atomic_store(&b->n_workers, n_workers);
}

void
sched_broker_stop(sched_broker_t **b_p)
{
    sched_broker_t *b = *b_p;
    if (!b)
        return;
    atomic_store(&b->stop, 1);
    pthread_join(b->thread, NULL);
    zsock_destroy(&b->sock);
    free(b);
    *b_p = NULL;
}

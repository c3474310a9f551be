/*  sq_bench_workers: no-op worker groups for the queue benchmark.
 *
 *  Each group is one thread owning one DEALER socket (ZeroMQ sockets are
 *  not shared between threads). A group does no work: every TASKS message
 *  is answered at once by one RESULT holding all its leases, so what the
 *  benchmark measures is the broker and PostgreSQL, not the workers.
 *  Counters are atomics read by the main thread; the arrival table for
 *  "lat-<i>" tasks is lent by the main thread and guarded by a mutex (it is
 *  touched ~200 times a second, never on the throughput path).
 */
#define _GNU_SOURCE
#include "sq_bench.h"
#include "sq_error.h"
#include "sq_wire.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_POLL_MS 50

typedef struct s_group_t s_group_t;

struct sq_bench_workers_t {
    char *endpoint;
    int max_batch;
    int n_groups;
    s_group_t *groups;
    atomic_bool stop;
    atomic_uint_fast64_t answered;
    atomic_uint_fast64_t complaints;
    pthread_mutex_t stamp_lock;
    double *arrived_ms; /* lent by the caller, n_arrived slots */
    size_t n_arrived;
};

struct s_group_t {
    sq_bench_workers_t *owner;
    int index;
    pthread_t thread;
    bool started;
    zsock_t *sock;
    sq_wire_enc_t *enc;
    double last_sent_ms;
};

double
sq_bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
s_send(s_group_t *g, uint8_t cmd)
{
    g->last_sent_ms = sq_bench_now_ms();
    return sq_wire_send(zsock_resolve(g->sock), NULL, cmd, g->enc);
}

static int
s_send_ready(s_group_t *g)
{
    char group_id[64];
    snprintf(group_id, sizeof group_id, "bench-%d-%d", (int)getpid(), g->index);
    sq_wire_enc_reset(g->enc);
    sq_wire_map(g->enc, 5);
    sq_wire_kv_str(g->enc, "group_id", group_id);
    sq_wire_kv_str(g->enc, "model", SQ_BENCH_MODEL);
    sq_wire_kv_u64(g->enc, "tp_size", 1);
    sq_wire_kv_str(g->enc, "device", "cpu");
    sq_wire_kv_u64(g->enc, "max_batch", (uint64_t)g->owner->max_batch);
    return s_send(g, SQ_WIRE_READY);
}

static int
s_send_empty(s_group_t *g, uint8_t cmd)
{
    sq_wire_enc_reset(g->enc);
    sq_wire_map(g->enc, 0);
    return s_send(g, cmd);
}

/* Stamp the arrival of a "lat-<i>" task in the lent table, if any. */
static void
s_stamp(sq_bench_workers_t *self, sq_wire_val_t task, double now_ms)
{
    const char *cid;
    size_t len;
    if (sq_wire_get_str(task, "custom_id", false, SQ_WIRE_MAX_ID, &cid, &len) != 0 || len < 5
        || memcmp(cid, "lat-", 4) != 0)
        return;
    size_t i = 0;
    for (size_t k = 4; k < len; k++) {
        if (cid[k] < '0' || cid[k] > '9')
            return;
        i = i * 10 + (size_t)(cid[k] - '0');
    }
    pthread_mutex_lock(&self->stamp_lock);
    if (self->arrived_ms && i < self->n_arrived)
        self->arrived_ms[i] = now_ms;
    pthread_mutex_unlock(&self->stamp_lock);
}

/* TASKS {tasks: [{lease, token, custom_id, ...}]} → RESULT {results:
 * [{lease, token, text}]}, all leases of the message in one reply. */
static int
s_on_tasks(s_group_t *g, sq_wire_val_t body)
{
    double now_ms = sq_bench_now_ms();
    sq_wire_val_t tasks, t;
    int rc = sq_wire_get_array(body, "tasks", true, SQ_WIRE_MAX_BATCH, &tasks);
    if (rc != 0)
        return rc;
    uint32_t n = sq_wire_count(tasks);
    sq_wire_enc_reset(g->enc);
    sq_wire_map(g->enc, 1);
    sq_wire_key(g->enc, "results");
    sq_wire_array(g->enc, n);
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, tasks);
    while (sq_wire_iter_next(&it, &t)) {
        uint64_t lease = 0, token = 0;
        rc = sq_wire_get_u64(t, "lease", true, UINT64_MAX, &lease);
        if (rc == 0)
            rc = sq_wire_get_u64(t, "token", true, UINT64_MAX, &token);
        if (rc != 0)
            return rc;
        s_stamp(g->owner, t, now_ms);
        sq_wire_map(g->enc, 3);
        sq_wire_kv_u64(g->enc, "lease", lease);
        sq_wire_kv_u64(g->enc, "token", token);
        sq_wire_kv_str(g->enc, "text", "");
    }
    rc = s_send(g, SQ_WIRE_RESULT);
    if (rc == 0)
        atomic_fetch_add(&g->owner->answered, n);
    return rc;
}

static int
s_on_message(s_group_t *g, sq_wire_msg_t *msg)
{
    switch (msg->cmd) {
    case SQ_WIRE_TASKS:
        return s_on_tasks(g, msg->body);
    case SQ_WIRE_DISCONNECT:
        /* The broker forgot us (e.g. it restarted): our leases are void. */
        atomic_fetch_add(&g->owner->complaints, 1);
        return s_send_ready(g);
    case SQ_WIRE_ERROR: {
        char *text = NULL;
        sq_wire_get_strdup(msg->body, "message", false, SQ_WIRE_MAX_ERROR, &text);
        fprintf(stderr, "shardq-bench-queue: worker %d: broker ERROR: %s\n", g->index,
                text ? text : "(no message)");
        free(text);
        atomic_fetch_add(&g->owner->complaints, 1);
        return 0;
    }
    default: /* HEARTBEAT, CANCEL-LEASE: nothing to do for a no-op worker */
        return 0;
    }
}

static void *
s_group_run(void *arg)
{
    s_group_t *g = arg;
    sq_bench_workers_t *self = g->owner;
    void *sock = zsock_resolve(g->sock);
    if (s_send_ready(g) != 0)
        return NULL;
    while (!atomic_load(&self->stop)) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, S_POLL_MS) > 0) {
            while (zsock_events(g->sock) & ZMQ_POLLIN) {
                sq_wire_msg_t *msg = NULL;
                int rc = sq_wire_recv(sock, false, SQ_WIRE_MAX_BODY, &msg, NULL);
                if (rc == 0)
                    rc = s_on_message(g, msg);
                sq_wire_msg_destroy(&msg);
                if (rc != 0 && rc != SQ_EAGAIN)
                    fprintf(stderr, "shardq-bench-queue: worker %d: %s (%s)\n", g->index,
                            sq_strerror(rc), sq_error_detail());
            }
        }
        if (sq_bench_now_ms() - g->last_sent_ms >= SQ_WIRE_HEARTBEAT_MS)
            s_send_empty(g, SQ_WIRE_HEARTBEAT);
    }
    s_send_empty(g, SQ_WIRE_DISCONNECT);
    return NULL;
}

static int
s_group_open(sq_bench_workers_t *self, s_group_t *g, int index)
{
    g->owner = self;
    g->index = index;
    g->enc = sq_wire_enc_new();
    g->sock = zsock_new(ZMQ_DEALER);
    if (!g->enc || !g->sock)
        return SQ_FAIL(SQ_ENOMEM, "worker %d: cannot create socket/encoder", index);
    zsock_set_maxmsgsize(g->sock, (int64_t)SQ_WIRE_MAX_BODY + 64);
    zsock_set_linger(g->sock, 100);
    zsock_set_sndhwm(g->sock, 0);
    zsock_set_rcvhwm(g->sock, 0);
    if (zsock_connect(g->sock, "%s", self->endpoint) != 0)
        return SQ_FAIL(SQ_EINVAL, "worker %d: cannot connect to %s", index, self->endpoint);
    int rc = pthread_create(&g->thread, NULL, s_group_run, g);
    if (rc != 0)
        return SQ_FAIL(-rc, "worker %d: pthread_create failed", index);
    g->started = true;
    return 0;
}

sq_bench_workers_t *
sq_bench_workers_new(const char *endpoint, int n_groups, int max_batch)
{
    sq_bench_workers_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint = strdup(endpoint);
    self->max_batch = max_batch;
    self->n_groups = n_groups;
    self->groups = calloc((size_t)n_groups, sizeof *self->groups);
    pthread_mutex_init(&self->stamp_lock, NULL);
    if (!self->endpoint || !self->groups) {
        SQ_FAIL(SQ_ENOMEM, "workers: out of memory");
        sq_bench_workers_destroy(&self);
        return NULL;
    }
    for (int i = 0; i < n_groups; i++) {
        if (s_group_open(self, &self->groups[i], i) != 0) {
            sq_bench_workers_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void
sq_bench_workers_destroy(sq_bench_workers_t **self_p)
{
    sq_bench_workers_t *self = *self_p;
    if (!self)
        return;
    atomic_store(&self->stop, true);
    for (int i = 0; self->groups && i < self->n_groups; i++) {
        s_group_t *g = &self->groups[i];
        if (g->started)
            pthread_join(g->thread, NULL);
        zsock_destroy(&g->sock);
        sq_wire_enc_destroy(&g->enc);
    }
    pthread_mutex_destroy(&self->stamp_lock);
    free(self->groups);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

uint64_t
sq_bench_workers_answered(sq_bench_workers_t *self)
{
    return atomic_load(&self->answered);
}

uint64_t
sq_bench_workers_complaints(sq_bench_workers_t *self)
{
    return atomic_load(&self->complaints);
}

void
sq_bench_workers_stamp_into(sq_bench_workers_t *self, double *arrived_ms, size_t n)
{
    pthread_mutex_lock(&self->stamp_lock);
    self->arrived_ms = arrived_ms;
    self->n_arrived = arrived_ms ? n : 0;
    pthread_mutex_unlock(&self->stamp_lock);
}

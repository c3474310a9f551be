/*  sq_link: the broker link thread of rank 0.
 *  Threads: the link thread owns the DEALER; the compute thread only
 *  touches the queues below, under `mu`, and wakes the link thread through
 *  an inproc PAIR so an outcome leaves at once rather than at the next
 *  poll timeout.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_link.h"

#include <czmq.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sq_clock.h"
#include "sq_error.h"
#include "sq_jsonl.h"
#include "sq_log.h"
#include "sq_wire.h"

/* reconnecting after a broker's DISCONNECT: at once the first time (a
 * restarted broker asks for READY), then after a growing pause while the
 * broker keeps refusing, so that a refused READY is not a storm */
#define S_BACKOFF_FIRST_MS 100
#define S_BACKOFF_MAX_MS 5000

typedef struct s_out {
    struct s_out *next;
    uint64_t lease, token;
    bool ok, retryable;
    char *text;                 /* result text, or error */
    size_t text_len;
    char finish[16];
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    char *adapter, *adapter_version;
    double queue_wait_ms, prefill_ms, decode_ms;
} s_out_t;

typedef struct s_in {
    struct s_in *next;
    sq_lease_t *lease;
} s_in_t;

struct sq_link {
    /* immutable after new */
    char *endpoint, *group_id, *model, *model_sha256, *device, *kv_type;
    char **adapters;
    int n_adapters, tp_size, max_batch, kv_pages, heartbeat_ms, step_timeout_ms;
    char wake_ep[64];
    atomic_llong step_since_ms; /* when the running step began; 0: none runs */
    zsock_t *wake_tx;           /* compute side */
    pthread_t thread;
    bool thread_started;
    int start_state;            /* under mu: 0 starting, 1 running, -1 failed */
    char start_error[256];      /* why it failed */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    s_in_t *in_head, *in_tail;  /* leases for the compute thread */
    s_out_t *out_head, *out_tail;
    uint64_t *cancels;
    int n_cancels, cap_cancels;
    uint64_t epoch;
    bool draining, draining_sent, stop;
    bool dead;                  /* the link thread ended without being stopped */
    bool drain_acked;           /* the broker acknowledged the draining READY */
    char *stop_reason;          /* sq_link_set_stop_reason; NULL: the default */
    int64_t kv_in_use, preemptions;   /* sq_link_set_kv_use; -1: not set */
    bool kv_dirty;                  /* changed since the last HEARTBEAT */
};

void sq_lease_destroy(sq_lease_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_lease_t *l = *self_p;
    free(l->custom_id);
    free(l->prompt);
    free(l->model);
    free(l->adapter);
    free(l->adapter_version);
    for (int i = 0; i < l->n_stop; i++)
        free(l->stop[i]);
    sq_jsonl_chat_free(&l->chat);
    free(l);
    *self_p = NULL;
}

/* ---- link thread: messages ---- */

static bool s_kv_dirty(sq_link_t *self)
{
    pthread_mutex_lock(&self->mu);
    const bool dirty = self->kv_dirty;
    pthread_mutex_unlock(&self->mu);
    return dirty;
}

/* HEARTBEAT, with the KV cache's use once the compute side has said it */
static void s_send_heartbeat(sq_link_t *self, zsock_t *dealer)
{
    pthread_mutex_lock(&self->mu);
    const int64_t kv_in_use = self->kv_in_use, preemptions = self->preemptions;
    self->kv_dirty = false;
    pthread_mutex_unlock(&self->mu);
    sq_wire_enc_t *e = NULL;
    if (kv_in_use >= 0 && (e = sq_wire_enc_new())) {
        sq_wire_map(e, 2);
        sq_wire_kv_u64(e, "kv_pages_in_use", (uint64_t)kv_in_use);
        sq_wire_kv_u64(e, "preemptions", (uint64_t)preemptions);
    }
    sq_wire_send(zsock_resolve(dealer), NULL, SQ_WIRE_HEARTBEAT, e);
    sq_wire_enc_destroy(&e);
}

static void s_send_ready(sq_link_t *self, zsock_t *dealer, bool draining)
{
    sq_wire_enc_t *e = sq_wire_enc_new();
    if (!e)
        return;
    sq_wire_map(e, self->kv_pages > 0 ? 10 : 9);
    sq_wire_kv_str(e, "group_id", self->group_id);
    sq_wire_kv_str(e, "model", self->model);
    sq_wire_kv_str(e, "model_sha256", self->model_sha256);
    sq_wire_kv_u64(e, "tp_size", (uint64_t)self->tp_size);
    sq_wire_kv_str(e, "device", self->device);
    sq_wire_kv_str(e, "kv_type", self->kv_type);
    sq_wire_kv_u64(e, "max_batch", (uint64_t)self->max_batch);
    if (self->kv_pages > 0)
        sq_wire_kv_u64(e, "kv_pages", (uint64_t)self->kv_pages);
    sq_wire_key(e, "adapters");
    sq_wire_array(e, (uint32_t)self->n_adapters);
    for (int i = 0; i < self->n_adapters; i++)
        sq_wire_str(e, self->adapters[i], SIZE_MAX);
    sq_wire_kv_bool(e, "draining", draining);
    /* a READY (a new session, too) waits for its own acknowledgement */
    pthread_mutex_lock(&self->mu);
    self->drain_acked = false;
    pthread_mutex_unlock(&self->mu);
    sq_wire_send(zsock_resolve(dealer), NULL, SQ_WIRE_READY, e);
    sq_wire_enc_destroy(&e);
}

static char *s_memdup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

_Static_assert(SQ_JSONL_MAX_STOP == sizeof ((sq_lease_t *)0)->stop / sizeof(char *),
               "a lease holds a job file's stop strings");

/* A chat job's task: its prompt as the turns of its template, rendered
 * again from the messages its body keeps (sq_jsonl_body_chat), so that
 * the template's separators become the EOS token and nothing a message
 * says does. Only when they render to the prompt the task carries (what
 * was stored and audited is what runs); otherwise (a body without valid
 * messages, a client rendering its own way) the prompt stays text.
 * 0 or SQ_ENOMEM. */
static int s_chat_turns(sq_lease_t *l, const char *body, size_t body_len, const char *prompt,
                        size_t prompt_len)
{
    char *joined = NULL;
    size_t joined_len = 0;
    int rc = sq_jsonl_body_chat(body, body_len, &l->chat);
    if (rc == 0)
        rc = sq_jsonl_chat_prompt(&l->chat, &joined, &joined_len);
    if (rc || joined_len != prompt_len || memcmp(joined, prompt, prompt_len) != 0) {
        if (l->chat.n_turns > 0 || rc != SQ_ENOMEM)
            SQ_WARN("chat task's messages do not render to its prompt: encoded as text",
                    "task=%llu", (unsigned long long)l->task_id);
        sq_jsonl_chat_free(&l->chat);
    }
    free(joined);
    return rc == SQ_ENOMEM ? rc : 0;
}

/* The kind of the job a TASKS message's tasks came from last: a job's
 * params (up to 4 MiB) are parsed once a message, not once a task. */
typedef struct {
    bool set;
    uint64_t job_id;
    sq_jsonl_kind_t kind;
} s_kind_cache_t;

/* A TASKS entry as a lease. NULL when out of memory or when it names no
 * lease (nothing to answer). A lease whose other fields are bad comes
 * back with *bad set (the detail says what): it is answered with FAIL. */
static sq_lease_t *s_parse_task(sq_wire_val_t t, uint64_t epoch, s_kind_cache_t *kinds,
                                bool *bad)
{
    *bad = false;
    sq_lease_t *l = calloc(1, sizeof *l);
    if (!l) {
        SQ_FAIL(SQ_ENOMEM, "out of memory");
        return NULL;
    }
    uint64_t attempt = 1;
    const char *prompt = NULL, *body = NULL, *params = NULL;
    size_t prompt_len = 0, body_len = 0, params_len = 0;
    l->max_tokens = -1;
    l->seed = -1;
    l->temperature = NAN;
    l->top_p = NAN;
    l->epoch = epoch;
    int rc = sq_wire_get_u64(t, "lease", true, UINT64_MAX, &l->lease);
    if (!rc) rc = sq_wire_get_u64(t, "token", true, UINT64_MAX, &l->token);
    if (rc) {
        sq_lease_destroy(&l);
        return NULL;
    }
    rc = sq_wire_get_u64(t, "task_id", false, UINT64_MAX, &l->task_id);
    if (!rc) rc = sq_wire_get_u64(t, "job_id", false, UINT64_MAX, &l->job_id);
    if (!rc) rc = sq_wire_get_u64(t, "attempt", false, UINT32_MAX, &attempt);
    if (!rc) rc = sq_wire_get_strdup(t, "custom_id", false, SQ_WIRE_MAX_ID, &l->custom_id);
    if (!rc) rc = sq_wire_get_strdup(t, "model", false, SQ_WIRE_MAX_NAME, &l->model);
    if (!rc) rc = sq_wire_get_strdup(t, "adapter", false, SQ_WIRE_MAX_NAME, &l->adapter);
    if (!rc) rc = sq_wire_get_strdup(t, "adapter_version", false, SQ_WIRE_MAX_NAME,
                                     &l->adapter_version);
    if (!rc) rc = sq_wire_get_str(t, "prompt", true, SQ_WIRE_MAX_PROMPT, &prompt, &prompt_len);
    if (!rc) rc = sq_wire_get_i64(t, "max_tokens", false, &l->max_tokens);
    if (!rc) rc = sq_wire_get_double(t, "temperature", false, &l->temperature);
    if (!rc) rc = sq_wire_get_double(t, "top_p", false, &l->top_p);
    if (!rc) rc = sq_wire_get_i64(t, "seed", false, &l->seed);
    if (!rc) rc = sq_wire_get_str(t, "body", false, SQ_WIRE_MAX_TEXT, &body, &body_len);
    /* stop strings travel in the OpenAI body (both job-file shapes) */
    if (!rc && body) rc = sq_jsonl_body_stop(body, body_len, l->stop, &l->n_stop);
    if (!rc) rc = sq_wire_get_str(t, "params", false, SQ_WIRE_MAX_TEXT, &params, &params_len);
    if (!rc && body && (!kinds->set || kinds->job_id != l->job_id))
        *kinds = (s_kind_cache_t){true, l->job_id, sq_jsonl_params_kind(params, params_len)};
    if (!rc && body && kinds->kind == SQ_JSONL_KIND_CHAT)
        rc = s_chat_turns(l, body, body_len, prompt, prompt_len);
    if (!rc && !(l->prompt = s_memdup(prompt, prompt_len)))
        rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
    if (rc == SQ_ENOMEM) {
        sq_lease_destroy(&l);
        return NULL;
    }
    *bad = rc != 0;
    l->prompt_len = l->prompt ? prompt_len : 0;
    l->attempt = (uint32_t)attempt;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    l->received_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return l;
}

/* Queue an outcome for the link thread to send (mu held) */
static void s_out_append(sq_link_t *self, s_out_t *o)
{
    if (self->out_tail)
        self->out_tail->next = o;
    else
        self->out_head = o;
    self->out_tail = o;
}

static void s_out_free(s_out_t *o)
{
    free(o->text);
    free(o->adapter);
    free(o->adapter_version);
    free(o);
}

/* A task this group cannot run as sent: FAIL it now, not retryable (the
 * link thread's own outcome; it goes out with the next flush) */
static void s_refuse_task(sq_link_t *self, sq_lease_t *l, const char *why)
{
    s_out_t *o = calloc(1, sizeof *o);
    char text[SQ_WIRE_MAX_ERROR];
    snprintf(text, sizeof text, "task refused by the worker: %s", why);
    if (o && (o->text = strdup(text))) {
        o->lease = l->lease;
        o->token = l->token;
        o->text_len = strlen(o->text);
        pthread_mutex_lock(&self->mu);
        s_out_append(self, o);
        pthread_mutex_unlock(&self->mu);
    } else if (o) {
        s_out_free(o);
    }
    SQ_WARN("task refused", "lease=%llu task=%llu", (unsigned long long)l->lease,
            (unsigned long long)l->task_id);
    sq_lease_destroy(&l);
}

static void s_on_tasks(sq_link_t *self, sq_wire_val_t body)
{
    sq_wire_val_t arr, t;
    if (sq_wire_get_array(body, "tasks", true, SQ_WIRE_MAX_BATCH, &arr))
        return;
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, arr);
    pthread_mutex_lock(&self->mu);
    uint64_t epoch = self->epoch;
    pthread_mutex_unlock(&self->mu);
    s_kind_cache_t kinds = {false, 0, SQ_JSONL_KIND_SIMPLE};
    while (sq_wire_iter_next(&it, &t)) {
        bool bad;
        sq_lease_t *l = s_parse_task(t, epoch, &kinds, &bad);
        if (l && bad) {
            s_refuse_task(self, l, sq_error_detail());
            continue;
        }
        s_in_t *n = l ? calloc(1, sizeof *n) : NULL;
        if (!n) {
            char q[512];
            SQ_WARN("task dropped", "reason=%s",
                    sq_log_quote(l ? "out of memory" : sq_error_detail(), q, sizeof q));
            sq_lease_destroy(&l);
            continue;
        }
        n->lease = l;
        pthread_mutex_lock(&self->mu);
        if (self->in_tail)
            self->in_tail->next = n;
        else
            self->in_head = n;
        self->in_tail = n;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
    }
}

/* HEARTBEAT {draining: true} answers a draining READY: every lease the
 * broker sent before it has arrived, and none follows */
static void s_on_heartbeat(sq_link_t *self, sq_wire_val_t body)
{
    bool ack = false;
    if (sq_wire_get_bool(body, "draining", false, &ack) != 0 || !ack)
        return;
    pthread_mutex_lock(&self->mu);
    self->drain_acked = self->draining_sent;
    pthread_mutex_unlock(&self->mu);
}

/* Take lease out of the queue of leases not yet taken (mu held): the
 * compute thread never sees it. false: not there. */
static bool s_unqueue(sq_link_t *self, uint64_t lease)
{
    for (s_in_t **p = &self->in_head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
        s_in_t *n = *p;
        if (n->lease->lease != lease)
            continue;
        *p = n->next;
        if (self->in_tail == n)
            self->in_tail = prev;
        sq_lease_destroy(&n->lease);
        free(n);
        return true;
    }
    return false;
}

/* CANCEL-LEASE: a lease still queued here goes at once; the others are
 * for the compute thread, which holds them (sq_link_cancelled) */
static void s_on_cancel(sq_link_t *self, sq_wire_val_t body)
{
    sq_wire_val_t arr, t;
    if (sq_wire_get_array(body, "leases", true, SQ_WIRE_MAX_BATCH, &arr))
        return;
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, arr);
    pthread_mutex_lock(&self->mu);
    while (sq_wire_iter_next(&it, &t)) {
        uint64_t lease;
        if (sq_wire_get_u64(t, "lease", true, UINT64_MAX, &lease) || s_unqueue(self, lease))
            continue;
        if (self->n_cancels == self->cap_cancels) {
            int cap = self->cap_cancels ? self->cap_cancels * 2 : 64;
            uint64_t *p = realloc(self->cancels, (size_t)cap * sizeof *p);
            if (!p)
                break;
            self->cancels = p;
            self->cap_cancels = cap;
        }
        self->cancels[self->n_cancels++] = lease;
    }
    pthread_mutex_unlock(&self->mu);
}

/* Send queued outcomes: successes in RESULT messages, failures in FAIL
 * messages, up to SQ_WIRE_MAX_BATCH entries each. */
static int s_flush(sq_link_t *self, zsock_t *dealer)
{
    int n_sent = 0;
    pthread_mutex_lock(&self->mu);
    s_out_t *list = self->out_head;
    self->out_head = self->out_tail = NULL;
    pthread_mutex_unlock(&self->mu);
    for (int ok = 1; ok >= 0; ok--) {
        s_out_t *o = list;
        while (o) {
            uint32_t n = 0;
            for (s_out_t *p = o; p && n < SQ_WIRE_MAX_BATCH; p = p->next)
                n += p->ok == (bool)ok;
            if (n == 0)
                break;
            sq_wire_enc_t *e = sq_wire_enc_new();
            if (!e)
                break;
            sq_wire_map(e, 1);
            sq_wire_key(e, ok ? "results" : "failures");
            sq_wire_array(e, n);
            uint32_t k = 0;
            for (; o && k < n; o = o->next) {
                if (o->ok != (bool)ok)
                    continue;
                k++;
                if (ok) {
                    sq_wire_map(e, 16);
                    sq_wire_kv_u64(e, "lease", o->lease);
                    sq_wire_kv_u64(e, "token", o->token);
                    sq_wire_kv_strn(e, "text", o->text, o->text_len);
                    sq_wire_kv_str(e, "finish_reason", o->finish);
                    sq_wire_kv_u64(e, "prompt_tokens", (uint64_t)o->prompt_tokens);
                    sq_wire_kv_u64(e, "completion_tokens", (uint64_t)o->completion_tokens);
                    sq_wire_kv_u64(e, "cached_tokens", (uint64_t)o->cached_tokens);
                    sq_wire_kv_str(e, "model_sha256", self->model_sha256);
                    sq_wire_kv_str(e, "adapter", o->adapter);
                    sq_wire_kv_str(e, "adapter_version", o->adapter_version);
                    sq_wire_kv_str(e, "group_id", self->group_id);
                    sq_wire_kv_u64(e, "tp_size", (uint64_t)self->tp_size);
                    sq_wire_kv_str(e, "device", self->device);
                    sq_wire_kv_double(e, "queue_wait_ms", o->queue_wait_ms);
                    sq_wire_kv_double(e, "prefill_ms", o->prefill_ms);
                    sq_wire_kv_double(e, "decode_ms", o->decode_ms);
                } else {
                    sq_wire_map(e, 4);
                    sq_wire_kv_u64(e, "lease", o->lease);
                    sq_wire_kv_u64(e, "token", o->token);
                    sq_wire_kv_bool(e, "retryable", o->retryable);
                    sq_wire_kv_strn(e, "error", o->text,
                                    o->text_len < SQ_WIRE_MAX_ERROR ? o->text_len
                                                                    : SQ_WIRE_MAX_ERROR - 1);
                }
            }
            sq_wire_send(zsock_resolve(dealer), NULL, ok ? SQ_WIRE_RESULT : SQ_WIRE_FAIL, e);
            sq_wire_enc_destroy(&e);
            n_sent++;
        }
    }
    while (list) {
        s_out_t *next = list->next;
        s_out_free(list);
        list = next;
    }
    return n_sent;
}

/* A DEALER connected to the broker, READY sent; NULL (why in err) when
 * the endpoint is refused */
static zsock_t *s_connect(sq_link_t *self, char *err, size_t err_size)
{
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    if (!dealer) {
        snprintf(err, err_size, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    zsock_set_linger(dealer, 2000);
    zsock_set_rcvhwm(dealer, 0);
    zsock_set_sndhwm(dealer, 0);
    if (zsock_connect(dealer, "%s", self->endpoint) != 0) {
        snprintf(err, err_size, "broker endpoint %s: %s (expected tcp://HOST:PORT)",
                 self->endpoint, zmq_strerror(zmq_errno()));
        zsock_destroy(&dealer);
        return NULL;
    }
    pthread_mutex_lock(&self->mu);
    bool draining = self->draining;
    self->draining_sent = draining;
    pthread_mutex_unlock(&self->mu);
    s_send_ready(self, dealer, draining);
    return dealer;
}

/* Void everything taken under the old session: the broker re-queued it. */
static void s_new_epoch(sq_link_t *self)
{
    pthread_mutex_lock(&self->mu);
    self->epoch++;
    self->kv_dirty = self->kv_in_use >= 0;   /* a broker that forgot us hears it again */
    s_in_t *in = self->in_head;
    self->in_head = self->in_tail = NULL;
    pthread_mutex_unlock(&self->mu);
    while (in) {
        s_in_t *next = in->next;
        sq_lease_destroy(&in->lease);
        free(in);
        in = next;
    }
}

/* DISCONNECT with reason (best effort: the broker re-queues the group's
 * leases when it arrives, or when the heartbeats stop) */
static void s_send_disconnect(zsock_t *dealer, const char *reason)
{
    sq_wire_enc_t *e = sq_wire_enc_new();
    if (e) {
        sq_wire_map(e, 1);
        sq_wire_kv_str(e, "reason", reason);
        sq_wire_send(zsock_resolve(dealer), NULL, SQ_WIRE_DISCONNECT, e);
        sq_wire_enc_destroy(&e);
    }
}

/* The watchdog: a step stuck past the timeout ends the process. */
static void s_check_step(sq_link_t *self, zsock_t *dealer, int64_t now)
{
    const long long since = atomic_load(&self->step_since_ms);
    if (self->step_timeout_ms <= 0 || since <= 0 || now - since <= self->step_timeout_ms)
        return;
    SQ_ERROR("forward step stuck, ending the group",
             "running_s=%.1f step_timeout_s=%.1f cause=\"a device or a collective that hangs\"",
             (double)(now - since) / 1000.0, self->step_timeout_ms / 1000.0);
    char reason[160];
    snprintf(reason, sizeof reason, "forward step stuck for %.1f s (step timeout %.1f s)",
             (double)(now - since) / 1000.0, self->step_timeout_ms / 1000.0);
    if (dealer) {
        s_send_disconnect(dealer, reason);
        zclock_sleep(200);   /* for the message to leave */
    }
    _exit(1);
}

/* The broker's word in a DISCONNECT or ERROR body, logged */
static void s_log_broker(const char *msg, sq_wire_val_t body, const char *key, int reconnect_ms)
{
    const char *text = NULL;
    size_t n = 0;
    char copy[SQ_WIRE_MAX_ERROR], q[SQ_WIRE_MAX_ERROR + 64];
    if (sq_wire_get_str(body, key, false, SQ_WIRE_MAX_ERROR, &text, &n) != 0 || !text)
        n = 0;
    snprintf(copy, sizeof copy, "%.*s", (int)n, text ? text : "");
    if (reconnect_ms >= 0)
        SQ_WARN(msg, "%s=%s reconnect_in_ms=%d", key, sq_log_quote(copy, q, sizeof q),
                reconnect_ms);
    else
        SQ_WARN(msg, "%s=%s", key, sq_log_quote(copy, q, sizeof q));
}

/* the thread's start (ok) or failure, for sq_link_new */
static void s_started(sq_link_t *self, bool ok, const char *err)
{
    pthread_mutex_lock(&self->mu);
    self->start_state = ok ? 1 : -1;
    if (!ok)
        snprintf(self->start_error, sizeof self->start_error, "%s", err);
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

static void *s_thread(void *arg)
{
    sq_link_t *self = arg;
    char ep[80], err[256] = "cannot create the link's wake-up socket";
    snprintf(ep, sizeof ep, "@%s", self->wake_ep);
    zsock_t *wake_rx = zsock_new_pair(ep);
    zsock_t *dealer = wake_rx ? s_connect(self, err, sizeof err) : NULL;
    s_started(self, dealer != NULL, err);
    if (!dealer) {
        zsock_destroy(&wake_rx);
        return NULL;
    }
    zpoller_t *poller = zpoller_new(dealer, wake_rx, NULL);
    int64_t last_recv = sq_mono_ms(), last_send = last_recv, last_kv = last_recv;
    int64_t reconnect_at = 0;   /* with dealer NULL: when to connect again */
    int backoff_ms = 0;         /* the pause before the next reconnect after a DISCONNECT */
    bool stopped = false;
    for (;;) {
        pthread_mutex_lock(&self->mu);
        stopped = self->stop;
        bool send_drain = dealer && self->draining && !self->draining_sent;
        if (dealer)
            self->draining_sent = self->draining;
        pthread_mutex_unlock(&self->mu);
        if (stopped)
            break;
        void *which = zpoller_wait(poller, self->heartbeat_ms / 4);
        int64_t now = sq_mono_ms();
        bool drop = false;      /* the broker ended the session */
        if (which == wake_rx) {
            zframe_t *f = zframe_recv(wake_rx);
            zframe_destroy(&f);
        } else if (dealer && which == dealer) {
            sq_wire_msg_t *m = NULL;
            if (sq_wire_recv(zsock_resolve(dealer), false, SQ_WIRE_MAX_BODY, &m, NULL) == 0) {
                last_recv = now;
                if (m->cmd == SQ_WIRE_DISCONNECT) {
                    s_log_broker("broker ended the session", m->body, "reason", backoff_ms);
                    drop = true;
                } else if (m->cmd == SQ_WIRE_ERROR) {
                    s_log_broker("broker error", m->body, "message", -1);
                } else {
                    backoff_ms = 0;     /* a session that works */
                    if (m->cmd == SQ_WIRE_TASKS)
                        s_on_tasks(self, m->body);
                    else if (m->cmd == SQ_WIRE_CANCEL_LEASE)
                        s_on_cancel(self, m->body);
                    else if (m->cmd == SQ_WIRE_HEARTBEAT)
                        s_on_heartbeat(self, m->body);
                }
                sq_wire_msg_destroy(&m);
            }
        } else if (zpoller_terminated(poller)) {
            break;
        }
        if (dealer && !drop &&
            now - last_recv > (int64_t)self->heartbeat_ms * SQ_WIRE_HEARTBEAT_LIVENESS) {
            SQ_WARN("broker silent, reconnecting", "endpoint=%s", self->endpoint);
            drop = true;
            backoff_ms = 0;     /* the silence was the pause */
        }
        if (drop) {
            /* a new session: what was taken under this one is void */
            zpoller_destroy(&poller);
            zsock_set_linger(dealer, 0);
            zsock_destroy(&dealer);
            s_new_epoch(self);
            poller = zpoller_new(wake_rx, NULL);
            reconnect_at = now + backoff_ms;
            backoff_ms = !backoff_ms ? S_BACKOFF_FIRST_MS
                         : backoff_ms < S_BACKOFF_MAX_MS / 2 ? 2 * backoff_ms : S_BACKOFF_MAX_MS;
        }
        if (!dealer && now >= reconnect_at) {
            if (!(dealer = s_connect(self, err, sizeof err))) {
                char q[300];
                SQ_ERROR("broker link failed", "error=%s", sq_log_quote(err, q, sizeof q));
                break;
            }
            zpoller_destroy(&poller);
            poller = zpoller_new(dealer, wake_rx, NULL);
            last_recv = last_send = last_kv = now;
        }
        s_check_step(self, dealer, now);
        if (!dealer)
            continue;
        if (s_flush(self, dealer) > 0)
            last_send = now;
        if (send_drain) {
            s_send_ready(self, dealer, true);
            last_send = now;
        }
        if (now - last_send >= self->heartbeat_ms ||
            (now - last_kv >= self->heartbeat_ms && s_kv_dirty(self))) {
            s_send_heartbeat(self, dealer);
            last_send = last_kv = now;
        }
    }
    if (dealer) {
        s_flush(self, dealer);
        pthread_mutex_lock(&self->mu);
        s_send_disconnect(dealer, self->stop_reason ? self->stop_reason : "group shutting down");
        pthread_mutex_unlock(&self->mu);
    }
    pthread_mutex_lock(&self->mu);
    self->dead = !stopped;      /* the compute thread stops waiting for leases */
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    zpoller_destroy(&poller);
    zsock_destroy(&dealer);
    zsock_destroy(&wake_rx);
    return NULL;
}

/* ---- compute-thread side ---- */

static char *s_dup(const char *s)
{
    return strdup(s ? s : "");
}

sq_link_t *sq_link_new(const sq_link_config_t *cfg)
{
    static _Atomic int s_counter;
    sq_link_t *self = calloc(1, sizeof *self);
    if (!self)
        goto nomem;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    self->endpoint = s_dup(cfg->endpoint);
    self->group_id = s_dup(cfg->group_id);
    self->model = s_dup(cfg->model);
    self->model_sha256 = s_dup(cfg->model_sha256);
    self->device = s_dup(cfg->device);
    self->kv_type = s_dup(cfg->kv_type);
    self->tp_size = cfg->tp_size;
    self->max_batch = cfg->max_batch;
    self->kv_pages = cfg->kv_pages;
    self->heartbeat_ms = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : SQ_WIRE_HEARTBEAT_MS;
    self->step_timeout_ms = cfg->step_timeout_ms;
    self->kv_in_use = self->preemptions = -1;
    if (!self->endpoint || !self->group_id || !self->model || !self->model_sha256 ||
        !self->device || !self->kv_type)
        goto nomem;
    if (cfg->n_adapters > 0) {
        if (!(self->adapters = calloc((size_t)cfg->n_adapters, sizeof(char *))))
            goto nomem;
        for (int i = 0; i < cfg->n_adapters; i++)
            if (!(self->adapters[self->n_adapters++] = s_dup(cfg->adapters[i])))
                goto nomem;
    }
    /* inproc allows connecting before the link thread binds */
    snprintf(self->wake_ep, sizeof self->wake_ep, "inproc://sq-link-wake-%p-%d", (void *)self,
             s_counter++);
    char ep[80];
    snprintf(ep, sizeof ep, ">%s", self->wake_ep);
    if (!(self->wake_tx = zsock_new_pair(ep))) {
        SQ_FAIL(SQ_EIO, "cannot create the link wake-up socket");
        sq_link_destroy(&self);
        return NULL;
    }
    if (pthread_create(&self->thread, NULL, s_thread, self) != 0) {
        SQ_FAIL(SQ_EIO, "cannot start the broker link thread");
        sq_link_destroy(&self);
        return NULL;
    }
    self->thread_started = true;
    /* a broker endpoint it cannot use fails here, not in a group that then
     * serves nobody */
    pthread_mutex_lock(&self->mu);
    while (self->start_state == 0)
        pthread_cond_wait(&self->cv, &self->mu);
    const bool ok = self->start_state > 0;
    pthread_mutex_unlock(&self->mu);
    if (!ok) {
        SQ_FAIL(SQ_EINVAL, "%s", self->start_error);
        sq_link_destroy(&self);
        return NULL;
    }
    return self;
nomem:
    SQ_FAIL(SQ_ENOMEM, "broker link");
    sq_link_destroy(&self);
    return NULL;
}

/* Never blocks: with a wake-up already queued the link thread needs no
 * other, and one that has ended reads none */
static void s_wake(sq_link_t *self)
{
    zmq_send(zsock_resolve(self->wake_tx), "", 0, ZMQ_DONTWAIT);
}

void sq_link_destroy(sq_link_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_link_t *self = *self_p;
    if (self->thread_started) {
        pthread_mutex_lock(&self->mu);
        self->stop = true;
        pthread_mutex_unlock(&self->mu);
        s_wake(self);
        pthread_join(self->thread, NULL);
    }
    zsock_destroy(&self->wake_tx);
    s_new_epoch(self);          /* frees leases nobody took */
    free(self->endpoint);
    free(self->group_id);
    free(self->model);
    free(self->model_sha256);
    free(self->device);
    free(self->kv_type);
    for (int i = 0; i < self->n_adapters; i++)
        free(self->adapters[i]);
    free(self->adapters);
    free(self->cancels);
    /* outcomes a link thread that ended by itself never sent */
    for (s_out_t *o = self->out_head, *next; o; o = next) {
        next = o->next;
        s_out_free(o);
    }
    free(self->stop_reason);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    free(self);
    *self_p = NULL;
}

sq_lease_t *sq_link_take(sq_link_t *self, int timeout_ms)
{
    pthread_mutex_lock(&self->mu);
    if (!self->in_head && timeout_ms > 0) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (dl.tv_nsec >= 1000000000) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000;
        }
        while (!self->in_head && !self->stop && !self->dead)
            if (pthread_cond_timedwait(&self->cv, &self->mu, &dl) != 0)
                break;
    }
    s_in_t *n = self->in_head;
    if (n) {
        self->in_head = n->next;
        if (!self->in_head)
            self->in_tail = NULL;
    }
    pthread_mutex_unlock(&self->mu);
    if (!n)
        return NULL;
    sq_lease_t *l = n->lease;
    free(n);
    return l;
}

int sq_link_cancelled(sq_link_t *self, uint64_t *leases, int max)
{
    pthread_mutex_lock(&self->mu);
    int n = self->n_cancels < max ? self->n_cancels : max;
    if (n > 0) {   /* (no list yet before the first CANCEL-LEASE) */
        memcpy(leases, self->cancels, (size_t)n * sizeof *leases);
        memmove(self->cancels, self->cancels + n, (size_t)(self->n_cancels - n) * sizeof *leases);
        self->n_cancels -= n;
    }
    pthread_mutex_unlock(&self->mu);
    return n;
}

uint64_t sq_link_epoch(sq_link_t *self)
{
    pthread_mutex_lock(&self->mu);
    uint64_t e = self->epoch;
    pthread_mutex_unlock(&self->mu);
    return e;
}

bool sq_link_drained(sq_link_t *self)
{
    pthread_mutex_lock(&self->mu);
    bool done = self->drain_acked && !self->in_head;
    pthread_mutex_unlock(&self->mu);
    return done;
}

bool sq_link_dead(sq_link_t *self)
{
    pthread_mutex_lock(&self->mu);
    bool dead = self->dead;
    pthread_mutex_unlock(&self->mu);
    return dead;
}

/* Queue an outcome for the link thread; outcomes of a voided epoch are
 * dropped (their leases are gone). */
static void s_push(sq_link_t *self, sq_lease_t *lease, s_out_t *o)
{
    pthread_mutex_lock(&self->mu);
    bool live = lease->epoch == self->epoch;
    if (live)
        s_out_append(self, o);
    pthread_mutex_unlock(&self->mu);
    if (!live)
        s_out_free(o);
    sq_lease_destroy(&lease);
    if (live)
        s_wake(self);
}

void sq_link_complete(sq_link_t *self, sq_lease_t *lease, const sq_outcome_t *out)
{
    s_out_t *o = calloc(1, sizeof *o);
    if (!o || !(o->text = s_memdup(out->text, out->text_len))) {
        free(o);
        sq_link_fail(self, lease, true, "worker out of memory for the result");
        return;
    }
    o->lease = lease->lease;
    o->token = lease->token;
    o->ok = true;
    o->text_len = out->text_len;
    snprintf(o->finish, sizeof o->finish, "%s", out->finish_reason);
    o->prompt_tokens = out->prompt_tokens;
    o->completion_tokens = out->completion_tokens;
    o->cached_tokens = out->cached_tokens;
    o->adapter = lease->adapter ? strdup(lease->adapter) : NULL;
    o->adapter_version = out->adapter_version ? strdup(out->adapter_version) : NULL;
    o->queue_wait_ms = out->queue_wait_ms;
    o->prefill_ms = out->prefill_ms;
    o->decode_ms = out->decode_ms;
    s_push(self, lease, o);
}

void sq_link_fail(sq_link_t *self, sq_lease_t *lease, bool retryable, const char *error)
{
    s_out_t *o = calloc(1, sizeof *o);
    if (!o) {
        sq_lease_destroy(&lease);   /* the broker re-queues it when we go */
        return;
    }
    o->lease = lease->lease;
    o->token = lease->token;
    o->retryable = retryable;
    o->text = strdup(error ? error : "error");
    o->text_len = o->text ? strlen(o->text) : 0;
    s_push(self, lease, o);
}

void sq_link_set_kv_use(sq_link_t *self, int pages_in_use, long preemptions)
{
    pthread_mutex_lock(&self->mu);
    if (pages_in_use != self->kv_in_use || preemptions != self->preemptions) {
        self->kv_in_use = pages_in_use;
        self->preemptions = preemptions;
        self->kv_dirty = true;
    }
    pthread_mutex_unlock(&self->mu);
}

void sq_link_set_stop_reason(sq_link_t *self, const char *reason)
{
    char *copy = reason ? strdup(reason) : NULL;
    pthread_mutex_lock(&self->mu);
    free(self->stop_reason);
    self->stop_reason = copy;
    pthread_mutex_unlock(&self->mu);
}

void sq_link_step(sq_link_t *self, bool running)
{
    atomic_store(&self->step_since_ms, running ? (long long)sq_mono_ms() : 0LL);
}

void sq_link_set_draining(sq_link_t *self)
{
    pthread_mutex_lock(&self->mu);
    self->draining = true;
    pthread_mutex_unlock(&self->mu);
    s_wake(self);
}

/*  sq-test-worker: a TEST FIXTURE worker group (never shipped as
 *  shardq-worker). It speaks the real worker protocol of docs/protocol.md §5
 *  through sq_wire so that the broker can be tested end to end without a
 *  model:
 *
 *    READY with capabilities → TASKS (many leases at once, up to --batch)
 *    → each task "runs" for --delay-ms, then its output (the prompt echoed,
 *    or reversed by code point) goes back in RESULT, or a FAIL (retryable
 *    or not) is injected at --fail-rate / --fail-permanent-rate, drawn from
 *    a --seed'ed generator so runs repeat.
 *
 *  It heartbeats every second when otherwise silent, reconnects and sends
 *  READY again when the broker is silent for 3 beats or says DISCONNECT
 *  (its old leases are void then), drops leases named by CANCEL-LEASE, and
 *  sends DISCONNECT and exits 0 on SIGTERM/SIGINT. --stall makes it go
 *  silent (no heartbeats, no results) after its first TASKS, to look like a
 *  hung group whose socket stays open; --ignore-cancel makes it answer
 *  cancelled leases anyway, so that fencing of stale results can be tested;
 *  --send-twice repeats every RESULT/FAIL message (duplicate delivery).
 *  --cached-tokens N reports usage: prompt_tokens (the prompt's bytes) and
 *  cached_tokens N, however many those are (a bad count is a test case);
 *  --kv-in-use N makes every HEARTBEAT say N KV pages in use and 0
 *  preemptions, as a worker group's do.
 *
 *  Exit codes: 0 after SIGTERM/SIGINT, 2 on bad usage, 1 on a setup error.
 */
#define _GNU_SOURCE
#include "sq_error.h"
#include "sq_log.h"
#include "sq_version.h"
#include "sq_wire.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *endpoint;
    const char *group;
    const char *model;
    int batch;
    int delay_ms;
    double fail_rate;
    double fail_permanent_rate;
    uint64_t seed;
    bool reverse;
    bool stall;
    bool ignore_cancel;
    bool send_twice;
    int heartbeat_ms;
    long long cached_tokens;    /* -1: no usage counts in RESULT */
    long long kv_in_use;        /* -1: plain HEARTBEATs */
} s_opts_t;

typedef enum { S_OUT_RESULT, S_OUT_RETRYABLE, S_OUT_PERMANENT } s_outcome_t;

/* One held lease: what the broker gave us and what we will answer. */
typedef struct {
    uint64_t lease, token, attempt;
    int64_t due_ms;
    s_outcome_t outcome;
    char *text;         /* the output (RESULT) or the error (FAIL) */
    size_t text_len;
} s_lease_t;

typedef struct {
    s_opts_t opt;
    zsock_t *sock;
    sq_wire_enc_t *enc;
    s_lease_t *leases;   /* (n_leases) in arrival order */
    int n_leases;
    int64_t last_sent_ms, last_heard_ms;
    uint64_t rng;
    bool stalled;
    uint64_t n_tasks, n_results, n_fails, n_cancelled, n_reconnects;
} s_worker_t;

/* --- output of one task ---------------------------------------------- */

static double
s_rand01(uint64_t *state)
{
    /* xorshift64*: deterministic per --seed, good enough for fault mixes */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / (double)(1ULL << 53);
}

/* Reverse s by UTF-8 code point (the input is valid UTF-8: the broker
 * checked it), so the output is valid UTF-8 too. */
static void
s_reverse_utf8(const char *s, size_t n, char *out)
{
    size_t i = 0;
    while (i < n) {
        size_t len = 1;
        while (i + len < n && ((unsigned char)s[i + len] & 0xC0) == 0x80)
            len++;
        memcpy(out + n - i - len, s + i, len);
        i += len;
    }
}

static int
s_make_output(s_worker_t *self, s_lease_t *l, const char *prompt, size_t prompt_len)
{
    double r = s_rand01(&self->rng);
    l->outcome = r < self->opt.fail_permanent_rate ? S_OUT_PERMANENT
                 : r < self->opt.fail_permanent_rate + self->opt.fail_rate ? S_OUT_RETRYABLE
                                                                           : S_OUT_RESULT;
    if (l->outcome != S_OUT_RESULT) {
        l->text = NULL;
        if (asprintf(&l->text, "test worker %s: injected %s failure on attempt %llu",
                     self->opt.group, l->outcome == S_OUT_PERMANENT ? "permanent" : "retryable",
                     (unsigned long long)l->attempt) < 0)
            return SQ_ENOMEM;
        l->text_len = strlen(l->text);
        return 0;
    }
    l->text = malloc(prompt_len + 1);
    if (!l->text)
        return SQ_ENOMEM;
    if (self->opt.reverse)
        s_reverse_utf8(prompt, prompt_len, l->text);
    else
        memcpy(l->text, prompt, prompt_len);
    l->text[prompt_len] = '\0';
    l->text_len = prompt_len;
    return 0;
}

/* --- sending --------------------------------------------------------- */

static int
s_send(s_worker_t *self, uint8_t cmd, sq_wire_enc_t *body)
{
    int rc = sq_wire_send(self->sock, NULL, cmd, body);
    if (rc == 0)
        self->last_sent_ms = zclock_mono();
    return rc;
}

static int
s_send_heartbeat(s_worker_t *self)
{
    if (self->opt.kv_in_use < 0)
        return s_send(self, SQ_WIRE_HEARTBEAT, NULL);
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 2);
    sq_wire_kv_u64(e, "kv_pages_in_use", (uint64_t)self->opt.kv_in_use);
    sq_wire_kv_u64(e, "preemptions", 0);
    return s_send(self, SQ_WIRE_HEARTBEAT, e);
}

static int
s_send_ready(s_worker_t *self)
{
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 5);
    sq_wire_kv_str(e, "group_id", self->opt.group);
    sq_wire_kv_str(e, "model", self->opt.model);
    sq_wire_kv_u64(e, "tp_size", 1);
    sq_wire_kv_str(e, "device", "cpu");
    sq_wire_kv_u64(e, "max_batch", (uint64_t)self->opt.batch);
    return s_send(self, SQ_WIRE_READY, e);
}

static void
s_drop_lease(s_worker_t *self, int i)
{
    free(self->leases[i].text);
    memmove(&self->leases[i], &self->leases[i + 1],
            (size_t)(self->n_leases - i - 1) * sizeof self->leases[0]);
    self->n_leases--;
}

static void
s_drop_all_leases(s_worker_t *self)
{
    while (self->n_leases)
        s_drop_lease(self, self->n_leases - 1);
}

/* Send every due lease of one kind — results, or (`failures`) FAILs — in
 * one message (up to SQ_WIRE_MAX_BATCH entries), then forget them. */
static int
s_flush_kind(s_worker_t *self, int64_t now, bool failures)
{
    uint32_t n = 0;
    for (int i = 0; i < self->n_leases && n < SQ_WIRE_MAX_BATCH; i++)
        n += self->leases[i].due_ms <= now && (self->leases[i].outcome != S_OUT_RESULT) == failures;
    if (n == 0)
        return 0;
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 1);
    sq_wire_key(e, failures ? "failures" : "results");
    sq_wire_array(e, n);
    uint32_t sent = 0;
    for (int i = 0; i < self->n_leases && sent < n;) {
        s_lease_t *l = &self->leases[i];
        if (l->due_ms > now || (l->outcome != S_OUT_RESULT) != failures) {
            i++;
            continue;
        }
        const bool usage = !failures && self->opt.cached_tokens >= 0;
        sq_wire_map(e, failures ? 4 : usage ? 7 : 5);
        sq_wire_kv_u64(e, "lease", l->lease);
        sq_wire_kv_u64(e, "token", l->token);
        if (failures) {
            sq_wire_kv_bool(e, "retryable", l->outcome == S_OUT_RETRYABLE);
            sq_wire_kv_strn(e, "error", l->text, l->text_len);
        } else {
            sq_wire_kv_strn(e, "text", l->text, l->text_len);
            sq_wire_kv_str(e, "finish_reason", "stop");
            sq_wire_kv_u64(e, "completion_tokens", l->text_len);
            if (usage) {
                sq_wire_kv_u64(e, "prompt_tokens", l->text_len);
                sq_wire_kv_u64(e, "cached_tokens", (uint64_t)self->opt.cached_tokens);
            }
        }
        sent++;
        s_drop_lease(self, i);
    }
    if (failures)
        self->n_fails += sent;
    else
        self->n_results += sent;
    int rc = s_send(self, failures ? SQ_WIRE_FAIL : SQ_WIRE_RESULT, e);
    /* A network may deliver a message twice; the broker must record once. */
    if (rc == 0 && self->opt.send_twice)
        rc = s_send(self, failures ? SQ_WIRE_FAIL : SQ_WIRE_RESULT, e);
    return rc;
}

/* --- receiving ------------------------------------------------------- */

static int
s_take_task(s_worker_t *self, sq_wire_val_t t, int64_t now)
{
    s_lease_t l = {0};
    const char *prompt = NULL;
    size_t prompt_len = 0;
    int rc = sq_wire_get_u64(t, "lease", true, UINT64_MAX, &l.lease);
    if (rc == 0)
        rc = sq_wire_get_u64(t, "token", true, UINT64_MAX, &l.token);
    l.attempt = 1;
    if (rc == 0)
        rc = sq_wire_get_u64(t, "attempt", false, UINT64_MAX, &l.attempt);
    if (rc == 0)
        rc = sq_wire_get_str(t, "prompt", true, SQ_WIRE_MAX_PROMPT, &prompt, &prompt_len);
    if (rc != 0)
        return rc;
    l.due_ms = now + self->opt.delay_ms;
    rc = s_make_output(self, &l, prompt, prompt_len);
    if (rc != 0)
        return rc;
    s_lease_t *grown = realloc(self->leases, (size_t)(self->n_leases + 1) * sizeof *grown);
    if (!grown) {
        free(l.text);
        return SQ_ENOMEM;
    }
    self->leases = grown;
    self->leases[self->n_leases++] = l;
    self->n_tasks++;
    return 0;
}

static int
s_on_tasks(s_worker_t *self, sq_wire_val_t body)
{
    sq_wire_val_t tasks;
    int rc = sq_wire_get_array(body, "tasks", true, SQ_WIRE_MAX_BATCH, &tasks);
    if (rc != 0)
        return rc;
    if (self->n_tasks == 0)
        SQ_INFO("first tasks", "group=%s n=%u", self->opt.group, sq_wire_count(tasks));
    int64_t now = zclock_mono();
    sq_wire_iter_t it;
    sq_wire_val_t t;
    sq_wire_iter_init(&it, tasks);
    while (rc == 0 && sq_wire_iter_next(&it, &t))
        rc = s_take_task(self, t, now);
    /* Protocol §5.2: the broker keeps at most max_batch leases on a group.
     * Tests grep for this line. */
    if (self->n_leases > self->opt.batch)
        SQ_WARN("more leases than max_batch", "group=%s leases=%d max_batch=%d",
                self->opt.group, self->n_leases, self->opt.batch);
    if (self->opt.stall && !self->stalled) {
        self->stalled = true;
        SQ_WARN("stalling on purpose", "group=%s leases=%d", self->opt.group, self->n_leases);
    }
    return rc;
}

static int
s_on_cancel_lease(s_worker_t *self, sq_wire_val_t body)
{
    sq_wire_val_t leases, entry;
    int rc = sq_wire_get_array(body, "leases", true, SQ_WIRE_MAX_BATCH, &leases);
    if (rc == 0 && self->opt.ignore_cancel) {
        SQ_WARN("ignoring CANCEL-LEASE on purpose", "group=%s n=%u", self->opt.group,
                sq_wire_count(leases));
        return 0;
    }
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, leases);
    while (rc == 0 && sq_wire_iter_next(&it, &entry)) {
        uint64_t lease = 0;
        rc = sq_wire_get_u64(entry, "lease", true, UINT64_MAX, &lease);
        for (int i = 0; rc == 0 && i < self->n_leases; i++) {
            if (self->leases[i].lease == lease) {
                s_drop_lease(self, i);
                self->n_cancelled++;
                SQ_INFO("lease cancelled", "group=%s lease=%llu", self->opt.group,
                        (unsigned long long)lease);
                break;
            }
        }
    }
    return rc;
}

static int s_reconnect(s_worker_t *self, const char *why);

static void
s_on_message(s_worker_t *self, sq_wire_msg_t *msg)
{
    int rc = 0;
    self->last_heard_ms = zclock_mono();
    switch (msg->cmd) {
    case SQ_WIRE_TASKS: rc = s_on_tasks(self, msg->body); break;
    case SQ_WIRE_CANCEL_LEASE: rc = s_on_cancel_lease(self, msg->body); break;
    case SQ_WIRE_HEARTBEAT: break;
    case SQ_WIRE_DISCONNECT: rc = s_reconnect(self, "broker sent DISCONNECT"); break;
    case SQ_WIRE_ERROR: {
        char *text = NULL;
        sq_wire_get_strdup(msg->body, "message", false, SQ_WIRE_MAX_ERROR, &text);
        SQ_WARN("broker error", "group=%s message=\"%s\"", self->opt.group, text ? text : "");
        free(text);
        break;
    }
    default:
        SQ_WARN("unexpected command", "group=%s cmd=%s", self->opt.group,
                sq_wire_cmd_name(msg->cmd));
    }
    if (rc != 0)
        SQ_WARN("bad message from broker", "group=%s cmd=%s error=\"%s\"", self->opt.group,
                sq_wire_cmd_name(msg->cmd), sq_error_detail());
}

/* --- session --------------------------------------------------------- */

static int
s_connect(s_worker_t *self)
{
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock)
        return SQ_FAIL(SQ_EIO, "cannot create a DEALER socket");
    zsock_set_maxmsgsize(self->sock, (int64_t)SQ_WIRE_MAX_BODY + 64);
    zsock_set_linger(self->sock, 0);
    if (zsock_connect(self->sock, "%s", self->opt.endpoint) != 0)
        return SQ_FAIL(SQ_EINVAL, "cannot connect to %s", self->opt.endpoint);
    self->last_heard_ms = zclock_mono();
    return s_send_ready(self);
}

/* A fresh session: old leases are void (protocol §5.8, §5.9). */
static int
s_reconnect(s_worker_t *self, const char *why)
{
    SQ_WARN("reconnecting", "group=%s reason=\"%s\" dropped_leases=%d", self->opt.group, why,
            self->n_leases);
    s_drop_all_leases(self);
    zsock_destroy(&self->sock);
    self->n_reconnects++;
    return s_connect(self);
}

static void
s_drain(s_worker_t *self)
{
    while (self->sock && (zsock_events(self->sock) & ZMQ_POLLIN)) {
        sq_wire_msg_t *msg = NULL;
        int rc = sq_wire_recv(zsock_resolve(self->sock), false, SQ_WIRE_MAX_BODY, &msg, NULL);
        if (rc == SQ_EAGAIN)
            return;
        if (rc != 0) {
            SQ_WARN("unreadable message", "group=%s error=\"%s\"", self->opt.group,
                    sq_error_detail());
            continue;
        }
        s_on_message(self, msg);
        sq_wire_msg_destroy(&msg);
    }
}

/* Milliseconds until the next thing we must do on our own. */
static int
s_next_timeout(const s_worker_t *self, int64_t now)
{
    int64_t next = self->last_sent_ms + self->opt.heartbeat_ms;
    int64_t dead = self->last_heard_ms + (int64_t)self->opt.heartbeat_ms * SQ_WIRE_HEARTBEAT_LIVENESS;
    if (dead < next)
        next = dead;
    for (int i = 0; i < self->n_leases; i++)
        if (self->leases[i].due_ms < next)
            next = self->leases[i].due_ms;
    return next <= now ? 0 : (int)(next - now);
}

static void
s_tick(s_worker_t *self)
{
    int64_t now = zclock_mono();
    if (self->stalled)
        return;
    if (s_flush_kind(self, now, false) != 0 || s_flush_kind(self, now, true) != 0)
        SQ_WARN("send failed", "group=%s error=\"%s\"", self->opt.group, sq_error_detail());
    if (now - self->last_heard_ms > (int64_t)self->opt.heartbeat_ms * SQ_WIRE_HEARTBEAT_LIVENESS)
        s_reconnect(self, "broker silent for 3 heartbeats");
    else if (now - self->last_sent_ms >= self->opt.heartbeat_ms)
        s_send_heartbeat(self);
}

static int
s_run(s_worker_t *self)
{
    int rc = s_connect(self);
    if (rc != 0)
        return rc;
    SQ_INFO("worker ready", "group=%s broker=%s batch=%d delay_ms=%d", self->opt.group,
            self->opt.endpoint, self->opt.batch, self->opt.delay_ms);
    while (!zsys_interrupted) {
        int timeout = self->stalled ? 100 : s_next_timeout(self, zclock_mono());
        zmq_pollitem_t item = {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, timeout) < 0 && zmq_errno() != EINTR)
            return SQ_FAIL(SQ_EIO, "zmq_poll: %s", zmq_strerror(zmq_errno()));
        s_drain(self);
        s_tick(self);
    }
    sq_wire_enc_reset(self->enc);
    sq_wire_map(self->enc, 1);
    sq_wire_kv_str(self->enc, "reason", "SIGTERM");
    zsock_set_linger(self->sock, 1000);
    s_send(self, SQ_WIRE_DISCONNECT, self->enc);
    SQ_INFO("worker stopping", "group=%s tasks=%llu results=%llu fails=%llu cancelled=%llu "
            "reconnects=%llu", self->opt.group, (unsigned long long)self->n_tasks,
            (unsigned long long)self->n_results, (unsigned long long)self->n_fails,
            (unsigned long long)self->n_cancelled, (unsigned long long)self->n_reconnects);
    return 0;
}

/* --- command line ---------------------------------------------------- */

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: sq-test-worker [options]   (test fixture, not shardq-worker)\n"
            "  --broker EP            worker endpoint (SHARDQ_WORKER_ENDPOINT, tcp://127.0.0.1:5556)\n"
            "  --group ID             worker group id (default test-<pid>)\n"
            "  --model M              model served (default test)\n"
            "  --batch N              leases held at once, 1-4096 (default 8)\n"
            "  --delay-ms N           time each task takes (default 0)\n"
            "  --fail-rate F          fraction of tasks failing retryably (0-1)\n"
            "  --fail-permanent-rate F  fraction failing permanently (0-1)\n"
            "  --seed N               seed of the failure draw (default 1)\n"
            "  --reverse              answer the prompt reversed (default: echoed)\n"
            "  --stall                go silent after the first TASKS\n"
            "  --ignore-cancel        finish cancelled leases anyway (a fencing test)\n"
            "  --send-twice           send every RESULT/FAIL message twice\n"
            "  --heartbeat-ms N       heartbeat interval (default 1000)\n"
            "  --cached-tokens N      report prompt_tokens and cached_tokens N in RESULT\n"
            "  --kv-in-use N          HEARTBEATs say N KV pages in use, 0 preemptions\n"
            "  --help, --version\n");
}

static int
s_parse_double(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || v < lo || v > hi)
        return SQ_FAIL(SQ_EINVAL, "\"%s\" is not a number in [%g, %g]", s, lo, hi);
    *out = v;
    return 0;
}

static int
s_parse_args(int argc, char **argv, s_opts_t *o)
{
    static const struct option longs[] = {
        {"broker", 1, 0, 'b'},     {"group", 1, 0, 'g'},     {"model", 1, 0, 'm'},
        {"batch", 1, 0, 'n'},      {"delay-ms", 1, 0, 'd'},  {"fail-rate", 1, 0, 'f'},
        {"fail-permanent-rate", 1, 0, 'p'}, {"seed", 1, 0, 's'}, {"reverse", 0, 0, 'r'},
        {"stall", 0, 0, 'S'},      {"ignore-cancel", 0, 0, 'I'}, {"heartbeat-ms", 1, 0, 'H'},
        {"send-twice", 0, 0, 'T'}, {"cached-tokens", 1, 0, 'C'}, {"kv-in-use", 1, 0, 'K'},
        {"help", 0, 0, 'h'},
        {"version", 0, 0, 'V'},    {0, 0, 0, 0}};
    int c, rc = 0;
    double v;
    while (rc == 0 && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'b': o->endpoint = optarg; break;
        case 'g': o->group = optarg; break;
        case 'm': o->model = optarg; break;
        case 'n': rc = s_parse_double(optarg, 1, SQ_WIRE_MAX_BATCH, &v); o->batch = (int)v; break;
        case 'd': rc = s_parse_double(optarg, 0, 3600000, &v); o->delay_ms = (int)v; break;
        case 'f': rc = s_parse_double(optarg, 0, 1, &o->fail_rate); break;
        case 'p': rc = s_parse_double(optarg, 0, 1, &o->fail_permanent_rate); break;
        case 's': rc = s_parse_double(optarg, 0, 1e18, &v); o->seed = (uint64_t)v; break;
        case 'r': o->reverse = true; break;
        case 'S': o->stall = true; break;
        case 'I': o->ignore_cancel = true; break;
        case 'T': o->send_twice = true; break;
        case 'C': rc = s_parse_double(optarg, 0, 1e12, &v); o->cached_tokens = (long long)v; break;
        case 'K': rc = s_parse_double(optarg, 0, 1e9, &v); o->kv_in_use = (long long)v; break;
        case 'H': rc = s_parse_double(optarg, 10, 60000, &v); o->heartbeat_ms = (int)v; break;
        case 'h': s_usage(stdout); exit(0);
        case 'V': printf("sq-test-worker %s\n", SQ_VERSION); exit(0);
        default: return SQ_FAIL(SQ_EINVAL, "unknown option (see --help)");
        }
    }
    if (rc == 0 && optind < argc)
        rc = SQ_FAIL(SQ_EINVAL, "unexpected argument \"%s\"", argv[optind]);
    if (rc == 0 && o->fail_rate + o->fail_permanent_rate > 1)
        rc = SQ_FAIL(SQ_EINVAL, "--fail-rate + --fail-permanent-rate exceed 1");
    return rc;
}

int
main(int argc, char **argv)
{
    static char default_group[64];
    snprintf(default_group, sizeof default_group, "test-%d", (int)getpid());
    const char *env_ep = getenv("SHARDQ_WORKER_ENDPOINT");
    s_worker_t w = {.opt = {.endpoint = env_ep && *env_ep ? env_ep : "tcp://127.0.0.1:5556",
                            .group = default_group, .model = "test", .batch = 8, .seed = 1,
                            .cached_tokens = -1, .kv_in_use = -1,
                            .heartbeat_ms = SQ_WIRE_HEARTBEAT_MS}};
    sq_log_init("test-worker");
    if (s_parse_args(argc, argv, &w.opt) != 0) {
        fprintf(stderr, "sq-test-worker: %s\n", sq_error_detail());
        return 2;
    }
    w.rng = w.opt.seed * 0x9E3779B97F4A7C15ULL + 1;
    w.enc = sq_wire_enc_new();
    int rc = w.enc ? s_run(&w) : SQ_ENOMEM;
    if (rc != 0)
        SQ_ERROR("worker failed", "group=%s error=\"%s\"", w.opt.group, sq_error_detail());
    s_drop_all_leases(&w);
    free(w.leases);
    zsock_destroy(&w.sock);
    sq_wire_enc_destroy(&w.enc);
    return rc == 0 ? 0 : 1;
}

/*  sq_group: the broker mode of shardq-worker.
 *  Rank 0's compute thread owns the batcher and the leases it runs; the
 *  link thread (sq_link) owns the socket. The group holds up to
 *  --prefetch leases beyond its batch slots (READY's max_batch is their
 *  sum), so a freed slot is refilled in the next step instead of after a
 *  round trip to the broker. A drain stops new leases but still runs the
 *  prefetched ones (they are the group's already); what the grace period
 *  cuts short goes back to the broker with DISCONNECT.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_group.h"

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sq_args.h"
#include "sq_batcher.h"
#include "sq_clock.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_link.h"
#include "sq_log.h"
#include "sq_seq.h"
#include "sq_sha256.h"
#include "sq_utf8.h"
#include "sq_version.h"
#include "sq_wire.h"

#define SQ_WIRE_NAME_CAP (SQ_WIRE_MAX_NAME + 1)

typedef struct {
    const char *broker;
    const char *model_path;
    const char *device;
    const char *group_id;
    int n_threads;
    int max_batch;
    int kv_pages;               /* --kv-pages; 0: every slot its whole context */
    int prefetch;               /* leases held beyond the batch slots */
    int prefill_budget;
    int n_ctx;
    int kv_type;                /* --kv-type (sq_kv_type_t) */
    bool no_prefix;             /* --prefix-cache off */
    int grace_s;
    int step_timeout_s;         /* --step-timeout: a step running longer ends the group */
    int load_timeout_s;         /* --load-timeout: a model load running longer ends it */
    int max_tokens;             /* default when a task gives none */
    const char *adapters_dir;   /* NAME/VERSION.gguf, NAME/active */
    bool check_flags;           /* --check-flags: answer whether a group would take them */
} s_opts_t;

static volatile sig_atomic_t s_term;

static void s_on_term(int sig)
{
    (void)sig;
    s_term = 1;
}

static void s_usage(FILE *fp)
{
    fputs("usage: mpirun -np N shardq-worker --broker ENDPOINT --model PATH [options]\n"
          "  serve the queue: one worker group of N ranks (tensor parallel), rank 0 talks\n"
          "  to the broker's worker endpoint\n"
          "options:\n"
          "  --broker EP          broker worker endpoint (default $SHARDQ_WORKER_ENDPOINT,\n"
          "                       else tcp://127.0.0.1:5556)\n"
          "  --model PATH         GGUF v3 llama model (F32, F16, Q8_0)\n"
          "  --max-batch B        sequences decoded together (default 16); auto: the KV\n"
          "                       cache takes the device's free memory (at most 256 whole\n"
          "                       contexts) and B is what it holds of sequences a quarter\n"
          "                       of the context long, at most 256\n"
          "  --kv-pages P         KV-cache pages of 32 positions, shared by the B sequences\n"
          "                       as they grow (default: B whole contexts; at least one);\n"
          "                       when they run short the latest sequences are preempted\n"
          "                       and recompute their context later\n"
          "  --prefetch P         leases held beyond the batch, so freed slots refill at once\n"
          "                       (default 0: prefetched leases run before a later\n"
          "                       higher-priority task can get the slot)\n"
          "  --prefill-chunk T    prompt tokens per step, shared by joining tasks (default 128)\n"
          "  --threads T          CPU threads per rank; rank 0 samples on them (default 1;\n"
          "                       with --device cuda it samples on up to 16 cores)\n"
          "  --ctx N              context per sequence (default: the model's)\n"
          "  --kv-type T          KV cache values: f16 (default: half the memory of f32),\n"
          "                       f32, or q8_0 (53 % of f16's: twice the sequences in\n"
          "                       the same memory; head_dim a multiple of 32)\n"
          "  --prefix-cache on|off  a task takes the free slot whose cache holds the longest\n"
          "                       prefix of its prompt and skips prefilling it (default on)\n"
          "  --device D           cpu (default), cuda, or auto (cuda when usable)\n"
          "  --group-id ID        name shown to the broker (default $SHARDQ_GROUP_ID,\n"
          "                       else host:pid)\n"
          "  --grace S            on SIGTERM, seconds to finish running tasks (default 30)\n"
          "  --step-timeout S     a forward step running longer than S seconds means a\n"
          "                       device or a collective hangs: the group hands its leases\n"
          "                       back and exits 1 (default 600; 0: never)\n"
          "  --load-timeout S     the same for loading the model and joining the group's\n"
          "                       devices (NCCL) before serving (default 1800; 0: never)\n"
          "  --max-tokens N       default max_tokens of tasks that give none (default 128)\n"
          "  --adapters DIR       LoRA adapters: DIR/NAME/VERSION.gguf, with DIR/NAME/active\n"
          "                       naming the version for tasks that give none\n"
          "  --check-flags        first: parse the other flags as a group would and exit,\n"
          "                       0 if it would serve with them, else 2 (shardq-scheduler)\n"
          "  --help, --version\n"
          "exit codes: 0 drained cleanly, 1 runtime failure, 2 usage error\n",
          fp);
}


/* Group mode: --broker, or SHARDQ_WORKER_ENDPOINT set and no --prompt
 * (which asks for one-shot generation). */
bool sq_group_wanted(int argc, char **argv)
{
    bool prompt = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--broker") || !strncmp(argv[i], "--broker=", 9) ||
            !strcmp(argv[i], "--check-flags"))
            return true;
        prompt |= !strcmp(argv[i], "--prompt") || !strncmp(argv[i], "--prompt=", 9);
    }
    const char *ep = getenv("SHARDQ_WORKER_ENDPOINT");
    return !prompt && ep && *ep;
}

/* The model's name for the broker: its file's name */
static const char *s_model_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* the flags s_parse takes a value for, each named once */
enum { F_BROKER, F_MODEL, F_DEVICE, F_GROUP_ID, F_ADAPTERS, F_MAX_BATCH, F_KV_PAGES, F_PREFETCH,
       F_PREFILL_CHUNK, F_THREADS, F_CTX, F_KV_TYPE, F_PREFIX_CACHE, F_GRACE, F_STEP_TIMEOUT,
       F_LOAD_TIMEOUT, F_MAX_TOKENS, F_N };
static const char *const s_value_flags[F_N] = {
    [F_BROKER] = "--broker", [F_MODEL] = "--model", [F_DEVICE] = "--device",
    [F_GROUP_ID] = "--group-id", [F_ADAPTERS] = "--adapters", [F_MAX_BATCH] = "--max-batch",
    [F_KV_PAGES] = "--kv-pages", [F_PREFETCH] = "--prefetch",
    [F_PREFILL_CHUNK] = "--prefill-chunk", [F_THREADS] = "--threads", [F_CTX] = "--ctx",
    [F_KV_TYPE] = "--kv-type", [F_PREFIX_CACHE] = "--prefix-cache", [F_GRACE] = "--grace",
    [F_STEP_TIMEOUT] = "--step-timeout", [F_LOAD_TIMEOUT] = "--load-timeout",
    [F_MAX_TOKENS] = "--max-tokens"};

/* Accepts "--flag value" and "--flag=value". 0 ok, 1 help/version, -1 usage. */
static int s_parse(int argc, char **argv, s_opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--check-flags")) {
            o->check_flags = true;
            continue;
        }
        if (sq_args_help_version(argv[i], s_usage))
            return 1;
        const int f = sq_args_flag_value(argc, argv, &i, s_value_flags, F_N, &v);
        const char *flag = f >= 0 ? s_value_flags[f] : "";
        int rc = 0;
        switch (f) {
        case F_BROKER: o->broker = v; break;
        case F_MODEL: o->model_path = v; break;
        case F_DEVICE: rc = sq_args_device(flag, v, &o->device); break;
        case F_GROUP_ID: o->group_id = v; break;
        case F_ADAPTERS: o->adapters_dir = v; break;
        case F_MAX_BATCH:
            if (!strcmp(v, "auto"))
                o->max_batch = SQ_MODEL_SLOTS_AUTO;
            else
                rc = sq_args_int(flag, v, 1, 4096, &o->max_batch);
            break;
        case F_KV_PAGES: rc = sq_args_int(flag, v, 1, 1 << 24, &o->kv_pages); break;
        case F_PREFETCH: rc = sq_args_int(flag, v, 0, 4096, &o->prefetch); break;
        case F_PREFILL_CHUNK: rc = sq_args_int(flag, v, 1, 1 << 20, &o->prefill_budget); break;
        case F_THREADS: rc = sq_args_int(flag, v, 1, 1024, &o->n_threads); break;
        case F_CTX: rc = sq_args_int(flag, v, 1, 1 << 24, &o->n_ctx); break;
        case F_KV_TYPE: rc = sq_args_kv_type(flag, v, &o->kv_type); break;
        case F_PREFIX_CACHE:
            o->no_prefix = !strcmp(v, "off");
            if (strcmp(v, "on") && strcmp(v, "off")) {
                fprintf(stderr, "shardq-worker: --prefix-cache: '%s' is not on or off\n", v);
                rc = -1;
            }
            break;
        case F_GRACE: rc = sq_args_int(flag, v, 0, 86400, &o->grace_s); break;
        case F_STEP_TIMEOUT: rc = sq_args_int(flag, v, 0, 86400, &o->step_timeout_s); break;
        case F_LOAD_TIMEOUT: rc = sq_args_int(flag, v, 0, 86400, &o->load_timeout_s); break;
        case F_MAX_TOKENS: rc = sq_args_int(flag, v, 1, 1 << 24, &o->max_tokens); break;
        default: return -1; /* reported */
        }
        if (rc)
            return -1;
    }
    if (!o->model_path) {
        fprintf(stderr, "shardq-worker: --model is required (see --help)\n");
        return -1;
    }
    /* READY offers the broker max_batch + prefetch leases; it takes at
     * most SQ_WIRE_MAX_BATCH (auto: at most 256 slots) */
    const int slots = o->max_batch == SQ_MODEL_SLOTS_AUTO ? SQ_MODEL_SLOTS_AUTO_MAX : o->max_batch;
    if (slots + (o->prefetch > 0 ? o->prefetch : 0) > SQ_WIRE_MAX_BATCH) {
        fprintf(stderr, "shardq-worker: --max-batch %s%d and --prefetch %d hold more than %d "
                "leases, the most a group may hold\n",
                o->max_batch == SQ_MODEL_SLOTS_AUTO ? "auto (up to) " : "", slots, o->prefetch,
                SQ_WIRE_MAX_BATCH);
        return -1;
    }
    const char *name = s_model_name(o->model_path);
    if (!*name || strlen(name) > SQ_WIRE_MAX_NAME) {
        fprintf(stderr, "shardq-worker: --model %s: the file name (the model's name for the "
                "broker) must be 1 to %d bytes\n", o->model_path, SQ_WIRE_MAX_NAME);
        return -1;
    }
    if (o->group_id && (!*o->group_id || strlen(o->group_id) > SQ_WIRE_MAX_ID)) {
        fprintf(stderr, "shardq-worker: --group-id (or SHARDQ_GROUP_ID) must be 1 to %d bytes\n",
                SQ_WIRE_MAX_ID);
        return -1;
    }
    return 0;
}


/* ---- rank 0 ---- */

#define S_MAX_ADAPTERS 8        /* the model's default adapter slots */

/* A LoRA adapter version loaded on every rank. */
typedef struct {
    char name[SQ_WIRE_NAME_CAP], version[SQ_WIRE_NAME_CAP];
    int id;                     /* 0: free entry */
    int refs;                   /* running sequences on it */
    int64_t last_used;
} s_adapter_t;

typedef struct {
    sq_lease_t *lease;
    int adapter;                /* index into adapters, -1: base model */
} s_active_t;

typedef struct {
    sq_link_t *link;
    sq_batcher_t *batcher;
    s_active_t *active;         /* max_batch; lease = the batcher's user pointer */
    /* a lease whose sequence waits for KV-cache pages (sq_batcher_admit's
     * SQ_EAGAIN with a slot free): no other lease is taken before it */
    s_active_t pending;
    sq_seq_t *pending_seq;
    int max_batch;
    const s_opts_t *opts;
    uint64_t epoch;
    int64_t n_done, n_failed, clock;
    int64_t n_waited;           /* leases that waited for KV-cache pages */
    long n_preempted;           /* sequences preempted (the batcher's count) */
    s_adapter_t adapters[S_MAX_ADAPTERS];
    /* base-model tasks in a row whose logits were not finite: at
     * S_NOT_FINITE_MAX the model or the device is broken, and the group
     * stops (it would fail every task it took, an attempt each) */
    int not_finite_in_row;
} s_rank0_t;

#define S_NOT_FINITE_MAX 3

static void s_forget(s_rank0_t *r, sq_lease_t *lease)
{
    for (int i = 0; i < r->max_batch; i++)
        if (r->active[i].lease == lease) {
            if (r->active[i].adapter >= 0)
                r->adapters[r->active[i].adapter].refs--;
            r->active[i] = (s_active_t){NULL, -1};
        }
}

/* Names and versions become path parts: keep them to a safe alphabet. */
static bool s_safe_name(const char *s)
{
    if (!s || !*s || strlen(s) >= SQ_WIRE_NAME_CAP || s[0] == '.')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* The version a task without one gets: DIR/NAME/active. */
static int s_active_version(const char *dir, const char *name, char *out, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/active", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return SQ_FAIL(SQ_ENOTFOUND, "adapter %s has no active version (%s)", name, path);
    char *line = fgets(out, (int)size, f);
    fclose(f);
    if (line)
        out[strcspn(out, " \t\r\n")] = '\0';
    if (!line || !s_safe_name(out))
        return SQ_FAIL(SQ_EFORMAT, "%s: not a version name", path);
    return 0;
}

/* Find or load (on every rank) the adapter a lease asks for; takes a
 * reference. Evicts the least recently used idle version when full. */
static int s_adapter_acquire(s_rank0_t *r, sq_lease_t *l, int *index)
{
    char version[SQ_WIRE_NAME_CAP];
    const char *dir = r->opts->adapters_dir;
    if (!dir)
        return SQ_FAIL(SQ_ENOTFOUND, "adapter %s: this worker group has no --adapters directory",
                       l->adapter);
    if (!s_safe_name(l->adapter) || (l->adapter_version && !s_safe_name(l->adapter_version)))
        return SQ_FAIL(SQ_EINVAL, "adapter name or version has characters outside [A-Za-z0-9._-]");
    int rc = 0;
    if (l->adapter_version)
        snprintf(version, sizeof version, "%s", l->adapter_version);
    else if ((rc = s_active_version(dir, l->adapter, version, sizeof version)))
        return rc;
    int free_i = -1, lru = -1;
    for (int i = 0; i < S_MAX_ADAPTERS; i++) {
        s_adapter_t *a = &r->adapters[i];
        if (a->id && !strcmp(a->name, l->adapter) && !strcmp(a->version, version)) {
            a->refs++;
            a->last_used = ++r->clock;
            *index = i;
            goto found;
        }
        if (!a->id && free_i < 0)
            free_i = i;
        if (a->id && a->refs == 0 && (lru < 0 || a->last_used < r->adapters[lru].last_used))
            lru = i;
    }
    if (free_i < 0 && lru < 0)
        return SQ_FAIL(SQ_EAGAIN, "all %d adapter slots are busy", S_MAX_ADAPTERS);
    if (free_i < 0) {
        if ((rc = sq_batcher_adapter_unload(r->batcher, r->adapters[lru].id)))
            return rc;
        r->adapters[lru].id = 0;
        free_i = lru;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s.gguf", dir, l->adapter, version);
    int id = 0;
    /* every rank reads the file: the step watchdog (--step-timeout) covers
     * a load that never ends (a hung volume) as it covers a forward step */
    sq_link_step(r->link, true);
    rc = sq_batcher_adapter_load(r->batcher, path, &id);
    sq_link_step(r->link, false);
    if (rc)
        return rc;
    s_adapter_t *a = &r->adapters[free_i];
    snprintf(a->name, sizeof a->name, "%s", l->adapter);
    snprintf(a->version, sizeof a->version, "%s", version);
    a->id = id;
    a->refs = 1;
    a->last_used = ++r->clock;
    *index = free_i;
    SQ_INFO("adapter loaded", "name=%s version=%s", a->name, a->version);
found:
    if (!l->adapter_version)
        l->adapter_version = strdup(version);  /* lineage: the version it ran with */
    return l->adapter_version ? 0 : SQ_FAIL(SQ_ENOMEM, "adapter version");
}

static void s_on_done(void *arg, sq_seq_t *seq, void *user, const sq_seq_times_t *t)
{
    s_rank0_t *r = arg;
    sq_lease_t *lease = user;
    s_forget(r, lease);
    const char *why;
    int err = sq_seq_error(seq, &why);
    /* an adapter's own overflow says nothing of the base model or device */
    if (err == SQ_ENOTFINITE && sq_seq_adapter(seq) == 0)
        r->not_finite_in_row++;
    else if (!err)
        r->not_finite_in_row = 0;
    if (err) {
        /* retried: a broken device may be the cause, another group may
         * run it (a broken model fails it everywhere, then it is dead;
         * and this group stops after S_NOT_FINITE_MAX in a row) */
        char error[256];
        snprintf(error, sizeof error, "task failed: %s", why);
        SQ_WARN("task failed", "task=%llu error=\"%s\"", (unsigned long long)lease->task_id, why);
        sq_link_fail(r->link, lease, true, error);
        sq_seq_destroy(&seq);
        r->n_failed++;
        return;
    }
    size_t raw_len, len = 0;
    const char *raw = sq_seq_text(seq, &raw_len);
    /* byte tokens may stop mid-character: send valid UTF-8 (U+FFFD) */
    char *text = sq_utf8_sanitize(raw, raw_len, &len);
    if (!text) {
        sq_link_fail(r->link, lease, true, "worker out of memory for the result");
        sq_seq_destroy(&seq);
        r->n_failed++;
        return;
    }
    sq_outcome_t out = {
        .text = text,
        .text_len = len,
        .finish_reason = sq_seq_finish(seq) == SQ_FINISH_LENGTH ? "length" : "stop",
        .prompt_tokens = (int64_t)sq_seq_n_prompt(seq),
        .completion_tokens = (int64_t)sq_seq_n_generated(seq),
        .cached_tokens = (int64_t)sq_seq_n_cached(seq),
        .adapter_version = lease->adapter_version,
        .queue_wait_ms = (double)(t->admitted_ns - lease->received_ns) / 1e6,
        .prefill_ms = (double)(t->prefilled_ns - t->admitted_ns) / 1e6,
        .decode_ms = (double)(t->finished_ns - t->prefilled_ns) / 1e6,
    };
    sq_link_complete(r->link, lease, &out);
    free(text);
    sq_seq_destroy(&seq);
    r->n_done++;
}

static void s_drop(s_rank0_t *r, int i)
{
    sq_lease_t *lease = r->active[i].lease;
    sq_batcher_remove(r->batcher, lease);
    s_forget(r, lease);
    sq_lease_destroy(&lease);
}

/* the waiting lease goes (cancelled, or the group stops) */
static void s_drop_pending(s_rank0_t *r)
{
    if (r->pending.adapter >= 0)
        r->adapters[r->pending.adapter].refs--;
    sq_seq_destroy(&r->pending_seq);
    sq_lease_destroy(&r->pending.lease);
    r->pending = (s_active_t){NULL, -1};
}

/* Apply CANCEL-LEASE and reconnects: the broker no longer wants these. */
static void s_apply_cancels(s_rank0_t *r)
{
    uint64_t epoch = sq_link_epoch(r->link);
    if (epoch != r->epoch) {
        for (int i = 0; i < r->max_batch; i++)
            if (r->active[i].lease && r->active[i].lease->epoch != epoch)
                s_drop(r, i);
        r->epoch = epoch;
    }
    if (r->pending.lease && r->pending.lease->epoch != epoch)
        s_drop_pending(r);
    uint64_t ids[256];
    int n;
    while ((n = sq_link_cancelled(r->link, ids, 256)) > 0)
        for (int k = 0; k < n; k++) {
            for (int i = 0; i < r->max_batch; i++)
                if (r->active[i].lease && r->active[i].lease->lease == ids[k])
                    s_drop(r, i);
            if (r->pending.lease && r->pending.lease->lease == ids[k])
                s_drop_pending(r);
        }
}

/* Give seq (lease l, adapter entry ai) a slot; when the batcher cannot
 * take it yet (the KV cache lacks the pages of its prompt, or preempted
 * sequences wait to resume), it waits as r->pending and is tried again
 * before every step (s_retry_pending). */
static void s_place(s_rank0_t *r, sq_lease_t *l, sq_seq_t *seq, int ai, bool retry)
{
    const int slot = sq_batcher_admit(r->batcher, seq, l);
    if (slot == SQ_EAGAIN && sq_batcher_n_active(r->batcher) > 0) {
        r->pending = (s_active_t){l, ai};
        r->pending_seq = seq;
        if (!retry) {
            sq_batcher_kv_t kv;
            sq_batcher_kv_stats(r->batcher, &kv);
            r->n_waited++;
            SQ_INFO("task waits for KV-cache pages",
                    "task=%llu prompt_tokens=%zu running=%d pages_in_use=%d pages_free=%d "
                    "pages=%d", (unsigned long long)l->task_id, sq_seq_n_prompt(seq),
                    sq_batcher_n_active(r->batcher), kv.in_use, kv.free, kv.pages);
        }
        return;
    }
    if (slot < 0) {
        /* with nothing running every page is free: this never fits */
        if (ai >= 0)
            r->adapters[ai].refs--;
        sq_link_fail(r->link, l, slot != SQ_EAGAIN,
                     slot == SQ_EAGAIN ? "task needs more KV cache than the worker group has"
                                       : sq_error_detail());
        sq_seq_destroy(&seq);
        r->n_failed++;
        return;
    }
    for (int i = 0; i < r->max_batch; i++)
        if (!r->active[i].lease) {
            r->active[i] = (s_active_t){l, ai};
            break;
        }
}

static void s_retry_pending(s_rank0_t *r)
{
    s_active_t p = r->pending;
    sq_seq_t *seq = r->pending_seq;
    r->pending = (s_active_t){NULL, -1};
    r->pending_seq = NULL;
    s_place(r, p.lease, seq, p.adapter, true);
}

/* The lease's sequence: a chat task's prompt as its template's turns
 * with the EOS token between them, as llama.cpp encodes the rendered
 * prompt with special tokens parsed (when the vocabulary has the
 * template's separator as a special token); any other prompt as text. */
static sq_seq_t *s_new_seq(const sq_tokenizer_t *tok, const sq_model_t *model,
                           const sq_lease_t *l, const sq_gen_params_t *gp)
{
    const int n_vocab = sq_model_hparams(model)->n_vocab, n_ctx = sq_model_n_ctx(model);
    const sq_jsonl_chat_t *chat = &l->chat;
    const int32_t sep = chat->n_turns == 0 ? -1
                        : sq_tokenizer_special(tok, SQ_JSONL_CHAT_SEP, strlen(SQ_JSONL_CHAT_SEP));
    if (sep < 0)
        return sq_seq_new(tok, l->prompt, l->prompt_len, gp, n_vocab, n_ctx);
    sq_tokenizer_text_t *turns = malloc(chat->n_turns * sizeof *turns);
    if (!turns) {
        SQ_FAIL(SQ_ENOMEM, "prompt of %zu turns", chat->n_turns);
        return NULL;
    }
    for (size_t i = 0, from = 0; i < chat->n_turns; from = chat->ends[i++])
        turns[i] = (sq_tokenizer_text_t){chat->text + from, chat->ends[i] - from};
    sq_seq_t *seq = sq_seq_new_turns(tok, turns, chat->n_turns, sep, gp, n_vocab, n_ctx);
    free(turns);
    return seq;
}

static void s_admit(s_rank0_t *r, const sq_tokenizer_t *tok, sq_model_t *model, sq_lease_t *l)
{
    int ai = -1, rc = l->adapter ? s_adapter_acquire(r, l, &ai) : 0;
    if (rc) {
        /* retried (elsewhere, or later) unless the name or the file itself
         * is wrong: a busy slot table clears as sequences finish, a group
         * without --adapters is not every group, a file missing on this
         * host's volume or an I/O error may not be there next time */
        const bool retry = rc != SQ_EINVAL && rc != SQ_EFORMAT && rc != SQ_ETRUNC &&
                           rc != SQ_EUNSUPPORTED;
        sq_link_fail(r->link, l, retry, sq_error_detail());
        r->n_failed++;
        return;
    }
    sq_gen_params_t gp = {
        .max_tokens = l->max_tokens > 0 ? (int)(l->max_tokens < INT_MAX ? l->max_tokens : INT_MAX)
                                        : r->opts->max_tokens,
        .sampler = {
            .temperature = isnan(l->temperature) ? 1.0f : (float)l->temperature,
            .top_k = 0,
            .top_p = isnan(l->top_p) ? 1.0f : (float)l->top_p,
            /* a retry of the same task samples the same tokens */
            .seed = l->seed >= 0 ? (uint64_t)l->seed : l->task_id,
        },
        .stop = (const char *const *)l->stop,
        .n_stop = l->n_stop,
    };
    sq_seq_t *seq = s_new_seq(tok, model, l, &gp);
    if (!seq) {
        if (ai >= 0)
            r->adapters[ai].refs--;
        sq_link_fail(r->link, l, false, sq_error_detail());
        r->n_failed++;
        return;
    }
    sq_seq_set_adapter(seq, ai >= 0 ? r->adapters[ai].id : 0);
    s_place(r, l, seq, ai, false);
}

/* Say when the last step preempted sequences for want of KV pages */
static void s_note_preemptions(s_rank0_t *r)
{
    sq_batcher_kv_t kv;
    sq_batcher_kv_stats(r->batcher, &kv);
    if (kv.preemptions > r->n_preempted)
        SQ_INFO("sequences preempted: KV cache full", "count=%ld total=%ld pages_free=%d pages=%d",
                kv.preemptions - r->n_preempted, kv.preemptions, kv.free, kv.pages);
    r->n_preempted = kv.preemptions;
    sq_link_set_kv_use(r->link, kv.in_use, kv.preemptions);
}

static int s_run_rank0(const s_opts_t *o, sq_engine_t *eng, sq_batcher_t *b, int tp_size)
{
    char sha[65];
    /* lineage names the exact weights */
    int rc = sq_sha256_file_hex(o->model_path, sha);
    if (rc)
        return rc;
    char group_id[SQ_WIRE_MAX_ID + 1];
    if (o->group_id)
        snprintf(group_id, sizeof group_id, "%s", o->group_id);
    else {
        char host[128] = "host";
        gethostname(host, sizeof host - 1);
        snprintf(group_id, sizeof group_id, "%s:%d", host, (int)getpid());
    }
    sq_link_config_t cfg = {
        .endpoint = o->broker, .group_id = group_id, .model = s_model_name(o->model_path),
        .model_sha256 = sha, .tp_size = tp_size, .device = sq_engine_device(eng),
        .kv_type = sq_model_kv_type(sq_engine_model(eng)),
        .max_batch = o->max_batch + o->prefetch,
        .kv_pages = sq_model_kv_pages(sq_engine_model(eng)),
        .step_timeout_ms = o->step_timeout_s * 1000,
    };
    s_rank0_t r = {.batcher = b, .max_batch = o->max_batch, .opts = o, .pending = {NULL, -1}};
    if (!(r.active = calloc((size_t)o->max_batch, sizeof *r.active)))
        return SQ_FAIL(SQ_ENOMEM, "lease table");
    for (int i = 0; i < o->max_batch; i++)
        r.active[i].adapter = -1;
    if (!(r.link = sq_link_new(&cfg))) {
        char q[600];
        SQ_ERROR("broker link failed to start", "detail=%s",
                 sq_log_quote(sq_error_detail(), q, sizeof q));
        free(r.active);
        return sq_error_code();
    }
    sq_model_t *model = sq_engine_model(eng);
    SQ_INFO("worker group ready",
            "group=%s broker=%s model=%s sha256=%.12s tp=%d device=%s max_batch=%d ctx=%d "
            "kv_type=%s kv_mib=%.1f kv_pages=%d", group_id, o->broker, cfg.model, sha, tp_size,
            cfg.device, o->max_batch, sq_model_n_ctx(model), cfg.kv_type,
            (double)sq_model_kv_bytes(model) / 1048576.0, sq_model_kv_pages(model));
    const sq_tokenizer_t *tok = sq_engine_tokenizer(eng);
    int64_t deadline = 0;
    bool draining = false, link_dead = false;
    while (rc == 0) {
        if (s_term && !draining) {
            draining = true;
            deadline = sq_mono_ms() + (int64_t)o->grace_s * 1000;
            sq_link_set_draining(r.link);
            SQ_INFO("draining", "running=%d grace_s=%d", sq_batcher_n_active(b), o->grace_s);
        }
        /* (a lease waiting for KV pages is the group's too: it runs) */
        if (draining && ((sq_batcher_n_active(b) == 0 && !r.pending.lease &&
                          sq_link_drained(r.link)) ||
                         sq_mono_ms() >= deadline))
            break;
        if ((link_dead = sq_link_dead(r.link))) {
            rc = SQ_FAIL(SQ_EIO, "the broker link ended (see the log line before)");
            break;
        }
        if (r.not_finite_in_row >= S_NOT_FINITE_MAX) {
            rc = SQ_FAIL(SQ_ENOTFINITE, "the logits of %d tasks in a row were not finite: the "
                         "model file or the device is broken", r.not_finite_in_row);
            break;
        }
        s_apply_cancels(&r);
        if (r.pending.lease)
            s_retry_pending(&r);
        sq_lease_t *l;
        while (!r.pending.lease && sq_batcher_n_active(b) < o->max_batch &&
               (l = sq_link_take(r.link, sq_batcher_n_active(b) ? 0 : 50)) != NULL)
            s_admit(&r, tok, model, l);
        sq_link_step(r.link, true);
        rc = sq_batcher_step(b, s_on_done, &r);
        sq_link_step(r.link, false);
        s_note_preemptions(&r);
    }
    if (link_dead) {
        char q[600];
        SQ_ERROR("broker link failed, stopping the group", "detail=%s",
                 sq_log_quote(sq_error_detail(), q, sizeof q));
    } else if (rc) {
        SQ_ERROR("forward step failed", "error=\"%s\" detail=\"%s\"", sq_strerror(rc),
                 sq_error_detail());
        char reason[512];
        snprintf(reason, sizeof reason, "forward step failed: %s: %s", sq_strerror(rc),
                 sq_error_detail());
        sq_link_set_stop_reason(r.link, reason);
    }
    if (sq_batcher_n_active(b) > 0)
        SQ_INFO("grace period over, handing back", "tasks=%d", sq_batcher_n_active(b));
    /* leases still running are handed back by the DISCONNECT that
     * sq_link_destroy sends after flushing the finished ones */
    for (int i = 0; i < r.max_batch; i++)
        if (r.active[i].lease)
            s_drop(&r, i);
    if (r.pending.lease)
        s_drop_pending(&r);
    sq_link_destroy(&r.link);
    free(r.active);
    SQ_INFO("worker group stopped", "done=%lld failed=%lld waited_for_kv=%lld preempted=%ld",
            (long long)r.n_done, (long long)r.n_failed, (long long)r.n_waited, r.n_preempted);
    return rc;
}

/* Rank 0's threads for choosing sampled tokens: --threads on the CPU
 * backend (the forward pass's threads are idle by then); with the model
 * on a GPU, the host's cores up to 16 (at a 32k vocabulary a sampled row
 * costs ~0.3 ms of CPU, a batch of them far more than a GPU step). */
static int s_sampling_threads(const s_opts_t *o, const sq_engine_t *eng)
{
    if (!strcmp(sq_engine_device(eng), "cpu"))
        return o->n_threads;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : cores > 16 ? 16 : (int)cores;
}

/* ---- the load watchdog ----
 * Loading the model and, on GPUs, joining the group's NCCL communicator
 * come before the broker link, whose watchdog covers forward steps
 * (sq_link_step). A load that never ends (a peer that never joins, a
 * wedged device) would leave a group that neither serves nor fails, so a
 * thread gives it --load-timeout seconds, then ends the process (mpirun
 * then ends the group). */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int timeout_s, rank;
    pthread_t thread;
    bool started;
} s_load_watch_t;

static void *s_load_watch(void *arg)
{
    s_load_watch_t *w = arg;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += w->timeout_s;
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    const bool stuck = !w->done;
    pthread_mutex_unlock(&w->mu);
    if (stuck) {
        SQ_ERROR("model load stuck, ending the group",
                 "rank=%d load_timeout_s=%d cause=\"a device, or a rank that never joins the "
                 "group\"", w->rank, w->timeout_s);
        _exit(1);
    }
    return NULL;
}

static void s_load_watch_start(s_load_watch_t *w, int timeout_s, int rank)
{
    *w = (s_load_watch_t){.timeout_s = timeout_s, .rank = rank};
    if (timeout_s <= 0)
        return;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->started = pthread_create(&w->thread, NULL, s_load_watch, w) == 0;
    if (!w->started)
        SQ_WARN("no load watchdog", "reason=\"cannot start its thread\"");
}

static void s_load_watch_stop(s_load_watch_t *w)
{
    if (w->timeout_s <= 0)
        return;
    if (w->started) {
        pthread_mutex_lock(&w->mu);
        w->done = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* ---- all ranks ---- */

int sq_group_main(int argc, char **argv)
{
    const char *env_ep = getenv("SHARDQ_WORKER_ENDPOINT");
    s_opts_t o = {
        .broker = env_ep && *env_ep ? env_ep : "tcp://127.0.0.1:5556",
        .device = "cpu", .group_id = getenv("SHARDQ_GROUP_ID"), .n_threads = 1,
        .max_batch = 16, .prefetch = -1, .prefill_budget = 128, .grace_s = 30,
        .step_timeout_s = 600, .load_timeout_s = 1800, .max_tokens = 128,
    };
    int prc = s_parse(argc, argv, &o);
    /* shardq-scheduler checks a policy's worker flags with this parse, the
     * worker's own: a group that would stop here would be started again
     * and again. The reason is on stderr. */
    if (o.check_flags && prc > 0)
        fprintf(stderr, "shardq-worker: --help and --version print and exit; a group "
                "would not serve\n");
    if (o.check_flags)
        return prc ? 2 : 0;
    if (prc)
        return prc > 0 ? 0 : 2;
    if (o.prefetch < 0)
        o.prefetch = 0;
    sq_log_init("worker");
    zsys_handler_set(NULL);   /* our handlers, not czmq's: SIGTERM drains */
    struct sigaction sa = {.sa_handler = s_on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);   /* mpirun forwards USR1, not TERM */
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "shardq-worker: MPI_Init failed\n");
        return 1;
    }
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    s_load_watch_t watch;
    s_load_watch_start(&watch, o.load_timeout_s, rank);
    sq_tp_comm_t *comm = sq_tp_comm_mpi_world_new();
    sq_engine_params_t ep = {.model_path = o.model_path, .device = o.device,
                             .n_threads = o.n_threads, .n_ctx = o.n_ctx,
                             .n_slots = o.max_batch, .n_kv_pages = o.kv_pages,
                             .kv_type = o.kv_type, .comm = comm};
    sq_engine_t *eng = comm ? sq_engine_new(&ep) : NULL;
    if (eng)   /* what --max-batch auto came to */
        o.max_batch = sq_model_n_slots(sq_engine_model(eng));
    sq_batcher_t *b = eng ? sq_batcher_new(sq_engine_model(eng), MPI_COMM_WORLD, o.max_batch,
                                           o.prefill_budget)
                          : NULL;
    s_load_watch_stop(&watch);
    int rc = b ? 0 : sq_error_code() ? sq_error_code() : SQ_EINVAL;
    if (rc == 0 && rank == 0) {
        rc = sq_batcher_set_sampling_threads(b, s_sampling_threads(&o, eng));
        sq_batcher_set_prefix_reuse(b, !o.no_prefix);
    }
    if (rc)
        SQ_ERROR("cannot load the model", "rank=%d error=\"%s\" detail=\"%s\"", rank,
                 sq_strerror(rc), sq_error_detail());
    else if (rank == 0) {
        rc = s_run_rank0(&o, eng, b, size);
        int src = sq_batcher_stop_followers(b);
        if (rc == 0)
            rc = src;
    } else {
        rc = sq_batcher_follow(b);
        if (rc)
            SQ_ERROR("follower failed", "rank=%d error=\"%s\" detail=\"%s\"", rank,
                     sq_strerror(rc), sq_error_detail());
    }
    sq_batcher_destroy(&b);
    char *profile = sq_engine_profile(eng);   /* SHARDQ_PROFILE=1: the table, at the end */
    if (profile)
        fprintf(stderr, "rank %d device profile:\n%s", rank, profile);
    free(profile);
    sq_engine_destroy(&eng);
    sq_tp_comm_destroy(&comm);
    /* one failing rank must not leave the others blocked in a collective */
    if (rc && size > 1)
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
    return rc ? 1 : 0;
}

/*  shardq: the command-line client of shardq-broker (docs/cli.md).
 *
 *  One table of subcommands (s_cmds) maps a name to its handler and its
 *  usage line, so later subcommands (lora, scaling, audit) are one row and
 *  one function. Each handler parses its own options with s_parse() from a
 *  small option table, talks to the broker through libshardq only, and
 *  returns an exit code from the documented set (SQ_EXIT_*). Errors are
 *  printed once, here, as "shardq: <detail>".
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_client.h"
#include "sq_error.h"
#include "sq_jsonl.h"
#include "sq_version.h"

#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Exit codes (docs/cli.md). Stable: scripts depend on them. */
enum {
    SQ_EXIT_OK = 0,
    SQ_EXIT_JOB_FAILED = 1,   /* job failed, cancelled, or results partial */
    SQ_EXIT_USAGE = 2,        /* bad command line */
    SQ_EXIT_INVALID = 3,      /* invalid input: job file, or refused by the broker */
    SQ_EXIT_UNREACHABLE = 4,  /* broker unreachable, no reply, or unavailable */
    SQ_EXIT_NOTFOUND = 5,     /* no such job */
    SQ_EXIT_WAIT_TIMEOUT = 6, /* wait --timeout passed before the job finished */
    SQ_EXIT_ERROR = 7         /* anything else (I/O, protocol) */
};

/* ------------------------------------------------------- option parsing */

typedef struct {
    const char *name;      /* "--model" */
    const char *alias;     /* "-o" or NULL */
    const char **value;    /* option with a value, or NULL */
    bool *flag;            /* flag, or NULL */
} s_opt_t;

static const char *g_broker; /* --broker, shared by every subcommand */
static bool g_help;

/* Parse argv[1..] against opts (plus --broker and --help), collecting up to
 * max_pos positionals. Returns 0 or SQ_EXIT_USAGE (message printed). */
static int
s_parse(const char *cmd, int argc, char **argv, const s_opt_t *opts, const char **pos,
        int max_pos, int *n_pos)
{
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t name_len = a[0] == '-' && a[1] == '-' && eq ? (size_t)(eq - a) : strlen(a);
        const s_opt_t *o = NULL;
        static const s_opt_t common[] = {{"--broker", NULL, &g_broker, NULL},
                                         {"--help", "-h", NULL, &g_help}};
        for (int k = 0; opts && opts[k].name && !o; k++)
            if ((strlen(opts[k].name) == name_len && !strncmp(a, opts[k].name, name_len)) ||
                (opts[k].alias && !strcmp(a, opts[k].alias)))
                o = &opts[k];
        for (int k = 0; k < 2 && !o; k++)
            if ((strlen(common[k].name) == name_len && !strncmp(a, common[k].name, name_len)) ||
                (common[k].alias && !strcmp(a, common[k].alias)))
                o = &common[k];
        if (!o && a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "shardq %s: unknown option %s (see shardq %s --help)\n", cmd, a, cmd);
            return SQ_EXIT_USAGE;
        }
        if (!o) {
            if (*n_pos == max_pos) {
                fprintf(stderr, "shardq %s: unexpected argument \"%s\"\n", cmd, a);
                return SQ_EXIT_USAGE;
            }
            pos[(*n_pos)++] = a;
        } else if (o->flag) {
            *o->flag = true;
        } else if (eq && a[1] == '-') {
            *o->value = eq + 1;
        } else if (i + 1 < argc) {
            *o->value = argv[++i];
        } else {
            fprintf(stderr, "shardq %s: option %s needs a value\n", cmd, o->name);
            return SQ_EXIT_USAGE;
        }
    }
    return 0;
}

/* A non-negative integer argument in [lo, hi]; SQ_EXIT_USAGE otherwise. */
static int
s_parse_uint(const char *cmd, const char *what, const char *s, uint64_t lo, uint64_t hi,
             uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = s && *s && *s != '-' ? strtoull(s, &end, 10) : 0;
    if (!s || !*s || *s == '-' || errno || *end || v < lo || v > hi) {
        fprintf(stderr, "shardq %s: %s must be an integer in %llu..%llu, not \"%s\"\n", cmd,
                what, (unsigned long long)lo, (unsigned long long)hi, s ? s : "");
        return SQ_EXIT_USAGE;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------ reporting */

static int
s_exit_code(int rc)
{
    switch (rc) {
    case SQ_EINVAL: case SQ_ETOOBIG: case SQ_EFORMAT: case SQ_ETRUNC: case -ENOENT:
    case -EACCES: case -EISDIR:
        return SQ_EXIT_INVALID;
    case -ECONNREFUSED: case SQ_ETIMEDOUT: case SQ_EAGAIN:
        return SQ_EXIT_UNREACHABLE;
    case SQ_ENOTFOUND:
        return SQ_EXIT_NOTFOUND;
    default:
        return SQ_EXIT_ERROR;
    }
}

/* Print the failure once and map it to an exit code. */
static int
s_fail(int rc)
{
    const char *d = sq_error_detail();
    fprintf(stderr, "shardq: %s\n", d && *d ? d : sq_strerror(rc));
    return s_exit_code(rc);
}

static sq_client_t *
s_client(void)
{
    sq_client_t *c = sq_client_new(g_broker, NULL);
    if (!c)
        s_fail(sq_error_code() ? sq_error_code() : SQ_EINVAL);
    return c;
}

static double
s_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
s_iso_time(uint64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *
s_job_json(const sq_client_job_t *j)
{
    const sq_client_counts_t *c = &j->counts;
    return json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I}}", "job_id",
                     (json_int_t)j->job_id, "state", j->state, "tenant", j->tenant, "model",
                     j->model, "priority", (json_int_t)j->priority, "n_tasks",
                     (json_int_t)j->n_tasks, "created_at_ms", (json_int_t)j->created_at_ms,
                     "counts", "queued",
                     (json_int_t)c->queued, "leased", (json_int_t)c->leased, "retrying",
                     (json_int_t)c->retrying, "succeeded", (json_int_t)c->succeeded, "dead",
                     (json_int_t)c->dead, "cancelled", (json_int_t)c->cancelled);
}

static void
s_print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(j);
}

/* ------------------------------------------------------------------ wait */

/* One progress line: a bar on a terminal (rewritten in place), plain
 * lines otherwise (at most one per second, and each time counts change). */
static void
s_progress(const sq_client_job_t *j, double rate, bool tty, bool final)
{
    const sq_client_counts_t *c = &j->counts;
    uint64_t done = sq_client_counts_terminal(c);
    double frac = j->n_tasks ? (double)done / (double)j->n_tasks : 1.0;
    char eta[32] = "";
    if (!final && rate > 0 && done < j->n_tasks)
        snprintf(eta, sizeof eta, " ETA %.0fs", (double)(j->n_tasks - done) / rate);
    if (tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[30] = '\0';
        printf("\r[%s] %3.0f%% %llu/%llu ok %llu dead %llu cancelled %llu | %.1f tasks/s%s\033[K",
               bar, frac * 100, (unsigned long long)done, (unsigned long long)j->n_tasks,
               (unsigned long long)c->succeeded, (unsigned long long)c->dead,
               (unsigned long long)c->cancelled, rate, eta);
        if (final)
            printf("\n");
    } else {
        printf("job %llu: %s %llu/%llu done (succeeded %llu, dead %llu, cancelled %llu, "
               "leased %llu, queued %llu) %.1f tasks/s%s\n",
               (unsigned long long)j->job_id, j->state, (unsigned long long)done,
               (unsigned long long)j->n_tasks, (unsigned long long)c->succeeded,
               (unsigned long long)c->dead, (unsigned long long)c->cancelled,
               (unsigned long long)c->leased,
               (unsigned long long)(c->queued + c->retrying), rate, eta);
    }
    fflush(stdout);
}

/* Poll STATUS until the job is terminal or timeout_s (<= 0: none) passes.
 * Returns an exit code; *final receives the last status. */
static int
s_wait(sq_client_t *c, uint64_t job_id, double timeout_s, sq_client_job_t *final)
{
    bool tty = isatty(STDOUT_FILENO);
    double start = s_now_s(), last_print = 0;
    uint64_t first_done = 0, last_done = UINT64_MAX;
    for (int polls = 0;; polls++) {
        int rc = sq_client_status(c, job_id, final);
        if (rc)
            return s_fail(rc);
        uint64_t done = sq_client_counts_terminal(&final->counts);
        double now = s_now_s(), elapsed = now - start;
        if (polls == 0)
            first_done = done;
        double rate = elapsed > 0.2 ? (double)(done - first_done) / elapsed : 0;
        bool terminal = sq_client_state_terminal(final->state);
        bool timed_out = timeout_s > 0 && elapsed >= timeout_s;
        if (tty || terminal || timed_out || (done != last_done && now - last_print >= 1.0) ||
            now - last_print >= 10.0) {
            s_progress(final, rate, tty, terminal || timed_out);
            last_print = now;
            last_done = done;
        }
        if (terminal)
            return strcmp(final->state, "succeeded") == 0 ? SQ_EXIT_OK : SQ_EXIT_JOB_FAILED;
        if (timed_out) {
            fprintf(stderr, "shardq: job %llu still %s after %.0f s\n",
                    (unsigned long long)job_id, final->state, timeout_s);
            return SQ_EXIT_WAIT_TIMEOUT;
        }
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* --------------------------------------------------------------- results */

static sq_jsonl_outcome_t
s_outcome(const char *state)
{
    if (strcmp(state, "succeeded") == 0)
        return SQ_JSONL_RESULT_OK;
    if (strcmp(state, "cancelled") == 0)
        return SQ_JSONL_RESULT_CANCELLED;
    return SQ_JSONL_RESULT_FAILED;
}

/* Page through the job's results into f as OpenAI-Batch lines. Counts of
 * what was written go to *n_ok and *n_bad. */
static int
s_write_results(sq_client_t *c, const sq_client_job_t *job, FILE *f, uint64_t *n_ok,
                uint64_t *n_bad)
{
    char job_str[32];
    snprintf(job_str, sizeof job_str, "%llu", (unsigned long long)job->job_id);
    sq_client_results_t *it = sq_client_results_new(c, job->job_id, 10000);
    if (!it)
        return SQ_ENOMEM;
    const sq_client_result_t *r;
    int rc;
    while ((rc = sq_client_results_next(it, &r)) == 1) {
        sq_jsonl_result_t out = {
            .job_id = job_str, .task_id = r->index, .custom_id = r->custom_id,
            .custom_id_len = r->custom_id_len, .kind = job->kind,
            .outcome = s_outcome(r->state), .text = r->text, .text_len = r->text_len,
            .model = job->model, .finish_reason = r->finish_reason[0] ? r->finish_reason : NULL,
            .prompt_tokens = r->prompt_tokens, .completion_tokens = r->completion_tokens,
            .created_s = (int64_t)(job->created_at_ms / 1000), .error = r->error,
            .error_len = r->error_len};
        char *line = NULL;
        size_t len = 0;
        if ((rc = sq_jsonl_format_result(&out, &line, &len)))
            break;
        bool ok = fwrite(line, 1, len, f) == len && fputc('\n', f) != EOF;
        free(line);
        if (!ok) {
            rc = SQ_FAIL(-errno, "cannot write results: %s", strerror(errno));
            break;
        }
        ++*(out.outcome == SQ_JSONL_RESULT_OK ? n_ok : n_bad);
    }
    if (rc == 0 && !sq_client_results_done(it))
        rc = 1; /* the job has unfinished tasks */
    sq_client_results_destroy(&it);
    return rc;
}

/* Write the results of a job to path (or stdout when NULL). A file is
 * written beside its final name and renamed, so it is never half there.
 * kind < 0: the result shape comes from the job's params as STATUS
 * reports them; the submitter, which read the file, passes it. */
static int
s_results_to(sq_client_t *c, uint64_t job_id, const char *path, int kind)
{
    sq_client_job_t job;
    int rc = sq_client_status(c, job_id, &job);
    if (rc)
        return s_fail(rc);
    if (kind >= 0)
        job.kind = (sq_jsonl_kind_t)kind;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path ? path : "", (long)getpid());
    FILE *f = path ? fopen(tmp, "w") : stdout;
    if (!f) {
        fprintf(stderr, "shardq: %s: %s\n", tmp, strerror(errno));
        return SQ_EXIT_ERROR;
    }
    uint64_t n_ok = 0, n_bad = 0;
    rc = s_write_results(c, &job, f, &n_ok, &n_bad);
    int closed = path ? fclose(f) : fflush(f);
    if (rc < 0 || closed != 0) {
        if (path)
            unlink(tmp);
        return rc < 0 ? s_fail(rc) : (perror("shardq: results"), SQ_EXIT_ERROR);
    }
    if (path && rename(tmp, path) != 0) {
        fprintf(stderr, "shardq: %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return SQ_EXIT_ERROR;
    }
    fprintf(stderr, "job %llu: wrote %llu results (%llu succeeded, %llu failed or cancelled)%s%s\n",
            (unsigned long long)job_id, (unsigned long long)(n_ok + n_bad),
            (unsigned long long)n_ok, (unsigned long long)n_bad, path ? " to " : "",
            path ? path : "");
    if (rc == 1)
        fprintf(stderr, "shardq: job %llu is still %s: %llu of %llu tasks have no result yet "
                "(run `shardq wait %llu` first)\n", (unsigned long long)job_id, job.state,
                (unsigned long long)(job.n_tasks - n_ok - n_bad),
                (unsigned long long)job.n_tasks, (unsigned long long)job_id);
    return rc == 1 || n_bad ? SQ_EXIT_JOB_FAILED : SQ_EXIT_OK;
}

/* ----------------------------------------------------------- subcommands */

typedef struct s_cmd s_cmd_t;
struct s_cmd {
    const char *name;
    int (*fn)(const s_cmd_t *cmd, int argc, char **argv);
    const char *args;     /* usage after the name */
    const char *summary;
    const char *details;  /* option help, may be "" */
};

static void
s_cmd_help(const s_cmd_t *cmd)
{
    printf("usage: shardq %s %s\n\n%s\n%s", cmd->name, cmd->args, cmd->summary, cmd->details);
    printf("  --broker URL        broker endpoint (else $SHARDQ_BROKER, else %s)\n",
           SQ_CLIENT_DEFAULT_BROKER);
}

/* Parse the command line of cmd; *done is set when --help was answered. */
static int
s_cmd_parse(const s_cmd_t *cmd, int argc, char **argv, const s_opt_t *opts, const char **pos,
            int n_want, int n_min, bool *done)
{
    int n_pos = 0;
    int rc = s_parse(cmd->name, argc, argv, opts, pos, n_want, &n_pos);
    *done = rc == 0 && g_help;
    if (*done)
        s_cmd_help(cmd);
    else if (rc == 0 && n_pos < n_min) {
        fprintf(stderr, "usage: shardq %s %s\n", cmd->name, cmd->args);
        rc = SQ_EXIT_USAGE;
    }
    return rc;
}

/* The tenant a submission is charged to: flag, $SHARDQ_TENANT, $USER. */
static const char *
s_tenant(const char *flag)
{
    const char *t = flag && *flag ? flag : getenv("SHARDQ_TENANT");
    if (!t || !*t)
        t = getenv("USER");
    return t && *t ? t : "default";
}

static int
s_cmd_submit(const s_cmd_t *cmd, int argc, char **argv)
{
    const char *model = NULL, *prio = NULL, *tenant = NULL, *attempts = NULL, *out = NULL,
               *timeout = NULL, *pos[1];
    bool wait = false, done;
    s_opt_t opts[] = {
        {"--model", NULL, &model, NULL},     {"--priority", NULL, &prio, NULL},
        {"--tenant", NULL, &tenant, NULL},   {"--max-attempts", NULL, &attempts, NULL},
        {"--wait", NULL, NULL, &wait},       {"--output", "-o", &out, NULL},
        {"--timeout", NULL, &timeout, NULL}, {NULL, NULL, NULL, NULL}};
    uint64_t priority = UINT64_MAX, max_attempts = 0, timeout_s = 0;
    int rc = s_cmd_parse(cmd, argc, argv, opts, pos, 1, 1, &done);
    if (rc || done)
        return rc;
    if ((prio && (rc = s_parse_uint("submit", "--priority", prio, 0, 1000, &priority))) ||
        (attempts &&
         (rc = s_parse_uint("submit", "--max-attempts", attempts, 1, 100, &max_attempts))) ||
        (timeout && (rc = s_parse_uint("submit", "--timeout", timeout, 1, 86400 * 365,
                                       &timeout_s))))
        return rc;
    if ((out || timeout) && !wait) {
        fprintf(stderr, "shardq submit: -o and --timeout need --wait\n");
        return SQ_EXIT_USAGE;
    }
    /* the whole file is validated before the broker hears of it */
    sq_jsonl_limits_t lim;
    sq_client_job_limits(&lim);
    sq_jsonl_t *file = NULL;
    if ((rc = sq_jsonl_load(pos[0], &lim, &file)))
        return s_fail(rc);
    /* a copy: the file (which may own the name) is freed once sent */
    char model_buf[SQ_CLIENT_NAME_BYTES * 2];
    if (!model)
        model = sq_jsonl_model(file) ? sq_jsonl_model(file) : getenv("SHARDQ_MODEL");
    if (!model || !*model) {
        fprintf(stderr, "shardq: %s names no model: give --model M (or set SHARDQ_MODEL)\n",
                pos[0]);
        sq_jsonl_destroy(&file);
        return SQ_EXIT_INVALID;
    }
    snprintf(model_buf, sizeof model_buf, "%s", model);
    model = model_buf;
    char params[64];
    snprintf(params, sizeof params, "{\"kind\":\"%s\"}", sq_jsonl_kind_name(sq_jsonl_kind(file)));
    sq_client_job_spec_t spec = {.tenant = s_tenant(tenant), .model = model,
                                 .priority = priority == UINT64_MAX ? -1 : (int)priority,
                                 .max_attempts = (int)max_attempts, .params_json = params};
    sq_client_t *c = s_client();
    if (!c) {
        sq_jsonl_destroy(&file);
        return s_exit_code(sq_error_code());
    }
    uint64_t job_id = 0;
    size_t n_tasks = sq_jsonl_size(file);
    sq_jsonl_kind_t kind = sq_jsonl_kind(file);
    rc = sq_client_submit(c, &spec, sq_jsonl_tasks(file), n_tasks, &job_id);
    sq_jsonl_destroy(&file);
    if (rc) {
        sq_client_destroy(&c);
        return s_fail(rc);
    }
    printf("%llu\n", (unsigned long long)job_id);
    fflush(stdout);
    fprintf(stderr, "job %llu accepted: %zu tasks, model %s, tenant %s\n",
            (unsigned long long)job_id, n_tasks, model, spec.tenant);
    if (wait) {
        sq_client_job_t final;
        rc = s_wait(c, job_id, (double)timeout_s, &final);
        if (out && (rc == SQ_EXIT_OK || rc == SQ_EXIT_JOB_FAILED)) {
            int wrc = s_results_to(c, job_id, out, (int)kind);
            rc = rc == SQ_EXIT_OK ? wrc : rc;
        }
    }
    sq_client_destroy(&c);
    return rc;
}

/* Handlers of one job id: status, wait, results, cancel. */
static int
s_job_arg(const s_cmd_t *cmd, int argc, char **argv, const s_opt_t *opts, uint64_t *job_id,
          bool *done)
{
    const char *pos[1];
    int rc = s_cmd_parse(cmd, argc, argv, opts, pos, 1, 1, done);
    if (rc || *done)
        return rc;
    return s_parse_uint(cmd->name, "JOB", pos[0], 1, UINT64_MAX, job_id);
}

static int
s_cmd_status(const s_cmd_t *cmd, int argc, char **argv)
{
    bool json = false, done;
    s_opt_t opts[] = {{"--json", NULL, NULL, &json}, {NULL, NULL, NULL, NULL}};
    uint64_t job_id;
    int rc = s_job_arg(cmd, argc, argv, opts, &job_id, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = s_client();
    if (!c)
        return s_exit_code(sq_error_code());
    sq_client_job_t j;
    rc = sq_client_status(c, job_id, &j);
    sq_client_destroy(&c);
    if (rc)
        return s_fail(rc);
    if (json) {
        s_print_json(s_job_json(&j));
        return SQ_EXIT_OK;
    }
    char created[32];
    s_iso_time(j.created_at_ms, created, sizeof created);
    const sq_client_counts_t *k = &j.counts;
    printf("job %llu: %s\n  tenant %s, model %s, priority %llu, created %s\n"
           "  tasks %llu: queued %llu, leased %llu, retrying %llu, succeeded %llu, dead %llu, "
           "cancelled %llu\n",
           (unsigned long long)j.job_id, j.state, j.tenant, j.model,
           (unsigned long long)j.priority, created, (unsigned long long)j.n_tasks,
           (unsigned long long)k->queued, (unsigned long long)k->leased,
           (unsigned long long)k->retrying, (unsigned long long)k->succeeded,
           (unsigned long long)k->dead, (unsigned long long)k->cancelled);
    return SQ_EXIT_OK;
}

static int
s_cmd_wait(const s_cmd_t *cmd, int argc, char **argv)
{
    const char *timeout = NULL;
    bool done;
    s_opt_t opts[] = {{"--timeout", NULL, &timeout, NULL}, {NULL, NULL, NULL, NULL}};
    uint64_t job_id, timeout_s = 0;
    int rc = s_job_arg(cmd, argc, argv, opts, &job_id, &done);
    if (rc || done ||
        (timeout && (rc = s_parse_uint("wait", "--timeout", timeout, 1, 86400 * 365, &timeout_s))))
        return rc;
    sq_client_t *c = s_client();
    if (!c)
        return s_exit_code(sq_error_code());
    sq_client_job_t final;
    rc = s_wait(c, job_id, (double)timeout_s, &final);
    sq_client_destroy(&c);
    return rc;
}

static int
s_cmd_results(const s_cmd_t *cmd, int argc, char **argv)
{
    const char *out = NULL;
    bool done;
    s_opt_t opts[] = {{"--output", "-o", &out, NULL}, {NULL, NULL, NULL, NULL}};
    uint64_t job_id;
    int rc = s_job_arg(cmd, argc, argv, opts, &job_id, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = s_client();
    if (!c)
        return s_exit_code(sq_error_code());
    rc = s_results_to(c, job_id, out && strcmp(out, "-") ? out : NULL, -1);
    sq_client_destroy(&c);
    return rc;
}

static int
s_cmd_cancel(const s_cmd_t *cmd, int argc, char **argv)
{
    bool done;
    uint64_t job_id, n = 0;
    int rc = s_job_arg(cmd, argc, argv, NULL, &job_id, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = s_client();
    if (!c)
        return s_exit_code(sq_error_code());
    char state[SQ_CLIENT_STATE_BYTES];
    rc = sq_client_cancel(c, job_id, &n, state);
    sq_client_destroy(&c);
    if (rc)
        return s_fail(rc);
    printf("job %llu: cancelled %llu tasks; job is %s\n", (unsigned long long)job_id,
           (unsigned long long)n, state);
    return SQ_EXIT_OK;
}

static int
s_cmd_jobs(const s_cmd_t *cmd, int argc, char **argv)
{
    const char *state = NULL, *tenant = NULL, *limit_s = NULL;
    bool json = false, done;
    s_opt_t opts[] = {{"--state", NULL, &state, NULL}, {"--tenant", NULL, &tenant, NULL},
                      {"--limit", NULL, &limit_s, NULL}, {"--json", NULL, NULL, &json},
                      {NULL, NULL, NULL, NULL}};
    uint64_t limit = 50;
    int rc = s_cmd_parse(cmd, argc, argv, opts, NULL, 0, 0, &done);
    if (rc || done ||
        (limit_s && (rc = s_parse_uint("jobs", "--limit", limit_s, 1, 10000, &limit))))
        return rc;
    sq_client_t *c = s_client();
    if (!c)
        return s_exit_code(sq_error_code());
    sq_client_job_t *jobs = NULL;
    size_t n = 0;
    uint64_t next = 0;
    rc = sq_client_list(c, state, tenant, 0, (uint32_t)limit, &jobs, &n, &next);
    sq_client_destroy(&c);
    if (rc)
        return s_fail(rc);
    json_t *arr = json ? json_array() : NULL;
    if (!json)
        printf("%-10s %-10s %8s %-16s %-24s %5s %s\n", "JOB", "STATE", "TASKS", "TENANT", "MODEL",
               "PRIO", "CREATED");
    for (size_t i = 0; i < n; i++) {
        char created[32];
        s_iso_time(jobs[i].created_at_ms, created, sizeof created);
        if (json)
            json_array_append_new(arr, s_job_json(&jobs[i]));
        else
            printf("%-10llu %-10s %8llu %-16s %-24s %5llu %s\n",
                   (unsigned long long)jobs[i].job_id, jobs[i].state,
                   (unsigned long long)jobs[i].n_tasks, jobs[i].tenant, jobs[i].model,
                   (unsigned long long)jobs[i].priority, created);
    }
    if (json)
        s_print_json(arr);
    else if (next)
        fprintf(stderr, "(more jobs: raise --limit)\n");
    free(jobs);
    return SQ_EXIT_OK;
}

static int
s_cmd_workers(const s_cmd_t *cmd, int argc, char **argv)
{
    bool json = false, done;
    s_opt_t opts[] = {{"--json", NULL, NULL, &json}, {NULL, NULL, NULL, NULL}};
    int rc = s_cmd_parse(cmd, argc, argv, opts, NULL, 0, 0, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = s_client();
    if (!c)
        return s_exit_code(sq_error_code());
    sq_client_worker_t *w = NULL;
    size_t n = 0;
    rc = sq_client_workers(c, &w, &n);
    sq_client_destroy(&c);
    if (rc)
        return s_fail(rc);
    json_t *arr = json ? json_array() : NULL;
    if (!json)
        printf("%-24s %-20s %-8s %3s %6s %6s %-9s %9s %9s\n", "GROUP", "MODEL", "DEVICE", "TP",
               "BATCH", "LEASES", "STATE", "SEEN_MS", "COMPLETED");
    for (size_t i = 0; i < n; i++) {
        if (json)
            json_array_append_new(
                arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "group_id", w[i].group_id,
                               "model", w[i].model, "device", w[i].device, "state", w[i].state,
                               "tp_size", (json_int_t)w[i].tp_size, "max_batch",
                               (json_int_t)w[i].max_batch, "leases", (json_int_t)w[i].leases,
                               "last_seen_ms_ago", (json_int_t)w[i].last_seen_ms_ago,
                               "completed", (json_int_t)w[i].completed));
        else
            printf("%-24s %-20s %-8s %3llu %6llu %6llu %-9s %9llu %9llu\n", w[i].group_id,
                   w[i].model, w[i].device, (unsigned long long)w[i].tp_size,
                   (unsigned long long)w[i].max_batch, (unsigned long long)w[i].leases,
                   w[i].state, (unsigned long long)w[i].last_seen_ms_ago,
                   (unsigned long long)w[i].completed);
    }
    if (json)
        s_print_json(arr);
    free(w);
    return SQ_EXIT_OK;
}

static int
s_cmd_stats(const s_cmd_t *cmd, int argc, char **argv)
{
    bool done;
    int rc = s_cmd_parse(cmd, argc, argv, NULL, NULL, 0, 0, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = s_client();
    if (!c)
        return s_exit_code(sq_error_code());
    sq_client_stats_t st;
    rc = sq_client_stats(c, &st);
    sq_client_destroy(&c);
    if (rc)
        return s_fail(rc);
    printf("%-24s %8s %8s %8s %10s %5s %5s %8s %10s\n", "POOL", "QUEUED", "RETRYING", "LEASED",
           "OLDEST_MS", "BUSY", "IDLE", "DRAINING", "TASKS/S");
    for (size_t i = 0; i < st.n_pools; i++) {
        const sq_client_pool_t *p = &st.pools[i];
        printf("%-24s %8llu %8llu %8llu %10llu %5llu %5llu %8llu %10.1f\n", p->model,
               (unsigned long long)p->queued, (unsigned long long)p->retrying,
               (unsigned long long)p->leased, (unsigned long long)p->oldest_queued_age_ms,
               (unsigned long long)p->busy, (unsigned long long)p->idle,
               (unsigned long long)p->draining, p->throughput_per_s);
    }
    printf("\n%-24s %8s %8s\n", "TENANT", "QUEUED", "LEASED");
    for (size_t i = 0; i < st.n_tenants; i++)
        printf("%-24s %8llu %8llu\n", st.tenants[i].tenant,
               (unsigned long long)st.tenants[i].queued, (unsigned long long)st.tenants[i].leased);
    sq_client_stats_clear(&st);
    return SQ_EXIT_OK;
}

/* The subcommands. A new one (lora, scaling, audit) is a row here. */
static const s_cmd_t s_cmds[] = {
    {"submit", s_cmd_submit,
     "FILE.jsonl [--model M] [--priority N] [--tenant T] [--max-attempts N] [--wait "
     "[--timeout S] [-o FILE]]",
     "Validate a JSONL job file whole, then submit it as one job; prints the job id.\n",
     "  --model M           model to run (else the file's, else $SHARDQ_MODEL)\n"
     "  --priority N        0..1000, higher first (broker default 0)\n"
     "  --tenant T          tenant charged (else $SHARDQ_TENANT, else $USER)\n"
     "  --max-attempts N    1..100 attempts before a task is dead (broker default 3)\n"
     "  --wait              then wait for the job like `shardq wait`\n"
     "  --timeout S         with --wait: give up waiting after S seconds (exit 6)\n"
     "  -o, --output FILE   with --wait: then write the results like `shardq results`\n"},
    {"status", s_cmd_status, "JOB [--json]", "Show a job's state and task counts.\n",
     "  --json              print one JSON object\n"},
    {"wait", s_cmd_wait, "JOB [--timeout S]",
     "Wait until a job finishes: a progress bar on a terminal, plain lines otherwise.\n"
     "Exit 0 when every task succeeded, 1 when the job failed or was cancelled.\n",
     "  --timeout S         give up after S seconds (exit 6)\n"},
    {"results", s_cmd_results, "JOB [-o FILE]",
     "Write a job's results as OpenAI-Batch output JSONL, one line per custom_id,\n"
     "failed and cancelled tasks included (with \"error\").\n",
     "  -o, --output FILE   write to FILE (atomically) instead of stdout\n"},
    {"cancel", s_cmd_cancel, "JOB", "Cancel a job's queued and running tasks.\n", ""},
    {"jobs", s_cmd_jobs, "[--state S] [--tenant T] [--limit N] [--json]",
     "List jobs, newest first.\n",
     "  --state S           queued | running | succeeded | failed | cancelled\n"
     "  --tenant T          only this tenant's jobs\n"
     "  --limit N           at most N jobs (default 50)\n"
     "  --json              print a JSON array\n"},
    {"workers", s_cmd_workers, "[--json]", "List the worker groups the broker knows.\n",
     "  --json              print a JSON array\n"},
    {"stats", s_cmd_stats, "", "Show queue depth and throughput per model pool and tenant.\n", ""},
};
#define S_N_CMDS (sizeof s_cmds / sizeof s_cmds[0])

static void
s_usage(FILE *f)
{
    fprintf(f, "usage: shardq [--broker URL] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < S_N_CMDS; i++)
        fprintf(f, "  shardq %s %s\n", s_cmds[i].name, s_cmds[i].args);
    fprintf(f, "\n`shardq COMMAND --help` explains a command; docs/cli.md has everything.\n"
               "exit codes: 0 ok, 1 job failed/cancelled/partial, 2 usage, 3 invalid input,\n"
               "            4 broker unreachable/timeout, 5 no such job, 6 wait timed out,\n"
               "            7 other error\n");
}

int
main(int argc, char **argv)
{
    zsys_handler_set(NULL); /* Ctrl-C ends the CLI at once */
    int i = 1;
    /* global options before the command */
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "--version")) {
            printf("shardq %s\n", SQ_VERSION);
            return SQ_EXIT_OK;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            s_usage(stdout);
            return SQ_EXIT_OK;
        }
        if (!strncmp(argv[i], "--broker=", 9))
            g_broker = argv[i] + 9;
        else if (!strcmp(argv[i], "--broker") && i + 1 < argc)
            g_broker = argv[++i];
        else {
            fprintf(stderr, "shardq: unknown option %s\n", argv[i]);
            s_usage(stderr);
            return SQ_EXIT_USAGE;
        }
        i++;
    }
    if (i >= argc) {
        s_usage(stderr);
        return SQ_EXIT_USAGE;
    }
    for (size_t k = 0; k < S_N_CMDS; k++)
        if (!strcmp(argv[i], s_cmds[k].name))
            return s_cmds[k].fn(&s_cmds[k], argc - i, argv + i);
    fprintf(stderr, "shardq: unknown command \"%s\"\n", argv[i]);
    s_usage(stderr);
    return SQ_EXIT_USAGE;
}

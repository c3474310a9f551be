/*  shardq_job: the commands on one job — submit (validate the whole file,
 *  then one SUBMIT), status, wait (progress bar or plain lines, surviving a
 *  broker restart), results (OpenAI-Batch JSONL, written atomically) and
 *  cancel.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include "shardq_cli.h"
#include "sq_error.h"
#include "sq_jsonl.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ wait */

/* One progress line: a bar on a terminal (rewritten in place), plain
 * lines otherwise (at most one per second, and each time counts change). */
static void
s_progress(FILE *out, const sq_client_job_t *j, double rate, bool tty, bool final)
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
        fprintf(out, "\r[%s] %3.0f%% %llu/%llu ok %llu dead %llu cancelled %llu | %.1f tasks/s%s"
                "\033[K",
               bar, frac * 100, (unsigned long long)done, (unsigned long long)j->n_tasks,
               (unsigned long long)c->succeeded, (unsigned long long)c->dead,
               (unsigned long long)c->cancelled, rate, eta);
        if (final)
            fputc('\n', out);
    } else {
        fprintf(out, "job %llu: %s %llu/%llu done (succeeded %llu, dead %llu, cancelled %llu, "
                "leased %llu, queued %llu) %.1f tasks/s%s\n",
               (unsigned long long)j->job_id, j->state, (unsigned long long)done,
               (unsigned long long)j->n_tasks, (unsigned long long)c->succeeded,
               (unsigned long long)c->dead, (unsigned long long)c->cancelled,
               (unsigned long long)c->leased,
               (unsigned long long)(c->queued + c->retrying), rate, eta);
    }
    fflush(out);
}

/* How long `wait` keeps polling a broker that does not answer. Jobs
 * survive a broker restart, so a waiting user should too. */
#define S_WAIT_OUTAGE_S 60.0

/* STATUS for wait: unreachable, silent or unavailable brokers are polled
 * again until the outage has lasted S_WAIT_OUTAGE_S or the deadline
 * (> 0) passed; then that error is returned. */
static int
s_wait_status(sq_client_t *c, uint64_t job_id, double deadline, sq_client_job_t *out)
{
    double outage_start = 0;
    for (;;) {
        int rc = sq_client_status(c, job_id, out);
        if (rc != -ECONNREFUSED && rc != SQ_ETIMEDOUT && rc != SQ_EAGAIN)
            return rc;
        double now = sq_cli_now_s();
        if (outage_start == 0) {
            outage_start = now;
            fprintf(stderr, "shardq: %s; still waiting (up to %.0f s)\n", sq_error_detail(),
                    S_WAIT_OUTAGE_S);
        }
        if (now - outage_start >= S_WAIT_OUTAGE_S || (deadline > 0 && now >= deadline))
            return rc;
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Poll STATUS until the job is terminal or timeout_s (<= 0: none) passes,
 * showing progress on out. Returns an exit code; *final receives the last
 * status. */
static int
s_wait(sq_client_t *c, uint64_t job_id, double timeout_s, sq_client_job_t *final, FILE *out)
{
    bool tty = isatty(fileno(out));
    double start = sq_cli_now_s(), last_print = 0;
    uint64_t first_done = 0, last_done = UINT64_MAX;
    for (int polls = 0;; polls++) {
        int rc = s_wait_status(c, job_id, timeout_s > 0 ? start + timeout_s : 0, final);
        if (rc)
            return sq_cli_fail(rc);
        uint64_t done = sq_client_counts_terminal(&final->counts);
        double now = sq_cli_now_s(), elapsed = now - start;
        if (polls == 0)
            first_done = done;
        double rate = elapsed > 0.2 ? (double)(done - first_done) / elapsed : 0;
        bool terminal = sq_client_state_terminal(final->state);
        bool timed_out = timeout_s > 0 && elapsed >= timeout_s;
        if (tty || terminal || timed_out || (done != last_done && now - last_print >= 1.0) ||
            now - last_print >= 10.0) {
            s_progress(out, final, rate, tty, terminal || timed_out);
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

/* What s_write_results wrote: results that succeeded and the others, and
 * the succeeded ones' tokens as the workers reported them */
typedef struct {
    uint64_t ok, bad;
    uint64_t prompt, cached, completion;
} s_written_t;

/* Page through the job's results into f as OpenAI-Batch lines, those that
 * did not succeed into ferr instead when it is not NULL (OpenAI's error
 * file), counting them into *w. */
static int
s_write_results(sq_client_t *c, const sq_client_job_t *job, FILE *f, FILE *ferr,
                s_written_t *w)
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
            .cached_tokens = r->cached_tokens,
            .created_s = (r->finished_at_ms ? r->finished_at_ms : (int64_t)job->created_at_ms) /
                         1000,
            .error = r->error,
            .error_len = r->error_len};
        char *line = NULL;
        size_t len = 0;
        if ((rc = sq_jsonl_format_result(&out, &line, &len)))
            break;
        FILE *to = out.outcome != SQ_JSONL_RESULT_OK && ferr ? ferr : f;
        bool ok = fwrite(line, 1, len, to) == len && fputc('\n', to) != EOF;
        free(line);
        if (!ok) {
            rc = SQ_FAIL(-errno, "cannot write results: %s", strerror(errno));
            break;
        }
        ++*(out.outcome == SQ_JSONL_RESULT_OK ? &w->ok : &w->bad);
        if (out.outcome == SQ_JSONL_RESULT_OK) {
            w->prompt += r->prompt_tokens > 0 ? (uint64_t)r->prompt_tokens : 0;
            w->cached += r->cached_tokens > 0 ? (uint64_t)r->cached_tokens : 0;
            w->completion += r->completion_tokens > 0 ? (uint64_t)r->completion_tokens : 0;
        }
    }
    if (rc == 0 && !sq_client_results_done(it))
        rc = 1; /* the job has unfinished tasks */
    sq_client_results_destroy(&it);
    return rc;
}

/* The name a results file is written under before it is renamed to path */
static void
s_tmp_path(char *buf, size_t size, const char *path)
{
    snprintf(buf, size, "%s.tmp.%ld", path ? path : "", (long)getpid());
}

/* path's directory resolved, then its last name: two spellings of one
 * file (a, ./a, d/../a) give the same text; "" when the directory cannot
 * be resolved. */
static void
s_canonical(const char *path, char *out, size_t size)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    char *real = realpath(dir[0] ? dir : "/", NULL);
    if (!real || snprintf(out, size, "%s/%s", real, slash ? slash + 1 : path) >= (int)size)
        out[0] = '\0';
    free(real);
}

/* --errors needs a file of its own: "-" or -o's file would mix the two
 * (two writers over one temporary file, and the lines of one lost). 0, or
 * the usage exit code with the reason printed. */
static int
s_check_errors_path(const char *cmd, const char *out, const char *errors)
{
    char a[4096], b[4096];
    if (errors && strcmp(errors, "-") == 0) {
        fprintf(stderr, "shardq %s: --errors needs a file name, not -\n", cmd);
        return SQ_EXIT_USAGE;
    }
    if (!errors || !out)
        return 0;
    s_canonical(out, a, sizeof a);
    s_canonical(errors, b, sizeof b);
    if (strcmp(out, errors) == 0 || (a[0] && strcmp(a, b) == 0)) {
        fprintf(stderr, "shardq %s: -o and --errors name the same file (%s)\n", cmd, errors);
        return SQ_EXIT_USAGE;
    }
    return 0;
}

/* A results file: written beside its final name (the temporary one) and
 * renamed once whole, so it is never half there; NULL path: stdout. */
typedef struct {
    const char *flag, *path;
    char tmp[4096];
    FILE *f;
} s_out_t;

static int
s_out_open(s_out_t *o, const char *flag, const char *path)
{
    o->flag = flag;
    o->path = path;
    s_tmp_path(o->tmp, sizeof o->tmp, path);
    o->f = path ? fopen(o->tmp, "w") : stdout;
    if (!o->f) /* named as the user wrote it; the temporary name is ours */
        fprintf(stderr, "shardq: %s %s: cannot write (%s: %s)\n", flag, path, o->tmp,
                strerror(errno));
    return o->f ? 0 : SQ_EXIT_ERROR;
}

/* Close o; keep it under its name when keep (0, or an exit code with the
 * reason printed), else remove it. */
static int
s_out_close(s_out_t *o, bool keep)
{
    if (!o->f)
        return 0;
    int closed = o->path ? fclose(o->f) : fflush(o->f);
    o->f = NULL;
    if (!o->path)
        return keep && closed != 0 ? (perror("shardq: results"), SQ_EXIT_ERROR) : 0;
    if (keep && closed == 0 && rename(o->tmp, o->path) == 0)
        return 0;
    int err = errno;
    unlink(o->tmp);
    if (!keep)
        return 0;
    fprintf(stderr, "shardq: %s %s: %s\n", o->flag, o->path, strerror(err));
    return SQ_EXIT_ERROR;
}

/* Write the results of a job to path (or stdout when NULL), those that
 * did not succeed to errors instead when it is not NULL. kind < 0: the
 * result shape comes from the job's params as STATUS reports them; the
 * submitter, which read the file, passes it. */
static int
s_results_to(sq_client_t *c, uint64_t job_id, const char *path, const char *errors, int kind)
{
    sq_client_job_t job;
    int rc = sq_client_status(c, job_id, &job);
    if (rc)
        return sq_cli_fail(rc);
    if (kind >= 0)
        job.kind = (sq_jsonl_kind_t)kind;
    s_out_t out = {0}, err = {0};
    if (s_out_open(&out, "-o", path) != 0 || (errors && s_out_open(&err, "--errors", errors))) {
        s_out_close(&out, false);
        return SQ_EXIT_ERROR;
    }
    s_written_t w = {0};
    rc = s_write_results(c, &job, out.f, err.f, &w);
    const uint64_t n_ok = w.ok, n_bad = w.bad;
    int crc = s_out_close(&err, rc >= 0);
    if (crc == 0)
        crc = s_out_close(&out, rc >= 0);
    else
        s_out_close(&out, false);
    if (rc < 0)
        return sq_cli_fail(rc);
    if (crc)
        return crc;
    fprintf(stderr, "job %llu: wrote %llu results (%llu succeeded, %llu failed or cancelled)%s%s",
            (unsigned long long)job_id, (unsigned long long)(n_ok + n_bad),
            (unsigned long long)n_ok, (unsigned long long)n_bad, path ? " to " : "",
            path ? path : "");
    fprintf(stderr, errors ? "; those failed or cancelled to %s\n" : "\n", errors);
    if (w.prompt > 0)
        fprintf(stderr, "job %llu: %llu prompt tokens, %llu of them (%.1f%%) from the workers' "
                "KV caches; %llu tokens generated\n", (unsigned long long)job_id,
                (unsigned long long)w.prompt, (unsigned long long)w.cached,
                100.0 * (double)w.cached / (double)w.prompt, (unsigned long long)w.completion);
    if (rc == 1)
        fprintf(stderr, "shardq: job %llu is still %s: %llu of %llu tasks have no result yet "
                "(run `shardq wait %llu` first)\n", (unsigned long long)job_id, job.state,
                (unsigned long long)(job.n_tasks - n_ok - n_bad),
                (unsigned long long)job.n_tasks, (unsigned long long)job_id);
    return rc == 1 || n_bad ? SQ_EXIT_JOB_FAILED : SQ_EXIT_OK;
}

/* -o PATH as a file path, NULL for stdout ("-" or none) */
static const char *
s_out_path(const char *out)
{
    return out && strcmp(out, "-") ? out : NULL;
}

/* Before a job is submitted: a results file beside PATH (given with
 * flag) can be created (a wait may last hours; a typo in the path should
 * not cost them). 0, or an exit code with the reason printed. */
static int
s_check_writable(const char *flag, const char *path)
{
    if (!path)
        return 0;
    char tmp[4096];
    s_tmp_path(tmp, sizeof tmp, path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        fprintf(stderr, "shardq: %s %s: cannot write (%s); nothing submitted\n", flag, path,
                strerror(errno));
        return SQ_EXIT_ERROR;
    }
    close(fd);
    unlink(tmp);
    return 0;
}

/* A job on a model no worker group serves waits until one does (or the
 * scheduler starts one): say so, or the queue looks stuck. Quiet when the
 * broker cannot say. */
static void
s_note_unserved(sq_client_t *c, const char *model)
{
    sq_client_worker_t *w = NULL;
    size_t n = 0;
    if (sq_client_workers(c, &w, &n) != 0)
        return;
    bool served = false;
    for (size_t i = 0; i < n && !served; i++)
        served = strcmp(w[i].model, model) == 0;
    free(w);
    if (!served)
        fprintf(stderr, "shardq: note: no worker group serves model %s now; the job waits "
                "until one does (`shardq workers` lists what they serve)\n", model);
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

int
sq_cli_submit(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    const char *model = NULL, *prio = NULL, *tenant = NULL, *attempts = NULL, *out = NULL,
               *errors = NULL, *timeout = NULL, *adapter = NULL, *key = NULL, *pos[1];
    bool wait = false, done;
    sq_cli_opt_t opts[] = {
        {"--model", NULL, &model, NULL},     {"--priority", NULL, &prio, NULL},
        {"--tenant", NULL, &tenant, NULL},   {"--max-attempts", NULL, &attempts, NULL},
        {"--wait", NULL, NULL, &wait},       {"--output", "-o", &out, NULL},
        {"--timeout", NULL, &timeout, NULL}, {"--adapter", NULL, &adapter, NULL},
        {"--idempotency-key", NULL, &key, NULL}, {"--errors", NULL, &errors, NULL},
        {NULL, NULL, NULL, NULL}};
    uint64_t priority = UINT64_MAX, max_attempts = 0, timeout_s = 0;
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, pos, 1, 1, &done);
    if (rc || done)
        return rc;
    if ((prio && (rc = sq_cli_parse_uint("submit", "--priority", prio, 0, 1000, &priority))) ||
        (attempts &&
         (rc = sq_cli_parse_uint("submit", "--max-attempts", attempts, 1, 100, &max_attempts))) ||
        (timeout && (rc = sq_cli_parse_uint("submit", "--timeout", timeout, 1, 86400 * 365,
                                       &timeout_s))))
        return rc;
    if ((out || timeout) && !wait) {
        fprintf(stderr, "shardq submit: -o and --timeout need --wait\n");
        return SQ_EXIT_USAGE;
    }
    if (errors && !out) {
        fprintf(stderr, "shardq submit: --errors needs --wait and -o\n");
        return SQ_EXIT_USAGE;
    }
    if ((rc = s_check_errors_path("submit", s_out_path(out), errors)))
        return rc;
    if ((rc = s_check_writable("-o", s_out_path(out))) ||
        (rc = s_check_writable("--errors", errors)))
        return rc;
    /* the whole file is validated before the broker hears of it */
    sq_jsonl_limits_t lim;
    sq_client_job_limits(&lim);
    sq_jsonl_t *file = NULL;
    if ((rc = sq_jsonl_load(pos[0], &lim, &file)))
        return sq_cli_fail(rc);
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
    sq_client_job_spec_t spec = {.tenant = s_tenant(tenant), .model = model, .adapter = adapter,
                                 .priority = priority == UINT64_MAX ? -1 : (int)priority,
                                 .max_attempts = (int)max_attempts, .params_json = params,
                                 .idempotency_key = key};
    sq_client_t *c = sq_cli_client();
    if (!c) {
        sq_jsonl_destroy(&file);
        return sq_cli_exit_code(sq_error_code());
    }
    uint64_t job_id = 0;
    size_t n_tasks = sq_jsonl_size(file);
    sq_jsonl_kind_t kind = sq_jsonl_kind(file);
    bool repeated = false;
    rc = sq_client_submit_keyed(c, &spec, sq_jsonl_tasks(file), n_tasks, &job_id, &repeated);
    sq_jsonl_destroy(&file);
    if (rc) {
        sq_client_destroy(&c);
        return sq_cli_fail(rc);
    }
    printf("%llu\n", (unsigned long long)job_id);
    fflush(stdout);
    if (repeated)
        fprintf(stderr, "job %llu: submitted before with this idempotency key; nothing new "
                "stored\n", (unsigned long long)job_id);
    else
        fprintf(stderr, "job %llu accepted: %zu task%s, model %s, tenant %s\n",
                (unsigned long long)job_id, n_tasks, n_tasks == 1 ? "" : "s", model,
                spec.tenant);
    s_note_unserved(c, model);
    if (wait) {
        sq_client_job_t final;
        /* (stdout holds the job id alone, for scripts) */
        rc = s_wait(c, job_id, (double)timeout_s, &final, stderr);
        if (out && (rc == SQ_EXIT_OK || rc == SQ_EXIT_JOB_FAILED)) {
            int wrc = s_results_to(c, job_id, s_out_path(out), errors, (int)kind);
            /* results not written weigh more than a failed job */
            if (wrc != SQ_EXIT_OK && (rc == SQ_EXIT_OK || wrc != SQ_EXIT_JOB_FAILED))
                rc = wrc;
        }
    }
    sq_client_destroy(&c);
    return rc;
}

/* Handlers of one job id: status, wait, results, cancel. */
static int
s_job_arg(const sq_cli_cmd_t *cmd, int argc, char **argv, const sq_cli_opt_t *opts,
          uint64_t *job_id, bool *done)
{
    const char *pos[1];
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, pos, 1, 1, done);
    if (rc || *done)
        return rc;
    /* (job ids are PostgreSQL bigints) */
    return sq_cli_parse_uint(cmd->name, "JOB", pos[0], 1, INT64_MAX, job_id);
}

int
sq_cli_status(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    bool json = false, done;
    sq_cli_opt_t opts[] = {{"--json", NULL, NULL, &json}, {NULL, NULL, NULL, NULL}};
    uint64_t job_id;
    int rc = s_job_arg(cmd, argc, argv, opts, &job_id, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    sq_client_job_t j;
    rc = sq_client_status(c, job_id, &j);
    sq_client_destroy(&c);
    if (rc)
        return sq_cli_fail(rc);
    if (json) {
        sq_cli_print_json(sq_cli_job_json(&j));
        return SQ_EXIT_OK;
    }
    char created[32];
    sq_cli_iso_time(j.created_at_ms, created, sizeof created);
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

int
sq_cli_wait(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    const char *timeout = NULL;
    bool done;
    sq_cli_opt_t opts[] = {{"--timeout", NULL, &timeout, NULL}, {NULL, NULL, NULL, NULL}};
    uint64_t job_id, timeout_s = 0;
    int rc = s_job_arg(cmd, argc, argv, opts, &job_id, &done);
    if (rc || done ||
        (timeout &&
         (rc = sq_cli_parse_uint("wait", "--timeout", timeout, 1, 86400 * 365, &timeout_s))))
        return rc;
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    sq_client_job_t final;
    rc = s_wait(c, job_id, (double)timeout_s, &final, stdout);
    sq_client_destroy(&c);
    return rc;
}

int
sq_cli_results(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    const char *out = NULL, *errors = NULL;
    bool done;
    sq_cli_opt_t opts[] = {{"--output", "-o", &out, NULL},
                           {"--errors", NULL, &errors, NULL},
                           {NULL, NULL, NULL, NULL}};
    uint64_t job_id;
    int rc = s_job_arg(cmd, argc, argv, opts, &job_id, &done);
    if (rc || done || (rc = s_check_errors_path("results", s_out_path(out), errors)))
        return rc;
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    rc = s_results_to(c, job_id, s_out_path(out), errors, -1);
    sq_client_destroy(&c);
    return rc;
}

int
sq_cli_cancel(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    bool done;
    uint64_t job_id, n = 0;
    int rc = s_job_arg(cmd, argc, argv, NULL, &job_id, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    char state[SQ_CLIENT_STATE_BYTES];
    rc = sq_client_cancel(c, job_id, &n, state);
    sq_client_destroy(&c);
    if (rc)
        return sq_cli_fail(rc);
    printf("job %llu: cancelled %llu tasks; job is %s\n", (unsigned long long)job_id,
           (unsigned long long)n, state);
    return SQ_EXIT_OK;
}

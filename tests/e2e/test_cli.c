/*  test_cli: the `shardq` CLI end to end, as a user runs it.
 *
 *  Each case starts a real shardq-broker on a fresh PostgreSQL database and
 *  real fixture workers (sq-test-worker, which echoes prompts), then runs
 *  the real `shardq` binary as a child process and checks its exit code,
 *  stdout, stderr and the files it writes. Cases (argv[1]):
 *    flow         submit -> wait -> results; status --json, jobs, workers;
 *                 hostile strings round-trip; unknown job -> exit 5
 *    failures     dead tasks: wait exits 1, results keep one line per
 *                 custom_id with the error, or apart with --errors
 *    chat         chat lines come back as chat.completion bodies
 *    cancel       cancel a running job; results mark cancelled tasks
 *    invalid      a bad file is refused naming line and field, and the
 *                 broker never hears of it (no job row)
 *    restart      `wait` keeps waiting through a kill -9 and restart of the
 *                 broker, and ends 0 when the job completes
 *    stats        stats lists the model pool of the connected workers
 *    broker_down  no broker: exit 4 with a clear message (no database needed)
 *  Nothing sleeps to synchronise: children are polled against deadlines.
 */
#define _GNU_SOURCE
#include "sq_error.h"
#include "sq_harness.h"
#include "sq_test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <jansson.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_CLI_TIMEOUT_MS 120000

typedef struct {
    int code;     /* exit code, 128+sig when killed, -1 when it did not end */
    char *out;    /* stdout, NUL-terminated */
    char *err;    /* stderr */
} s_run_t;

static char g_dir[256]; /* scratch directory for files and captured output */

static char *
s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (f) {
        FILE *m = open_memstream(&buf, &len);
        char chunk[65536];
        size_t n;
        while (m && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
            fwrite(chunk, 1, n, m);
        if (m)
            fclose(m);
        fclose(f);
    }
    return buf ? buf : strdup("");
}

static void
s_run_free(s_run_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* Run `shardq` with args (NULL-terminated) and the given broker; capture
 * stdout/stderr in files, poll for the exit against a deadline. */
static s_run_t
s_cli(const char *broker, const char *const args[])
{
    s_run_t r = {.code = -1};
    const char *bin = getenv("SHARDQ_CLI_BIN");
    char out_path[300], err_path[300];
    snprintf(out_path, sizeof out_path, "%s/cli.out", g_dir);
    snprintf(err_path, sizeof err_path, "%s/cli.err", g_dir);
    const char *argv[64] = {bin, "--broker", broker};
    int n = 3;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int64_t deadline = sq_test_now_ms() + S_CLI_TIMEOUT_MS;
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, WNOHANG) == 0) {
        if (sq_test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "shardq %s: did not finish in time\n", args[0]);
            status = -1;
            break;
        }
        sq_harness_poll_pause();
    }
    if (pid > 0 && status != -1)
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = s_slurp(out_path);
    r.err = s_slurp(err_path);
    fprintf(stderr, "$ shardq %s ... -> %d\n%s", args[0], r.code, r.err);
    return r;
}

/* Run `shardq` with stdout and stderr on a pseudo-terminal (as a user at a
 * terminal sees it); returns what it printed. */
static s_run_t
s_cli_pty(const char *broker, const char *const args[])
{
    s_run_t r = {.code = -1};
    const char *bin = getenv("SHARDQ_CLI_BIN");
    const char *argv[64] = {bin, "--broker", broker};
    int n = 3, master = -1, status = 0;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    if (pid == 0) {
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    int64_t deadline = sq_test_now_ms() + S_CLI_TIMEOUT_MS;
    while (pid > 0 && sq_test_now_ms() < deadline) {
        struct pollfd pfd = {master, POLLIN, 0};
        char chunk[4096];
        ssize_t got = poll(&pfd, 1, 100) > 0 ? read(master, chunk, sizeof chunk) : 0;
        if (got > 0)
            fwrite(chunk, 1, (size_t)got, m);
        else if (got < 0 || waitpid(pid, &status, WNOHANG) == pid)
            break; /* EIO: the child closed the terminal */
    }
    if (pid > 0 && waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (pid > 0)
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    fclose(m);
    if (master >= 0)
        close(master);
    r.out = buf;
    r.err = strdup("");
    return r;
}

static void
s_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A harness with migrated schema, broker, and n workers serving "tiny". */
static sq_harness_t *
s_cluster(const char *name, int n_workers, const char *const worker_extra[])
{
    sq_harness_t *h = sq_harness_new(name);
    if (!h || sq_harness_migrate(h) != 0 || !sq_harness_broker_start(h, NULL)) {
        fprintf(stderr, "cluster setup failed: %s\n", sq_error_detail());
        sq_harness_destroy(&h);
        return NULL;
    }
    for (int i = 0; i < n_workers; i++) {
        char wname[32];
        snprintf(wname, sizeof wname, "w%d", i);
        if (!sq_harness_worker_start(h, wname, worker_extra)) {
            sq_harness_destroy(&h);
            return NULL;
        }
    }
    return h;
}

/* Load a results file: one JSON object per line; NULL if any line is not. */
static json_t *
s_load_results(const char *path)
{
    char *text = s_slurp(path);
    json_t *arr = json_array();
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(j)) {
            fprintf(stderr, "not a JSON object: %s\n", line);
            json_decref(j);
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, j);
    }
    free(text);
    return arr;
}

/* The result line for custom_id, checking it occurs exactly once. */
static json_t *
s_find_once(json_t *results, const char *custom_id)
{
    json_t *found = NULL, *r;
    size_t i;
    int n = 0;
    json_array_foreach(results, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "custom_id")), custom_id) == 0) {
            found = r;
            n++;
        }
    }
    return n == 1 ? found : NULL;
}

static const char *
s_choice_text(json_t *line)
{
    json_t *body = json_object_get(json_object_get(line, "response"), "body");
    json_t *c0 = json_array_get(json_object_get(body, "choices"), 0);
    json_t *msg = json_object_get(c0, "message");
    return json_string_value(msg ? json_object_get(msg, "content") : json_object_get(c0, "text"));
}

/* Submit a file and return the job id printed on stdout (0 on failure). */
static unsigned long long
s_submit(const char *broker, const char *path, const char *const more[])
{
    const char *args[16] = {"submit", path, "--model", "tiny", "--tenant", "cli-test"};
    int n = 6;
    for (int i = 0; more && more[i]; i++)
        args[n++] = more[i];
    args[n] = NULL;
    s_run_t r = s_cli(broker, args);
    unsigned long long id = r.code == 0 ? strtoull(r.out, NULL, 10) : 0;
    s_run_free(&r);
    return id;
}

/* `jobs --state STATE --limit LIMIT --json`: how many jobs it lists (-1
 * when it fails), the first one's id into *first */
static long
s_jobs_in_state(const char *broker, const char *state, const char *limit, json_int_t *first)
{
    s_run_t r = s_cli(broker, (const char *[]){"jobs", "--state", state, "--limit", limit,
                                               "--json", NULL});
    json_t *listed = r.code == 0 ? json_loads(r.out, 0, NULL) : NULL;
    const long n = json_is_array(listed) ? (long)json_array_size(listed) : -1;
    *first = json_integer_value(json_object_get(json_array_get(listed, 0), "job_id"));
    json_decref(listed);
    s_run_free(&r);
    return n;
}

/* ------------------------------------------------------------------ cases */

#define N_FLOW 60

static const char *const s_hostile[] = {
    "quote \\\" backslash \\\\ tab \\t",
    "'; DROP TABLE tasks; --",
    "emoji \xF0\x9F\x92\xB8 and RTL \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D",
    "control \\u0001\\u001f and \\u2028",
};

static void
test_flow(void)
{
    static const char *const wargs[] = {"--model", "tiny", "--batch", "16", NULL};
    sq_harness_t *h = s_cluster("cli_flow", 2, wargs);
    SQ_REQUIRE(h);
    const char *ep = sq_harness_client_endpoint(h);
    char path[300], out[300], job[32];
    snprintf(path, sizeof path, "%s/flow.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/flow.out.jsonl", g_dir);
    FILE *f = fopen(path, "w");
    SQ_REQUIRE(f);
    for (int i = 0; i < N_FLOW; i++) {
        if (i % 2)
            fprintf(f, "{\"custom_id\":\"r-%d\",\"prompt\":\"p%d %s\",\"max_tokens\":8}\n", i, i,
                    s_hostile[i % 4]);
        else
            fprintf(f, "{\"custom_id\":\"r-%d\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                       "\"body\":{\"model\":\"other\",\"prompt\":\"p%d %s\"}}\n", i, i,
                    s_hostile[i % 4]);
    }
    fclose(f);
    unsigned long long id = s_submit(ep, path, NULL); /* --model tiny overrides "other" */
    SQ_REQUIRE(id > 0);
    snprintf(job, sizeof job, "%llu", id);

    s_run_t r = s_cli(ep, (const char *[]){"wait", job, "--timeout", "90", NULL});
    SQ_CHECK(r.code == 0);
    SQ_CHECK(strstr(r.out, "succeeded") != NULL); /* plain lines: stdout is a file */
    SQ_CHECK(strchr(r.out, '\r') == NULL);
    s_run_free(&r);

    /* on a terminal: a progress bar redrawn in place, full at the end */
    r = s_cli_pty(ep, (const char *[]){"wait", job, NULL});
    SQ_CHECK(r.code == 0);
    SQ_CHECK(strstr(r.out, "\r[##############################] 100%") != NULL);
    SQ_CHECK(strstr(r.out, "tasks/s") != NULL);
    s_run_free(&r);

    r = s_cli(ep, (const char *[]){"results", job, "-o", out, NULL});
    SQ_CHECK(r.code == 0);
    s_run_free(&r);
    /* an output path that cannot be written: named as given, exit 7 */
    r = s_cli(ep, (const char *[]){"results", job, "-o", "/nonexistent/dir/out.jsonl", NULL});
    SQ_CHECK(r.code == 7 && strstr(r.err, "-o /nonexistent/dir/out.jsonl: cannot write ("));
    s_run_free(&r);
    json_t *res = s_load_results(out);
    SQ_REQUIRE(res);
    SQ_CHECK(json_array_size(res) == N_FLOW);
    for (int i = 0; i < N_FLOW; i++) {
        char id_s[32], want[256];
        snprintf(id_s, sizeof id_s, "r-%d", i);
        json_t *line = s_find_once(res, id_s);
        SQ_CHECK(line != NULL);
        if (!line)
            continue;
        SQ_CHECK(json_integer_value(
                     json_object_get(json_object_get(line, "response"), "status_code")) == 200);
        SQ_CHECK(json_is_null(json_object_get(line, "error")));
        /* "created" is when the result was recorded, as OpenAI's is when
         * the response was made (it was the job's submission time) */
        char sql[200];
        int64_t finished_s = -1;
        snprintf(sql, sizeof sql, "select floor(extract(epoch from finished_at))::bigint from "
                 "task_results where job_id = %s and idx = %d", job, i + 1);
        SQ_CHECK(sq_harness_sql_i64(h, sql, &finished_s) == 0 &&
                 json_integer_value(json_object_get(
                     json_object_get(json_object_get(line, "response"), "body"), "created")) ==
                     finished_s);
        /* the echo worker returns the prompt: every byte survived the trip */
        json_t *p = json_loads((snprintf(want, sizeof want, "\"p%d %s\"", i, s_hostile[i % 4]),
                                want), JSON_DECODE_ANY, NULL);
        const char *text = s_choice_text(line);
        SQ_CHECK(p && text && strcmp(text, json_string_value(p)) == 0);
        if (!p || !text || strcmp(text, json_string_value(p)) != 0)
            fprintf(stderr, "got \"%s\" want %s\n", text ? text : "(null)", want);
        json_decref(p);
    }
    json_decref(res);

    r = s_cli(ep, (const char *[]){"status", job, "--json", NULL});
    SQ_CHECK(r.code == 0);
    json_t *st = json_loads(r.out, 0, NULL);
    SQ_CHECK(st && strcmp(json_string_value(json_object_get(st, "state")), "succeeded") == 0);
    SQ_CHECK(json_integer_value(json_object_get(json_object_get(st, "counts"), "succeeded")) ==
             N_FLOW);
    SQ_CHECK(st && strcmp(json_string_value(json_object_get(st, "model")), "tiny") == 0);
    json_decref(st);
    s_run_free(&r);

    r = s_cli(ep, (const char *[]){"jobs", NULL});
    SQ_CHECK(r.code == 0 && strstr(r.out, job) && strstr(r.out, "cli-test"));
    s_run_free(&r);
    json_int_t first = 0;
    SQ_CHECK(s_jobs_in_state(ep, "succeeded", "50", &first) == 1 && first == (json_int_t)id);
    SQ_CHECK(s_jobs_in_state(ep, "queued", "50", &first) == 0);
    /* two newer jobs, for a model no worker serves, stay queued: the state
     * filter still finds the older succeeded job within --limit 1 (it
     * filters job after job, not one page), and an unknown state is refused */
    for (int k = 0; k < 2; k++) {
        r = s_cli(ep, (const char *[]){"submit", path, "--model", "nobody", "--tenant", "cli-test",
                                       NULL});
        SQ_CHECK(r.code == 0);
        s_run_free(&r);
    }
    SQ_CHECK(s_jobs_in_state(ep, "succeeded", "1", &first) == 1 && first == (json_int_t)id);
    SQ_CHECK(s_jobs_in_state(ep, "queued", "50", &first) == 2);
    r = s_cli(ep, (const char *[]){"jobs", "--state", "bogus", NULL});
    SQ_CHECK(r.code == 2 && strstr(r.err, "--state must be one of queued, running, succeeded"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"workers", NULL});
    SQ_CHECK(r.code == 0 && strstr(r.out, "w0") && strstr(r.out, "w1"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"workers", "--json", NULL});
    json_t *workers = json_loads(r.out, 0, NULL);
    SQ_CHECK(r.code == 0 && json_array_size(workers) == 2);
    json_t *w0 = json_array_get(workers, 0);
    SQ_CHECK(w0 && strcmp(json_string_value(json_object_get(w0, "model")), "tiny") == 0);
    SQ_CHECK(json_integer_value(json_object_get(w0, "max_batch")) == 16);
    json_decref(workers);
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"status", "999999", NULL});
    SQ_CHECK(r.code == 5);
    s_run_free(&r);
    sq_harness_destroy(&h);
}

static void
test_failures(void)
{
    static const char *const wargs[] = {"--model", "tiny", "--fail-permanent-rate", "0.5",
                                        "--seed", "7", NULL};
    sq_harness_t *h = s_cluster("cli_failures", 1, wargs);
    SQ_REQUIRE(h);
    const char *ep = sq_harness_client_endpoint(h);
    char path[300], out[300], job[32];
    snprintf(path, sizeof path, "%s/fail.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/fail.out.jsonl", g_dir);
    FILE *f = fopen(path, "w");
    SQ_REQUIRE(f);
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"custom_id\":\"f-%d\",\"prompt\":\"x%d\"}\n", i, i);
    fclose(f);
    unsigned long long id =
        s_submit(ep, path, (const char *[]){"--max-attempts", "1", "--wait", "-o", out, NULL});
    /* submit --wait exits 1 for a failed job: s_submit sees no id then */
    SQ_CHECK(id == 0);
    s_run_t r = s_cli(ep, (const char *[]){"jobs", "--json", NULL});
    json_t *jobs = json_loads(r.out, 0, NULL);
    s_run_free(&r);
    SQ_REQUIRE(json_array_size(jobs) == 1);
    snprintf(job, sizeof job, "%lld",
             (long long)json_integer_value(json_object_get(json_array_get(jobs, 0), "job_id")));
    SQ_CHECK(strcmp(json_string_value(json_object_get(json_array_get(jobs, 0), "state")),
                    "failed") == 0);
    json_decref(jobs);

    /* the file written by submit --wait -o, and a fresh results run agree */
    r = s_cli(ep, (const char *[]){"results", job, NULL});
    SQ_CHECK(r.code == 1);
    char *direct = strdup(r.out);
    s_run_free(&r);
    char *written = s_slurp(out);
    SQ_CHECK(strcmp(direct, written) == 0);
    free(direct);
    free(written);
    json_t *res = s_load_results(out);
    SQ_REQUIRE(res && json_array_size(res) == 40);
    int n_dead = 0;
    for (int i = 0; i < 40; i++) {
        char id_s[16];
        snprintf(id_s, sizeof id_s, "f-%d", i);
        json_t *line = s_find_once(res, id_s);
        SQ_CHECK(line != NULL);
        json_t *err = json_object_get(line, "error");
        if (line && !json_is_null(err)) {
            n_dead++;
            SQ_CHECK(json_is_null(json_object_get(line, "response")));
            SQ_CHECK(strcmp(json_string_value(json_object_get(err, "code")), "task_failed") == 0);
            SQ_CHECK(json_string_length(json_object_get(err, "message")) > 0);
        }
    }
    SQ_CHECK(n_dead > 0 && n_dead < 40);
    json_decref(res);

    /* --errors splits them as OpenAI does: its output file holds only
     * responses, the error file the rest; together the same lines */
    char ok_path[300], err_path[300];
    snprintf(ok_path, sizeof ok_path, "%s/fail.ok.jsonl", g_dir);
    snprintf(err_path, sizeof err_path, "%s/fail.err.jsonl", g_dir);
    r = s_cli(ep, (const char *[]){"results", job, "-o", ok_path, "--errors", err_path, NULL});
    SQ_CHECK(r.code == 1 && strstr(r.err, "; those failed or cancelled to ") != NULL);
    s_run_free(&r);
    json_t *ok = s_load_results(ok_path), *bad = s_load_results(err_path);
    SQ_REQUIRE(ok && bad);
    SQ_CHECK(json_array_size(bad) == (size_t)n_dead && json_array_size(ok) == 40 - (size_t)n_dead);
    size_t i;
    json_t *line;
    json_array_foreach(ok, i, line)
        SQ_CHECK(json_is_null(json_object_get(line, "error")) &&
                 json_is_object(json_object_get(json_object_get(line, "response"), "body")));
    json_array_foreach(bad, i, line)
        SQ_CHECK(json_is_null(json_object_get(line, "response")) &&
                 json_is_object(json_object_get(line, "error")));
    json_decref(ok);
    json_decref(bad);
    /* one file for both would be two writers over one temporary file, and
     * stdout is -o's: refused before anything is written */
    char same[320];
    snprintf(same, sizeof same, "%s/./fail.ok.jsonl", g_dir);
    r = s_cli(ep, (const char *[]){"results", job, "-o", ok_path, "--errors", same, NULL});
    SQ_CHECK(r.code == 2 && strstr(r.err, "-o and --errors name the same file"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"results", job, "--errors", "-", NULL});
    SQ_CHECK(r.code == 2 && strstr(r.err, "--errors needs a file name, not -"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"submit", path, "--wait", "-o", ok_path, "--errors", ok_path,
                                   NULL});
    SQ_CHECK(r.code == 2 && strstr(r.err, "-o and --errors name the same file"));
    s_run_free(&r);
    /* --errors is for a results file; submit checks it is writable first */
    r = s_cli(ep, (const char *[]){"submit", path, "--errors", err_path, NULL});
    SQ_CHECK(r.code == 2 && strstr(r.err, "--errors needs --wait and -o") != NULL);
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"submit", path, "--wait", "-o", ok_path, "--errors",
                                   "/nonexistent/dir/e.jsonl", NULL});
    SQ_CHECK(r.code == 7 && strstr(r.err, "--errors /nonexistent/dir/e.jsonl: cannot write") &&
             strstr(r.err, "nothing submitted"));
    s_run_free(&r);
    /* a job on a model no group serves is taken, with a note saying so */
    r = s_cli(ep, (const char *[]){"submit", path, "--model", "ghost", NULL});
    SQ_CHECK(r.code == 0 && strstr(r.err, "note: no worker group serves model ghost now"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"submit", path, "--model", "tiny", NULL});
    SQ_CHECK(r.code == 0 && !strstr(r.err, "no worker group serves"));
    s_run_free(&r);
    sq_harness_destroy(&h);
}

static void
test_chat(void)
{
    static const char *const wargs[] = {"--model", "tiny", NULL};
    sq_harness_t *h = s_cluster("cli_chat", 1, wargs);
    SQ_REQUIRE(h);
    const char *ep = sq_harness_client_endpoint(h);
    char path[300], out[300];
    snprintf(path, sizeof path, "%s/chat.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/chat.out.jsonl", g_dir);
    s_write_file(path,
                 "{\"custom_id\":\"c-1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                 "\"body\":{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":"
                 "\"Be brief.\"},{\"role\":\"user\",\"content\":\"Q3 revenue?\"}]}}\n");
    /* the model comes from the file this time; with --wait the progress
     * goes to stderr: stdout is the job id alone, for scripts */
    const char *args[] = {"submit", path, "--wait", "-o", out, NULL};
    s_run_t r = s_cli(ep, args);
    SQ_CHECK(r.code == 0 && strcmp(r.out, "1\n") == 0);
    SQ_CHECK(strstr(r.err, "job 1: succeeded 1/1 done") != NULL);
    s_run_free(&r);
    /* `shardq results` later writes the same chat shape (from the job's
     * params, which STATUS carries) */
    r = s_cli(ep, (const char *[]){"results", "1", NULL});
    SQ_CHECK(r.code == 0 && strstr(r.out, "\"object\":\"chat.completion\"") &&
             !strstr(r.out, "text_completion"));
    s_run_free(&r);
    json_t *res = s_load_results(out);
    SQ_REQUIRE(res && json_array_size(res) == 1);
    json_t *body = json_object_get(json_object_get(json_array_get(res, 0), "response"), "body");
    SQ_CHECK(strcmp(json_string_value(json_object_get(body, "object")), "chat.completion") == 0);
    SQ_CHECK(strcmp(json_string_value(json_object_get(body, "model")), "tiny") == 0);
    const char *text = s_choice_text(json_array_get(res, 0));
    SQ_CHECK(text && strcmp(text, "<|system|>\nBe brief.</s>\n<|user|>\nQ3 revenue?</s>\n"
                                  "<|assistant|>\n") == 0);
    json_decref(res);
    sq_harness_destroy(&h);
}

static void
test_cancel(void)
{
    static const char *const wargs[] = {"--model", "tiny", "--batch", "1", "--delay-ms", "200",
                                        NULL};
    sq_harness_t *h = s_cluster("cli_cancel", 1, wargs);
    SQ_REQUIRE(h);
    const char *ep = sq_harness_client_endpoint(h);
    char path[300], out[300], job[32];
    snprintf(path, sizeof path, "%s/cancel.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/cancel.out.jsonl", g_dir);
    FILE *f = fopen(path, "w");
    SQ_REQUIRE(f);
    for (int i = 0; i < 50; i++)
        fprintf(f, "{\"custom_id\":\"k-%d\",\"prompt\":\"x\"}\n", i);
    fclose(f);
    unsigned long long id = s_submit(ep, path, NULL);
    SQ_REQUIRE(id > 0);
    snprintf(job, sizeof job, "%llu", id);
    /* 50 tasks of 200 ms on one slot take 10 s at least: a 1 s wait gives up */
    s_run_t r = s_cli(ep, (const char *[]){"wait", job, "--timeout", "1", NULL});
    SQ_CHECK(r.code == 6 && strstr(r.err, "still"));
    s_run_free(&r);
    /* results of a running job: what is finished, exit 1, and why */
    r = s_cli(ep, (const char *[]){"results", job, NULL});
    SQ_CHECK(r.code == 1 && strstr(r.err, "have no result yet"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"cancel", job, NULL});
    SQ_CHECK(r.code == 0 && strstr(r.out, "cancelled"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"wait", job, "--timeout", "60", NULL});
    SQ_CHECK(r.code == 1);
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"results", job, "-o", out, NULL});
    SQ_CHECK(r.code == 1);
    s_run_free(&r);
    json_t *res = s_load_results(out);
    SQ_REQUIRE(res);
    SQ_CHECK(json_array_size(res) == 50);
    int n_cancelled = 0;
    size_t i;
    json_t *line;
    json_array_foreach(res, i, line) {
        const char *code =
            json_string_value(json_object_get(json_object_get(line, "error"), "code"));
        n_cancelled += code && strcmp(code, "cancelled") == 0;
    }
    SQ_CHECK(n_cancelled > 0);
    json_decref(res);
    r = s_cli(ep, (const char *[]){"cancel", job, NULL}); /* finished job: not an error */
    SQ_CHECK(r.code == 0);
    s_run_free(&r);
    sq_harness_destroy(&h);
}

static void
test_invalid(void)
{
    sq_harness_t *h = s_cluster("cli_invalid", 0, NULL);
    SQ_REQUIRE(h);
    const char *ep = sq_harness_client_endpoint(h);
    char path[300];
    snprintf(path, sizeof path, "%s/bad.jsonl", g_dir);
    s_write_file(path, "{\"custom_id\":\"a\",\"prompt\":\"ok\"}\n"
                       "{\"custom_id\":\"b\",\"prompt\":\"ok\"}\n"
                       "{\"custom_id\":\"c\",\"prompt\":\"ok\",\"max_tokens\":-5}\n");
    s_run_t r = s_cli(ep, (const char *[]){"submit", path, "--model", "tiny", NULL});
    SQ_CHECK(r.code == 3);
    SQ_CHECK(strstr(r.err, "line 3: field \"max_tokens\": expected a positive integer") != NULL);
    SQ_CHECK(r.out[0] == '\0');
    s_run_free(&r);
    s_write_file(path, "{\"custom_id\":\"a\",\"prompt\":\"nul \\u0000 inside\"}\n");
    r = s_cli(ep, (const char *[]){"submit", path, "--model", "tiny", NULL});
    SQ_CHECK(r.code == 3 && strstr(r.err, "line 1: field \"prompt\": contains NUL"));
    s_run_free(&r);
    s_write_file(path, "{\"custom_id\":\"a\",\"prompt\":\"\xC3\"}\n");
    r = s_cli(ep, (const char *[]){"submit", path, "--model", "tiny", NULL});
    SQ_CHECK(r.code == 3 && strstr(r.err, "line 1: invalid UTF-8"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"submit", "/nonexistent/x.jsonl", "--model", "tiny", NULL});
    SQ_CHECK(r.code == 3 && strstr(r.err, "/nonexistent/x.jsonl"));
    s_run_free(&r);
    r = s_cli(ep, (const char *[]){"submit", "/etc/passwd/x.jsonl", "--model", "tiny", NULL});
    SQ_CHECK(r.code == 3 && strstr(r.err, "/etc/passwd/x.jsonl"));
    s_run_free(&r);
    /* a results file that cannot be written is found before submitting */
    s_write_file(path, "{\"custom_id\":\"a\",\"prompt\":\"ok\"}\n");
    r = s_cli(ep, (const char *[]){"submit", path, "--model", "tiny", "--wait", "-o",
                                   "/nonexistent/dir/out.jsonl", NULL});
    SQ_CHECK(r.code == 7 && strstr(r.err, "-o /nonexistent/dir/out.jsonl: cannot write") &&
             strstr(r.err, "nothing submitted") && r.out[0] == '\0');
    s_run_free(&r);
    /* job ids: digits only (a sign or blank is no id), within bigint */
    const char *const bad_ids[] = {" -1", "+1", "9223372036854775808", "1x", ""};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        r = s_cli(ep, (const char *[]){"status", bad_ids[i], NULL});
        SQ_CHECK(r.code == 2 && strstr(r.err, "JOB must be an integer in 1..9223372036854775807"));
        s_run_free(&r);
    }
    const char *const bad_since[] = {"-1h", " 1h", "40000d", "99999999999999999999s"};
    for (size_t i = 0; i < sizeof bad_since / sizeof bad_since[0]; i++) {
        r = s_cli(ep, (const char *[]){"scaling", "--since", bad_since[i], NULL});
        SQ_CHECK(r.code == 2 && (strstr(r.err, "is not a duration") || bad_since[i][0] == '-'));
        s_run_free(&r);
    }
    r = s_cli(ep, (const char *[]){"scaling", "--since", "30000d", NULL});
    SQ_CHECK(r.code == 0);
    s_run_free(&r);
    /* the worker endpoint by mistake: the broker ends the session, and the
     * CLI says so at once, naming the likely cause */
    r = s_cli(sq_harness_worker_endpoint(h), (const char *[]){"submit", path, "--model", "tiny",
                                                              NULL});
    SQ_CHECK(r.code == 7 && strstr(r.err, "ended the session") &&
             strstr(r.err, "nothing was taken") && strstr(r.err, "worker endpoint"));
    s_run_free(&r);
    r = s_cli(sq_harness_worker_endpoint(h), (const char *[]){"status", "1", NULL});
    SQ_CHECK(r.code == 7 && strstr(r.err, "worker endpoint"));
    s_run_free(&r);
    /* the broker never heard of any of them */
    int64_t n_jobs = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "SELECT count(*) FROM jobs", &n_jobs) == 0 && n_jobs == 0);
    r = s_cli(ep, (const char *[]){"jobs", "--json", NULL});
    SQ_CHECK(r.code == 0 && strstr(r.out, "[]"));
    s_run_free(&r);
    sq_harness_destroy(&h);
}

/* stats shows the pool of the connected groups and the tenant with work. */
static void
test_stats(void)
{
    static const char *const wargs[] = {"--model", "tiny", "--batch", "1", "--delay-ms", "300",
                                        NULL};
    sq_harness_t *h = s_cluster("cli_stats", 1, wargs);
    SQ_REQUIRE(h);
    const char *ep = sq_harness_client_endpoint(h);
    char path[300];
    snprintf(path, sizeof path, "%s/stats.jsonl", g_dir);
    s_write_file(path, "{\"custom_id\":\"a\",\"prompt\":\"x\"}\n"
                       "{\"custom_id\":\"b\",\"prompt\":\"y\"}\n");
    SQ_REQUIRE(s_submit(ep, path, NULL) > 0);
    s_run_t r = s_cli(ep, (const char *[]){"stats", NULL});
    SQ_CHECK(r.code == 0 && strstr(r.out, "POOL") && strstr(r.out, "tiny"));
    SQ_CHECK(strstr(r.out, "\n0 finished tasks wait for their commit\n") != NULL);
    s_run_free(&r);
    /* the same file sent again with its idempotency key: the same job */
    const char *keyed[] = {"submit", path, "--model", "tiny", "--idempotency-key", "stats-1", NULL};
    r = s_cli(ep, keyed);
    SQ_CHECK(r.code == 0 && strstr(r.err, "accepted") != NULL);
    unsigned long long first = strtoull(r.out, NULL, 10);
    s_run_free(&r);
    r = s_cli(ep, keyed);
    SQ_CHECK(r.code == 0 && first > 0 && strtoull(r.out, NULL, 10) == first);
    SQ_CHECK(strstr(r.err, "submitted before with this idempotency key") != NULL);
    s_run_free(&r);
    sq_harness_destroy(&h);
}

/* Poll a file until it contains needle or timeout_ms passes. */
static bool
s_log_has(const char *path, const char *needle, int timeout_ms)
{
    int64_t deadline = sq_test_now_ms() + timeout_ms;
    do {
        char *text = s_slurp(path);
        bool found = strstr(text, needle) != NULL;
        free(text);
        if (found)
            return true;
        sq_harness_poll_pause();
    } while (sq_test_now_ms() < deadline);
    return false;
}

static void
test_restart(void)
{
    /* 40 tasks, 2 at a time, 300 ms each: 6 s of work, so the job is still
     * running when the broker is killed (else "still waiting" never shows
     * and the test fails rather than passing vacuously) */
    static const char *const wargs[] = {"--model", "tiny", "--batch", "2", "--delay-ms", "300",
                                        NULL};
    sq_harness_t *h = s_cluster("cli_restart", 1, wargs);
    SQ_REQUIRE(h);
    const char *ep = sq_harness_client_endpoint(h);
    char path[300], job[32];
    snprintf(path, sizeof path, "%s/restart.jsonl", g_dir);
    FILE *f = fopen(path, "w");
    SQ_REQUIRE(f);
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"custom_id\":\"s-%d\",\"prompt\":\"x\"}\n", i);
    fclose(f);
    unsigned long long id = s_submit(ep, path, NULL);
    SQ_REQUIRE(id > 0);
    snprintf(job, sizeof job, "%llu", id);
    const char *argv[] = {getenv("SHARDQ_CLI_BIN"), "--broker", ep, "wait", job, "--timeout",
                          "200", NULL};
    sq_proc_t *w = sq_harness_spawn(h, "cli-wait", argv);
    SQ_REQUIRE(w);
    /* kill -9 the broker under the waiting CLI, which must notice and hold on */
    sq_proc_t *b = sq_harness_broker(h);
    SQ_REQUIRE(b);
    sq_proc_signal(b, SIGKILL);
    SQ_CHECK(sq_proc_wait(b, 10000) == 0);
    SQ_CHECK(s_log_has(sq_proc_log(w), "still waiting", 60000));
    SQ_CHECK(sq_proc_running(w));
    SQ_REQUIRE(sq_harness_broker_start(h, NULL));
    SQ_CHECK(sq_proc_wait(w, 150000) == 0);
    SQ_CHECK(sq_proc_exit_code(w) == 0);
    SQ_CHECK(s_log_has(sq_proc_log(w), "succeeded 40/40", 1000));
    sq_harness_destroy(&h);
}

/* A port in this area's range (17000-17999) that nothing listens on now
 * (bind succeeds), so "unreachable" is the truth and not a coincidence. */
static int
s_free_port(void)
{
    for (int i = 0; i < 1000; i++) {
        int port = 17000 + (int)((getpid() + i) % 1000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return port;
    }
    return 17999;
}

/* No broker at all: every command fails fast with exit 4, naming it. */
static void
test_broker_down(void)
{
    char ep[64], path[300];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", s_free_port());
    snprintf(path, sizeof path, "%s/ok.jsonl", g_dir);
    s_write_file(path, "{\"custom_id\":\"a\",\"prompt\":\"x\"}\n");
    s_run_t r = s_cli(ep, (const char *[]){"submit", path, "--model", "tiny", NULL});
    SQ_CHECK(r.code == 4 && strstr(r.err, "unreachable") && strstr(r.err, ep));
    s_run_free(&r);
    const char *const cmds[][3] = {{"status", "1", NULL}, {"jobs", NULL, NULL},
                                   {"workers", NULL, NULL}, {"cancel", "1", NULL}};
    for (int i = 0; i < 4; i++) {
        r = s_cli(ep, cmds[i]);
        SQ_CHECK(r.code == 4 && strstr(r.err, "unreachable"));
        s_run_free(&r);
    }
    r = s_cli("not-an-endpoint", (const char *[]){"jobs", NULL});
    SQ_CHECK(r.code != 0 && strstr(r.err, "not-an-endpoint"));
    s_run_free(&r);
}

static int
s_rm(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

int
main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"flow", test_flow},     {"failures", test_failures},
                 {"chat", test_chat},     {"cancel", test_cancel},
                 {"invalid", test_invalid}, {"restart", test_restart},
                 {"stats", test_stats},
                 {"broker_down", test_broker_down}};
    if (!getenv("SHARDQ_CLI_BIN")) {
        fprintf(stderr, "SHARDQ_CLI_BIN is not set\n");
        return 1;
    }
    char tmpl[] = "/tmp/sq-cli-XXXXXX";
    if (!mkdtemp(tmpl))
        return 1;
    snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (argc < 2 || strcmp(argv[1], cases[i].name) == 0) {
            fprintf(stderr, "case %s\n", cases[i].name);
            SQ_RUN(cases[i].fn);
        }
    nftw(g_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    return sq_test_summary("cli");
}

/*  Worker groups serving the queue, end to end: a real broker on a fresh
 *  database, real `mpirun -np 2 shardq-worker --broker ...` groups (TP = 2,
 *  CPU) on the bundled model, jobs submitted over the real protocol.
 *
 *  Cases (one CTest entry each):
 *    serves      every task of a job succeeds once, with lineage recorded
 *                (model sha256, group, TP size) and greedy twins identical
 *    rank_killed kill -9 of one rank mid-batch: that group exits non-zero,
 *                its tasks finish on the other group, each recorded once
 *    drain       SIGTERM through shardq-group: running tasks finish, the
 *                group exits 0, nothing is lost or recorded twice
 *    adapters    a base job and a LoRA job served together; the adapter's
 *                active version switches (hot activation) mid-job with no
 *                failed task; an unknown adapter fails clearly
 *    cuda_emu    a group on --device cuda, the worker built against the CPU
 *                emulator of the CUDA runtime: every task succeeds, lineage
 *                says cuda (serves runs --device auto: lineage says cpu)
 *    lora_updates  versions published and activated with `shardq lora`:
 *                hot activation during a 500-task job (no failure, each
 *                result records the version current when it was leased), a
 *                30 % canary lands near 30 %, rollback returns to the
 *                previous version, a bad file is refused, audit rows exist
 *    task_fields what a job file says reaches the group: CANCEL stops
 *                leases held but not started (--prefetch), stop strings of
 *                both shapes end the text, top_p 0 is the greedy token
 *    not_finite  logits without a finite value (a NaN in the weights):
 *                one-shot exits 1 naming the position, a group FAILs the
 *                task retryably, never returns the garbage as succeeded,
 *                and stops after 3 such tasks in a row
 *    chat        a chat task's prompt reaches the model as its template's
 *                turns with the EOS token between them; a "</s>" in a
 *                message stays text (prompt_tokens counts those ids)
 *    link        the broker link's failures: flags a broker would refuse
 *                fail at start, an endpoint ZeroMQ refuses ends the worker,
 *                SIGTERM to the worker itself drains it, and a broker that
 *                ends every session gets READY with a growing pause
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <czmq.h>

#include "sq_e2e_case.h"
#include "sq_engine.h"
#include "sq_test.h"
#include "sq_wire.h"

static sq_harness_t *s_h;
static sq_e2e_client_t *s_c;

#define S_MODEL_NAME "stories260K.gguf"

static const char *s_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "%s is not set (CTest sets it)\n", name);
        exit(2);
    }
    return v;
}

static char s_adapters_dir[600];
static const char *s_device = "cpu";   /* the groups' --device */
static const char *s_kv_type = "f16";  /* and --kv-type */
static const char *s_max_batch;        /* --max-batch instead of s_group's (e.g. "auto") */
static const char *s_kv_pages;         /* --kv-pages, when set */
static const char *s_step_timeout;     /* --step-timeout, when set */
static const char *s_model;            /* --model instead of SHARDQ_TEST_MODEL */
static const char *s_job_model = S_MODEL_NAME;   /* the jobs' model (its file's name) */
static const char *s_extra[7];         /* more flags for the groups (NULL-terminated) */

/* Start one TP = 2 worker group (through shardq-group, as deployments do). */
static sq_proc_t *s_group(const char *name, int max_batch)
{
    char mb[16];
    snprintf(mb, sizeof mb, "%s", s_max_batch ? s_max_batch : "");
    if (!s_max_batch)
        snprintf(mb, sizeof mb, "%d", max_batch);
    const char *argv[] = {s_env("SHARDQ_GROUP_BIN"), "-np", "2", "--oversubscribe", "--",
                          "--broker", sq_harness_worker_endpoint(s_h),
                          "--model", s_model ? s_model : s_env("SHARDQ_TEST_MODEL"),
                          "--max-batch", mb,
                          "--device", s_device, "--kv-type", s_kv_type,
                          "--group-id", name, "--grace", "60", NULL, NULL, NULL, NULL, NULL,
                          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int n = 0;
    while (argv[n])
        n++;
    if (s_kv_pages) {
        argv[n++] = "--kv-pages";
        argv[n++] = s_kv_pages;
    }
    if (s_step_timeout) {
        argv[n++] = "--step-timeout";
        argv[n++] = s_step_timeout;
    }
    if (s_adapters_dir[0]) {
        argv[n++] = "--adapters";
        argv[n++] = s_adapters_dir;
    }
    for (int i = 0; s_extra[i]; i++)
        argv[n++] = s_extra[i];
    return sq_harness_spawn(s_h, name, argv);
}

static int s_wait_groups(int n)
{
    return sq_harness_wait_i64(s_h, "SELECT count(*) FROM workers WHERE last_seen > now() - interval '1 hour'",
                               n, 60000);
}

/* A job of n tasks; prompts repeat every `distinct` tasks so that twins
 * (same prompt, greedy) can be compared. temperature 0: greedy. */
static uint64_t s_submit_job_t(int n, int distinct, const char *adapter, int max_tokens,
                               double temperature)
{
    char **ids = calloc((size_t)n, sizeof *ids), **prompts = calloc((size_t)n, sizeof *prompts);
    static const char *const base[] = {"Once upon a time", "The bank", "Lily saw a big fish",
                                       "Tom and his dog", "The market was busy"};
    for (int i = 0; i < n; i++) {
        ids[i] = malloc(32);
        snprintf(ids[i], 32, "t-%d", i);
        prompts[i] = malloc(64);
        snprintf(prompts[i], 64, "%s", base[(i % distinct) % 5]);
    }
    sq_e2e_job_t job = {.tenant = "research", .model = s_job_model, .priority = -1,
                        .n_tasks = n, .custom_ids = (const char *const *)ids,
                        .prompts = (const char *const *)prompts, .adapter = adapter,
                        .max_tokens = max_tokens, .temperature = temperature};
    uint64_t job_id = 0;
    int rc = sq_e2e_submit(s_c, &job, 10000, &job_id, NULL);
    SQ_CHECK(rc == 0);
    for (int i = 0; i < n; i++) {
        free(ids[i]);
        free(prompts[i]);
    }
    free(ids);
    free(prompts);
    return job_id;
}

static uint64_t s_submit_job(int n, int distinct, const char *adapter, int max_tokens)
{
    return s_submit_job_t(n, distinct, adapter, max_tokens, 0.0);
}

/* A base-model job of n tasks of up to max_tokens (0: the broker's 128). */
static uint64_t s_submit(int n, int distinct, int max_tokens)
{
    return s_submit_job(n, distinct, NULL, max_tokens);
}

static int64_t s_count(const char *sql)
{
    int64_t v = -1;
    sq_harness_sql_i64(s_h, sql, &v);
    return v;
}

/* Run `shardq ARGS` against this test's broker; returns its exit code.
 * Its stdout goes to out (a file path) when given, else with stderr to
 * the test's cli.log. */
static int s_cli_to(const char *args, const char *out)
{
    char cmd[4096], log[700];
    snprintf(log, sizeof log, "%s/cli.log", sq_harness_log_dir(s_h));
    if (snprintf(cmd, sizeof cmd, "SHARDQ_BROKER=%s SHARDQ_ACTOR=e2e-test %s %s %s %s 2>> %s",
                 sq_harness_client_endpoint(s_h), s_env("SHARDQ_CLI_BIN"), args,
                 out ? ">" : ">>", out ? out : log, log) >= (int)sizeof cmd)
        return -1; /* a command cut short would be another command */
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int s_cli(const char *args)
{
    return s_cli_to(args, NULL);
}

/* `shardq ARGS` with its stderr into the file at err; its exit code */
static int s_cli_err(const char *args, const char *err)
{
    char cmd[4096];
    if (snprintf(cmd, sizeof cmd, "SHARDQ_BROKER=%s SHARDQ_ACTOR=e2e-test %s %s > /dev/null 2> %s",
                 sq_harness_client_endpoint(s_h), s_env("SHARDQ_CLI_BIN"), args, err) >=
        (int)sizeof cmd)
        return -1;
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The sum of the integers after each `key` in the file at path (-1 when
 * it cannot be read). */
static int64_t s_sum_field(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    int64_t sum = 0;
    while (fgets(line, sizeof line, f))
        for (const char *p = strstr(line, key); p; p = strstr(p + 1, key))
            sum += strtoll(p + strlen(key), NULL, 10);
    fclose(f);
    return sum;
}

/* The start of a file's text ("" when it cannot be read). */
static void s_read_text(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}



static void case_serves(void)
{
    int mport = sq_e2e_free_port();
    SQ_REQUIRE(mport > 0);
    char mflag[32];
    snprintf(mflag, sizeof mflag, "--metrics-port=%d", mport);
    const char *flags[] = {mflag, NULL};
    SQ_REQUIRE(sq_e2e_up("group_serves", flags, &s_h, &s_c));
    s_device = "auto";   /* no GPU here: lineage must say what auto chose */
    SQ_REQUIRE(s_group("g-serve", 8) != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    uint64_t job = s_submit(40, 5, 0);
    SQ_REQUIRE(job > 0);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 40, 120000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE coalesce(length(text), 0) = 0") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE completion_tokens > 0") == 40);
    /* twins find their prompt in a slot's cache: every result says how many
     * of its prompt tokens came from it (never the last one), some > 0 */
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE cached_tokens >= 0 "
                     "AND cached_tokens < prompt_tokens") == 40);
    const int64_t cached = s_count("SELECT sum(cached_tokens) FROM task_results");
    printf("prompt tokens from the KV cache: %lld\n", (long long)cached);
    SQ_CHECK(cached > 0);
    /* the results file shows them as OpenAI's usage.prompt_tokens_details */
    char rargs[64], rout[1200];
    snprintf(rargs, sizeof rargs, "results %llu", (unsigned long long)job);
    snprintf(rout, sizeof rout, "%s/results.jsonl", sq_harness_log_dir(s_h));
    SQ_CHECK(s_cli_to(rargs, rout) == 0);
    SQ_CHECK(s_sum_field(rout, "\"cached_tokens\":") == cached);
    /* and `shardq stats` the pool's prompt tokens and the share cached */
    char sout[1200], stext[4096];
    snprintf(sout, sizeof sout, "%s/stats.txt", sq_harness_log_dir(s_h));
    SQ_CHECK(s_cli_to("stats", sout) == 0);
    s_read_text(sout, stext, sizeof stext);
    const char *row = strstr(stext, "\n" S_MODEL_NAME " ");
    unsigned long long prompt = 0;
    double share = -1, tps = 0;
    unsigned long long skip[7];
    SQ_CHECK(row && sscanf(row + 1 + strlen(S_MODEL_NAME), "%llu %llu %llu %llu %llu %llu %llu %lf "
                                                         "%llu %lf%%", &skip[0], &skip[1], &skip[2],
                                                         &skip[3], &skip[4], &skip[5], &skip[6],
                                                         &tps, &prompt, &share) == 10);
    const int64_t prompt_sum = s_count("SELECT sum(prompt_tokens) FROM task_results");
    SQ_CHECK((int64_t)prompt == prompt_sum);
    SQ_CHECK(share > 0 && fabs(share - 100.0 * (double)cached / (double)prompt_sum) < 0.06);
    /* `shardq results` sums the same on stderr */
    char clog[1200], ctext[16384], want_sum[160];
    snprintf(clog, sizeof clog, "%s/cli.log", sq_harness_log_dir(s_h));
    s_read_text(clog, ctext, sizeof ctext);
    snprintf(want_sum, sizeof want_sum, "job %llu: %lld prompt tokens, %lld of them (",
             (unsigned long long)job, (long long)prompt_sum, (long long)cached);
    SQ_CHECK(strstr(ctext, want_sum) != NULL);
    /* lineage, not text, is what these tasks are compared by */
    SQ_CHECK(s_count("SELECT count(DISTINCT group_id) FROM task_attempts WHERE outcome = 'succeeded'") == 1);
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE group_id = 'g-serve'") == 40);
    /* lineage: the exact model file (sha256 of the bundled model), group, TP */
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE model_sha256 = "
                     "'fda40b11105b10c7b8979c01f943994fbd18dd430eaa09149ff9e4ea1249fa5c' "
                     "AND group_id = 'g-serve' AND tp_size = 2 AND device = 'cpu' AND kv_type = 'f16' "
                     "AND adapter IS NULL AND prefill_ms >= 0 AND decode_ms >= 0") == 40);
    /* the group's capabilities name its KV cache (shardq workers shows them) */
    SQ_CHECK(s_count("SELECT count(*) FROM workers WHERE group_id = 'g-serve' "
                     "AND capabilities->>'kv_type' = 'f16'") == 1);
    /* and its KV pages: 8 slots of the model's 512 positions, 32 a page */
    SQ_CHECK(s_count("SELECT (capabilities->>'kv_pages')::int FROM workers "
                     "WHERE group_id = 'g-serve'") == 128);
    char wout[1200], wtext[4096];
    snprintf(wout, sizeof wout, "%s/workers.json", sq_harness_log_dir(s_h));
    SQ_CHECK(s_cli_to("workers --json", wout) == 0);
    s_read_text(wout, wtext, sizeof wtext);
    SQ_CHECK(strstr(wtext, "\"kv_pages\": 128") != NULL);
    /* the broker's Prometheus endpoint sees the pool and the idle group */
    static char page[65536];
    SQ_CHECK(sq_e2e_scrape(mport, page, sizeof page) == 0);
    SQ_CHECK(strstr(page, "shardq_broker_queued_tasks{model=\"" S_MODEL_NAME "\"} 0") != NULL);
    SQ_CHECK(strstr(page, "shardq_broker_groups{model=\"" S_MODEL_NAME "\",state=\"idle\"} 1") != NULL);
    SQ_CHECK(strstr(page, "shardq_broker_database_up 1") != NULL);
    /* and the group's KV pages from its heartbeats (none in use once it
     * is idle) */
    for (int i = 0; i < 100 && !strstr(page, "shardq_broker_group_kv_pages_in_use{model=\""
                                             S_MODEL_NAME "\",group=\"g-serve\"} 0\n"); i++) {
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
        SQ_CHECK(sq_e2e_scrape(mport, page, sizeof page) == 0);
    }
    SQ_CHECK(strstr(page, "shardq_broker_group_kv_pages_in_use{model=\"" S_MODEL_NAME
                          "\",group=\"g-serve\"} 0\n") != NULL);
    SQ_CHECK(strstr(page, "shardq_broker_group_kv_pages{model=\"" S_MODEL_NAME
                          "\",group=\"g-serve\"} 128\n") != NULL);
    SQ_CHECK(strstr(page, "shardq_broker_group_preemptions_total{model=\"" S_MODEL_NAME
                          "\",group=\"g-serve\"} 0\n") != NULL);
    /* and counts the tokens of the results, the cached ones with them */
    char want[200];
    snprintf(want, sizeof want, "shardq_broker_cached_prompt_tokens_total{model=\"" S_MODEL_NAME
             "\"} %lld\n", (long long)cached);
    SQ_CHECK(strstr(page, want) != NULL);
    snprintf(want, sizeof want, "shardq_broker_completion_tokens_total{model=\"" S_MODEL_NAME
             "\"} %lld\n", (long long)s_count("SELECT sum(completion_tokens) FROM task_results"));
    SQ_CHECK(strstr(page, want) != NULL);
    /* scaling decisions recorded by a scheduler read back through the CLI */
    PGresult *res = sq_harness_sql(s_h, "INSERT INTO scaling_events (pool, from_groups, to_groups,"
                                   " reason, actuator, applied) VALUES ('fin-research', 1, 3,"
                                   " 'up: 96 queued / 32 per group', 'local', true),"
                                   " ('old-pool', 2, 1, 'down', 'local', true)", 0, NULL);
    SQ_CHECK(res != NULL);
    PQclear(res);
    res = sq_harness_sql(s_h, "UPDATE scaling_events SET at = at - interval '3 days'"
                              " WHERE pool = 'old-pool'", 0, NULL);
    /* refused: the table is append-only, like the audit log */
    SQ_CHECK(res == NULL);
    char out[1200];
    snprintf(out, sizeof out, "%s/scaling.json", sq_harness_log_dir(s_h));
    SQ_CHECK(s_cli_to("scaling --since 1h --json", out) == 0);
    char text[4096];
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strstr(text, "\"pool\": \"fin-research\"") != NULL);
    SQ_CHECK(strstr(text, "up: 96 queued / 32 per group") != NULL);
    SQ_CHECK(s_cli_to("scaling --pool nosuch --json", out) == 0);
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strstr(text, "fin-research") == NULL);
    sq_e2e_check_no_duplicates(s_h);
}

/* The CUDA backend under a real group: CTest points SHARDQ_WORKER_BIN at
 * shardq-worker-emu, shardq-worker built against the CPU emulator of
 * tests/cuda/emu, so `--device cuda` runs the real backend with both ranks
 * on the one emulated device (the host all-reduce), the batcher's device
 * argmax and all. --max-batch auto on a 48 MiB emulated device: the ranks
 * find they share it (one device key) and size the KV cache to half of
 * what is free each; the broker sees the count. */
static void case_cuda_emu(void)
{
    SQ_REQUIRE(sq_e2e_up("group_cuda_emu", NULL, &s_h, &s_c));
    s_device = "cuda";
    s_kv_type = "f32";   /* the default F16 cache serves the other cases */
    s_max_batch = "auto";
    setenv("SQ_EMU_DEVICE_BYTES", "50331648", 1);
    SQ_REQUIRE(s_group("g-cuda", 8) != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    const int64_t slots = s_count("SELECT (capabilities->>'max_batch')::int FROM workers "
                                  "WHERE group_id = 'g-cuda'");
    fprintf(stderr, "   --max-batch auto on a 48 MiB device shared by 2 ranks: %lld\n",
            (long long)slots);
    SQ_CHECK(slots >= 2 && slots < 256);
    /* the pages the free memory holds, as many as the slots a quarter of
     * the context each */
    const int64_t pages = s_count("SELECT (capabilities->>'kv_pages')::int FROM workers "
                                  "WHERE group_id = 'g-cuda'");
    SQ_CHECK(pages >= 16 && slots == 4 * pages / 16);
    /* half greedy, half sampled (temperature 0.9: drawn on the device) */
    SQ_REQUIRE(s_submit(6, 3, 24) > 0);
    SQ_REQUIRE(s_submit_job_t(6, 3, NULL, 24, 0.9) > 0);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 12, 180000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE completion_tokens > 0 "
                     "AND length(text) > 0") == 12);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE group_id = 'g-cuda' "
                     "AND tp_size = 2 AND device = 'cuda' AND kv_type = 'f32'") == 12);
    sq_e2e_check_no_duplicates(s_h);
}

/* A GPU that fails mid-job (the emulated device faults at its 1200th
 * kernel: an illegal address, sticky, as an Xid error leaves a real one):
 * the group exits non-zero instead of hanging or failing the tasks it
 * holds, its leases go back to the queue, and a healthy group finishes
 * the job: every task succeeds, none twice, none failed. */
static int s_log_count(const char *name, const char *needle);

/* The emulated device's kernel number `at` fails (env "SQ_EMU_FAULT_AFTER")
 * or never ends ("SQ_EMU_HANG_AFTER") in group g-bad mid-job; the group
 * must end non-zero with log line `says` and its leases go back to the
 * queue, their attempts' error saying why (SQL LIKE `why`); a healthy
 * group then finishes the job: every task succeeds, none twice, none
 * failed. */
enum { S_FAULT_TASKS = 40 };
static void s_device_fails(const char *env, const char *at, const char *says, const char *why)
{
    s_device = "cuda";
    s_kv_type = "f32";
    setenv(env, at, 1);
    sq_proc_t *bad = s_group("g-bad", 8);
    unsetenv(env);
    SQ_REQUIRE(bad != NULL && s_wait_groups(1) == 0);
    SQ_REQUIRE(s_submit(S_FAULT_TASKS, 5, 24) > 0);
    SQ_CHECK(sq_proc_wait(bad, 180000) == 0);
    SQ_CHECK(sq_proc_exit_code(bad) != 0);
    const int64_t done = s_count("SELECT count(*) FROM task_results");
    fprintf(stderr, "   results before kernel %s: %lld of %d\n", at, (long long)done,
            S_FAULT_TASKS);
    SQ_CHECK(done < S_FAULT_TASKS);
    SQ_CHECK(s_log_count("g-bad", says) >= 1);
    s_step_timeout = NULL;
    SQ_REQUIRE(s_group("g-rescue", 8) != NULL);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 S_FAULT_TASKS, 180000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE state <> 'succeeded'") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE group_id = 'g-bad' "
                     "AND outcome = 'worker_lost'") >= 1);
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_attempts WHERE group_id = 'g-bad' "
             "AND outcome = 'worker_lost' AND error NOT LIKE '%s'", why);
    SQ_CHECK(s_count(sql) == 0);
    sq_e2e_check_no_duplicates(s_h);
}

/* A GPU that fails mid-job (an illegal address, sticky, as an Xid error
 * leaves a real one): the group exits non-zero instead of hanging or
 * failing the tasks it holds. */
static void case_cuda_fault(void)
{
    SQ_REQUIRE(sq_e2e_up("group_cuda_fault", NULL, &s_h, &s_c));
    s_device_fails("SQ_EMU_FAULT_AFTER", "1200", "an illegal memory access was encountered",
                   "worker disconnected: forward step failed: device error: %illegal memory "
                   "access%");
}

/* A GPU that hangs mid-job (a kernel that never ends, as a stuck NCCL
 * all-reduce does): the heartbeats go on, so only the group's watchdog
 * can tell; with --step-timeout 3 it ends the group. */
static void case_cuda_hang(void)
{
    SQ_REQUIRE(sq_e2e_up("group_cuda_hang", NULL, &s_h, &s_c));
    s_step_timeout = "3";
    s_device_fails("SQ_EMU_HANG_AFTER", "1200", "forward step stuck, ending the group",
                   "worker disconnected: forward step stuck for % s (step timeout 3.0 s)");
}

/* Lines of group name's log that contain needle. */
static int s_log_count(const char *name, const char *needle)
{
    char path[700], line[1024];
    snprintf(path, sizeof path, "%s/%s.log", sq_harness_log_dir(s_h), name);
    FILE *log = fopen(path, "r");
    int n = 0;
    while (log && fgets(line, sizeof line, log))
        n += strstr(line, needle) != NULL;
    if (log)
        fclose(log);
    return n;
}

/* The paged KV cache under a real group: 8 slots share 16 pages (one
 * context of the bundled model's 512 positions); tasks with max_tokens
 * 100 grow to 4 pages each, so the pool runs short: sequences are
 * preempted and resumed, and leases wait for pages in the group (none is
 * failed back to the broker). Every task succeeds on its first attempt
 * and greedy twins (the same prompt) give the same text. */
static void case_kv_pages(void)
{
    SQ_REQUIRE(sq_e2e_up("group_kv_pages", NULL, &s_h, &s_c));
    s_kv_pages = "16";
    SQ_REQUIRE(s_group("g-pages", 8) != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    SQ_REQUIRE(s_submit(16, 4, 100) > 0);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 16, 180000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE outcome <> 'succeeded'") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE attempts = 1") == 16);
    SQ_CHECK(s_count("SELECT count(DISTINCT (t.prompt, r.text)) FROM task_results r "
                     "JOIN tasks t USING (job_id, idx)") == 4);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE completion_tokens > 0") == 16);
    /* the pool did run short: the group says so in its log */
    const int waited = s_log_count("g-pages", "task waits for KV-cache pages");
    const int preempted = s_log_count("g-pages", "sequences preempted: KV cache full");
    fprintf(stderr, "   %d tasks waited for KV-cache pages, %d steps preempted sequences\n",
            waited, preempted);
    SQ_CHECK(preempted > 0);
    /* its heartbeats tell the broker too: the preemptions (at least one a
     * step that preempted) and, the job done, no page in use */
    char wout[1200], wtext[4096];
    snprintf(wout, sizeof wout, "%s/workers.json", sq_harness_log_dir(s_h));
    for (int i = 0; i < 100; i++) {
        SQ_CHECK(s_cli_to("workers --json", wout) == 0);
        s_read_text(wout, wtext, sizeof wtext);
        if (strstr(wtext, "\"kv_pages_in_use\": 0"))
            break;
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
    }
    const char *pre = strstr(wtext, "\"preemptions\": ");
    SQ_CHECK(strstr(wtext, "\"kv_pages_in_use\": 0") != NULL);
    SQ_CHECK(pre && strtol(pre + strlen("\"preemptions\": "), NULL, 10) >= preempted);
    /* long tasks (up to 13 of the 16 pages each), cancelled as soon as one
     * is preempted: every task ends, and the group goes on serving */
    const uint64_t long_job = s_submit(16, 4, 400);
    SQ_REQUIRE(long_job > 0);
    for (int i = 0;
         i < 3000 && s_log_count("g-pages", "sequences preempted: KV cache full") == preempted;
         i++) {
        struct timespec pause = {0, 10 * 1000000L};
        nanosleep(&pause, NULL);
    }
    uint64_t n_cancelled = 0;
    SQ_CHECK(sq_e2e_cancel(s_c, long_job, &n_cancelled) == 0);
    fprintf(stderr, "   long job: %llu of 16 tasks cancelled\n", (unsigned long long)n_cancelled);
    SQ_CHECK(n_cancelled >= 1);   /* the preempted one had not finished */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_results WHERE job_id = %llu",
             (unsigned long long)long_job);
    SQ_CHECK(sq_harness_wait_i64(s_h, sql, 16, 60000) == 0);
    const uint64_t after = s_submit(4, 4, 16);
    SQ_REQUIRE(after > 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_results WHERE job_id = %llu "
             "AND state = 'succeeded'", (unsigned long long)after);
    SQ_CHECK(sq_harness_wait_i64(s_h, sql, 4, 60000) == 0);
    sq_e2e_check_no_duplicates(s_h);
}

/* The pids of the ranks mpirun started (its direct children). */
static int s_children(pid_t parent, pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        int ppid = 0;
        if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == parent)
            out[n++] = (pid_t)atoi(e->d_name);
    }
    if (d)
        closedir(d);
    return n;
}

/* mpirun is shardq-group's child; the ranks are mpirun's children. */
static int s_rank_pids(sq_proc_t *group, pid_t *ranks, int max)
{
    pid_t mpirun[4];
    for (int tries = 0; tries < 500; tries++) {
        if (s_children(sq_proc_pid(group), mpirun, 4) == 1) {
            int n = s_children(mpirun[0], ranks, max);
            if (n >= 2)
                return n;
        }
        sq_harness_poll_pause();
    }
    return 0;
}

/* Up a broker and one group, submit a base job of n_tasks, return the
 * group once n_done of them have results (the group is mid-job). */
static sq_proc_t *s_group_mid_job(const char *test, const char *group, int max_batch,
                                  int n_tasks, int n_done)
{
    if (!sq_e2e_up(test, NULL, &s_h, &s_c))
        return NULL;
    sq_proc_t *g = s_group(group, max_batch);
    if (!g || s_wait_groups(1) != 0 || s_submit(n_tasks, 5, 0) == 0 ||
        sq_harness_wait_at_least(s_h, "SELECT count(*) FROM task_results", n_done, 120000,
                                 NULL) != 0)
        return NULL;
    return g;
}

enum { S_KILLED_TASKS = 400 };
static void case_rank_killed(void)
{
    /* mid-batch: the victim holds leases and has finished some tasks. The
     * job is long enough that it cannot finish between the 4th result
     * and the kill (60 tasks could, on a fast engine, and then no lease
     * was lost) */
    sq_proc_t *a = s_group_mid_job("group_rank_killed", "g-victim", 8, S_KILLED_TASKS, 4);
    SQ_REQUIRE(a != NULL);
    pid_t ranks[8];
    int n = s_rank_pids(a, ranks, 8);
    SQ_REQUIRE(n == 2);
    SQ_REQUIRE(kill(ranks[n - 1], SIGKILL) == 0);
    /* the whole group goes, non-zero */
    SQ_CHECK(sq_proc_wait(a, 60000) == 0);
    SQ_CHECK(sq_proc_exit_code(a) != 0);
    SQ_REQUIRE(s_group("g-rescue", 8) != NULL);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 S_KILLED_TASKS, 180000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE group_id = 'g-victim' "
                     "AND outcome = 'worker_lost'") >= 1);
    sq_e2e_check_no_duplicates(s_h);
}

static void case_drain(void)
{
    sq_proc_t *a = s_group_mid_job("group_drain", "g-drain", 4, 24, 2);
    SQ_REQUIRE(a != NULL);
    SQ_REQUIRE(sq_proc_signal(a, SIGTERM) == 0);
    SQ_CHECK(sq_proc_wait(a, 90000) == 0);
    SQ_CHECK(sq_proc_exit_code(a) == 0);
    SQ_CHECK(sq_proc_log_count(a, "draining") == 1);
    /* drained tasks finished on the group: none of its attempts was lost */
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE group_id = 'g-drain' "
                     "AND outcome <> 'succeeded'") == 0);
    SQ_REQUIRE(s_group("g-after", 8) != NULL);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 24, 180000) == 0);
    sq_e2e_check_no_duplicates(s_h);
}

/* Run shardq-model with args and wait for it to succeed. */
static int s_model_tool(const char *name, const char *const args[])
{
    const char *argv[16] = {s_env("SHARDQ_MODEL_BIN")};
    int n = 1;
    for (; args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    sq_proc_t *p = sq_harness_spawn(s_h, name, argv);
    return p && sq_proc_wait(p, 60000) == 0 && sq_proc_exit_code(p) == 0 ? 0 : -1;
}

static int s_write_file(const char *path, const char *text)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(text, f);
    fclose(f);
    return rename(tmp, path);   /* workers never see a half-written file */
}


static void case_adapters(void)
{
    SQ_REQUIRE(sq_e2e_up("group_adapters", NULL, &s_h, &s_c));
    snprintf(s_adapters_dir, sizeof s_adapters_dir, "%s/adapters", sq_harness_log_dir(s_h));
    char fin[700], v1[800], v2[800], active[800];
    snprintf(fin, sizeof fin, "%s/fin", s_adapters_dir);
    snprintf(v1, sizeof v1, "%s/v1.gguf", fin);
    snprintf(v2, sizeof v2, "%s/v2.gguf", fin);
    snprintf(active, sizeof active, "%s/active", fin);
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", fin);
    SQ_REQUIRE(system(cmd) == 0);
    const char *base = s_env("SHARDQ_TEST_MODEL");
    const char *a1[] = {"lora-random", "--base", base, "--rank", "4", "--seed", "3", "--gain",
                        "0.2", v1, NULL};
    const char *a2[] = {"lora-random", "--base", base, "--rank", "4", "--seed", "4", "--gain",
                        "0.2", v2, NULL};
    SQ_REQUIRE(s_model_tool("lora-v1", a1) == 0);
    SQ_REQUIRE(s_model_tool("lora-v2", a2) == 0);
    SQ_REQUIRE(s_write_file(active, "v1\n") == 0);
    sq_proc_t *g = s_group("g-lora", 8);
    SQ_REQUIRE(g != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    uint64_t base_job = s_submit_job(20, 5, NULL, 24);
    uint64_t lora_job = s_submit_job(60, 5, "fin", 24);
    SQ_REQUIRE(base_job > 0 && lora_job > 0);
    /* hot activation while the adapter job runs: once some of its tasks
     * ran on v1 (the group reads `active` when it takes a lease, so a
     * switch before the first adapter lease would leave v1 unused) */
    SQ_REQUIRE(sq_harness_wait_at_least(s_h, "SELECT count(*) FROM result_lineage "
                                             "WHERE adapter = 'fin'", 10, 120000, NULL) == 0);
    SQ_REQUIRE(s_write_file(active, "v2\n") == 0);
    /* a job submitted after the switch runs on v2 however fast the first
     * one finished */
    uint64_t after_job = s_submit_job(20, 5, "fin", 24);
    SQ_REQUIRE(after_job > 0);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 100, 180000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE outcome <> 'succeeded'") == 0);
    /* every adapter output names the version it ran with; base outputs none */
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE adapter = 'fin' "
                     "AND adapter_version IN ('v1', 'v2')") == 80);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM result_lineage WHERE job_id = %llu "
             "AND adapter_version = 'v2'", (unsigned long long)after_job);
    SQ_CHECK(s_count(sql) == 20);
    SQ_CHECK(s_count("SELECT count(DISTINCT adapter_version) FROM result_lineage "
                     "WHERE adapter = 'fin'") == 2);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE adapter IS NULL") == 20);
    /* the canned audit query answers the same, run as-is through psql */
    char q[2048];
    snprintf(q, sizeof q,
             "psql -X -q -A -t -v ON_ERROR_STOP=1 -v from=\"'2000-01-01'\" -v to=\"'2100-01-01'\""
             " -v adapter=\"'fin'\" -v job=0 -d '%s' -f '%s/queries/adapter_outputs.sql'"
             " | grep -c '|fin|v[12]|g-lora|'",
             sq_harness_conninfo(s_h), s_env("SHARDQ_SQL_DIR"));
    FILE *pq = popen(q, "r");
    int n_rows = -1;
    if (pq) {
        if (fscanf(pq, "%d", &n_rows) != 1)
            n_rows = -1;
        pclose(pq);
    }
    SQ_CHECK(n_rows == 80);
    /* one job file mixing the base model, the adapter and a pinned version,
     * through the real CLI */
    char jf[800], args[1600];
    snprintf(jf, sizeof jf, "%s/mixed.jsonl", sq_harness_log_dir(s_h));
    SQ_REQUIRE(s_write_file(jf,
        "{\"custom_id\": \"m-base\", \"prompt\": \"The bank\", \"max_tokens\": 8}\n"
        "{\"custom_id\": \"m-fin\", \"prompt\": \"The bank\", \"max_tokens\": 8, \"adapter\": \"fin\"}\n"
        "{\"custom_id\": \"m-pin\", \"prompt\": \"The bank\", \"max_tokens\": 8, \"adapter\": \"fin\","
        " \"adapter_version\": \"v1\"}\n") == 0);
    snprintf(args, sizeof args, "submit %s --model %s --wait", jf, S_MODEL_NAME);
    SQ_CHECK(s_cli(args) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE custom_id = 'm-base' AND adapter IS NULL") == 1);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE custom_id = 'm-fin' AND adapter = 'fin'"
                     " AND adapter_version = 'v2'") == 1);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE custom_id = 'm-pin' AND adapter = 'fin'"
                     " AND adapter_version = 'v1'") == 1);
    /* tasks that started on v1 finished on it; later ones loaded v2 */
    SQ_CHECK(sq_proc_log_count(g, "adapter loaded") == 2);
    SQ_CHECK(sq_proc_log_count(g, "version=v1") == 1);
    SQ_CHECK(sq_proc_log_count(g, "version=v2") == 1);
    /* an adapter nobody published (no DIR/NAME/active) ends dead, with its
     * name, after every attempt: a missing file is retried, as it may be
     * a publish still on its way (docs/worker.md, "LoRA adapters") */
    uint64_t bad = s_submit_job(2, 2, "nosuch", 8);
    SQ_REQUIRE(bad > 0);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'dead' "
                                 "AND error LIKE '%nosuch%'", 2, 60000) == 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_attempts WHERE job_id = %llu "
             "AND outcome = 'failed'", (unsigned long long)bad);
    const int64_t n_failed = s_count(sql);
    snprintf(sql, sizeof sql, "SELECT 2 * max_attempts FROM jobs WHERE id = %llu",
             (unsigned long long)bad);
    SQ_CHECK(n_failed > 2 && n_failed == s_count(sql));
    /* a file that is there but not an adapter fails at once, for good */
    char broken[700];
    snprintf(broken, sizeof broken, "%s/broken", s_adapters_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", broken);
    SQ_REQUIRE(system(cmd) == 0);
    snprintf(active, sizeof active, "%s/active", broken);
    snprintf(v1, sizeof v1, "%s/v1.gguf", broken);
    SQ_REQUIRE(s_write_file(active, "v1\n") == 0);
    SQ_REQUIRE(s_write_file(v1, "this is no GGUF file, whatever its name says\n") == 0);
    bad = s_submit_job(2, 2, "broken", 8);
    SQ_REQUIRE(bad > 0);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'dead' "
                                 "AND error LIKE '%broken%'", 2, 60000) == 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_attempts WHERE job_id = %llu "
             "AND outcome = 'failed_permanent' AND attempt = 1", (unsigned long long)bad);
    SQ_CHECK(s_count(sql) == 2);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_attempts WHERE job_id = %llu",
             (unsigned long long)bad);
    SQ_CHECK(s_count(sql) == 2);
    sq_e2e_check_no_duplicates(s_h);
}


static void case_lora_updates(void)
{
    /* the broker owns the adapter directory; the group reads it */
    char dir[600];
    SQ_REQUIRE((s_h = sq_harness_new("group_lora_updates")) != NULL);
    SQ_REQUIRE(sq_harness_migrate(s_h) == 0);
    snprintf(dir, sizeof dir, "%s/adapters", sq_harness_log_dir(s_h));
    snprintf(s_adapters_dir, sizeof s_adapters_dir, "%s", dir);
    const char *flags[] = {"--adapters", dir, NULL};
    SQ_REQUIRE(sq_harness_broker_start(s_h, flags) != NULL);
    SQ_REQUIRE((s_c = sq_e2e_client_new(sq_harness_client_endpoint(s_h))) != NULL);
    const char *base = s_env("SHARDQ_TEST_MODEL");
    char f[3][700], args[4096];
    for (int v = 0; v < 3; v++) {
        snprintf(f[v], sizeof f[v], "%s/v%d.gguf", sq_harness_log_dir(s_h), v + 1);
        char seed[8], name[16];
        snprintf(seed, sizeof seed, "%d", 10 + v);
        snprintf(name, sizeof name, "make-v%d", v + 1);
        const char *a[] = {"lora-random", "--base", base, "--rank", "4", "--seed", seed,
                           "--gain", "0.2", f[v], NULL};
        SQ_REQUIRE(s_model_tool(name, a) == 0);
        snprintf(args, sizeof args, "lora publish --name fin --version v%d --file %s --base %s "
                 "--source 'nightly %d' --metrics '{\"eval_loss\": 1.%d}'", v + 1, f[v], base, v, v);
        SQ_REQUIRE(s_cli(args) == 0);
    }
    /* a file for another shape is refused before anything is recorded */
    char other[700], wrong[700];
    snprintf(other, sizeof other, "%s/other.gguf", sq_harness_log_dir(s_h));
    snprintf(wrong, sizeof wrong, "%s/wrong.gguf", sq_harness_log_dir(s_h));
    const char *o1[] = {"random", "--shape", "tiny-gqa", other, NULL};
    const char *o2[] = {"lora-random", "--base", other, "--rank", "2", wrong, NULL};
    SQ_REQUIRE(s_model_tool("make-other", o1) == 0 && s_model_tool("make-wrong", o2) == 0);
    snprintf(args, sizeof args, "lora publish --name fin --version bad --file %s --base %s", wrong,
             base);
    SQ_CHECK(s_cli(args) == 3);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE version = 'bad'") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE state = 'staged'") == 3);
    SQ_REQUIRE(s_cli("lora activate fin@v1") == 0);

    /* a small batch keeps the 500-task job running long enough for the
     * activation to land in the middle of it */
    sq_proc_t *g = s_group("g-upd", 4);
    SQ_REQUIRE(g != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    uint64_t job = s_submit_job(500, 5, "fin", 48);
    SQ_REQUIRE(job > 0);
    SQ_REQUIRE(sq_harness_wait_at_least(s_h, "SELECT count(*) FROM task_results", 20, 300000,
                                        NULL) == 0);
    SQ_REQUIRE(s_cli("lora activate fin@v2") == 0);
    /* the job must still be running, or this case would test nothing */
    SQ_REQUIRE(s_count("SELECT count(*) FROM task_results") < 450);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 500, 400000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE outcome <> 'succeeded'") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE adapter_version = 'v1'") >= 20);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE adapter_version = 'v2'") >= 50);
    printf("hot activation: %lld results on v1, %lld on v2\n",
           (long long)s_count("SELECT count(*) FROM result_lineage WHERE adapter_version = 'v1'"),
           (long long)s_count("SELECT count(*) FROM result_lineage WHERE adapter_version = 'v2'"));
    /* each result's version is the one active when its task was leased:
     * none ran v2 before the activation, none got v1 after the broker
     * took the new version on (within moments of the commit); started_at
     * is the broker's clock cut to the millisecond, so e.at is too */
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage l JOIN task_attempts a"
                     " ON a.job_id = l.job_id AND a.idx = l.idx AND a.outcome = 'succeeded',"
                     " (SELECT at FROM lora_events WHERE version = 'v2' AND to_state = 'active') e"
                     " WHERE (l.adapter_version = 'v2'"
                     "        AND a.started_at < date_trunc('milliseconds', e.at))"
                     "    OR (l.adapter_version = 'v1' AND a.started_at > e.at + interval '2 s')") == 0);

    /* canary: 30 % of a new job's tasks on v3 (by task id, so within a few %) */
    SQ_REQUIRE(s_cli("lora activate fin@v3 --canary 30") == 0);
    uint64_t cjob = s_submit_job(200, 5, "fin", 4);
    SQ_REQUIRE(cjob > 0);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_results WHERE job_id = %llu",
             (unsigned long long)cjob);
    SQ_CHECK(sq_harness_wait_i64(s_h, sql, 200, 400000) == 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM result_lineage WHERE job_id = %llu"
             " AND adapter_version = 'v3'", (unsigned long long)cjob);
    int64_t on_canary = s_count(sql);
    printf("canary share: %lld of 200 tasks (%.1f %%)\n", (long long)on_canary, on_canary / 2.0);
    SQ_CHECK(on_canary >= 200 * 22 / 100 && on_canary <= 200 * 38 / 100);

    /* rollback ends the canary; the next one returns to v1 */
    SQ_REQUIRE(s_cli("lora rollback fin") == 0);
    SQ_REQUIRE(s_cli("lora rollback fin") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE state = 'active' AND version = 'v1'") == 1);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE state = 'rolled_back'") == 2);
    uint64_t rjob = s_submit_job(10, 5, "fin", 4);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM result_lineage WHERE job_id = %llu"
             " AND adapter_version = 'v1'", (unsigned long long)rjob);
    SQ_CHECK(sq_harness_wait_i64(s_h, sql, 10, 120000) == 0);
    /* every change is a lora_events row and an audit row, with who */
    SQ_CHECK(s_count("SELECT count(*) FROM lora_events WHERE actor = 'e2e-test'") ==
             s_count("SELECT count(*) FROM audit_log WHERE action LIKE 'lora_%' AND actor = 'e2e-test'"));
    SQ_CHECK(s_count("SELECT count(*) FROM lora_events") >= 9);
    SQ_CHECK(s_cli("lora list --json") == 0);
    sq_e2e_check_no_duplicates(s_h);
}

/* The adapter registry's rules, through the real CLI and broker (no
 * group needed): the documented state machine, a canary only beside an
 * active version, a job-level adapter name checked at submit, and no file
 * left in the adapter directory by a publish the database refused. */
static void case_lora_states(void)
{
    char dir[600];
    SQ_REQUIRE((s_h = sq_harness_new("group_lora_states")) != NULL);
    SQ_REQUIRE(sq_harness_migrate(s_h) == 0);
    snprintf(dir, sizeof dir, "%s/adapters", sq_harness_log_dir(s_h));
    const char *flags[] = {"--adapters", dir, NULL};
    SQ_REQUIRE(sq_harness_broker_start(s_h, flags) != NULL);
    const char *base = s_env("SHARDQ_TEST_MODEL");
    char f[700], args[4096], out[700], text[4096];
    snprintf(f, sizeof f, "%s/a.gguf", sq_harness_log_dir(s_h));
    snprintf(out, sizeof out, "%s/lora-cli.txt", sq_harness_log_dir(s_h));
    const char *make[] = {"lora-random", "--base", base, "--rank", "4", "--seed", "21", f, NULL};
    SQ_REQUIRE(s_model_tool("make-a", make) == 0);
    for (int v = 1; v <= 4; v++) {
        snprintf(args, sizeof args, "lora publish --name fin --version v%d --file %s "
                 "--metrics '{\"eval_loss\": 1.42, \"at\": 1234567890.1234567}'", v, f);
        SQ_REQUIRE(s_cli(args) == 0);
    }
    /* metrics come back as written, not as their doubles' 17 digits */
    SQ_CHECK(s_cli_to("lora list fin --json", out) == 0);
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strstr(text, "\"eval_loss\": 1.42\n") != NULL);
    SQ_CHECK(strstr(text, "\"at\": 1234567890.1234567,\n") != NULL);
#define S_REFUSED(cmd, says)                                                                   \
    do {                                                                                       \
        SQ_CHECK(s_cli_err(cmd, out) == 3);                                                  \
        s_read_text(out, text, sizeof text);                                                 \
        SQ_CHECK(strstr(text, says) != NULL);                                                \
    } while (0)
    /* usage: what is missing, and the subcommand's whole name */
    SQ_CHECK(s_cli_err("lora publish --name x", out) == 2);
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strstr(text, "shardq lora publish: missing --version --file (usage: shardq lora "
                          "publish --name NAME") != NULL);
    SQ_CHECK(s_cli_to("lora activate --help", out) == 0);
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strncmp(text, "usage: shardq lora activate NAME@VERSION", 40) == 0);
    /* the same file again (a nightly job rerun) changes nothing; another
     * file under a published version is refused */
    snprintf(args, sizeof args, "lora publish --name fin --version v1 --file %s", f);
    SQ_CHECK(s_cli_to(args, out) == 0);
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strstr(text, "fin@v1 was published before with this file") != NULL &&
             strstr(text, "it is staged, nothing changed") != NULL);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_events") == 4);
    char f2[700];
    snprintf(f2, sizeof f2, "%s/b.gguf", sq_harness_log_dir(s_h));
    const char *make2[] = {"lora-random", "--base", base, "--rank", "4", "--seed", "22", f2, NULL};
    SQ_REQUIRE(s_model_tool("make-b", make2) == 0);
    snprintf(args, sizeof args, "lora publish --name fin --version v1 --file %s", f2);
    S_REFUSED(args, "fin@v1 is already published (state staged) with another file");
    /* a canary needs an active version for the other tasks */
    S_REFUSED("lora activate fin@v1 --canary 10", "has no active version for the other 90%");
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE state <> 'staged'") == 0);
    SQ_REQUIRE(s_cli("lora activate fin@v1") == 0);
    SQ_REQUIRE(s_cli("lora activate fin@v2 --canary 10") == 0);
    /* run again, a canary keeps its share; given another, takes it */
    SQ_REQUIRE(s_cli("lora activate fin@v2 --canary 10") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_events WHERE to_state = 'canary'") == 1);
    SQ_REQUIRE(s_cli("lora activate fin@v2 --canary 25") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_events WHERE to_state = 'canary'") == 2);
    SQ_CHECK(s_count("SELECT canary_pct FROM lora_updates WHERE version = 'v2'") == 25);
    SQ_REQUIRE(s_cli("lora rollback fin") == 0);   /* v2 rolled back, v1 stays */
    /* rolled back is final */
    S_REFUSED("lora activate fin@v2", "was rolled back, which is final");
    S_REFUSED("lora activate fin@v2 --canary 20", "was rolled back, which is final");
    SQ_REQUIRE(s_cli("lora activate fin@v3") == 0);   /* v1 retired */
    /* a canary starts from staged; a retired version may come back whole */
    S_REFUSED("lora activate fin@v1 --canary 20", "fin@v1 is retired: a canary starts from a "
                                                  "staged version");
    SQ_REQUIRE(s_cli("lora activate fin@v1") == 0);   /* v3 retired, v1 active */
    /* a canary asked for once more after its version was promoted (the
     * nightly job run again) asks for nothing more */
    SQ_CHECK(s_cli_to("lora activate fin@v1 --canary 20", out) == 0);
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strstr(text, "fin@v1 is active for new tasks (it was already") != NULL);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE state = 'active'") == 1);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE state = 'active' "
                     "AND version = 'v1'") == 1);
    char active[800];
    snprintf(active, sizeof active, "%s/fin/active", dir);
    s_read_text(active, text, sizeof text);
    SQ_CHECK(strcmp(text, "v1\n") == 0);
    /* one rollback is one step back, and one row each */
    SQ_REQUIRE(s_cli("lora rollback fin") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_updates WHERE state = 'active' "
                     "AND version = 'v3'") == 1);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_events WHERE to_state = 'rolled_back'") == 2);
    SQ_CHECK(s_count("SELECT count(*) FROM audit_log WHERE action = 'lora_rolled_back'") == 2);
    /* a job's adapter is a file name on the workers: checked at submit */
    char jf[700];
    snprintf(jf, sizeof jf, "%s/plain.jsonl", sq_harness_log_dir(s_h));
    SQ_REQUIRE(s_write_file(jf, "{\"custom_id\":\"a\",\"prompt\":\"x\"}\n") == 0);
    snprintf(args, sizeof args, "submit %s --model " S_MODEL_NAME " --adapter ../fin", jf);
    S_REFUSED(args, "field \"adapter\": use 1-128 of [A-Za-z0-9._-]");
    /* a version a task pins must be one the registry has (v2 was rolled
     * back, v9 never published); an adapter it does not manage is the
     * operator's */
    SQ_REQUIRE(s_write_file(jf, "{\"custom_id\":\"a\",\"prompt\":\"x\",\"adapter\":\"fin\","
                                "\"adapter_version\":\"v9\"}\n") == 0);
    snprintf(args, sizeof args, "submit %s --model " S_MODEL_NAME, jf);
    S_REFUSED(args, "tasks[0].adapter_version: fin@v9 was never published or was rolled back");
    SQ_REQUIRE(s_write_file(jf, "{\"custom_id\":\"a\",\"prompt\":\"x\",\"adapter\":\"fin\","
                                "\"adapter_version\":\"v2\"}\n") == 0);
    S_REFUSED(args, "tasks[0].adapter_version: fin@v2 was never published or was rolled back");
    SQ_CHECK(s_count("SELECT count(*) FROM jobs") == 0);
    SQ_REQUIRE(s_write_file(jf, "{\"custom_id\":\"a\",\"prompt\":\"x\",\"adapter\":\"fin\","
                                "\"adapter_version\":\"v4\"}\n{\"custom_id\":\"b\",\"prompt\":"
                                "\"x\",\"adapter\":\"own\",\"adapter_version\":\"x1\"}\n") == 0);
    SQ_CHECK(s_cli(args) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM jobs") == 1);
    /* a publish the database refuses leaves no file behind */
    snprintf(args, sizeof args, "psql -X -q -v ON_ERROR_STOP=1 -d '%s' -c \"CREATE FUNCTION "
             "refuse() RETURNS trigger LANGUAGE plpgsql AS \\$\\$ BEGIN RAISE EXCEPTION "
             "'refused by the test'; END \\$\\$; CREATE TRIGGER refuse BEFORE INSERT ON "
             "lora_updates FOR EACH ROW EXECUTE FUNCTION refuse();\"", sq_harness_conninfo(s_h));
    SQ_REQUIRE(system(args) == 0);
    snprintf(args, sizeof args, "lora publish --name fin --version v5 --file %s", f);
    SQ_CHECK(s_cli_err(args, out) != 0);
    s_read_text(out, text, sizeof text);
    SQ_CHECK(strstr(text, "refused by the test") != NULL);
    snprintf(args, sizeof args, "ls -a %s/fin", dir);
    FILE *ls = popen(args, "r");
    SQ_REQUIRE(ls != NULL);
    int n_files = 0;
    bool stray = false;
    char line[600];
    while (fgets(line, sizeof line, ls)) {
        n_files++;
        stray |= strstr(line, "v5") != NULL || strstr(line, ".tmp.") != NULL;
    }
    pclose(ls);
    SQ_CHECK(!stray && n_files == 2 + 4 + 1);   /* . .. v1-v4 active */
#undef S_REFUSED
}

/* The Q8_0 KV cache under a real TP = 2 group, on a random model whose
 * heads are 32 values (made here by shardq-model), with a pool of 12
 * pages for 8 sequences that grow to 4 each: sequences are preempted and
 * resumed (their prompts and tokens so far stored again, through the
 * prompt path), and greedy twins still give the same text, as the cache
 * gives the same bits either way. The broker records the cache type in
 * the group's capabilities and every result's lineage. */
static void case_kv_q8_0(void)
{
    SQ_REQUIRE(sq_e2e_up("group_kv_q8_0", NULL, &s_h, &s_c));
    static char path[700];
    snprintf(path, sizeof path, "%s/hd32.gguf", sq_harness_log_dir(s_h));
    const char *make[] = {"random", "--shape", "tiny-gqa", "--dim", "128", "--heads", "4",
                          "--kv-heads", "2", "--seed", "13", path, NULL};
    SQ_REQUIRE(s_model_tool("make-hd32", make) == 0);
    s_model = path;
    s_job_model = "hd32.gguf";
    s_kv_type = "q8_0";
    s_kv_pages = "12";
    SQ_REQUIRE(s_group("g-q8", 8) != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM workers WHERE group_id = 'g-q8' "
                     "AND capabilities->>'kv_type' = 'q8_0'") == 1);
    SQ_REQUIRE(s_submit(16, 4, 100) > 0);
    SQ_CHECK(sq_harness_wait_i64(s_h, "SELECT count(*) FROM task_results WHERE state = 'succeeded'",
                                 16, 180000) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results WHERE completion_tokens > 0") == 16);
    SQ_CHECK(s_count("SELECT count(DISTINCT (t.prompt, r.text)) FROM task_results r "
                     "JOIN tasks t USING (job_id, idx)") == 4);
    SQ_CHECK(s_count("SELECT count(*) FROM result_lineage WHERE group_id = 'g-q8' "
                     "AND tp_size = 2 AND kv_type = 'q8_0'") == 16);
    const int preempted = s_log_count("g-q8", "sequences preempted: KV cache full");
    fprintf(stderr, "   steps that preempted sequences: %d\n", preempted);
    SQ_CHECK(preempted > 0);
    sq_e2e_check_no_duplicates(s_h);
}

/* `shardq submit --wait` of a job file holding text (NAME.jsonl in the
 * log folder); its results file's path into out. shardq's exit code. */
static int s_submit_file(const char *name, char *out, size_t out_size, const char *text)
{
    char in[700], args[1600];
    snprintf(in, sizeof in, "%s/%s.jsonl", sq_harness_log_dir(s_h), name);
    snprintf(out, out_size, "%s/%s-out.jsonl", sq_harness_log_dir(s_h), name);
    if (s_write_file(in, text) != 0)
        return -1;
    snprintf(args, sizeof args, "submit %s --model " S_MODEL_NAME " --wait --timeout 120 -o %s",
             in, out);
    return s_cli(args);
}

/* In a results file, the line of custom_id: its "text" (as JSON writes it)
 * into text and its finish_reason into finish; false when not found. */
static bool s_result_of(const char *path, const char *custom_id, char *text, size_t text_size,
                        char *finish, size_t finish_size)
{
    char want[300], line[16384];
    snprintf(want, sizeof want, "\"custom_id\":\"%s\"", custom_id);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f)) {
        const char *t = strstr(line, want) ? strstr(line, "\"text\":\"") : NULL;
        const char *r = t ? strstr(line, "\"finish_reason\":\"") : NULL;
        if (!t || !r)
            continue;
        t += 8;
        r += 17;
        snprintf(text, text_size, "%.*s", (int)(strchr(t, '"') - t), t);
        snprintf(finish, finish_size, "%.*s", (int)(strchr(r, '"') - r), r);
        found = true;
    }
    if (f)
        fclose(f);
    return found;
}

static void case_task_fields(void)
{
    SQ_REQUIRE(sq_e2e_up("group_task_fields", NULL, &s_h, &s_c));
    /* one slot and 8 leases held beyond it: a job of 9 long tasks fills
     * both; CANCEL must stop the one running and the 8 waiting */
    s_extra[0] = "--prefetch";
    s_extra[1] = "8";
    s_extra[2] = "--ctx";
    s_extra[3] = "4096";
    SQ_REQUIRE(s_group("g-prefetch", 1) != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    const uint64_t job = s_submit_job_t(9, 5, NULL, 4000, 2.0);
    SQ_REQUIRE(job > 0);
    SQ_CHECK(sq_e2e_wait_count(s_c, job, "leased", 9, 30000) == 0);
    uint64_t n = 0;
    SQ_CHECK(sq_e2e_cancel(s_c, job, &n) == 0);
    printf("cancelled %llu leased tasks\n", (unsigned long long)n);
    /* a task after them runs once the group has dealt with all nine */
    const uint64_t after = s_submit(1, 1, 4);
    SQ_REQUIRE(after > 0);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_results WHERE job_id = %llu AND "
             "state = 'succeeded'", (unsigned long long)after);
    SQ_CHECK(sq_harness_wait_i64(s_h, sql, 1, 120000) == 0);
    /* a result for a cancelled lease is rejected as stale: at most the one
     * that may have been in flight when CANCEL came (it was 8, one for
     * each prefetched lease the group ran to the end) */
    const int64_t stale = s_count("SELECT count(*) FROM audit_log "
                                  "WHERE action = 'result_rejected_stale'");
    printf("stale results after CANCEL: %lld\n", (long long)stale);
    SQ_CHECK(stale >= 0 && stale <= 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_results WHERE job_id = %llu AND "
             "state = 'cancelled'", (unsigned long long)job);
    SQ_CHECK(s_count(sql) + stale >= 8);

    /* stop strings (a simple line's and an OpenAI body's) end the text
     * before them; top_p 0 draws the most likely token, greedy's */
    char out[700];
    SQ_CHECK(s_submit_file("fields", out, sizeof out,
        "{\"custom_id\":\"plain\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
        "\"temperature\":0}\n"
        "{\"custom_id\":\"stop\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
        "\"temperature\":0,\"stop\":[\"never\",\"Lily\"]}\n"
        "{\"custom_id\":\"body-stop\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":"
        "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0,\"stop\":\"girl\"}}\n"
        "{\"custom_id\":\"top0\",\"prompt\":\"Once upon a time\",\"max_tokens\":40,"
        "\"temperature\":1,\"top_p\":0}\n") == 0);
    char plain[4096], text[4096], finish[32];
    SQ_REQUIRE(s_result_of(out, "plain", plain, sizeof plain, finish, sizeof finish));
    printf("greedy: \"%s\" (%s)\n", plain, finish);
    SQ_CHECK(strstr(plain, "girl named Lily") != NULL && strcmp(finish, "length") == 0);
    SQ_CHECK(s_result_of(out, "stop", text, sizeof text, finish, sizeof finish));
    SQ_CHECK(strcmp(finish, "stop") == 0 && strstr(text, "Lily") == NULL);
    SQ_CHECK(strlen(text) > 0 && strncmp(plain, text, strlen(text)) == 0);
    SQ_CHECK(strstr(plain + strlen(text), "Lily") == plain + strlen(text));
    SQ_CHECK(s_result_of(out, "body-stop", text, sizeof text, finish, sizeof finish));
    SQ_CHECK(strcmp(finish, "stop") == 0 && strstr(plain, text) == plain &&
             strncmp(plain + strlen(text), "girl", 4) == 0);
    SQ_CHECK(s_result_of(out, "top0", text, sizeof text, finish, sizeof finish));
    SQ_CHECK(strcmp(text, plain) == 0);
    sq_e2e_check_no_duplicates(s_h);
}

/* How many ids [BOS] + encode(turns[0]) + [EOS] + encode(turns[1]) + ...
 * are, each turn encoded alone with the bundled model's tokenizer (what
 * llama.cpp gives for the rendered prompt with its "</s>" parsed as EOS) */
static size_t s_turn_ids(const sq_tokenizer_t *tok, const char *const *turns, int n)
{
    size_t total = 1;
    for (int i = 0; i < n; i++) {
        int32_t *ids = NULL;
        size_t k = 0;
        SQ_CHECK(sq_tokenizer_encode(tok, turns[i], strlen(turns[i]), false, &ids, &k) == 0);
        total += k + (i > 0);
        free(ids);
    }
    return total;
}

/* A chat job's prompt reaches the model with the template's "</s>" as
 * the EOS token, one id, and the text between them encoded on its own;
 * a "</s>" the user typed stays text. Its prompt_tokens are those ids:
 * not the rendered prompt encoded as text (the template's "</s>" as the
 * characters "<", "/", "s", ">"), not the user's "</s>" made EOS too. */
static void case_chat(void)
{
    SQ_REQUIRE(sq_e2e_up("group_chat", NULL, &s_h, &s_c));
    SQ_REQUIRE(s_group("g-chat", 4) != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    char out[700], line[16384];
    SQ_CHECK(s_submit_file("chat", out, sizeof out,
        "{\"custom_id\":\"chat\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
        "\"body\":{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"Once upon a time</s>Lily\"}],"
        "\"max_tokens\":8,\"temperature\":0}}\n") == 0);
    s_read_text(out, line, sizeof line);
    printf("%s", line);
    SQ_CHECK(strstr(line, "\"status_code\":200") != NULL);
    const int64_t got = s_sum_field(out, "\"prompt_tokens\":");
    sq_gguf_t *g = sq_gguf_open(s_env("SHARDQ_TEST_MODEL"));
    sq_tokenizer_t *tok = g ? sq_tokenizer_from_gguf(g) : NULL;
    SQ_REQUIRE(tok && sq_tokenizer_eos(tok) == 2);
    static const char *const turns[] = {"<|system|>\nBe brief.",
                                        "\n<|user|>\nOnce upon a time</s>Lily",
                                        "\n<|assistant|>\n"};
    static const char *const injected[] = {"<|system|>\nBe brief.",
                                           "\n<|user|>\nOnce upon a time", "Lily",
                                           "\n<|assistant|>\n"};
    static const char *const text[] = {"<|system|>\nBe brief.</s>\n<|user|>\nOnce upon a "
                                       "time</s>Lily</s>\n<|assistant|>\n"};
    const size_t want = s_turn_ids(tok, turns, 3);
    printf("prompt_tokens %lld: as turns with EOS %zu, as text %zu, with the user's </s> as "
           "EOS %zu\n", (long long)got, want, s_turn_ids(tok, text, 1),
           s_turn_ids(tok, injected, 4));
    SQ_CHECK(got == (int64_t)want);
    SQ_CHECK(want != s_turn_ids(tok, text, 1) && want != s_turn_ids(tok, injected, 4));

    /* a chat job's task whose body is missing, or whose messages do not
     * render to its prompt (another client's rendering), runs its prompt,
     * the text stored and audited, as text */
    static const char *const raw[] = {"Once upon a time</s>\n<|assistant|>\n"};
    sq_wire_enc_t *e = sq_e2e_begin(s_c, 4);
    sq_wire_kv_str(e, "tenant", "research");
    sq_wire_kv_str(e, "model", S_MODEL_NAME);
    sq_wire_kv_str(e, "params", "{\"kind\":\"chat\"}");
    sq_wire_key(e, "tasks");
    sq_wire_array(e, 2);
    sq_wire_map(e, 3);
    sq_wire_kv_str(e, "custom_id", "no-body");
    sq_wire_kv_str(e, "prompt", raw[0]);
    sq_wire_kv_u64(e, "max_tokens", 2);
    sq_wire_map(e, 4);
    sq_wire_kv_str(e, "custom_id", "other-messages");
    sq_wire_kv_str(e, "prompt", raw[0]);
    sq_wire_kv_u64(e, "max_tokens", 2);
    sq_wire_kv_str(e, "body", "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}");
    sq_wire_msg_t *reply = NULL;
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_call(s_c, SQ_WIRE_SUBMIT, 10000, &reply, NULL) == 0);
    SQ_CHECK(sq_wire_get_u64(reply->body, "job_id", true, UINT64_MAX, &job) == 0);
    sq_wire_msg_destroy(&reply);
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM task_results WHERE job_id = %llu AND "
             "state = 'succeeded' AND prompt_tokens = %zu", (unsigned long long)job,
             s_turn_ids(tok, raw, 1));
    SQ_CHECK(sq_harness_wait_i64(s_h, sql, 2, 60000) == 0);
    sq_tokenizer_destroy(&tok);
    sq_gguf_destroy(&g);
    sq_e2e_check_no_duplicates(s_h);
}

/* Run the worker binary with args (after --model), wait up to timeout_ms;
 * its exit code (-1: still running, then killed) */
static int s_worker_exit(const char *name, const char *model, const char *const args[],
                         int timeout_ms, sq_proc_t **proc_out)
{
    const char *argv[24] = {s_env("SHARDQ_WORKER_BIN"), "--model", model};
    int n = 3;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    sq_proc_t *p = sq_harness_spawn(s_h, name, argv);
    if (!p)
        return -2;
    *proc_out = p;
    if (sq_proc_wait(p, timeout_ms) != 0) {
        sq_proc_stop(p, 5000);
        return -1;
    }
    return sq_proc_exit_code(p);
}

/* A broker that ends every session at once: how many READYs come in ms */
static int s_refusing_broker(zsock_t *router, int ms)
{
    int ready = 0;
    const int64_t until = zclock_mono() + ms;
    sq_wire_enc_t *e = sq_wire_enc_new();
    while (e && zclock_mono() < until) {
        if (!(zsock_events(router) & ZMQ_POLLIN)) {
            zclock_sleep(5);
            continue;
        }
        sq_wire_msg_t *m = NULL;
        zframe_t *from = NULL;
        if (sq_wire_recv(zsock_resolve(router), true, SQ_WIRE_MAX_BODY, &m, &from) != 0)
            continue;
        if (m->cmd == SQ_WIRE_READY) {
            ready++;
            sq_wire_enc_reset(e);
            sq_wire_map(e, 1);
            sq_wire_kv_str(e, "reason", "this test's broker ends every session");
            sq_wire_send(zsock_resolve(router), m->identity, SQ_WIRE_DISCONNECT, e);
        }
        zframe_destroy(&from);
        sq_wire_msg_destroy(&m);
    }
    sq_wire_enc_destroy(&e);
    return ready;
}

/* The bundled model with one NaN in output_norm.weight, at path: every
 * logit of every row is then NaN. 0 or -1. */
static int s_nan_model(const char *path)
{
    sq_gguf_t *g = sq_gguf_open(s_env("SHARDQ_TEST_MODEL"));
    const sq_gguf_tensor_t *t = g ? sq_gguf_find_tensor(g, "output_norm.weight") : NULL;
    const long at = t ? (long)(sq_gguf_data_offset(g) + t->offset) : -1;
    sq_gguf_destroy(&g);
    char cmd[1600];
    const bool whole = snprintf(cmd, sizeof cmd, "cp %s %s", s_env("SHARDQ_TEST_MODEL"), path) <
                       (int)sizeof cmd;
    FILE *f = whole && at > 0 && system(cmd) == 0 ? fopen(path, "r+b") : NULL;
    const float nan = NAN;
    const bool ok = f && fseek(f, at, SEEK_SET) == 0 && fwrite(&nan, sizeof nan, 1, f) == 1;
    if (f)
        fclose(f);
    return ok ? 0 : -1;
}

/* Logits without a finite value (a NaN in the weights, or a broken
 * device) give no token: one-shot exits 1 saying so (it printed ids
 * [0, 0, ...] and exited 0), and a group FAILs the task, retryable,
 * naming the position (it returned that garbage as succeeded) */
static void case_not_finite(void)
{
    SQ_REQUIRE(sq_e2e_up("group_not_finite", NULL, &s_h, &s_c));
    char model[700];
    snprintf(model, sizeof model, "%s/nan.gguf", sq_harness_log_dir(s_h));
    SQ_REQUIRE(s_nan_model(model) == 0);
    const char *const why = "the logits for position 2 were not finite (NaN or infinite)";
    sq_proc_t *p = NULL;
    for (int greedy = 0; greedy < 2; greedy++) {
        const char *args[] = {"--prompt", "Once", "--max-tokens", "4", "--temperature",
                              greedy ? "0" : "1", NULL};
        SQ_CHECK(s_worker_exit(greedy ? "w-greedy" : "w-sampled", model, args, 30000, &p) == 1);
        SQ_CHECK(p && sq_proc_log_count(p, why) == 1);
    }
    s_model = model;
    s_job_model = "nan.gguf";
    sq_proc_t *g = s_group("g-nan", 4);
    SQ_REQUIRE(g != NULL && s_wait_groups(1) == 0);
    const uint64_t job = s_submit_job_t(2, 1, NULL, 4, 1.0);   /* "Once upon a time": 5 ids */
    SQ_REQUIRE(job > 0);
    /* each attempt failed retryably (a permanent failure would have ended
     * the task at its first), naming the position; after 3 such tasks in
     * a row the group stops (it went on, and used up every attempt of
     * every task it took): the tasks wait for a group that works */
    SQ_CHECK(sq_proc_wait(g, 60000) == 0);
    SQ_CHECK(sq_proc_log_count(g, "tasks in a row were not finite: the model file or the "
                                  "device is broken") >= 1);
    SQ_CHECK(s_count("SELECT count(*) FROM task_attempts WHERE outcome = 'failed' AND error = "
                     "'task failed: the logits for position 5 were not finite (NaN or "
                     "infinite)'") >= 3);
    SQ_CHECK(s_count("SELECT count(*) FROM task_results") == 0);
    s_model = NULL;
    s_job_model = S_MODEL_NAME;
}

static void case_link(void)
{
    SQ_REQUIRE(sq_e2e_up("group_link", NULL, &s_h, &s_c));
    const char *model = s_env("SHARDQ_TEST_MODEL");
    sq_proc_t *p = NULL;
    /* more leases than a READY may offer: refused before loading */
    const char *over[] = {"--broker", sq_harness_worker_endpoint(s_h), "--max-batch", "8",
                          "--prefetch", "4090", NULL};
    SQ_CHECK(s_worker_exit("w-over", model, over, 30000, &p) == 2);
    SQ_CHECK(p && sq_proc_log_count(p, "--prefetch 4090 hold more than 4096 leases") == 1);
    /* a model file name longer than the broker's names */
    char longname[900], target[700];
    snprintf(target, sizeof target, "%s", model);
    snprintf(longname, sizeof longname, "%s/%0130d.gguf", sq_harness_log_dir(s_h), 0);
    SQ_REQUIRE(symlink(target, longname) == 0);
    const char *named[] = {"--broker", sq_harness_worker_endpoint(s_h), NULL};
    SQ_CHECK(s_worker_exit("w-name", longname, named, 30000, &p) == 2);
    SQ_CHECK(p && sq_proc_log_count(p, "must be 1 to 128 bytes") == 1);
    /* an endpoint ZeroMQ refuses: exit 1, not a group that serves nobody */
    const char *bad[] = {"--broker", "127.0.0.1:5556", NULL};
    SQ_CHECK(s_worker_exit("w-endpoint", model, bad, 60000, &p) == 1);
    SQ_CHECK(p && sq_proc_log_count(p, "broker link failed to start") == 1 &&
             sq_proc_log_count(p, "expected tcp://HOST:PORT") == 1 &&
             sq_proc_log_count(p, "worker group ready") == 0);

    /* SIGTERM to the worker process itself (not through shardq-group):
     * it drains and exits 0 */
    const char *serve[] = {s_env("SHARDQ_WORKER_BIN"), "--model", model, "--broker",
                           sq_harness_worker_endpoint(s_h), "--group-id", "w-term", "--grace",
                           "5", NULL};
    sq_proc_t *w = sq_harness_spawn(s_h, "w-term", serve);
    SQ_REQUIRE(w != NULL);
    SQ_REQUIRE(s_wait_groups(1) == 0);
    SQ_REQUIRE(sq_proc_signal(w, SIGTERM) == 0);
    SQ_CHECK(sq_proc_wait(w, 30000) == 0);
    SQ_CHECK(sq_proc_exit_code(w) == 0 && sq_proc_log_count(w, "draining") == 1);

    /* a broker that ends every session: READY again, each time later */
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    SQ_REQUIRE(router != NULL);
    const int port = zsock_bind(router, "tcp://127.0.0.1:*[19100-19199]");
    SQ_REQUIRE(port > 0);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    const char *refused[] = {s_env("SHARDQ_WORKER_BIN"), "--model", model, "--broker", ep,
                             "--grace", "1", NULL};
    w = sq_harness_spawn(s_h, "w-refused", refused);
    SQ_REQUIRE(w != NULL);
    /* the first READY comes once the model is loaded */
    const int first = s_refusing_broker(router, 3000);
    const int ready = first + s_refusing_broker(router, 4000);
    printf("READY messages to a broker ending every session, in ~7 s: %d\n", ready);
    /* at once, then after 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s...: a handful
     * (it was thousands a second) */
    SQ_CHECK(ready >= 3 && ready <= 12);
    SQ_CHECK(sq_proc_log_count(w, "this test's broker ends every session") >= 3);
    SQ_REQUIRE(sq_proc_signal(w, SIGTERM) == 0);
    SQ_CHECK(sq_proc_wait(w, 30000) == 0);
    zsock_destroy(&router);

    /* an adapter file that never finishes reading (a FIFO nobody writes,
     * as a hung network volume): the step watchdog ends the worker */
    char dir[800], path[900];
    snprintf(dir, sizeof dir, "%s/hung-adapters/fin", sq_harness_log_dir(s_h));
    snprintf(path, sizeof path, "mkdir -p %s", dir);
    SQ_REQUIRE(system(path) == 0);
    snprintf(path, sizeof path, "%s/v1.gguf", dir);
    SQ_REQUIRE(mkfifo(path, 0600) == 0);
    snprintf(path, sizeof path, "%s/active", dir);
    SQ_REQUIRE(s_write_file(path, "v1\n") == 0);
    snprintf(dir, sizeof dir, "%s/hung-adapters", sq_harness_log_dir(s_h));
    const char *hung[] = {s_env("SHARDQ_WORKER_BIN"), "--model", model, "--broker",
                          sq_harness_worker_endpoint(s_h), "--group-id", "w-hung", "--adapters",
                          dir, "--step-timeout", "2", NULL};
    w = sq_harness_spawn(s_h, "w-hung", hung);
    SQ_REQUIRE(w != NULL);
    SQ_REQUIRE(s_wait_groups(2) == 0);   /* (w-term's row is still there) */
    SQ_REQUIRE(s_submit_job(1, 1, "fin", 4) > 0);
    SQ_CHECK(sq_proc_wait(w, 60000) == 0);
    SQ_CHECK(sq_proc_exit_code(w) == 1 && sq_proc_log_count(w, "forward step stuck") == 1);
}

int main(int argc, char **argv)
{
    static const sq_e2e_case_t cases[] = {
        {"group_serves", case_serves},
        {"group_rank_killed", case_rank_killed},
        {"group_drain", case_drain},
        {"group_adapters", case_adapters},
        {"group_lora_updates", case_lora_updates},
        {"group_cuda_emu", case_cuda_emu},
        {"group_cuda_fault", case_cuda_fault},
        {"group_cuda_hang", case_cuda_hang},
        {"group_kv_pages", case_kv_pages},
        {"group_kv_q8_0", case_kv_q8_0},
        {"group_task_fields", case_task_fields},
        {"group_chat", case_chat},
        {"group_not_finite", case_not_finite},
        {"group_link", case_link},
        {"group_lora_states", case_lora_states},
        {NULL, NULL},
    };
    return sq_e2e_main(argc, argv, cases, &s_h, &s_c);
}

/*  shardq: the command-line client of shardq-broker (docs/cli.md).
 *
 *  One table of subcommands (s_cmds) maps a name to its handler and its
 *  usage line, so later subcommands (lora, scaling, audit) are one row and
 *  one function (see shardq_cli.h). Each handler parses its own options
 *  with sq_cli_cmd_parse() from a small option table, talks to the broker
 *  through libshardq only, and returns an exit code from the documented set
 *  (SQ_EXIT_*). Errors are printed once, as "shardq: <detail>".
 */
#define _POSIX_C_SOURCE 200809L
#include "shardq_cli.h"
#include "sq_error.h"
#include "sq_version.h"

#include <ctype.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------- option parsing */

static const char *g_broker; /* --broker, shared by every subcommand */
static bool g_help;

/* Parse argv[1..] against opts (plus --broker and --help), collecting up to
 * max_pos positionals. Returns 0 or SQ_EXIT_USAGE (message printed). */
static int
s_parse(const char *cmd, int argc, char **argv, const sq_cli_opt_t *opts, const char **pos,
        int max_pos, int *n_pos)
{
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t name_len = a[0] == '-' && a[1] == '-' && eq ? (size_t)(eq - a) : strlen(a);
        const sq_cli_opt_t *o = NULL;
        static const sq_cli_opt_t common[] = {{"--broker", NULL, &g_broker, NULL},
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
int
sq_cli_parse_uint(const char *cmd, const char *what, const char *s, uint64_t lo, uint64_t hi,
                  uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    /* digits only: strtoull would take a sign or leading blanks ("-1" wraps) */
    const bool digits = s && isdigit((unsigned char)*s);
    unsigned long long v = digits ? strtoull(s, &end, 10) : 0;
    if (!digits || errno || *end || v < lo || v > hi) {
        fprintf(stderr, "shardq %s: %s must be an integer in %llu..%llu, not \"%s\"\n", cmd,
                what, (unsigned long long)lo, (unsigned long long)hi, s ? s : "");
        return SQ_EXIT_USAGE;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------ reporting */

int
sq_cli_exit_code(int rc)
{
    switch (rc) {
    case SQ_EINVAL: case SQ_ETOOBIG: case SQ_EFORMAT: case SQ_ETRUNC: case -ENOENT:
    case -EACCES: case -EISDIR: case -ENOTDIR: case SQ_ESTATE:
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
int
sq_cli_fail(int rc)
{
    const char *d = sq_error_detail();
    fprintf(stderr, "shardq: %s\n", d && *d ? d : sq_strerror(rc));
    return sq_cli_exit_code(rc);
}

sq_client_t *
sq_cli_client(void)
{
    sq_client_t *c = sq_client_new(g_broker, NULL);
    if (!c)
        sq_cli_fail(sq_error_code() ? sq_error_code() : SQ_EINVAL);
    return c;
}

double
sq_cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void
sq_cli_iso_time(uint64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *
sq_cli_job_json(const sq_client_job_t *j)
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

/* A real in the fewest digits that read back as the same double: 1.42
 * stays 1.42 (jansson's 17 digits give 1.4199999999999999), and nothing
 * is rounded away (a fixed 15 would). With a '.' or exponent, as JSON
 * readers that tell integers from reals expect. */
static void
s_print_real(double v)
{
    char buf[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    printf("%s%s", buf, strpbrk(buf, ".eEn") ? "" : ".0");
}

/* j as jansson's JSON_INDENT(2) writes it, but reals as s_print_real. */
static void
s_print_value(json_t *j, int depth)
{
    if (json_is_real(j)) {
        s_print_real(json_real_value(j));
        return;
    }
    bool obj = json_is_object(j);
    size_t n = obj ? json_object_size(j) : json_is_array(j) ? json_array_size(j) : 0;
    if (n == 0) { /* a scalar, {} or [] */
        char *s = json_dumps(j, JSON_ENCODE_ANY);
        printf("%s", s ? s : "null");
        free(s);
        return;
    }
    printf("%c\n", obj ? '{' : '[');
    const char *key;
    json_t *v;
    size_t i = 0;
    if (obj) {
        json_object_foreach(j, key, v) {
            json_t *k = json_string(key);
            char *ks = k ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
            printf("%*s%s: ", 2 * (depth + 1), "", ks ? ks : "\"\"");
            free(ks);
            json_decref(k);
            s_print_value(v, depth + 1);
            printf(++i < n ? ",\n" : "\n");
        }
    } else {
        json_array_foreach(j, i, v) {
            printf("%*s", 2 * (depth + 1), "");
            s_print_value(v, depth + 1);
            printf(i + 1 < n ? ",\n" : "\n");
        }
    }
    printf("%*s%c", 2 * depth, "", obj ? '}' : ']');
}

void
sq_cli_print_json(json_t *j)
{
    if (j) {
        s_print_value(j, 0);
        printf("\n");
    }
    json_decref(j);
}

/* ----------------------------------------------------------- subcommands */

static void
s_cmd_help(const sq_cli_cmd_t *cmd)
{
    printf("usage: shardq %s %s\n\n%s\n%s", cmd->name, cmd->args, cmd->summary, cmd->details);
    printf("  --broker URL        broker endpoint (else $SHARDQ_BROKER, else %s)\n",
           SQ_CLIENT_DEFAULT_BROKER);
}

/* Parse the command line of cmd; *done is set when --help was answered. */
int
sq_cli_cmd_parse(const sq_cli_cmd_t *cmd, int argc, char **argv, const sq_cli_opt_t *opts,
                 const char **pos, int n_want, int n_min, bool *done)
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

/* The subcommands. A new one (lora, scaling, audit) is a row here. */
static const sq_cli_cmd_t s_cmds[] = {
    {"submit", sq_cli_submit,
     "FILE.jsonl [--model M] [--adapter NAME] [--priority N] [--tenant T] [--max-attempts N] "
     "[--idempotency-key K] [--wait [--timeout S] [-o FILE [--errors FILE]]]",
     "Validate a JSONL job file whole, then submit it as one job; prints the job id.\n",
     "  --model M           model to run (else the file's, else $SHARDQ_MODEL)\n"
     "  --adapter NAME      run every task on LoRA adapter NAME (its active version,\n"
     "                      or the canary share; see `shardq lora`)\n"
     "  --priority N        0..1000, higher first (broker default 0)\n"
     "  --tenant T          tenant charged (else $SHARDQ_TENANT, else $USER)\n"
     "  --max-attempts N    1..100 attempts before a task is dead (broker default 3)\n"
     "  --idempotency-key K the tenant's key for this job: sending it again (say after\n"
     "                      a timeout) gives the same job, never a second one\n"
     "  --wait              then wait for the job like `shardq wait`\n"
     "  --timeout S         with --wait: give up waiting after S seconds (exit 6)\n"
     "  -o, --output FILE   with --wait: then write the results like `shardq results`\n"
     "  --errors FILE       with -o: failed and cancelled tasks go to FILE instead\n"},
    {"status", sq_cli_status, "JOB [--json]", "Show a job's state and task counts.\n",
     "  --json              print one JSON object\n"},
    {"wait", sq_cli_wait, "JOB [--timeout S]",
     "Wait until a job finishes: a progress bar on a terminal, plain lines otherwise.\n"
     "Exit 0 when every task succeeded, 1 when the job failed or was cancelled.\n",
     "  --timeout S         give up after S seconds (exit 6)\n"},
    {"results", sq_cli_results, "JOB [-o FILE] [--errors FILE]",
     "Write a job's results as OpenAI-Batch output JSONL, one line per custom_id,\n"
     "failed and cancelled tasks included (with \"error\") unless --errors.\n",
     "  -o, --output FILE   write to FILE (atomically) instead of stdout\n"
     "  --errors FILE       failed and cancelled tasks to FILE (atomically) instead,\n"
     "                      as OpenAI's error file\n"},
    {"cancel", sq_cli_cancel, "JOB", "Cancel a job's queued and running tasks.\n", ""},
    {"jobs", sq_cli_jobs, "[--state S] [--tenant T] [--limit N] [--json]",
     "List jobs, newest first.\n",
     "  --state S           queued | running | succeeded | failed | cancelled\n"
     "  --tenant T          only this tenant's jobs\n"
     "  --limit N           at most N jobs (default 50)\n"
     "  --json              print a JSON array\n"},
    {"workers", sq_cli_workers, "[--json]", "List the worker groups the broker knows.\n",
     "  --json              print a JSON array\n"},
    {"stats", sq_cli_stats, "", "Show queue depth and throughput per model pool and tenant.\n", ""},
    {"scaling", sq_cli_scaling, "[--since 24h] [--pool P] [--limit N] [--json]",
     "Show the scheduler's scaling decisions (newest first) with their reasons.\n",
     "  --since DUR         how far back: 90s, 30m, 6h, 2d (default 24h)\n"
     "  --pool P            only this pool\n"
     "  --limit N           at most N decisions (default 100)\n"
     "  --json              print a JSON array\n"},
    {"lora", sq_cli_lora, "publish|activate|rollback|list ...",
     "LoRA adapter updates: publish a version, activate it (or a canary share),\n"
     "roll back, list versions. `shardq lora` alone lists the forms.\n", ""},
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

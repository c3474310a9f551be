/*  shardq_cli: what the files of the `shardq` CLI share.
 *
 *  shardq.c holds main(), the table of subcommands, option parsing and
 *  error reporting; shardq_job.c the commands on one job (submit, status,
 *  wait, results, cancel); shardq_list.c the listings (jobs, workers,
 *  stats). A new subcommand is a handler here and a row in the table.
 *  Not a library: only the CLI includes this.
 */
#ifndef SHARDQ_CLI_H
#define SHARDQ_CLI_H

#include "sq_client.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* One option of a subcommand: a value (value != NULL) or a flag. */
typedef struct {
    const char *name;      /* "--model" */
    const char *alias;     /* "-o" or NULL */
    const char **value;    /* option with a value, or NULL */
    bool *flag;            /* flag, or NULL */
} sq_cli_opt_t;

/* One subcommand: its handler and its help. */
typedef struct sq_cli_cmd sq_cli_cmd_t;
struct sq_cli_cmd {
    const char *name;
    int (*fn)(const sq_cli_cmd_t *cmd, int argc, char **argv);
    const char *args;     /* usage after the name */
    const char *summary;
    const char *details;  /* option help, may be "" */
};


/* Parse a subcommand's argv (argv[0] is its name) against opts plus the
 * common --broker and --help, collecting up to n_want positionals into pos
 * and requiring n_min. *done is set when --help was answered. Returns 0
 * or SQ_EXIT_USAGE (message printed). */
int sq_cli_cmd_parse(const sq_cli_cmd_t *cmd, int argc, char **argv, const sq_cli_opt_t *opts,
                     const char **pos, int n_want, int n_min, bool *done);
/* An integer argument in [lo, hi]: 0, or SQ_EXIT_USAGE (message printed). */
int sq_cli_parse_uint(const char *cmd, const char *what, const char *s, uint64_t lo, uint64_t hi,
                      uint64_t *out);

/* The exit code for a libshardq / sq_jsonl return code. */
int sq_cli_exit_code(int rc);
/* Print "shardq: <detail>" once and return the exit code for rc. */
int sq_cli_fail(int rc);
/* A client for --broker / $SHARDQ_BROKER, or NULL (reported). */
sq_client_t *sq_cli_client(void);

double sq_cli_now_s(void);
void sq_cli_iso_time(uint64_t ms, char *buf, size_t size);
/* A job as the JSON object `status --json` prints (new reference). */
json_t *sq_cli_job_json(const sq_client_job_t *j);
/* Print j indented on stdout and release it. */
void sq_cli_print_json(json_t *j);

/* Subcommand handlers (shardq_job.c, shardq_list.c). */
int sq_cli_submit(const sq_cli_cmd_t *cmd, int argc, char **argv);
int sq_cli_status(const sq_cli_cmd_t *cmd, int argc, char **argv);
int sq_cli_wait(const sq_cli_cmd_t *cmd, int argc, char **argv);
int sq_cli_results(const sq_cli_cmd_t *cmd, int argc, char **argv);
int sq_cli_cancel(const sq_cli_cmd_t *cmd, int argc, char **argv);
int sq_cli_jobs(const sq_cli_cmd_t *cmd, int argc, char **argv);
int sq_cli_workers(const sq_cli_cmd_t *cmd, int argc, char **argv);
int sq_cli_stats(const sq_cli_cmd_t *cmd, int argc, char **argv);
/* shardq_lora.c */
int sq_cli_lora(const sq_cli_cmd_t *cmd, int argc, char **argv);
/* shardq_scaling.c */
int sq_cli_scaling(const sq_cli_cmd_t *cmd, int argc, char **argv);

#endif

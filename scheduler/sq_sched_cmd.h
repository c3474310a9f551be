/*  Subcommands of shardq-scheduler, each a main() of its own: they parse
 *  their flags, log or print, and return the process exit code. */
#ifndef SQ_SCHED_CMD_H
#define SQ_SCHED_CMD_H

/* `simulate --policy FILE --trace FILE ...` (sq_simulate_cmd.c). */
int sq_cmd_simulate(int argc, char **argv);
/* The control loop (sq_run_cmd.c). */
int sq_cmd_run(int argc, char **argv);

/* flag's value v as an integer (a number) in [lo, hi] into *out: 0, or 2
 * (the usage exit code) after one message on stderr naming the flag, the
 * value and the range (main.c) */
int sq_cmd_int(const char *flag, const char *v, long long lo, long long hi, long long *out);
int sq_cmd_num(const char *flag, const char *v, double lo, double hi, double *out);
/* a usage error: "shardq-scheduler: " and the message on stderr; 2 */
int sq_cmd_usage_error(const char *fmt, ...);

#endif

/*  Subcommands of shardq-scheduler, each a main() of its own: they parse
 *  their flags, log or print, and return the process exit code. */
#ifndef SQ_SCHED_CMD_H
#define SQ_SCHED_CMD_H

/* `simulate --policy FILE --trace FILE ...` (sq_simulate_cmd.c). */
int sq_cmd_simulate(int argc, char **argv);
/* The control loop (sq_run_cmd.c). */
int sq_cmd_run(int argc, char **argv);

#endif

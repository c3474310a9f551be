/*  shardq-scheduler: the elastic scheduler.
 *
 *    shardq-scheduler --db CONNINFO --broker EP --policy FILE [...]   control loop
 *    shardq-scheduler simulate --policy FILE --trace FILE [...]        offline run
 *
 *  See docs/scheduler.md for every flag and the exit codes.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_sched_cmd.h"
#include "sq_parse.h"
#include "sq_version.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
sq_cmd_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("shardq-scheduler: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int
sq_cmd_int(const char *flag, const char *v, long long lo, long long hi, long long *out)
{
    return sq_parse_flag_int("shardq-scheduler", flag, v, lo, hi, out) == 0 ? 0 : 2;
}

int
sq_cmd_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    return sq_parse_flag_num("shardq-scheduler", flag, v, lo, hi, out) == 0 ? 0 : 2;
}

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("shardq-scheduler %s\n", SQ_VERSION);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "simulate") == 0)
        return sq_cmd_simulate(argc - 1, argv + 1);
    return sq_cmd_run(argc, argv);
}

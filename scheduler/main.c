/*  shardq-scheduler: the elastic scheduler.
 *
 *    shardq-scheduler --db CONNINFO --broker EP --policy FILE [...]   control loop
 *    shardq-scheduler simulate --policy FILE --trace FILE [...]        offline run
 *
 *  See docs/scheduler.md for every flag and the exit codes.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_sched_cmd.h"
#include "sq_version.h"

#include <stdio.h>
#include <string.h>

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

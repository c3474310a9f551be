/*  The scheduler control loop (placeholder until the loop lands below). */
#define _POSIX_C_SOURCE 200809L
#include "sq_sched_cmd.h"

int
sq_cmd_run(int argc, char **argv)
{
    fprintf(stderr, "usage: shardq-scheduler simulate --policy FILE --trace FILE\n");
    return 2;
}

/*  The prompts of the worker benchmarks: the same text for prompt i in the
 *  engine-alone run (bench_batch.c) and the cluster run (run.sh writes them
 *  with `shardq-bench-batch --print-prompts`). */
#ifndef BENCH_PROMPTS_H
#define BENCH_PROMPTS_H

#include <stdio.h>

static inline void bench_prompt(int i, char *out, size_t size)
{
    static const char *const subjects[] = {"bank", "market", "shop", "farm", "bakery",
                                           "toy store", "port", "school"};
    static const char *const frames[] = {"Once upon a time, a little %s had %d coins.",
                                         "The %s opened early and Lily counted %d apples.",
                                         "Tom walked to the %s with %d friends."};
    snprintf(out, size, frames[i % 3], subjects[(i / 3) % 8], i % 97 + 2);
}

#endif

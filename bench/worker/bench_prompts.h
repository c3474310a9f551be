/*  The prompts of the worker benchmarks: the same text for prompt i in the
 *  engine-alone run (bench_batch.c) and the cluster run (run.sh writes them
 *  with `shardq-bench-batch --print-prompts`). */
#ifndef BENCH_PROMPTS_H
#define BENCH_PROMPTS_H

#include <stdio.h>
#include <string.h>

static inline void bench_prompt(int i, char *out, size_t size)
{
    static const char *const subjects[] = {"bank", "market", "shop", "farm", "bakery",
                                           "toy store", "port", "school"};
    static const char *const frames[] = {"Once upon a time, a little %s had %d coins.",
                                         "The %s opened early and Lily counted %d apples.",
                                         "Tom walked to the %s with %d friends."};
    snprintf(out, size, frames[i % 3], subjects[(i / 3) % 8], i % 97 + 2);
}

/* The instruction the prefix benchmarks put before every prompt: "short"
 * (~30 tokens) or "long" (~150 words, a job's system prompt, several KV
 * pages); "" for anything else. Plain ASCII without quotes or
 * backslashes, so it goes into a JSON string as it is. */
static inline const char *bench_instruction(const char *which)
{
    static const char short_instr[] =
        "You are a careful research assistant for the bank. Read the note below and write "
        "one short sentence about what happened next. Note: ";
    static const char long_instr[] =
        "You are a careful research assistant for the bank. The research team sends you "
        "short notes from the desks: the bond book, the shops and farms the bank lends to, "
        "the port and the market. For each note, read it slowly and think about the "
        "people in it, what they have and what they want. Then write one short sentence "
        "about what happened next, in plain words a child could read. Do not give advice "
        "about buying or selling, do not name real companies or people, and do not make "
        "up numbers that are not in the note. If the note is about money, say how much "
        "there is after the next day. If the note is about friends, say what they did "
        "together. Keep the sentence under twenty words. Your answer is checked by the "
        "compliance team, who keep every answer with its note. Note: ";
    return !strcmp(which, "long") ? long_instr : !strcmp(which, "short") ? short_instr : "";
}

#endif

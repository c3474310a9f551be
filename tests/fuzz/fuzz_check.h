/*  fuzz_check: the check of the fuzz harnesses (tests/fuzz/fuzz_*.c).
 *  A harness checks what the header under test promises on every input;
 *  a broken promise aborts, so that libFuzzer, or the replay driver of
 *  gcc builds, reports the input as a crash. The message names the check
 *  and the last error detail.
 */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "sq_error.h"

#define SQ_FUZZ_CHECK(cond)                                                                  \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s (detail: %s)\n", __FILE__, __LINE__,    \
                    #cond, sq_error_detail());                                               \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

#endif

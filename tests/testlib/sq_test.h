/*  sq_test: a tiny assertion harness for shardq's C tests.
 *
 *  SQ_CHECK(cond) records a failure (with file:line and the expression) and
 *  carries on; SQ_REQUIRE(cond) records and returns from the test function.
 *  Each test binary runs its cases with SQ_RUN(fn) and ends with
 *  `return sq_test_summary("name");`, which prints "N passed, M failed"
 *  and returns the process exit code.
 *  sq_test_env_or_skip() lets a test that needs e.g. SHARDQ_TEST_DB exit
 *  with CTest's skip code (77) instead of passing silently.
 */
#ifndef SQ_TEST_H
#define SQ_TEST_H

#include <stdint.h>
#include <stdio.h>

extern int sq_test_n_checks;
extern int sq_test_n_failed_checks;
extern int sq_test_n_cases;
extern int sq_test_n_failed_cases;
extern int sq_test_case_failed;

void sq_test_fail(const char *file, int line, const char *expr);
int sq_test_summary(const char *suite);
/* Exit 77 (skip) with a message when the variable is unset. Returns its value. */
const char *sq_test_env_or_skip(const char *var);
/* Monotonic milliseconds, for polling with deadlines. */
int64_t sq_test_now_ms(void);

#define SQ_CHECK(cond)                                                    \
    do {                                                                  \
        sq_test_n_checks++;                                               \
        if (!(cond))                                                      \
            sq_test_fail(__FILE__, __LINE__, #cond);                      \
    } while (0)

#define SQ_REQUIRE(cond)                                                  \
    do {                                                                  \
        sq_test_n_checks++;                                               \
        if (!(cond)) {                                                    \
            sq_test_fail(__FILE__, __LINE__, #cond);                      \
            return;                                                       \
        }                                                                 \
    } while (0)

#define SQ_RUN(fn)                                                        \
    do {                                                                  \
        sq_test_case_failed = 0;                                          \
        sq_test_n_cases++;                                                \
        fprintf(stderr, "-- %s\n", #fn);                                  \
        fn();                                                             \
        if (sq_test_case_failed)                                          \
            sq_test_n_failed_cases++;                                     \
    } while (0)

#endif

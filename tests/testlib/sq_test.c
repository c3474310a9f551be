/*  sq_test: counters and reporting for the assertion macros in sq_test.h. */
#define _POSIX_C_SOURCE 200809L
#include "sq_test.h"

#include <stdlib.h>
#include <time.h>

int sq_test_n_checks;
int sq_test_n_failed_checks;
int sq_test_n_cases;
int sq_test_n_failed_cases;
int sq_test_case_failed;

void
sq_test_fail(const char *file, int line, const char *expr)
{
    sq_test_n_failed_checks++;
    sq_test_case_failed = 1;
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
}

int
sq_test_summary(const char *suite)
{
    printf("%s: %d checks in %d cases\n", suite, sq_test_n_checks, sq_test_n_cases);
    printf("%d passed, %d failed\n", sq_test_n_cases - sq_test_n_failed_cases,
           sq_test_n_failed_cases);
    if (sq_test_n_checks == 0) {
        printf("%s: no checks ran\n", suite);
        return 1;
    }
    return sq_test_n_failed_cases ? 1 : 0;
}

const char *
sq_test_env_or_skip(const char *var)
{
    const char *v = getenv(var);
    if (!v || !*v) {
        printf("skipped: %s is not set\n", var);
        exit(77);
    }
    return v;
}

int64_t
sq_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

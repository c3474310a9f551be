/*  Unit tests of sq_error and sq_log. */
#define _POSIX_C_SOURCE 200809L
#include "sq_error.h"
#include "sq_log.h"
#include "sq_test.h"

#include <errno.h>
#include <string.h>

static int
s_failing_parse(int value)
{
    if (value < 0)
        return SQ_FAIL(SQ_EFORMAT, "value %d is negative", value);
    return 0;
}

static void
test_error_detail(void)
{
    sq_error_clear();
    SQ_CHECK(sq_error_code() == 0);
    SQ_CHECK(strcmp(sq_error_detail(), "") == 0);
    int rc = s_failing_parse(-3);
    SQ_CHECK(rc == SQ_EFORMAT);
    SQ_CHECK(sq_error_code() == SQ_EFORMAT);
    SQ_CHECK(strcmp(sq_error_detail(), "value -3 is negative") == 0);
    SQ_CHECK(strncmp(sq_error_where(), "test_core.c:", 12) == 0);
    SQ_CHECK(s_failing_parse(1) == 0);
}

static void
test_strerror(void)
{
    SQ_CHECK(strcmp(sq_strerror(0), "ok") == 0);
    SQ_CHECK(strcmp(sq_strerror(SQ_ETRUNC), "truncated input") == 0);
    SQ_CHECK(strcmp(sq_strerror(SQ_ECANCELLED), "cancelled") == 0);
    SQ_CHECK(strcmp(sq_strerror(-ENOENT), strerror(ENOENT)) == 0);
    SQ_CHECK(strcmp(sq_strerror(SQ_ELAST), strerror(-SQ_ELAST)) == 0 ||
             sq_strerror(SQ_ELAST) != NULL);
}

static void
test_log_quote(void)
{
    char buf[64];
    SQ_CHECK(strcmp(sq_log_quote("a \"b\"\n", buf, sizeof buf), "\"a \\\"b\\\"\\x0a\"") == 0);
    char tiny[8];
    sq_log_quote("abcdefghijkl", tiny, sizeof tiny);
    SQ_CHECK(strlen(tiny) < sizeof tiny);
    SQ_CHECK(tiny[0] == '"' && tiny[strlen(tiny) - 1] == '"');
}

int
main(void)
{
    SQ_RUN(test_error_detail);
    SQ_RUN(test_strerror);
    SQ_RUN(test_log_quote);
    return sq_test_summary("core");
}

/*  Unit tests of sq_error and sq_log. */
#define _POSIX_C_SOURCE 200809L
#include "sq_error.h"
#include "sq_log.h"
#include "sq_utf8.h"
#include "sq_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
    /* glibc's text for an unknown errno lives until its next call: copy it */
    char ours[128];
    snprintf(ours, sizeof ours, "%s", sq_strerror(SQ_ELAST));
    SQ_CHECK(strcmp(ours, strerror(-SQ_ELAST)) == 0);
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

static int s_is(const char *in, size_t n, const char *want)
{
    size_t len;
    char *out = sq_utf8_sanitize(in, n, &len);
    int ok = out && len == strlen(want) && memcmp(out, want, len) == 0;
    if (!ok)
        fprintf(stderr, "sanitize gave '%s'\n", out ? out : "(null)");
    free(out);
    return ok;
}

static void
test_utf8_sanitize(void)
{
    SQ_CHECK(s_is("plain ascii", 11, "plain ascii"));
    SQ_CHECK(s_is("\xe4\xb8\xad\xe6\x96\x87 ok", 9, "\xe4\xb8\xad\xe6\x96\x87 ok"));   /* 中文 */
    SQ_CHECK(s_is("cut \xe4\xb8", 6, "cut \xef\xbf\xbd"));        /* stopped mid-character */
    SQ_CHECK(s_is("a\xff\xfe" "b", 4, "a\xef\xbf\xbd\xef\xbf\xbd" "b")); /* never valid bytes */
    SQ_CHECK(s_is("nul\0x", 5, "nul\xef\xbf\xbd" "x"));              /* NUL cannot be stored */
    SQ_CHECK(s_is("\xc0\xaf", 2, "\xef\xbf\xbd"));                 /* overlong '/' */
    SQ_CHECK(s_is("\xed\xa0\x80", 3, "\xef\xbf\xbd"));             /* surrogate */
    SQ_CHECK(s_is("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"));     /* emoji kept */
    SQ_CHECK(s_is("", 0, ""));
}

int
main(void)
{
    SQ_RUN(test_utf8_sanitize);
    SQ_RUN(test_error_detail);
    SQ_RUN(test_strerror);
    SQ_RUN(test_log_quote);
    return sq_test_summary("core");
}

/*  Unit tests of sq_error and sq_log. */
#define _POSIX_C_SOURCE 200809L
#include "sq_error.h"
#include "sq_file.h"
#include "sq_log.h"
#include "sq_prof.h"
#include "sq_sha256.h"
#include "sq_utf8.h"
#include "sq_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    /* a detail longer than the buffer (1,024 bytes) is cut on a whole
     * character: here 1,023 bytes would end inside the 512th "é" */
    char long_text[1100];
    for (int i = 0; i < 540; i++)
        memcpy(long_text + 2 * i, "\xc3\xa9", 2);
    long_text[2 * 540] = '\0';
    SQ_FAIL(SQ_EINVAL, "%s", long_text);
    const char *d = sq_error_detail();
    SQ_CHECK(strlen(d) == 1022 && memcmp(d, long_text, 1022) == 0);
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
    /* where a text cut to fit a buffer ends: before a character it split */
    SQ_CHECK(sq_utf8_cut("ab", 2) == 2);
    SQ_CHECK(sq_utf8_cut("a\xc3\xa9", 3) == 3 && sq_utf8_cut("a\xc3\xa9", 2) == 1);
    SQ_CHECK(sq_utf8_cut("\xe4\xb8\xad", 3) == 3 && sq_utf8_cut("\xe4\xb8\xad", 2) == 0 &&
             sq_utf8_cut("\xe4\xb8\xad", 1) == 0);
    SQ_CHECK(sq_utf8_cut("x\xf0\x9f\x98\x80", 5) == 5 && sq_utf8_cut("x\xf0\x9f\x98\x80", 4) == 1);
    SQ_CHECK(sq_utf8_cut("", 0) == 0);
    /* bytes that were not UTF-8 before the cut are left as they were */
    SQ_CHECK(sq_utf8_cut("a\xff", 2) == 2 && sq_utf8_cut("\x80\x80\x80\x80", 4) == 4);
}

/* the profile table: rows added up by label, ordered by total time, with
 * calls, share, us a call and GB/s of the bytes given; the buckets and
 * dtype names labels are made of */
static void test_prof_table(void)
{
    sq_prof_t *p = sq_prof_new();
    SQ_REQUIRE(p != NULL);
    SQ_CHECK(sq_prof_text(p, "h") == NULL);   /* nothing timed */
    SQ_CHECK(sq_prof_add(p, "gemv q8_0 64x64 [1]", 1.0, 2e9) == 0);
    SQ_CHECK(sq_prof_add(p, "argmax 512 logits [1]", 5.0, 0.0) == 0);
    SQ_CHECK(sq_prof_add(p, "gemv q8_0 64x64 [1]", 1.0, 2e9) == 0);
    char *text = sq_prof_text(p, "a header line");
    SQ_REQUIRE(text != NULL);
    const char *argmax = strstr(text, "argmax 512 logits [1]"), *gemv = strstr(text, "gemv q8_0");
    SQ_CHECK(!strncmp(text, "a header line\nstep [batch]", 26));
    SQ_CHECK(argmax && gemv && argmax < gemv);   /* the larger total first */
    /* 2 calls, 2 ms, 28.6 %, 1000 us a call, 4e9 bytes in 2 ms */
    SQ_CHECK(gemv && strstr(gemv, "       2      2.000  28.6%   1000.00   2000.0\n"));
    SQ_CHECK(argmax && !strncmp(strchr(argmax, '%') + 1, "   5000.00\n", 11));   /* no GB/s */
    SQ_CHECK(strstr(text, "all steps") && strstr(strstr(text, "all steps"), " 3      7.000\n"));
    free(text);
    sq_prof_destroy(&p);
    SQ_CHECK(p == NULL);
    sq_prof_destroy(&p);   /* safe twice */
    SQ_CHECK(!strcmp(sq_prof_bucket(1), "1") && !strcmp(sq_prof_bucket(16), "2-16") &&
             !strcmp(sq_prof_bucket(17), "17-64") && !strcmp(sq_prof_bucket(256), "65-256") &&
             !strcmp(sq_prof_bucket(257), "257+"));
    SQ_CHECK(!strcmp(sq_prof_dtype(8), "q8_0") && !strcmp(sq_prof_dtype(7), "?"));
}

/* SHA-256 one-shot, streamed in pieces and of a file: FIPS 180-2's
 * two-block example. */
static void
test_sha256(void)
{
    static const char msg[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    static const char want[] = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
    char out[65];
    SQ_CHECK(sq_sha256_hex(msg, strlen(msg), out) == 0 && strcmp(out, want) == 0);
    sq_sha256_t *h = sq_sha256_new();
    SQ_REQUIRE(h);
    for (size_t i = 0; i < strlen(msg); i += 7)
        sq_sha256_update(h, msg + i, strlen(msg) - i < 7 ? strlen(msg) - i : 7);
    SQ_CHECK(sq_sha256_finish_hex(&h, out) == 0 && h == NULL && strcmp(out, want) == 0);
    char path[] = "/tmp/sq-sha256-XXXXXX";
    int fd = mkstemp(path);
    SQ_REQUIRE(fd >= 0);
    SQ_CHECK(write(fd, msg, strlen(msg)) == (ssize_t)strlen(msg));
    close(fd);
    SQ_CHECK(sq_sha256_file_hex(path, out) == 0 && strcmp(out, want) == 0);
    remove(path);
    SQ_CHECK(sq_sha256_file_hex("/nonexistent/x", out) < 0);
}

/* sq_file_read: whole files across its buffer's growth (64 KiB, then
 * doubling), with a NUL after the data; the cap to the byte; a
 * directory and a missing file named as such. */
static void
test_file_read(void)
{
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 200003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        char path[] = "/tmp/sq-file-XXXXXX";
        int fd = mkstemp(path);
        SQ_REQUIRE(fd >= 0);
        unsigned char *want = malloc(n + 1);
        SQ_REQUIRE(want);
        for (size_t i = 0; i < n; i++)
            want[i] = (unsigned char)(i * 131 + 7);    /* NULs included */
        SQ_CHECK(write(fd, want, n) == (ssize_t)n);
        close(fd);
        char *got = NULL;
        size_t len = 99;
        SQ_CHECK(sq_file_read(path, n, &got, &len) == 0 && got && len == n);
        SQ_CHECK(got && memcmp(got, want, n) == 0 && got[n] == '\0');
        free(got);
        if (n > 0) {
            SQ_CHECK(sq_file_read(path, n - 1, &got, &len) == SQ_ETOOBIG && !got);
            SQ_CHECK(strstr(sq_error_detail(), path) == sq_error_detail());
        }
        free(want);
        remove(path);
    }
    char *got = NULL;
    size_t len = 0;
    SQ_CHECK(sq_file_read("/tmp", 100, &got, &len) == SQ_EINVAL && !got);
    SQ_CHECK(strcmp(sq_error_detail(), "/tmp: is a directory, not a file") == 0);
    SQ_CHECK(sq_file_read("/nonexistent/x", 100, &got, &len) == -ENOENT && !got);
    SQ_CHECK(strcmp(sq_error_detail(), "/nonexistent/x: No such file or directory") == 0);
}

int
main(void)
{
    SQ_RUN(test_utf8_sanitize);
    SQ_RUN(test_error_detail);
    SQ_RUN(test_strerror);
    SQ_RUN(test_log_quote);
    SQ_RUN(test_prof_table);
    SQ_RUN(test_sha256);
    SQ_RUN(test_file_read);
    return sq_test_summary("core");
}

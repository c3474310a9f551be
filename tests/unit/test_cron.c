/*  Unit tests of sq_tz (TZif reader) and sq_cron (expressions, next
 *  occurrence across DST gaps and overlaps). Offsets are also checked
 *  against the C library's own reading of the same zone files. */
#define _GNU_SOURCE /* tm_gmtoff */
#include "sq_cron.h"
#include "sq_error.h"
#include "sq_test.h"
#include "sq_tz.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t
s_t(const char *iso)
{
    int64_t t = 0;
    if (sq_time_parse_iso(iso, &t) != 0)
        fprintf(stderr, "bad test time %s\n", iso);
    return t;
}

/* Next occurrence of expr in zone after `after`, as ISO text. */
static const char *
s_next(const char *expr, const char *zone, const char *after)
{
    static char buf[32];
    sq_cron_t c;
    sq_tz_t *tz = sq_tz_load(zone);
    int64_t next = 0;
    snprintf(buf, sizeof buf, "error");
    if (tz && sq_cron_parse(expr, &c) == 0 && sq_cron_next(&c, tz, s_t(after), &next) == 0)
        sq_time_format_iso(next, buf, sizeof buf);
    sq_tz_destroy(&tz);
    return buf;
}

static void
test_civil(void)
{
    SQ_CHECK(sq_days_from_civil(1970, 1, 1) == 0);
    SQ_CHECK(sq_days_from_civil(2000, 3, 1) == 11017);
    SQ_CHECK(sq_weekday_from_days(0) == 4); /* Thursday */
    SQ_CHECK(sq_weekday_from_days(sq_days_from_civil(2026, 11, 29)) == 0);
    int64_t y;
    unsigned m, d;
    sq_civil_from_days(sq_days_from_civil(2024, 2, 29), &y, &m, &d);
    SQ_CHECK(y == 2024 && m == 2 && d == 29);
    char buf[32];
    SQ_CHECK(strcmp(sq_time_format_iso(s_t("2026-11-30T09:30:00+08:00"), buf, sizeof buf),
                    "2026-11-30T01:30:00Z") == 0);
    int64_t t;
    SQ_CHECK(sq_time_parse_iso("2026-13-01", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("yesterday", &t) == SQ_EINVAL);
    /* no day past its month's end (it used to roll into the next month),
     * no negative clock field, no offset that overflows */
    SQ_CHECK(sq_time_parse_iso("2026-02-31", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026-04-31T10:00Z", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2028-02-29", &t) == 0 && sq_time_parse_iso("2026-02-29", &t) ==
                                                              SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026-01-01T-5:-70", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026-01-01T00:00+9999999999999999", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026-01-01T00:00+05:99", &t) == SQ_EINVAL);
    /* numbers are digits where they are read: no space, no sign */
    SQ_CHECK(sq_time_parse_iso("2026-01-01T 9:30", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026-01-01T09:+30", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026-01-01T09:30:+5", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026- 1-01", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso(" 2026-01-01", &t) == SQ_EINVAL);
    SQ_CHECK(sq_time_parse_iso("2026-01-01T9:05:07Z", &t) == 0 &&
             t == sq_days_from_civil(2026, 1, 1) * 86400 + 9 * 3600 + 5 * 60 + 7);
    SQ_CHECK(sq_time_parse_iso("2026-01-01T00:00+05:30", &t) == 0 &&
             t == sq_days_from_civil(2026, 1, 1) * 86400 - 5 * 3600 - 30 * 60);
}

static void
test_tz_offsets(void)
{
    sq_tz_t *ny = sq_tz_load("America/New_York");
    sq_tz_t *sh = sq_tz_load("Asia/Shanghai");
    sq_tz_t *ld = sq_tz_load("Europe/London");
    SQ_REQUIRE(ny && sh && ld);
    SQ_CHECK(strcmp(sq_tz_name(ny), "America/New_York") == 0);
    SQ_CHECK(sq_tz_offset(ny, s_t("2026-07-01T12:00:00Z")) == -4 * 3600);
    SQ_CHECK(sq_tz_offset(ny, s_t("2026-01-15T12:00:00Z")) == -5 * 3600);
    SQ_CHECK(sq_tz_offset(sh, s_t("2026-07-01T12:00:00Z")) == 8 * 3600);
    SQ_CHECK(sq_tz_offset(ld, s_t("2026-07-01T12:00:00Z")) == 3600);
    SQ_CHECK(sq_tz_offset(ld, s_t("2026-12-01T12:00:00Z")) == 0);
    /* After the file's last transition the footer rule applies. */
    SQ_CHECK(sq_tz_offset(ny, s_t("2050-07-01T12:00:00Z")) == -4 * 3600);
    SQ_CHECK(sq_tz_offset(ny, s_t("2050-01-15T12:00:00Z")) == -5 * 3600);
    SQ_CHECK(sq_tz_offset(ld, s_t("2051-06-01T00:00:00Z")) == 3600);
    /* Exact transition instants: 2026-03-08 07:00Z (NY), 2026-10-25 01:00Z (London). */
    SQ_CHECK(sq_tz_offset(ny, s_t("2026-03-08T06:59:59Z")) == -5 * 3600);
    SQ_CHECK(sq_tz_offset(ny, s_t("2026-03-08T07:00:00Z")) == -4 * 3600);
    SQ_CHECK(sq_tz_offset(ld, s_t("2026-10-25T00:59:59Z")) == 3600);
    SQ_CHECK(sq_tz_offset(ld, s_t("2026-10-25T01:00:00Z")) == 0);
    sq_tz_destroy(&ny);
    sq_tz_destroy(&ny);
    sq_tz_destroy(&sh);
    sq_tz_destroy(&ld);
    SQ_CHECK(ny == NULL);
}

/* Hourly sweep over 2026 and 2045 compared with libc's localtime_r. */
static void
test_tz_matches_libc(void)
{
    const char *zones[] = {"America/New_York", "Europe/London", "Asia/Shanghai"};
    for (int z = 0; z < 3; z++) {
        sq_tz_t *tz = sq_tz_load(zones[z]);
        SQ_REQUIRE(tz);
        setenv("TZ", zones[z], 1);
        tzset();
        int mismatches = 0;
        for (int64_t t = s_t("2026-01-01"); t < s_t("2027-01-01"); t += 1800) {
            struct tm tm;
            time_t tt = (time_t)t;
            localtime_r(&tt, &tm);
            mismatches += tm.tm_gmtoff != sq_tz_offset(tz, t);
        }
        for (int64_t t = s_t("2045-01-01"); t < s_t("2046-01-01"); t += 3600) {
            struct tm tm;
            time_t tt = (time_t)t;
            localtime_r(&tt, &tm);
            mismatches += tm.tm_gmtoff != sq_tz_offset(tz, t);
        }
        SQ_CHECK(mismatches == 0);
        sq_tz_destroy(&tz);
    }
    unsetenv("TZ");
}

static void
test_tz_bad_names(void)
{
    SQ_CHECK(sq_tz_load("Nowhere/Atlantis") == NULL);
    SQ_CHECK(sq_error_code() == SQ_ENOTFOUND);
    SQ_CHECK(strstr(sq_error_detail(), "Nowhere/Atlantis") != NULL);
    SQ_CHECK(strstr(sq_error_detail(), "No such file or directory") != NULL);
    /* a region is a directory of zones, not a zone */
    SQ_CHECK(sq_tz_load("America") == NULL);
    SQ_CHECK(sq_error_code() == SQ_ENOTFOUND);
    SQ_CHECK(strstr(sq_error_detail(), "America: is a directory, not a file") != NULL);
    SQ_CHECK(sq_tz_load("../../etc/passwd") == NULL);
    SQ_CHECK(sq_error_code() == SQ_EINVAL);
    SQ_CHECK(sq_tz_load("") == NULL);
}

static void
test_tz_gap_overlap(void)
{
    sq_tz_t *ny = sq_tz_load("America/New_York");
    SQ_REQUIRE(ny);
    sq_tz_fold_t f;
    int64_t day = sq_days_from_civil(2026, 3, 8) * 86400;
    SQ_CHECK(sq_tz_to_utc(ny, day + 2 * 3600 + 1800, &f) == s_t("2026-03-08T07:30:00Z"));
    SQ_CHECK(f == SQ_TZ_GAP);
    day = sq_days_from_civil(2026, 11, 1) * 86400;
    SQ_CHECK(sq_tz_to_utc(ny, day + 3600 + 1800, &f) == s_t("2026-11-01T05:30:00Z"));
    SQ_CHECK(f == SQ_TZ_OVERLAP);
    SQ_CHECK(sq_tz_to_utc(ny, day + 12 * 3600, &f) == s_t("2026-11-01T17:00:00Z"));
    SQ_CHECK(f == SQ_TZ_UNIQUE);
    sq_tz_destroy(&ny);
}

static void
test_cron_parse_errors(void)
{
    sq_cron_t c;
    SQ_CHECK(sq_cron_parse("61 * * * *", &c) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "minute") != NULL);
    SQ_CHECK(sq_cron_parse("* 24 * * *", &c) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "hour") != NULL);
    SQ_CHECK(sq_cron_parse("* * * *", &c) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "5 fields") != NULL);
    SQ_CHECK(sq_cron_parse("* * * * * *", &c) == SQ_EINVAL);
    SQ_CHECK(sq_cron_parse("*/0 * * * *", &c) == SQ_EINVAL);
    SQ_CHECK(sq_cron_parse("5-2 * * * *", &c) == SQ_EINVAL);
    SQ_CHECK(sq_cron_parse("1,,2 * * * *", &c) == SQ_EINVAL);
    /* an empty last element as well (it used to be accepted), and a step
     * that is not plain digits */
    SQ_CHECK(sq_cron_parse("0-59/15 8-17 *, * MON-FRI", &c) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "empty list element") != NULL);
    SQ_CHECK(sq_cron_parse("*/-1 * * * *", &c) == SQ_EINVAL);
    SQ_CHECK(sq_cron_parse("*/+5 * * * *", &c) == SQ_EINVAL);
    SQ_CHECK(sq_cron_parse("*/ 5 * * * *", &c) == SQ_EINVAL);
    SQ_CHECK(sq_cron_parse("* * * FOO *", &c) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "month") != NULL);
    SQ_CHECK(sq_cron_parse("@often", &c) == SQ_EINVAL);
    SQ_CHECK(sq_cron_parse(NULL, &c) == SQ_EINVAL);
}

static void
test_cron_fields(void)
{
    sq_cron_t c;
    SQ_REQUIRE(sq_cron_parse("*/15 8-17/3 1,15 jan,JUL mon-fri", &c) == 0);
    SQ_CHECK(c.minutes == (1ULL << 0 | 1ULL << 15 | 1ULL << 30 | 1ULL << 45));
    SQ_CHECK(c.hours == (1u << 8 | 1u << 11 | 1u << 14 | 1u << 17));
    SQ_CHECK(c.mdays == (1u << 1 | 1u << 15));
    SQ_CHECK(c.months == (1u << 1 | 1u << 7));
    SQ_CHECK(c.wdays == 0x3e);
    SQ_REQUIRE(sq_cron_parse("5/20 * * * 7", &c) == 0);
    SQ_CHECK(c.minutes == (1ULL << 5 | 1ULL << 25 | 1ULL << 45));
    SQ_CHECK(c.wdays == 1); /* 7 is Sunday */
    /* a step past the range keeps only the range's start: 2^32 + 1 is not
     * a step of 1, and 50-59/(2^32 - 6) sets no minute below 50 */
    SQ_REQUIRE(sq_cron_parse("*/4294967297 * * * *", &c) == 0);
    SQ_CHECK(c.minutes == 1);
    SQ_REQUIRE(sq_cron_parse("50-59/4294967290 * * * *", &c) == 0);
    SQ_CHECK(c.minutes == 1ULL << 50);
    SQ_REQUIRE(sq_cron_parse("@daily", &c) == 0);
    SQ_CHECK(c.minutes == 1 && c.hours == 1 && c.mday_star && c.wday_star);
}

static void
test_cron_next_plain(void)
{
    /* Friday evening in Shanghai -> Monday's 09:30 open. */
    SQ_CHECK(strcmp(s_next("30 9 * * 1-5", "Asia/Shanghai", "2026-11-27T12:00:00Z"),
                    "2026-11-30T01:30:00Z") == 0);
    SQ_CHECK(strcmp(s_next("30 9 * * 1-5", "Asia/Shanghai", "2026-11-30T01:29:59Z"),
                    "2026-11-30T01:30:00Z") == 0);
    /* strictly after */
    SQ_CHECK(strcmp(s_next("30 9 * * 1-5", "Asia/Shanghai", "2026-11-30T01:30:00Z"),
                    "2026-12-01T01:30:00Z") == 0);
    SQ_CHECK(strcmp(s_next("* * * * *", "UTC", "2026-11-29T10:00:30Z"),
                    "2026-11-29T10:01:00Z") == 0);
    /* Vixie: both day fields restricted -> either matches (13th OR Friday). */
    SQ_CHECK(strcmp(s_next("0 0 13 * 5", "UTC", "2026-11-28T00:00:00Z"),
                    "2026-12-04T00:00:00Z") == 0);
    SQ_CHECK(strcmp(s_next("0 0 29 2 *", "UTC", "2026-03-01T00:00:00Z"),
                    "2028-02-29T00:00:00Z") == 0);
    SQ_CHECK(strcmp(s_next("0 0 30 2 *", "UTC", "2026-03-01T00:00:00Z"), "error") == 0);
    SQ_CHECK(sq_error_code() == SQ_ENOTFOUND);
}

static void
test_cron_next_dst(void)
{
    /* New York spring forward (2026-03-08 02:00 EST -> 03:00 EDT):
     * 02:30 does not exist and fires at 03:30 EDT; next day as usual. */
    SQ_CHECK(strcmp(s_next("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z"),
                    "2026-03-08T07:30:00Z") == 0);
    SQ_CHECK(strcmp(s_next("30 2 * * *", "America/New_York", "2026-03-08T07:30:00Z"),
                    "2026-03-09T06:30:00Z") == 0);
    /* Every half hour across the gap: no duplicate, no hole. */
    SQ_CHECK(strcmp(s_next("0,30 * * * *", "America/New_York", "2026-03-08T06:30:00Z"),
                    "2026-03-08T07:00:00Z") == 0);
    SQ_CHECK(strcmp(s_next("0,30 * * * *", "America/New_York", "2026-03-08T07:00:00Z"),
                    "2026-03-08T07:30:00Z") == 0);
    /* Fall back (2026-11-01 02:00 EDT -> 01:00 EST): 01:30 fires once. */
    SQ_CHECK(strcmp(s_next("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z"),
                    "2026-11-01T05:30:00Z") == 0);
    SQ_CHECK(strcmp(s_next("30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z"),
                    "2026-11-02T06:30:00Z") == 0);
    /* London: 01:30 on 2026-03-29 is skipped -> 02:30 BST; on 2026-10-25
     * it repeats -> the BST one. */
    SQ_CHECK(strcmp(s_next("30 1 29 3 *", "Europe/London", "2026-03-28T00:00:00Z"),
                    "2026-03-29T01:30:00Z") == 0);
    SQ_CHECK(strcmp(s_next("30 1 25 10 *", "Europe/London", "2026-10-24T00:00:00Z"),
                    "2026-10-25T00:30:00Z") == 0);
    /* Shanghai has no DST: the same UTC time all year. */
    SQ_CHECK(strcmp(s_next("30 9 1 7 *", "Asia/Shanghai", "2026-06-01T00:00:00Z"),
                    "2026-07-01T01:30:00Z") == 0);
    /* Beyond 2037 the footer rule decides: 2040-07-02 09:30 EDT. */
    SQ_CHECK(strcmp(s_next("30 9 2 7 *", "America/New_York", "2040-06-01T00:00:00Z"),
                    "2040-07-02T13:30:00Z") == 0);
}

/* Random expressions from cron's alphabet: parse refuses or accepts, and an
 * accepted one has a next occurrence or says there is none; no crash, no
 * hang (the search is bounded). */
static void
test_cron_random(void)
{
    const char alphabet[] = "0123456789*/,- @JANFEBMONSUNdailyhourly";
    sq_tz_t *tz = sq_tz_load("Europe/London");
    SQ_REQUIRE(tz);
    unsigned seed = 7, accepted = 0, bad = 0;
    for (int i = 0; i < 3000; i++) {
        char expr[40];
        int n = (int)(rand_r(&seed) % (sizeof expr - 1));
        for (int k = 0; k < n; k++)
            expr[k] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
        expr[n] = '\0';
        if (i % 3 == 0) /* keep a third well-shaped: five fields */
            snprintf(expr, sizeof expr, "%u %u-%u/%u %u * %u", rand_r(&seed) % 70,
                     rand_r(&seed) % 25, rand_r(&seed) % 25, rand_r(&seed) % 5,
                     rand_r(&seed) % 33, rand_r(&seed) % 9);
        sq_cron_t c;
        int64_t next = 0;
        if (sq_cron_parse(expr, &c) != 0) {
            bad += sq_error_code() != SQ_EINVAL || !strstr(sq_error_detail(), "cron");
            continue;
        }
        accepted++;
        int rc = sq_cron_next(&c, tz, 1795996800, &next);
        bad += !(rc == 0 && next > 1795996800) && rc != SQ_ENOTFOUND;
    }
    sq_tz_destroy(&tz);
    SQ_CHECK(bad == 0);
    SQ_CHECK(accepted > 0);
}

int
main(void)
{
    SQ_RUN(test_cron_random);
    SQ_RUN(test_civil);
    SQ_RUN(test_tz_offsets);
    SQ_RUN(test_tz_matches_libc);
    SQ_RUN(test_tz_bad_names);
    SQ_RUN(test_tz_gap_overlap);
    SQ_RUN(test_cron_parse_errors);
    SQ_RUN(test_cron_fields);
    SQ_RUN(test_cron_next_plain);
    SQ_RUN(test_cron_next_dst);
    return sq_test_summary("cron");
}

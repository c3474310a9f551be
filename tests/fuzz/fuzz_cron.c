/*  fuzz_cron: libFuzzer target for the scheduler's cron and time-zone
 *  parsers (sq_cron_parse, sq_cron_next, sq_time_parse_iso, sq_tz_load).
 *
 *  The first byte picks what the rest of the input is:
 *    0  a cron expression (up to its first NUL), as a policy window's
 *       `cron:` value, then sq_cron_next from an instant and in a zone
 *       picked by the first bytes of the expression's hash;
 *    1  an ISO time ("2026-11-30T09:30:00Z"), as --start and a trace's
 *       "# start=" give one;
 *    2  a TZif file: written to an anonymous in-memory file (memfd) and
 *       loaded with TZDIR=/proc/self/fd and its descriptor number as the
 *       zone name (no disk I/O), then asked for offsets and instants.
 *  What sq_cron.h and sq_tz.h promise is checked, and a broken promise
 *  calls abort() so that libFuzzer reports it:
 *    - cron: accepted exactly when a strict reader of the header's grammar
 *      written here accepts (numbers and 3-letter names, `*`, `a-b`, `/n`
 *      with n a positive number, comma lists, 5 fields or a macro), with
 *      the same sets; a refusal is SQ_EINVAL with the detail
 *      "cron \"EXPR\": ...";
 *    - next: strictly after the start, within 8 years; in UTC its fields
 *      match, no minute between matches, and SQ_ENOTFOUND only when no day
 *      of the next 8 years matches;
 *    - ISO time: 0 or SQ_EINVAL; what is accepted formats and parses back
 *      to the same instant;
 *    - TZif: NULL with a detail naming the zone, or a zone whose offsets
 *      are within a day and whose instants map back to their wall time
 *      outside a gap.
 */
#define _GNU_SOURCE   /* memfd_create, setenv */

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "sq_cron.h"
#include "sq_error.h"
#include "sq_tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_MAX_TEXT 512

static const char *const s_zone_names[] = {"UTC", "America/New_York", "Asia/Shanghai",
                                           "Europe/London", "Australia/Lord_Howe"};
#define S_N_ZONES (sizeof s_zone_names / sizeof s_zone_names[0])
static sq_tz_t *s_zones[S_N_ZONES];

/* ------------------------------------------------ a strict cron reader */

typedef struct {
    unsigned lo, hi;
    const char *names;      /* 3 letters each, from value names_base */
    unsigned names_base;
} s_field_t;

static const s_field_t s_fields[5] = {
    {0, 59, NULL, 0}, {0, 23, NULL, 0}, {1, 31, NULL, 0},
    {1, 12, "JANFEBMARAPRMAYJUNJULAUGSEPOCTNOVDEC", 1}, {0, 7, "SUNMONTUEWEDTHUFRISAT", 0},
};

/* A number or a name at s[0..n): its value (or 1000 for a big number),
 * the bytes read in *used; -1 when neither. */
static long s_ref_value(const s_field_t *f, const char *s, size_t n, size_t *used)
{
    size_t i = 0;
    long v = 0;
    while (i < n && isdigit((unsigned char)s[i])) {
        v = v * 10 + (s[i] - '0');
        if (v > 1000)
            v = 1000;
        i++;
    }
    if (i > 0) {
        *used = i;
        return v;
    }
    for (unsigned k = 0; f->names && f->names[3 * k]; k++)
        if (n >= 3 && strncasecmp(s, f->names + 3 * k, 3) == 0) {
            *used = 3;
            return (long)(f->names_base + k);
        }
    return -1;
}

/* One element, `*`, `v`, `a-b`, each with an optional `/n`: its bits. */
static int s_ref_element(const s_field_t *f, const char *s, size_t n, uint64_t *bits)
{
    long lo = f->lo, hi = f->hi, step = 1;
    size_t i = 0, used = 0;
    if (n > 0 && s[0] == '*') {
        i = 1;
    } else {
        if ((lo = s_ref_value(f, s, n, &used)) < 0)
            return -1;
        i = used;
        hi = lo;
        if (i < n && s[i] == '-') {
            if ((hi = s_ref_value(f, s + i + 1, n - i - 1, &used)) < 0)
                return -1;
            i += 1 + used;
        } else if (i < n && s[i] == '/') {
            hi = f->hi;
        }
    }
    if (i < n && s[i] == '/') {
        size_t j = i + 1;
        step = 0;
        while (j < n && isdigit((unsigned char)s[j])) {
            step = step * 10 + (s[j] - '0');
            if (step > 1000)
                step = 1000;   /* any step over the range gives its start alone */
            j++;
        }
        if (j == i + 1 || step == 0)
            return -1;
        i = j;
    }
    if (i != n || lo < (long)f->lo || hi > (long)f->hi || lo > hi)
        return -1;
    for (long v = lo; v <= hi; v += step)
        *bits |= 1ULL << v;
    return 0;
}

static int s_ref_parse(const char *expr, sq_cron_t *out)
{
    static const char *const macros[][2] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},
    };
    const char *p = expr;
    if (expr[0] == '@') {
        p = NULL;
        for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
            if (strcmp(expr, macros[i][0]) == 0)
                p = macros[i][1];
        if (!p)
            return -1;
    }
    uint64_t bits[5] = {0};
    uint8_t star[5] = {0};
    for (int k = 0; k < 5; k++) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, " \t");
        if (n == 0)
            return -1;
        star[k] = p[0] == '*';
        for (size_t i = 0; i <= n;) {
            size_t e = i;
            while (e < n && p[e] != ',')
                e++;
            if (s_ref_element(&s_fields[k], p + i, e - i, &bits[k]) != 0)
                return -1;
            i = e + 1;
        }
        p += n;
    }
    p += strspn(p, " \t");
    if (*p)
        return -1;
    memset(out, 0, sizeof *out);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
    out->mday_star = star[2];
    out->wday_star = star[4];
    return 0;
}

/* ------------------------------------------------------------- cron */

static int s_day_matches(const sq_cron_t *c, int64_t days)
{
    int64_t y;
    unsigned m, d;
    sq_civil_from_days(days, &y, &m, &d);
    if (!(c->months >> m & 1))
        return 0;
    int md = c->mdays >> d & 1, wd = c->wdays >> sq_weekday_from_days(days) & 1;
    return c->mday_star || c->wday_star ? md && wd : md || wd;
}

static int s_minute_matches(const sq_cron_t *c, int64_t t)
{
    int64_t days = t / 86400 - (t % 86400 < 0), sec = t - days * 86400;
    return s_day_matches(c, days) && (c->hours >> (sec / 3600) & 1) &&
           (c->minutes >> (sec / 60 % 60) & 1) && sec % 60 == 0;
}

static void s_check_next(const sq_cron_t *c, const uint8_t *data, size_t size)
{
    uint32_t r = 0;
    for (size_t i = 0; i < size; i++)
        r = (r ^ data[i]) * 16777619u;
    size_t zone = r % S_N_ZONES;
    /* 2000-01-01 plus up to ~60 years, to the second */
    int64_t after = 946684800LL + (int64_t)(r >> 3) % (60 * 366 * 86400LL);
    int64_t next = 0;
    int rc = sq_cron_next(c, s_zones[zone], after, &next);
    SQ_FUZZ_CHECK(rc == 0 || rc == SQ_ENOTFOUND);
    if (rc == 0)
        SQ_FUZZ_CHECK(next > after && next - after <= (8 * 366 + 3) * 86400LL);
    if (zone != 0)
        return;
    if (rc == SQ_ENOTFOUND) {
        int64_t day0 = after / 86400;
        for (int64_t d = day0 + 1; d < day0 + 8 * 365; d++)
            SQ_FUZZ_CHECK(!s_day_matches(c, d));
        return;
    }
    SQ_FUZZ_CHECK(s_minute_matches(c, next));
    if (next - after <= 3 * 86400)
        for (int64_t t = (after / 60 + 1) * 60; t < next; t += 60)
            SQ_FUZZ_CHECK(!s_minute_matches(c, t));
}

static void s_cron(const char *expr, const uint8_t *data, size_t size)
{
    sq_cron_t got, want;
    sq_error_clear();
    int rc = sq_cron_parse(expr, &got);
    int ref = s_ref_parse(expr, &want);
    if (rc != 0) {
        const char *d = sq_error_detail();
        size_t n_d = strlen(d), n_e = strlen(expr);
        SQ_FUZZ_CHECK(rc == SQ_EINVAL);
        /* "cron \"EXPR\": ...", perhaps cut short (by up to 3 bytes more
         * at a character boundary) */
        SQ_FUZZ_CHECK(strncmp(d, "cron \"", 6) == 0);
        SQ_FUZZ_CHECK(memcmp(d + 6, expr, n_d >= n_e + 9 ? n_e : n_d > 9 ? n_d - 9 : 0) == 0);
        SQ_FUZZ_CHECK(ref != 0);
        return;
    }
    if (ref != 0)
        fprintf(stderr, "fuzz_cron: \"%s\" accepted, the strict reader refuses it\n", expr);
    SQ_FUZZ_CHECK(ref == 0);
    if (memcmp(&got, &want, sizeof got) != 0)
        fprintf(stderr, "fuzz_cron: \"%s\": minutes %016llx want %016llx, hours %x/%x, mdays "
                "%x/%x, months %x/%x, wdays %x/%x, stars %d%d/%d%d\n", expr,
                (unsigned long long)got.minutes, (unsigned long long)want.minutes, got.hours,
                want.hours, got.mdays, want.mdays, got.months, want.months, got.wdays,
                want.wdays, got.mday_star, got.wday_star, want.mday_star, want.wday_star);
    SQ_FUZZ_CHECK(memcmp(&got, &want, sizeof got) == 0);
    s_check_next(&got, data, size);
}

/* ------------------------------------------------------------- time */

static void s_iso(const char *text)
{
    int64_t utc = 0, back = 0;
    sq_error_clear();
    int rc = sq_time_parse_iso(text, &utc);
    SQ_FUZZ_CHECK(rc == 0 || rc == SQ_EINVAL);
    if (rc != 0 || utc < -62135596800LL || utc > 253402300799LL)   /* years 1..9999 */
        return;
    char buf[64];
    sq_time_format_iso(utc, buf, sizeof buf);
    SQ_FUZZ_CHECK(sq_time_parse_iso(buf, &back) == 0 && back == utc);
}

/* ------------------------------------------------------------- TZif */

static void s_tzif(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0 && (fd = memfd_create("fuzz_cron", MFD_CLOEXEC)) < 0)
        return;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return;
    char name[16];
    snprintf(name, sizeof name, "%d", fd);
    const char *old = getenv("TZDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TZDIR", "/proc/self/fd", 1);
    sq_error_clear();
    sq_tz_t *tz = sq_tz_load(name);
    if (saved)
        setenv("TZDIR", saved, 1);
    else
        unsetenv("TZDIR");
    free(saved);
    if (!tz) {
        SQ_FUZZ_CHECK(strstr(sq_error_detail(), name) != NULL);
        return;
    }
    SQ_FUZZ_CHECK(strcmp(sq_tz_name(tz), name) == 0);
    static const int64_t at[] = {-2208988800LL, 0, 946684800LL, 1796031000LL, 1805000000LL,
                                 4102444800LL, 7258118400LL};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        int32_t off = sq_tz_offset(tz, at[i]);
        (void)off;
        sq_tz_fold_t fold;
        int64_t wall = at[i] + 9 * 3600 + 1800;
        int64_t t = sq_tz_to_utc(tz, wall, &fold);
        SQ_FUZZ_CHECK(fold == SQ_TZ_UNIQUE || fold == SQ_TZ_GAP || fold == SQ_TZ_OVERLAP);
        if (fold != SQ_TZ_GAP)
            SQ_FUZZ_CHECK(t + sq_tz_offset(tz, t) == wall);
    }
    sq_cron_t c;
    int64_t next = 0;
    SQ_FUZZ_CHECK(sq_cron_parse("30 9 * * 1-5", &c) == 0);
    int rc = sq_cron_next(&c, tz, 1796031000LL, &next);
    SQ_FUZZ_CHECK(rc == 0 || rc == SQ_ENOTFOUND);
    if (rc == 0)
        SQ_FUZZ_CHECK(next > 1796031000LL);
    sq_tz_destroy(&tz);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_zones[0])
        for (size_t i = 0; i < S_N_ZONES; i++) {
            s_zones[i] = sq_tz_load(s_zone_names[i]);
            SQ_FUZZ_CHECK(s_zones[i]);
        }
    if (size == 0)
        return 0;
    char text[S_MAX_TEXT + 1];
    size_t n = size - 1 < S_MAX_TEXT ? size - 1 : S_MAX_TEXT;
    memcpy(text, data + 1, n);
    text[n] = '\0';
    switch (data[0] % 3) {
    case 0: s_cron(text, data + 1, size - 1); break;
    case 1: s_iso(text); break;
    default: s_tzif(data + 1, size - 1); break;
    }
    return 0;
}

/*  sq_tz: a small TZif (RFC 8536) reader.
 *
 *  File layout used here (all integers big-endian):
 *    header  "TZif" ver(1) reserved(15) isutcnt isstdcnt leapcnt timecnt
 *            typecnt charcnt (6 x u32)
 *    v1 body (32-bit times)  -- skipped when ver >= '2'
 *    header again, then v2 body: timecnt x i64 transition times,
 *            timecnt x u8 type index, typecnt x {i32 utoff, u8 isdst,
 *            u8 abbr index}, charcnt, leapcnt x 12, isstdcnt, isutcnt
 *    footer  "\n" POSIX-TZ-string "\n"
 *  The footer ("EST5EDT,M3.2.0,M11.1.0") governs times after the last
 *  transition. Only the M (month.week.day) rule form is read; zones using
 *  the J/n forms fall back to the last transition's offset.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_tz.h"

#include "sq_error.h"
#include "sq_file.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Zone files are a few KiB; this bounds what one may make us read. */
#define S_MAX_TZIF_BYTES ((size_t)1 << 20)

typedef struct {
    int valid;          /* a DST rule was parsed */
    int32_t std_off, dst_off;   /* seconds east */
    unsigned start_m, start_w, start_d, end_m, end_w, end_d;
    int32_t start_time, end_time; /* local seconds after midnight */
} s_rule_t;

struct sq_tz_t {
    char name[64];
    int64_t *trans;     /* (n_trans) UTC instants */
    uint8_t *idx;       /* (n_trans) type index after each transition */
    int32_t *type_off;  /* (n_types) */
    uint32_t n_trans, n_types;
    int32_t first_off;  /* before the first transition */
    int has_footer_std; /* footer gave at least a standard offset */
    s_rule_t rule;
};

static uint32_t
s_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t
s_be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)s_be32(p) << 32 | s_be32(p + 4));
}

/* Howard Hinnant's days_from_civil. */
int64_t
sq_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void
sq_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

unsigned
sq_weekday_from_days(int64_t z)
{
    return (unsigned)(z >= -4 ? (z + 4) % 7 : (z + 5) % 7 + 6);
}

/* --- POSIX TZ footer ------------------------------------------------- */

static const char *
s_skip_abbr(const char *p)
{
    if (*p == '<') {
        const char *q = strchr(p, '>');
        return q ? q + 1 : NULL;
    }
    const char *start = p;
    while (isalpha((unsigned char)*p))
        p++;
    return p - start >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] -> seconds; POSIX offsets are positive west. */
static const char *
s_parse_hms(const char *p, int32_t *out)
{
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*p))
        return NULL;
    long h = strtol(p, (char **)&p, 10), mi = 0, s = 0;
    if (*p == ':') {
        mi = strtol(p + 1, (char **)&p, 10);
        if (*p == ':')
            s = strtol(p + 1, (char **)&p, 10);
    }
    /* RFC 8536 allows hours up to 167 (rule times); beyond, the sum overflows */
    if (h > 167 || mi < 0 || mi > 59 || s < 0 || s > 59)
        return NULL;
    *out = (int32_t)(sign * (h * 3600 + mi * 60 + s));
    return p;
}

static const char *
s_parse_mrule(const char *p, unsigned *m, unsigned *w, unsigned *d, int32_t *time)
{
    if (*p != 'M')
        return NULL;
    char *end;
    *m = (unsigned)strtoul(p + 1, &end, 10);
    if (*end != '.')
        return NULL;
    *w = (unsigned)strtoul(end + 1, &end, 10);
    if (*end != '.')
        return NULL;
    *d = (unsigned)strtoul(end + 1, &end, 10);
    if (*m < 1 || *m > 12 || *w < 1 || *w > 5 || *d > 6)
        return NULL;
    *time = 7200;
    return *end == '/' ? s_parse_hms(end + 1, time) : end;
}

static void
s_parse_footer(sq_tz_t *self, const char *p)
{
    int32_t std, dst;
    if (!(p = s_skip_abbr(p)) || !(p = s_parse_hms(p, &std)))
        return;
    self->has_footer_std = 1;
    self->rule.std_off = -std;
    if (!*p)
        return;
    if (!(p = s_skip_abbr(p)))
        return;
    self->rule.dst_off = self->rule.std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = s_parse_hms(p, &dst)))
            return;
        self->rule.dst_off = -dst;
    }
    s_rule_t *r = &self->rule;
    if (*p++ != ',' || !(p = s_parse_mrule(p, &r->start_m, &r->start_w, &r->start_d,
                                           &r->start_time)))
        return;
    if (*p++ != ',' || !s_parse_mrule(p, &r->end_m, &r->end_w, &r->end_d, &r->end_time))
        return;
    r->valid = 1;
}

/* The days of month m (1-12) of year y. */
static unsigned
s_month_days(int64_t y, unsigned m)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return mdays[m - 1] + (m == 2 && leap);
}

/* Day (days since epoch) of the w-th weekday d of month m in year y
 * (w = 5: the last one). */
static int64_t
s_rule_day(int64_t y, unsigned m, unsigned w, unsigned d)
{
    int64_t first = sq_days_from_civil(y, m, 1);
    int64_t day = first + (d + 7 - sq_weekday_from_days(first)) % 7 + 7 * (w - 1);
    int64_t n = s_month_days(y, m);
    while (day >= first + n)
        day -= 7;
    return day;
}

static int32_t
s_rule_offset(const s_rule_t *r, int64_t utc)
{
    int64_t y;
    unsigned m, d;
    sq_civil_from_days((utc + r->std_off) / 86400 - ((utc + r->std_off) % 86400 < 0), &y, &m, &d);
    /* A DST start is given in standard local time, its end in DST local time. */
    int64_t start = s_rule_day(y, r->start_m, r->start_w, r->start_d) * 86400 +
                    r->start_time - r->std_off;
    int64_t end = s_rule_day(y, r->end_m, r->end_w, r->end_d) * 86400 + r->end_time -
                  r->dst_off;
    int in_dst = start < end ? (utc >= start && utc < end) : !(utc >= end && utc < start);
    return in_dst ? r->dst_off : r->std_off;
}

/* --- loading ---------------------------------------------------------- */

static int
s_parse(sq_tz_t *self, const uint8_t *buf, size_t len)
{
    if (len < 44 || memcmp(buf, "TZif", 4) != 0)
        return SQ_FAIL(SQ_EFORMAT, "zone %s: not a TZif file", self->name);
    int version = buf[4] ? buf[4] - '0' : 1;
    const uint8_t *h = buf;
    size_t tsize = 4;
    if (version >= 2) {
        /* Skip the v1 body to reach the 64-bit header. */
        /* in size_t: the counts are u32 and their products must not wrap */
        size_t v1 = 44 + (size_t)s_be32(h + 32) * 5 + (size_t)s_be32(h + 36) * 6 +
                    (size_t)s_be32(h + 40) + (size_t)s_be32(h + 28) * 8 +
                    (size_t)s_be32(h + 24) + (size_t)s_be32(h + 20);
        if (v1 + 44 > len)
            return SQ_FAIL(SQ_ETRUNC, "zone %s: truncated TZif header", self->name);
        h = buf + v1;
        tsize = 8;
    }
    uint32_t isut = s_be32(h + 20), isstd = s_be32(h + 24), leap = s_be32(h + 28);
    uint32_t timecnt = s_be32(h + 32), typecnt = s_be32(h + 36), charcnt = s_be32(h + 40);
    const uint8_t *p = h + 44;
    size_t body = timecnt * (tsize + 1) + (size_t)typecnt * 6 + charcnt + leap * (tsize + 4) +
                  isstd + isut;
    if (typecnt == 0 || (size_t)(p - buf) + body > len)
        return SQ_FAIL(SQ_ETRUNC, "zone %s: truncated TZif body", self->name);
    self->trans = calloc(timecnt + 1, sizeof *self->trans);
    self->idx = calloc(timecnt + 1, 1);
    self->type_off = calloc(typecnt, sizeof *self->type_off);
    if (!self->trans || !self->idx || !self->type_off)
        return SQ_FAIL(SQ_ENOMEM, "zone %s", self->name);
    for (uint32_t i = 0; i < timecnt; i++)
        self->trans[i] = tsize == 8 ? s_be64(p + i * 8) : (int32_t)s_be32(p + i * 4);
    p += timecnt * tsize;
    for (uint32_t i = 0; i < timecnt; i++)
        if ((self->idx[i] = p[i]) >= typecnt)
            return SQ_FAIL(SQ_EFORMAT, "zone %s: bad type index", self->name);
    p += timecnt;
    self->first_off = (int32_t)s_be32(p);
    for (uint32_t i = 0; i < typecnt; i++)
        self->type_off[i] = (int32_t)s_be32(p + i * 6);
    p += typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut;
    self->n_trans = timecnt;
    self->n_types = typecnt;
    if (version >= 2 && p < buf + len && *p == '\n') {
        char footer[128];
        size_t n = 0;
        for (p++; p < buf + len && *p != '\n' && n + 1 < sizeof footer; p++)
            footer[n++] = (char)*p;
        footer[n] = '\0';
        s_parse_footer(self, footer);
    }
    return 0;
}

static int
s_name_ok(const char *name)
{
    if (!name || !*name || name[0] == '/' || strlen(name) >= 64 || strstr(name, ".."))
        return 0;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("/_+-", *c))
            return 0;
    return 1;
}

sq_tz_t *
sq_tz_load(const char *name)
{
    if (!s_name_ok(name)) {
        SQ_FAIL(SQ_EINVAL, "time zone \"%s\": not an IANA zone name", name ? name : "");
        return NULL;
    }
    const char *dir = getenv("TZDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    char *buf = NULL;
    size_t len = 0;
    if (sq_file_read(path, S_MAX_TZIF_BYTES, &buf, &len) != 0) {
        /* (the reader's message names the path) */
        SQ_FAIL(SQ_ENOTFOUND, "time zone \"%s\": no such zone (%s)", name, sq_error_detail());
        return NULL;
    }
    sq_tz_t *self = calloc(1, sizeof *self);
    if (self) {
        snprintf(self->name, sizeof self->name, "%s", name);
        if (s_parse(self, (const uint8_t *)buf, len) != 0)
            sq_tz_destroy(&self);
    }
    free(buf);
    return self;
}

void
sq_tz_destroy(sq_tz_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_tz_t *self = *self_p;
    free(self->trans);
    free(self->idx);
    free(self->type_off);
    free(self);
    *self_p = NULL;
}

const char *
sq_tz_name(const sq_tz_t *self)
{
    return self->name;
}

int32_t
sq_tz_offset(const sq_tz_t *self, int64_t utc)
{
    if (self->n_trans == 0 || utc < self->trans[0])
        return self->n_trans == 0 && self->has_footer_std ? self->rule.std_off : self->first_off;
    if (utc >= self->trans[self->n_trans - 1] && self->rule.valid)
        return s_rule_offset(&self->rule, utc);
    uint32_t lo = 0, hi = self->n_trans; /* last transition <= utc */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (self->trans[mid] <= utc)
            lo = mid;
        else
            hi = mid;
    }
    return self->type_off[self->idx[lo]];
}

int64_t
sq_tz_to_utc(const sq_tz_t *self, int64_t wall, sq_tz_fold_t *fold)
{
    /* Offsets a day either side bracket any single transition near wall. */
    int32_t before = sq_tz_offset(self, wall - 86400);
    int32_t after = sq_tz_offset(self, wall + 86400);
    int64_t t1 = wall - before, t2 = wall - after;
    int ok1 = sq_tz_offset(self, t1) == before, ok2 = sq_tz_offset(self, t2) == after;
    sq_tz_fold_t f = SQ_TZ_UNIQUE;
    int64_t t;
    if (ok1 && ok2 && t1 != t2) {
        f = SQ_TZ_OVERLAP;
        t = t1 < t2 ? t1 : t2;
    } else if (ok1 || ok2) {
        t = ok1 ? t1 : t2;
    } else {
        f = SQ_TZ_GAP;
        t = t1;
    }
    if (fold)
        *fold = f;
    return t;
}

int
sq_time_parse_iso(const char *text, int64_t *utc)
{
    /* each number starts with a digit where it is read (at[]): %d alone
     * would also take spaces and a sign ("T 9:+30") */
    int y, mo, d, h = 0, mi = 0, s = 0, n = 0, at[3] = {0};
    if (!text || sscanf(text, "%n%d-%n%d-%n%d%n", &at[0], &y, &at[1], &mo, &at[2], &d, &n) != 3 ||
        !isdigit((unsigned char)text[at[0]]) || !isdigit((unsigned char)text[at[1]]) ||
        !isdigit((unsigned char)text[at[2]]))
        return SQ_FAIL(SQ_EINVAL, "time \"%s\": expected YYYY-MM-DD[THH:MM[:SS]][Z|+hh:mm]",
                       text ? text : "");
    const char *p = text + n;
    if (*p == 'T' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%n%d:%n%d%n", &at[0], &h, &at[1], &mi, &k) != 2 ||
            !isdigit((unsigned char)p[1 + at[0]]) || !isdigit((unsigned char)p[1 + at[1]]))
            return SQ_FAIL(SQ_EINVAL, "time \"%s\": bad clock time", text);
        p += 1 + k;
        if (*p == ':' && isdigit((unsigned char)p[1]) && sscanf(p + 1, "%d%n", &s, &k) == 1)
            p += 1 + k;
    }
    int32_t off = 0;
    if (*p == '+' || *p == '-') {
        const char *end = s_parse_hms(p, &off);
        if (!end || *end)
            return SQ_FAIL(SQ_EINVAL, "time \"%s\": bad UTC offset", text);
        p = end;
    } else if (*p == 'Z') {
        p++;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || (unsigned)d > s_month_days(y, (unsigned)mo) ||
        h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60)
        return SQ_FAIL(SQ_EINVAL, "time \"%s\": out of range or trailing text", text);
    *utc = sq_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s -
           off;
    return 0;
}

char *
sq_time_format_iso(int64_t utc, char *buf, unsigned size)
{
    int64_t days = utc / 86400 - (utc % 86400 < 0), sec = utc - days * 86400, y;
    unsigned m, d;
    sq_civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d,
             (int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60));
    return buf;
}

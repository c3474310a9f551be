/*  sq_cron: parse cron fields into bit sets; find the next match by walking
 *  local days (cheap: at most a few thousand days, each a bit test) and
 *  mapping matching wall times to instants through sq_tz.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_cron.h"

#include "sq_error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *name;
    unsigned lo, hi;
    const char *const *names; /* names[i] is value lo_names + i */
    unsigned names_base;
} s_field_t;

static const char *const s_months[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const s_wdays[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

static const s_field_t s_fields[5] = {
    {"minute", 0, 59, NULL, 0},      {"hour", 0, 23, NULL, 0},
    {"day-of-month", 1, 31, NULL, 0}, {"month", 1, 12, s_months, 1},
    {"day-of-week", 0, 7, s_wdays, 0},
};

/* One value: a number or a name. Returns the end, or NULL. */
static const char *
s_value(const s_field_t *f, const char *p, unsigned *out)
{
    if (isdigit((unsigned char)*p)) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        *out = v > 1000 ? 1000 : (unsigned)v;
        return end;
    }
    for (unsigned i = 0; f->names && f->names[i]; i++)
        if (strncasecmp(p, f->names[i], 3) == 0) {
            *out = f->names_base + i;
            return p + 3;
        }
    return NULL;
}

/* One comma-separated element: `*`, `v`, `a-b`, each with optional `/n`. */
static int
s_element(const char *expr, const s_field_t *f, const char *p, const char *end,
          uint64_t *bits)
{
    unsigned lo = f->lo, hi = f->hi, step = 1;
    const char *q = p;
    if (*q == '*') {
        q++;
    } else {
        if (!(q = s_value(f, q, &lo)))
            goto bad;
        hi = lo;
        int range = *q == '-';
        if (range && !(q = s_value(f, q + 1, &hi)))
            goto bad;
        if (*q == '/' && !range)
            hi = f->hi; /* "a/n": from a to the field's end */
    }
    if (*q == '/') {
        /* digits only (strtoul would take a sign or spaces), and capped
         * like a value: a step past the range keeps only its start, where
         * a wrapped one would set values below it */
        char *e = (char *)q + 1;
        unsigned long st = isdigit((unsigned char)*e) ? strtoul(e, &e, 10) : 0;
        if (st == 0)
            goto bad;
        step = st > 1000 ? 1000 : (unsigned)st;
        q = e;
    }
    if (q != end)
        goto bad;
    if (lo < f->lo || hi > f->hi || lo > hi)
        return SQ_FAIL(SQ_EINVAL, "cron \"%s\": %s: %.*s out of range %u-%u", expr, f->name,
                       (int)(end - p), p, f->lo, f->hi);
    for (unsigned v = lo; v <= hi; v += step)
        *bits |= 1ULL << v;
    return 0;
bad:
    return SQ_FAIL(SQ_EINVAL, "cron \"%s\": %s: cannot read \"%.*s\"", expr, f->name,
                   (int)(end - p), p);
}

static int
s_field(const char *expr, const s_field_t *f, const char *p, const char *end, uint64_t *bits,
        uint8_t *star)
{
    *bits = 0;
    *star = *p == '*';
    /* p < end on entry; a comma at the end leaves an empty last element */
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (stop == p)
            return SQ_FAIL(SQ_EINVAL, "cron \"%s\": %s: empty list element", expr, f->name);
        int rc = s_element(expr, f, p, stop, bits);
        if (rc || !comma)
            return rc;
        p = comma + 1;
    }
}

static const char *
s_macro(const char *expr)
{
    static const char *const m[][2] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (strcmp(expr, m[i][0]) == 0)
            return m[i][1];
    return NULL;
}

int
sq_cron_parse(const char *expr, sq_cron_t *out)
{
    if (!expr)
        return SQ_FAIL(SQ_EINVAL, "cron: missing expression");
    const char *text = expr[0] == '@' ? s_macro(expr) : expr;
    if (!text)
        return SQ_FAIL(SQ_EINVAL, "cron \"%s\": unknown macro", expr);
    memset(out, 0, sizeof *out);
    uint64_t bits[5];
    uint8_t star[5];
    const char *p = text;
    for (int i = 0; i < 5; i++) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *end = p;
        while (*end && *end != ' ' && *end != '\t')
            end++;
        if (end == p)
            return SQ_FAIL(SQ_EINVAL, "cron \"%s\": expected 5 fields, found %d", expr, i);
        int rc = s_field(expr, &s_fields[i], p, end, &bits[i], &star[i]);
        if (rc)
            return rc;
        p = end;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return SQ_FAIL(SQ_EINVAL, "cron \"%s\": more than 5 fields", expr);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f); /* 7 = Sunday */
    out->mday_star = star[2];
    out->wday_star = star[4];
    return 0;
}

static int
s_day_matches(const sq_cron_t *c, int64_t days)
{
    int64_t y;
    unsigned m, d;
    sq_civil_from_days(days, &y, &m, &d);
    if (!(c->months >> m & 1))
        return 0;
    int md = c->mdays >> d & 1, wd = c->wdays >> sq_weekday_from_days(days) & 1;
    if (c->mday_star || c->wday_star)
        return md && wd;
    return md || wd;
}

/* Earliest instant > after among the matches on local day `days`;
 * INT64_MAX when none. */
static int64_t
s_first_on_day(const sq_cron_t *c, const sq_tz_t *tz, int64_t days, int64_t after)
{
    int64_t best = INT64_MAX;
    if (!s_day_matches(c, days))
        return best;
    for (int h = 0; h < 24; h++) {
        if (!(c->hours >> h & 1))
            continue;
        for (int mi = 0; mi < 60; mi++) {
            if (!(c->minutes >> mi & 1))
                continue;
            int64_t t = sq_tz_to_utc(tz, days * 86400 + h * 3600 + mi * 60, NULL);
            if (t > after && t < best)
                best = t;
        }
    }
    return best;
}

int
sq_cron_next(const sq_cron_t *c, const sq_tz_t *tz, int64_t after, int64_t *next)
{
    int64_t wall = after + sq_tz_offset(tz, after);
    int64_t day0 = wall / 86400 - (wall % 86400 < 0) - 1;
    for (int64_t i = 0; i < 366 * 8; i++) {
        int64_t t = s_first_on_day(c, tz, day0 + i, after);
        if (t == INT64_MAX)
            continue;
        /* A transition near midnight can order the next day's first match
         * before this day's; look one day further. */
        int64_t t2 = s_first_on_day(c, tz, day0 + i + 1, after);
        *next = t < t2 ? t : t2;
        return 0;
    }
    return SQ_FAIL(SQ_ENOTFOUND, "cron: no occurrence within 8 years");
}

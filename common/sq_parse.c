/*  sq_parse: see sq_parse.h. */
#include "sq_parse.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int sq_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    errno = 0;
    const long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int sq_parse_flag_int(const char *prog, const char *flag, const char *v, long long lo,
                      long long hi, long long *out)
{
    if (sq_parse_int(v, lo, hi, out) == 0)
        return 0;
    fprintf(stderr, "%s: %s: '%s' is not an integer in [%lld, %lld]\n", prog, flag, v, lo, hi);
    return -1;
}

int sq_parse_flag_num(const char *prog, const char *flag, const char *v, double lo, double hi,
                      double *out)
{
    if (sq_parse_num(v, lo, hi, out) == 0)
        return 0;
    fprintf(stderr, "%s: %s: '%s' is not a number in [%g, %g]\n", prog, flag, v, lo, hi);
    return -1;
}

int sq_parse_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    const double v = s ? strtod(s, &end) : 0.0;
    if (!s || end == s || *end || errno || !isfinite(v) || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

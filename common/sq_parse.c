/*  sq_parse: see sq_parse.h. */
#include "sq_parse.h"

#include <errno.h>
#include <math.h>
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

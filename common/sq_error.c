/*  sq_error: error codes and a per-thread detail buffer.
 *  The buffer is thread-local so that engine threads, the broker loop and
 *  MPI ranks never race on it; it is fixed-size so recording an error never
 *  allocates (it must work when memory is exhausted).
 */
#include "sq_error.h"

#include <stdio.h>
#include <string.h>

#include "sq_utf8.h"

#define SQ_ERROR_DETAIL_BYTES 1024

static _Thread_local char s_detail[SQ_ERROR_DETAIL_BYTES];
static _Thread_local char s_where[128];
static _Thread_local int s_code;

static const char *const s_texts[] = {
    [0] = "error",
    [1] = "invalid argument",
    [2] = "out of memory",
    [3] = "input/output error",
    [4] = "malformed input",
    [5] = "truncated input",
    [6] = "size over limit",
    [7] = "protocol error",
    [8] = "database error",
    [9] = "database unavailable",
    [10] = "timed out",
    [11] = "not found",
    [12] = "invalid state",
    [13] = "unsupported",
    [14] = "MPI error",
    [15] = "device error",
    [16] = "stale token",
    [17] = "temporarily unavailable",
    [18] = "cancelled",
    [19] = "not a finite number",
};

const char *
sq_strerror(int rc)
{
    if (rc == 0)
        return "ok";
    if (rc <= SQ_EBASE && rc > SQ_ELAST)
        return s_texts[SQ_EBASE - rc];
    if (rc < 0)
        return strerror(-rc);
    return "unknown error";
}

int
sq_error_vset(int rc, const char *file, int line, const char *fmt, va_list ap)
{
    s_code = rc;
    /* formatted aside first: an argument may be the current detail itself
     * (a prefix added to it); a detail cut at the buffer's end ends on a
     * whole character */
    char text[SQ_ERROR_DETAIL_BYTES];
    sq_utf8_fit(text, sizeof text, vsnprintf(text, sizeof text, fmt, ap));
    memcpy(s_detail, text, strlen(text) + 1);
    const char *base = strrchr(file, '/');
    snprintf(s_where, sizeof s_where, "%s:%d", base ? base + 1 : file, line);
    return rc;
}

int
sq_error_set(int rc, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sq_error_vset(rc, file, line, fmt, ap);
    va_end(ap);
    return rc;
}

const char *
sq_error_detail(void)
{
    return s_detail;
}

const char *
sq_error_where(void)
{
    return s_where;
}

int
sq_error_code(void)
{
    return s_code;
}

void
sq_error_clear(void)
{
    s_detail[0] = '\0';
    s_where[0] = '\0';
    s_code = 0;
}

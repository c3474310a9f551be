/*  sq_log: logfmt (or JSON) lines on stderr. Each line is formatted into one
 *  buffer and written with a single write(2), so lines from several threads
 *  or MPI ranks sharing a terminal do not interleave mid-line.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char s_proc[32] = "shardq";
static sq_log_level_t s_level = SQ_LOG_INFO;
static int s_json;

static const char *const s_level_names[] = {"debug", "info", "warn", "error"};

void
sq_log_init(const char *proc)
{
    if (proc)
        snprintf(s_proc, sizeof s_proc, "%s", proc);
    const char *lvl = getenv("SHARDQ_LOG_LEVEL");
    sq_log_level_t level;
    if (lvl && sq_log_level_parse(lvl, &level) == 0)
        s_level = level;
    const char *fmt = getenv("SHARDQ_LOG_FORMAT");
    s_json = fmt && strcmp(fmt, "json") == 0;
}

int
sq_log_level_parse(const char *name, sq_log_level_t *level)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, s_level_names[i]) == 0) {
            *level = (sq_log_level_t)i;
            return 0;
        }
    return -1;
}

void
sq_log_set_level(sq_log_level_t level)
{
    s_level = level;
}

int
sq_log_enabled(sq_log_level_t level)
{
    return level >= s_level;
}

char *
sq_log_quote(const char *s, char *buf, unsigned size)
{
    unsigned n = 0;
    if (size < 3) {
        if (size)
            buf[0] = '\0';
        return buf;
    }
    buf[n++] = '"';
    for (; s && *s && n + 5 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (unsigned)snprintf(buf + n, size - n, "\\x%02x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

/* Turn "a=1 b=\"x y\"" into ,"a":"1","b":"x y" for JSON mode. Values are
 * emitted as strings; good enough for log shipping, never parsed back. */
static size_t
s_kv_to_json(const char *kv, char *out, size_t size)
{
    size_t n = 0;
    const char *p = kv;
    while (*p && n + 8 < size) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *eq = strchr(p, '=');
        if (!eq)
            break;
        n += (size_t)snprintf(out + n, size - n, ",\"%.*s\":\"", (int)(eq - p), p);
        p = eq + 1;
        int quoted = *p == '"';
        if (quoted)
            p++;
        while (*p && n + 4 < size && (quoted ? *p != '"' : *p != ' ')) {
            if (quoted && *p == '\\' && p[1])
                p++;
            if (*p == '"' || *p == '\\')
                out[n++] = '\\';
            out[n++] = *p++;
        }
        if (quoted && *p == '"')
            p++;
        out[n++] = '"';
    }
    if (n >= size)
        n = size - 1;
    out[n] = '\0';
    return n;
}

void
sq_log(sq_log_level_t level, const char *msg, const char *kv_fmt, ...)
{
    if (level < s_level)
        return;
    char kv[2048] = "";
    if (kv_fmt) {
        va_list ap;
        va_start(ap, kv_fmt);
        vsnprintf(kv, sizeof kv, kv_fmt, ap);
        va_end(ap);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000);
    char qmsg[512];
    sq_log_quote(msg, qmsg, sizeof qmsg);
    char line[4096];
    int n;
    if (s_json) {
        char jkv[2560];
        s_kv_to_json(kv, jkv, sizeof jkv);
        n = snprintf(line, sizeof line,
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"proc\":\"%s\",\"pid\":%d,\"msg\":%s%s}\n",
                     when, s_level_names[level], s_proc, (int)getpid(), qmsg, jkv);
    } else {
        n = snprintf(line, sizeof line, "ts=%s level=%s proc=%s pid=%d msg=%s%s%s\n", when,
                     s_level_names[level], s_proc, (int)getpid(), qmsg, kv[0] ? " " : "", kv);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

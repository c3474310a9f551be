/*  shardq_scaling: `shardq scaling` — the scheduler's recorded scaling
 *  decisions (scaling_events, sql/0010_scheduler.sql), newest first, read
 *  through the broker like every other history.
 */
#define _POSIX_C_SOURCE 200809L
#include "shardq_cli.h"
#include "sq_client_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint64_t since_ms, limit;
    const char *pool;
} s_req_t;

static int s_build(sq_wire_enc_t *e, uint64_t rid, const void *arg)
{
    const s_req_t *r = arg;
    sq_wire_map(e, 3 + (r->pool != NULL));
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "since_ms", r->since_ms);
    sq_wire_kv_u64(e, "limit", r->limit);
    if (r->pool)
        sq_wire_kv_str(e, "pool", r->pool);
    return 0;
}

/* "90s", "30m", "6h", "2d" -> seconds; 0 on a bad value. */
/* "90s", "30m", "6h", "2d" in seconds, at most 100 years; 0 otherwise
 * (no sign, no blanks) */
static uint64_t s_duration_s(const char *s)
{
    const uint64_t limit = 36525ull * 86400;
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return 0;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    uint64_t mult = end[0] == 'd' ? 86400 : end[0] == 'h' ? 3600 : end[0] == 'm' ? 60
                  : end[0] == 's' ? 1 : 0;
    if (errno || n == 0 || !mult || end[1] != '\0' || n > limit / mult)
        return 0;
    return n * mult;
}

int sq_cli_scaling(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    const char *since = NULL, *limit_s = NULL;
    bool json = false, done;
    s_req_t r = {.limit = 100};
    sq_cli_opt_t opts[] = {{"--since", NULL, &since, NULL}, {"--pool", NULL, &r.pool, NULL},
                           {"--limit", NULL, &limit_s, NULL}, {"--json", NULL, NULL, &json},
                           {NULL, NULL, NULL, NULL}};
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, NULL, 0, 0, &done);
    if (rc || done ||
        (limit_s && (rc = sq_cli_parse_uint("scaling", "--limit", limit_s, 1, 10000, &r.limit))))
        return rc;
    uint64_t window_s = since ? s_duration_s(since) : 86400;
    if (!window_s) {
        fprintf(stderr, "shardq scaling: --since '%s' is not a duration like 90s, 30m, 6h, 2d "
                "(at most 100 years)\n", since);
        return SQ_EXIT_USAGE;
    }
    const uint64_t now_ms = (uint64_t)time(NULL) * 1000;
    r.since_ms = window_s * 1000 < now_ms ? now_ms - window_s * 1000 : 0;
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    sq_wire_msg_t *reply = NULL;
    rc = sq_client_request(c, SQ_WIRE_SCALING, s_build, &r, &reply);
    sq_client_destroy(&c);
    if (rc)
        return sq_cli_fail(rc);
    sq_wire_val_t arr, m;
    json_t *out = json ? json_array() : NULL;
    if (!json)
        printf("%-20s %-16s %5s %5s %-7s %s\n", "AT", "POOL", "FROM", "TO", "APPLIED", "REASON");
    if (sq_wire_get_array(reply->body, "events", true, 100000, &arr) == 0) {
        sq_wire_iter_t it;
        sq_wire_iter_init(&it, arr);
        while (sq_wire_iter_next(&it, &m)) {
            char pool[130], actuator[32], when[32];
            bool applied = false;
            sq_client_get_fixed(m, "pool", pool, sizeof pool);
            sq_client_get_fixed(m, "actuator", actuator, sizeof actuator);
            /* whole, however long the scheduler wrote them */
            char *reason_p = sq_client_get_dup(m, "reason"), *error_p = sq_client_get_dup(m, "error");
            const char *reason = reason_p ? reason_p : "", *error = error_p ? error_p : "";
            sq_wire_get_bool(m, "applied", false, &applied);
            uint64_t at = sq_client_get_u64(m, "at"), from = sq_client_get_u64(m, "from"),
                     to = sq_client_get_u64(m, "to");
            sq_cli_iso_time(at, when, sizeof when);
            if (json) {
                json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:b,s:s,s:s,s:I}", "at", when, "pool",
                                      pool, "from", (json_int_t)from, "to", (json_int_t)to,
                                      "applied", applied, "reason", reason, "actuator", actuator,
                                      "policy_version",
                                      (json_int_t)sq_client_get_u64(m, "policy_version"));
                if (o && error[0])
                    json_object_set_new(o, "error", json_string(error));
                json_array_append_new(out, o);
            } else {
                printf("%-20s %-16s %5llu %5llu %-7s %s%s%s\n", when, pool,
                       (unsigned long long)from, (unsigned long long)to, applied ? "yes" : "no",
                       reason, error[0] ? " — " : "", error);
            }
            free(reason_p);
            free(error_p);
        }
    }
    if (json)
        sq_cli_print_json(out);
    sq_wire_msg_destroy(&reply);
    return SQ_EXIT_OK;
}

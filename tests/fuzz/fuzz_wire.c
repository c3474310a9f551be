/*  fuzz_wire: libFuzzer target for the wire decoder (sq_wire_validate,
 *  sq_wire_parse and every accessor of sq_wire.h).
 *
 *  The first byte is the mode, the rest the payload:
 *    mode & 1 == 0  the payload is one msgpack body: sq_wire_validate, then
 *                   a walk with every accessor; when it is refused the
 *                   accessors still run on it (they must bounds-check spans
 *                   that were never validated).
 *    mode & 1 == 1  the payload is frames, each a length byte and that many
 *                   bytes (0xff: the rest of the input), made into a zmsg
 *                   for sq_wire_parse; mode bit 1 says ROUTER (identity
 *                   first), bit 2 a 64-byte body cap instead of
 *                   SQ_WIRE_MAX_BODY, bit 3 no identity_out.
 *  A body that is accepted is read the way the broker and the client read
 *  theirs (broker/sq_server_client.c, sq_server_worker.c, sq_lora.c,
 *  client/sq_client_results.c): the same keys, caps and getters. What
 *  sq_wire.h promises is checked, and a broken promise calls abort() so
 *  that libFuzzer reports it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "sq_error.h"
#include "sq_utf8.h"
#include "sq_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_SMALL_BODY 64
#define S_MAX_KEYS 32   /* keys of one map looked up by name (each lookup is O(map)) */

/* A span lies inside its parent. */
static int s_inside(sq_wire_val_t v, sq_wire_val_t parent)
{
    return v.p >= parent.p && v.n >= 1 && v.n <= parent.n &&
           (size_t)(v.p - parent.p) <= parent.n - v.n;
}

/* sq_wire_utf8_ok must agree with sq_utf8_sanitize (which also replaces
 * NUL): a string is ok exactly when sanitizing leaves it unchanged. */
static void s_check_str(const char *s, size_t n)
{
    size_t clean_n = 0;
    char *clean = sq_utf8_sanitize(s, n, &clean_n);
    SQ_FUZZ_CHECK(clean);
    SQ_FUZZ_CHECK(sq_wire_utf8_ok(s, n) == (clean_n == n && memcmp(clean, s, n) == 0));
    SQ_FUZZ_CHECK(sq_wire_utf8_ok(clean, clean_n));
    free(clean);
}

/* ---------------------------------------------------- typed getters */

/* Every getter on one key; what each returns must match the value's type.
 * `valid`: the map was validated (else only memory safety is checked). */
static void s_getters(sq_wire_val_t map, const char *key, bool valid)
{
    sq_wire_val_t v = {0};
    int found = sq_wire_map_find(map, key, &v);
    bool present = found == 0 && sq_wire_type(v) != SQ_WIRE_T_NIL;
    sq_wire_type_t t = found == 0 ? sq_wire_type(v) : SQ_WIRE_T_INVALID;
    if (found == 0)
        SQ_FUZZ_CHECK(s_inside(v, map));

    const char *s = NULL;
    size_t n = 0;
    int rc = sq_wire_get_str(map, key, false, SQ_WIRE_MAX_TEXT, &s, &n);
    if (rc == 0 && s) {
        SQ_FUZZ_CHECK(present && t == SQ_WIRE_T_STR && sq_wire_utf8_ok(s, n));
        SQ_FUZZ_CHECK((const uint8_t *)s >= v.p && (const uint8_t *)s + n <= v.p + v.n);
    }
    if (valid && !present)
        SQ_FUZZ_CHECK(rc == 0 && s == NULL);
    if (valid && present && t != SQ_WIRE_T_STR)
        SQ_FUZZ_CHECK(rc == SQ_EINVAL && strstr(sq_error_detail(), key));
    rc = sq_wire_get_str(map, key, true, 4, &s, &n);
    if (valid)
        SQ_FUZZ_CHECK(rc <= 0 && (rc == 0 || rc == SQ_EINVAL || rc == SQ_ETOOBIG));
    if (rc == 0)
        SQ_FUZZ_CHECK(n <= 4);

    char *dup = NULL;
    rc = sq_wire_get_strdup(map, key, false, SQ_WIRE_MAX_NAME, &dup);
    if (rc == 0 && dup)
        SQ_FUZZ_CHECK(strlen(dup) <= SQ_WIRE_MAX_NAME && sq_wire_utf8_ok(dup, strlen(dup)));
    if (rc)
        SQ_FUZZ_CHECK(dup == NULL);
    free(dup);

    uint64_t u = 7;
    rc = sq_wire_get_u64(map, key, false, 1000, &u);
    if (rc == 0 && present)
        SQ_FUZZ_CHECK(u <= 1000 && (t == SQ_WIRE_T_UINT || t == SQ_WIRE_T_INT));
    if (rc == 0 && !present)
        SQ_FUZZ_CHECK(u == 7);
    uint64_t u_max = 0;
    if (sq_wire_get_u64(map, key, true, UINT64_MAX, &u_max) == 0 && rc == 0 && present)
        SQ_FUZZ_CHECK(u == u_max);

    int64_t i = 0;
    rc = sq_wire_get_i64(map, key, false, &i);
    if (rc == 0 && present)
        SQ_FUZZ_CHECK(t == SQ_WIRE_T_UINT || t == SQ_WIRE_T_INT);
    if (rc == 0 && present && t == SQ_WIRE_T_INT && valid)
        /* only sized ints can be >= 0 */
        SQ_FUZZ_CHECK(i < 0 || (v.p[0] >= 0xd0 && v.p[0] <= 0xd3));

    double d = 0;
    rc = sq_wire_get_double(map, key, false, &d);
    if (rc == 0 && present)
        SQ_FUZZ_CHECK(t == SQ_WIRE_T_UINT || t == SQ_WIRE_T_INT || t == SQ_WIRE_T_FLOAT);

    bool b = false;
    rc = sq_wire_get_bool(map, key, false, &b);
    if (rc == 0 && present)
        SQ_FUZZ_CHECK(t == SQ_WIRE_T_BOOL && b == (v.p[0] == 0xc3));

    sq_wire_val_t sub = {0};
    rc = sq_wire_get_array(map, key, false, 8, &sub);
    if (rc == 0 && present)
        SQ_FUZZ_CHECK(t == SQ_WIRE_T_ARRAY && sq_wire_count(sub) <= 8 && s_inside(sub, map));
    rc = sq_wire_get_map(map, key, false, &sub);
    if (rc == 0 && present)
        SQ_FUZZ_CHECK(t == SQ_WIRE_T_MAP && s_inside(sub, map));
}

/* --------------------------------------------------------- the walk */

static void s_walk(sq_wire_val_t v, int depth, bool valid);

static void s_walk_array(sq_wire_val_t v, int depth, bool valid)
{
    sq_wire_iter_t it;
    sq_wire_val_t e;
    uint32_t seen = 0;
    int rc = sq_wire_iter_init(&it, v);
    if (valid)
        SQ_FUZZ_CHECK(rc == 0);
    if (rc)
        return;
    while (sq_wire_iter_next(&it, &e)) {
        SQ_FUZZ_CHECK(s_inside(e, v));
        seen++;
        uint64_t u;
        if (sq_wire_val_u64(e, &u) == 0)
            SQ_FUZZ_CHECK(sq_wire_type(e) == SQ_WIRE_T_UINT || sq_wire_type(e) == SQ_WIRE_T_INT);
        s_walk(e, depth + 1, valid);
    }
    SQ_FUZZ_CHECK(seen <= sq_wire_count(v));
    if (valid)
        SQ_FUZZ_CHECK(seen == sq_wire_count(v));
}

static void s_walk_map(sq_wire_val_t v, int depth, bool valid)
{
    sq_wire_iter_t it;
    sq_wire_val_t k, e;
    uint32_t seen = 0;
    int rc = sq_wire_map_iter_init(&it, v);
    if (valid)
        SQ_FUZZ_CHECK(rc == 0);
    if (rc)
        return;
    while (sq_wire_map_iter_next(&it, &k, &e)) {
        SQ_FUZZ_CHECK(s_inside(k, v) && s_inside(e, v) && k.p + k.n == e.p);
        const char *s;
        size_t n;
        if (seen < S_MAX_KEYS && sq_wire_val_str(k, &s, &n) == 0 && n < 64 && !memchr(s, 0, n)) {
            char key[64];
            sq_wire_val_t found;
            memcpy(key, s, n);
            key[n] = '\0';
            /* the first pair with this key, which can be no later than this one */
            SQ_FUZZ_CHECK(sq_wire_map_find(v, key, &found) == 0 && found.p <= e.p);
            s_getters(v, key, valid);
        }
        seen++;
        s_walk(k, depth + 1, valid);
        s_walk(e, depth + 1, valid);
    }
    SQ_FUZZ_CHECK(seen <= sq_wire_count(v));
    if (valid)
        SQ_FUZZ_CHECK(seen == sq_wire_count(v));
}

/* Every value: its type, count and scalar decoders; containers recursively. */
static void s_walk(sq_wire_val_t v, int depth, bool valid)
{
    if (depth > SQ_WIRE_MAX_DEPTH + 2)
        return;
    sq_wire_type_t t = sq_wire_type(v);
    SQ_FUZZ_CHECK(t <= SQ_WIRE_T_INVALID);
    if (valid)
        SQ_FUZZ_CHECK(t != SQ_WIRE_T_INVALID);
    const char *s;
    size_t n;
    int rc = sq_wire_val_str(v, &s, &n);
    if (rc == 0) {
        SQ_FUZZ_CHECK(t == SQ_WIRE_T_STR);
        SQ_FUZZ_CHECK((const uint8_t *)s > v.p && (const uint8_t *)s + n <= v.p + v.n);
        s_check_str(s, n);
    } else if (valid) {
        SQ_FUZZ_CHECK(t != SQ_WIRE_T_STR);
    }
    uint64_t u;
    if (sq_wire_val_u64(v, &u) == 0)
        SQ_FUZZ_CHECK(t == SQ_WIRE_T_UINT || t == SQ_WIRE_T_INT);
    if (t == SQ_WIRE_T_ARRAY)
        s_walk_array(v, depth, valid);
    else if (t == SQ_WIRE_T_MAP)
        s_walk_map(v, depth, valid);
    else
        SQ_FUZZ_CHECK(sq_wire_count(v) == 0);
    sq_wire_val_t found;
    if (t != SQ_WIRE_T_MAP)
        SQ_FUZZ_CHECK(sq_wire_map_find(v, "rid", &found) == SQ_EFORMAT);
}

/* ------------------------------------- the broker's and client's reads */

typedef enum { S_STR, S_STRDUP, S_U64, S_I64, S_DOUBLE, S_BOOL, S_ARRAY, S_MAP } s_kind_t;

typedef struct {
    const char *key;
    s_kind_t kind;
    bool required;
    uint64_t cap; /* bytes, maximum or entries */
} s_field_t;

/* The fields the broker reads from requests, READY, RESULT/FAIL entries,
 * HEARTBEAT, DISCONNECT and LORA, and the client from replies. */
static const s_field_t s_fields[] = {
    {"rid", S_U64, true, UINT64_MAX},
    {"tenant", S_STRDUP, true, SQ_WIRE_MAX_NAME},
    {"model", S_STRDUP, true, SQ_WIRE_MAX_NAME},
    {"adapter", S_STR, false, SQ_WIRE_MAX_NAME},
    {"adapter_version", S_STR, false, SQ_WIRE_MAX_NAME},
    {"params", S_STRDUP, false, SQ_WIRE_MAX_TEXT},
    {"idempotency_key", S_STRDUP, false, SQ_WIRE_MAX_ID},
    {"priority", S_U64, false, 1000},
    {"max_attempts", S_U64, false, 100},
    {"tasks", S_ARRAY, true, SQ_WIRE_MAX_TASKS},
    {"custom_id", S_STR, true, SQ_WIRE_MAX_ID},
    {"prompt", S_STR, true, SQ_WIRE_MAX_PROMPT},
    {"max_tokens", S_U64, false, 1000000},
    {"temperature", S_DOUBLE, false, 0},
    {"top_p", S_DOUBLE, false, 0},
    {"seed", S_U64, false, INT64_MAX},
    {"body", S_STR, false, SQ_WIRE_MAX_TEXT},
    {"job_id", S_U64, true, INT64_MAX},
    {"after", S_U64, false, UINT32_MAX},
    {"before", S_U64, false, INT64_MAX},
    {"limit", S_U64, false, SQ_WIRE_MAX_PAGE},
    {"state", S_STRDUP, false, 32},
    {"since_ms", S_U64, false, INT64_MAX},
    {"pool", S_STRDUP, false, SQ_WIRE_MAX_NAME},
    {"group_id", S_STRDUP, true, SQ_WIRE_MAX_ID},
    {"model_sha256", S_STRDUP, false, SQ_WIRE_MAX_NAME},
    {"device", S_STRDUP, false, SQ_WIRE_MAX_NAME},
    {"kv_type", S_STRDUP, false, SQ_WIRE_MAX_NAME},
    {"tp_size", S_U64, false, 4096},
    {"max_batch", S_U64, true, SQ_WIRE_MAX_BATCH},
    {"kv_pages", S_U64, false, UINT32_MAX},
    {"draining", S_BOOL, false, 0},
    {"lease", S_U64, true, UINT64_MAX},
    {"token", S_U64, true, UINT64_MAX},
    {"text", S_STR, true, SQ_WIRE_MAX_TEXT},
    {"finish_reason", S_STR, false, 32},
    {"prompt_tokens", S_U64, false, INT32_MAX},
    {"completion_tokens", S_U64, false, INT32_MAX},
    {"cached_tokens", S_U64, false, INT32_MAX},
    {"prefill_ms", S_DOUBLE, false, 0},
    {"decode_ms", S_DOUBLE, false, 0},
    {"queue_wait_ms", S_DOUBLE, false, 0},
    {"retryable", S_BOOL, false, 0},
    {"error", S_STRDUP, false, SQ_WIRE_MAX_ERROR},
    {"reason", S_STR, false, SQ_WIRE_MAX_ERROR},
    {"kv_pages_in_use", S_U64, false, UINT32_MAX},
    {"preemptions", S_U64, false, UINT64_MAX - 1},
    {"results", S_ARRAY, true, SQ_WIRE_MAX_BATCH},
    {"failures", S_ARRAY, true, SQ_WIRE_MAX_BATCH},
    {"leases", S_ARRAY, true, SQ_WIRE_MAX_BATCH},
    {"counts", S_MAP, false, 0},
    {"next", S_U64, false, UINT64_MAX},
    {"done", S_BOOL, false, 0},
    {"index", S_U64, false, UINT64_MAX},
    {"op", S_STRDUP, true, 16},
    {"sha256", S_STRDUP, true, 64},
    {"rank", S_U64, true, 4096},
    {"targets", S_ARRAY, true, 64},
    {"canary_pct", S_U64, false, 99},
    {"code", S_U64, false, UINT64_MAX},
    {"message", S_STR, false, SQ_WIRE_MAX_ERROR},
};

/* One field read as its reader does; on success the value keeps the cap,
 * on failure the detail names the key. */
static void s_read_field(sq_wire_val_t map, const s_field_t *f)
{
    const char *s = NULL;
    char *dup = NULL;
    size_t n = 0;
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    sq_wire_val_t v = {0};
    int rc = 0;
    sq_error_clear();
    switch (f->kind) {
    case S_STR:
        rc = sq_wire_get_str(map, f->key, f->required, f->cap, &s, &n);
        if (rc == 0)
            SQ_FUZZ_CHECK(s ? n <= f->cap && sq_wire_utf8_ok(s, n) : !f->required);
        break;
    case S_STRDUP:
        rc = sq_wire_get_strdup(map, f->key, f->required, f->cap, &dup);
        if (rc == 0)
            SQ_FUZZ_CHECK(dup ? strlen(dup) <= f->cap : !f->required);
        free(dup);
        break;
    case S_U64:
        rc = sq_wire_get_u64(map, f->key, f->required, f->cap, &u);
        if (rc == 0)
            SQ_FUZZ_CHECK(u <= f->cap);
        break;
    case S_I64: rc = sq_wire_get_i64(map, f->key, f->required, &i); break;
    case S_DOUBLE: rc = sq_wire_get_double(map, f->key, f->required, &d); break;
    case S_BOOL: rc = sq_wire_get_bool(map, f->key, f->required, &b); break;
    case S_ARRAY:
        rc = sq_wire_get_array(map, f->key, f->required, (uint32_t)f->cap, &v);
        if (rc == 0 && v.p)
            SQ_FUZZ_CHECK(sq_wire_type(v) == SQ_WIRE_T_ARRAY && sq_wire_count(v) <= f->cap);
        break;
    case S_MAP:
        rc = sq_wire_get_map(map, f->key, f->required, &v);
        if (rc == 0 && v.p)
            SQ_FUZZ_CHECK(sq_wire_type(v) == SQ_WIRE_T_MAP);
        break;
    }
    if (rc)
        SQ_FUZZ_CHECK(rc < 0 && strstr(sq_error_detail(), f->key) != NULL);
}

static void s_read_fields(sq_wire_val_t map)
{
    for (size_t k = 0; k < sizeof s_fields / sizeof s_fields[0]; k++)
        s_read_field(map, &s_fields[k]);
}

/* A validated body: the readers' fields on it and on each map entry of the
 * arrays that carry entries (SUBMIT tasks, RESULT, FAIL, RESULTS pages). */
static void s_read_body(sq_wire_val_t body)
{
    static const char *const lists[] = {"tasks", "results", "failures", "leases", "jobs"};
    s_read_fields(body);
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        sq_wire_val_t arr, e;
        sq_wire_iter_t it;
        uint32_t n = 0;
        if (sq_wire_get_array(body, lists[k], true, UINT32_MAX, &arr) != 0 ||
            sq_wire_iter_init(&it, arr) != 0)
            continue;
        while (sq_wire_iter_next(&it, &e) && n++ < 16)
            if (sq_wire_type(e) == SQ_WIRE_T_MAP)
                s_read_fields(e);
    }
}

/* ------------------------------------------------------------ modes */

static void s_body(const uint8_t *p, size_t n)
{
    sq_error_clear();
    int rc = sq_wire_validate(p, n, SQ_WIRE_MAX_DEPTH);
    sq_wire_val_t v = {p, n};
    if (rc) {
        SQ_FUZZ_CHECK(rc == SQ_EFORMAT || rc == SQ_ETRUNC);
        SQ_FUZZ_CHECK(sq_error_detail()[0] != '\0');
        if (n > 0) /* the accessors bounds-check spans never validated */
            s_walk(v, 0, false);
        if (n > 0 && sq_wire_type(v) == SQ_WIRE_T_MAP)
            s_read_fields(v);
        return;
    }
    SQ_FUZZ_CHECK(n > 0);
    /* a deeper cap accepts what a shallower one does */
    SQ_FUZZ_CHECK(sq_wire_validate(p, n, SQ_WIRE_MAX_DEPTH + 1) == 0);
    s_walk(v, 0, true);
    if (sq_wire_type(v) == SQ_WIRE_T_MAP)
        s_read_body(v);
}

static zmsg_t *s_frames(const uint8_t *p, size_t n, size_t *n_frames)
{
    zmsg_t *m = zmsg_new();
    SQ_FUZZ_CHECK(m);
    *n_frames = 0;
    while (n > 0) {
        size_t len = p[0] == 0xff ? n - 1 : p[0];
        p++, n--;
        if (len > n)
            len = n;
        SQ_FUZZ_CHECK(zmsg_addmem(m, p, len) == 0);
        ++*n_frames;
        p += len, n -= len;
    }
    return m;
}

static void s_message(const uint8_t *p, size_t n, bool router, size_t max_body, bool want_id)
{
    size_t n_frames;
    zmsg_t *m = s_frames(p, n, &n_frames);
    sq_wire_msg_t *msg = (sq_wire_msg_t *)1;
    zframe_t *id = NULL;
    sq_error_clear();
    int rc = sq_wire_parse(&m, router, max_body, &msg, want_id ? &id : NULL);
    SQ_FUZZ_CHECK(m == NULL);
    if (rc) {
        SQ_FUZZ_CHECK(msg == NULL);
        /* the header names SQ_EFORMAT for a bad body; a truncated one is SQ_ETRUNC */
        SQ_FUZZ_CHECK(rc == SQ_EPROTO || rc == SQ_EUNSUPPORTED || rc == SQ_ETOOBIG ||
                rc == SQ_EFORMAT || rc == SQ_ETRUNC);
        SQ_FUZZ_CHECK(sq_error_detail()[0] != '\0');
        SQ_FUZZ_CHECK(want_id && router && n_frames > 0 ? id != NULL : id == NULL);
        SQ_FUZZ_CHECK(sq_wire_errcode_from(rc) == SQ_WIRE_E_BADMSG ||
                sq_wire_errcode_from(rc) == SQ_WIRE_E_TOOBIG ||
                sq_wire_errcode_from(rc) == SQ_WIRE_E_VERSION);
        zframe_destroy(&id);
        return;
    }
    SQ_FUZZ_CHECK(msg && id == NULL);
    SQ_FUZZ_CHECK(n_frames == (router ? 4u : 3u));
    SQ_FUZZ_CHECK((msg->identity != NULL) == router);
    SQ_FUZZ_CHECK(msg->body.n <= max_body && msg->body.n == zframe_size(msg->body_frame));
    SQ_FUZZ_CHECK(sq_wire_validate(msg->body.p, msg->body.n, SQ_WIRE_MAX_DEPTH) == 0);
    SQ_FUZZ_CHECK(sq_wire_type(msg->body) == SQ_WIRE_T_MAP);
    SQ_FUZZ_CHECK(sq_wire_cmd_name(msg->cmd) != NULL);
    (void)sq_wire_cmd_is_client_request(msg->cmd);
    (void)sq_wire_cmd_is_from_worker(msg->cmd);
    s_walk(msg->body, 0, true);
    s_read_body(msg->body);
    sq_wire_msg_destroy(&msg);
    SQ_FUZZ_CHECK(msg == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        zmsg_t *none = NULL;
        sq_wire_msg_t *msg = NULL;
        SQ_FUZZ_CHECK(sq_wire_parse(&none, true, 1, &msg, NULL) == SQ_EPROTO && msg == NULL);
        return 0;
    }
    uint8_t mode = data[0];
    if (mode & 1)
        s_message(data + 1, size - 1, mode & 2, mode & 4 ? S_SMALL_BODY : SQ_WIRE_MAX_BODY,
                  !(mode & 8));
    else
        s_body(data + 1, size - 1);
    return 0;
}

/*  sq_wire: bounded msgpack reader, message framing and the encoder.
 *
 *  The reader never allocates and never trusts a declared length: every
 *  header is checked against the bytes that remain before it is used, and
 *  containers are walked with a depth cap. sq_wire_validate() runs once per
 *  received body; the accessors then read in place. The accessors still
 *  bounds-check, so they are safe on spans that were never validated.
 */
#include "sq_wire.h"

#include "sq_error.h"
#include "sq_utf8.h"

#include <stdlib.h>
#include <string.h>

/* ---- msgpack headers ---- */

/* What one value's header says: its type, the header size in bytes, the
 * payload size (str/bin/ext/scalars) or the entry count (array/map). */
typedef struct {
    sq_wire_type_t type;
    size_t hdr;
    uint64_t len;   /* payload bytes after the header (scalars, str, bin, ext) */
    uint32_t count; /* entries for array/map */
} s_head_t;

static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Sized header: `lb` length bytes follow the tag (plus `extra` bytes, e.g.
 * the ext type byte). */
static int s_sized(const uint8_t *p, size_t avail, int lb, int extra, sq_wire_type_t t,
                   s_head_t *h)
{
    if (avail < (size_t)(1 + lb + extra))
        return SQ_FAIL(SQ_ETRUNC, "msgpack: header cut short");
    h->type = t;
    h->hdr = 1 + (size_t)lb + (size_t)extra;
    h->len = s_be(p + 1, lb);
    return 0;
}

static int s_container(const uint8_t *p, size_t avail, int lb, sq_wire_type_t t, s_head_t *h)
{
    if (avail < (size_t)(1 + lb))
        return SQ_FAIL(SQ_ETRUNC, "msgpack: container header cut short");
    h->type = t;
    h->hdr = 1 + (size_t)lb;
    h->count = (uint32_t)s_be(p + 1, lb);
    return 0;
}

static int s_fixed(sq_wire_type_t t, size_t n, s_head_t *h)
{
    h->type = t;
    h->hdr = 1;
    h->len = n;
    return 0;
}

/* Decode the header at p (avail > 0 bytes). OUT: h. */
static int s_head(const uint8_t *p, size_t avail, s_head_t *h)
{
    memset(h, 0, sizeof *h);
    if (avail == 0)
        return SQ_FAIL(SQ_ETRUNC, "msgpack: value expected, input ends");
    uint8_t b = p[0];
    if (b <= 0x7f || b >= 0xe0)
        return s_fixed(b <= 0x7f ? SQ_WIRE_T_UINT : SQ_WIRE_T_INT, 0, h);
    if (b <= 0x8f) {
        h->type = SQ_WIRE_T_MAP, h->hdr = 1, h->count = b & 0x0f;
        return 0;
    }
    if (b <= 0x9f) {
        h->type = SQ_WIRE_T_ARRAY, h->hdr = 1, h->count = b & 0x0f;
        return 0;
    }
    if (b <= 0xbf)
        return s_fixed(SQ_WIRE_T_STR, b & 0x1f, h);
    switch (b) {
    case 0xc0: return s_fixed(SQ_WIRE_T_NIL, 0, h);
    case 0xc2: case 0xc3: return s_fixed(SQ_WIRE_T_BOOL, 0, h);
    case 0xc4: return s_sized(p, avail, 1, 0, SQ_WIRE_T_BIN, h);
    case 0xc5: return s_sized(p, avail, 2, 0, SQ_WIRE_T_BIN, h);
    case 0xc6: return s_sized(p, avail, 4, 0, SQ_WIRE_T_BIN, h);
    case 0xc7: return s_sized(p, avail, 1, 1, SQ_WIRE_T_EXT, h);
    case 0xc8: return s_sized(p, avail, 2, 1, SQ_WIRE_T_EXT, h);
    case 0xc9: return s_sized(p, avail, 4, 1, SQ_WIRE_T_EXT, h);
    case 0xca: return s_fixed(SQ_WIRE_T_FLOAT, 4, h);
    case 0xcb: return s_fixed(SQ_WIRE_T_FLOAT, 8, h);
    case 0xcc: return s_fixed(SQ_WIRE_T_UINT, 1, h);
    case 0xcd: return s_fixed(SQ_WIRE_T_UINT, 2, h);
    case 0xce: return s_fixed(SQ_WIRE_T_UINT, 4, h);
    case 0xcf: return s_fixed(SQ_WIRE_T_UINT, 8, h);
    case 0xd0: return s_fixed(SQ_WIRE_T_INT, 1, h);
    case 0xd1: return s_fixed(SQ_WIRE_T_INT, 2, h);
    case 0xd2: return s_fixed(SQ_WIRE_T_INT, 4, h);
    case 0xd3: return s_fixed(SQ_WIRE_T_INT, 8, h);
    case 0xd4: return s_fixed(SQ_WIRE_T_EXT, 2, h);
    case 0xd5: return s_fixed(SQ_WIRE_T_EXT, 3, h);
    case 0xd6: return s_fixed(SQ_WIRE_T_EXT, 5, h);
    case 0xd7: return s_fixed(SQ_WIRE_T_EXT, 9, h);
    case 0xd8: return s_fixed(SQ_WIRE_T_EXT, 17, h);
    case 0xd9: return s_sized(p, avail, 1, 0, SQ_WIRE_T_STR, h);
    case 0xda: return s_sized(p, avail, 2, 0, SQ_WIRE_T_STR, h);
    case 0xdb: return s_sized(p, avail, 4, 0, SQ_WIRE_T_STR, h);
    case 0xdc: return s_container(p, avail, 2, SQ_WIRE_T_ARRAY, h);
    case 0xdd: return s_container(p, avail, 4, SQ_WIRE_T_ARRAY, h);
    case 0xde: return s_container(p, avail, 2, SQ_WIRE_T_MAP, h);
    case 0xdf: return s_container(p, avail, 4, SQ_WIRE_T_MAP, h);
    default: return SQ_FAIL(SQ_EFORMAT, "msgpack: reserved byte 0x%02x", b);
    }
}

/* Skip one value starting at p; *next receives the byte after it. Every
 * value takes at least one byte, so a huge declared count fails as soon as
 * the input runs out: the work is O(avail) whatever the header claims. */
static int s_skip(const uint8_t *p, const uint8_t *end, int depth, const uint8_t **next)
{
    s_head_t h;
    int rc = s_head(p, (size_t)(end - p), &h);
    if (rc)
        return rc;
    if ((size_t)(end - p) < h.hdr)
        return SQ_FAIL(SQ_ETRUNC, "msgpack: header cut short");
    const uint8_t *q = p + h.hdr;
    if (h.type == SQ_WIRE_T_ARRAY || h.type == SQ_WIRE_T_MAP) {
        if (depth <= 0)
            return SQ_FAIL(SQ_EFORMAT, "msgpack: nesting deeper than %d", SQ_WIRE_MAX_DEPTH);
        uint64_t items = (uint64_t)h.count * (h.type == SQ_WIRE_T_MAP ? 2 : 1);
        if (items > (uint64_t)(end - q))
            return SQ_FAIL(SQ_ETRUNC, "msgpack: container declares %llu items, %zu bytes left",
                           (unsigned long long)items, (size_t)(end - q));
        for (uint64_t i = 0; i < items; i++)
            if ((rc = s_skip(q, end, depth - 1, &q)))
                return rc;
    } else {
        if (h.len > (uint64_t)(end - q))
            return SQ_FAIL(SQ_ETRUNC, "msgpack: value declares %llu bytes, %zu left",
                           (unsigned long long)h.len, (size_t)(end - q));
        q += h.len;
    }
    *next = q;
    return 0;
}

int sq_wire_validate(const uint8_t *buf, size_t n, int max_depth)
{
    const uint8_t *next = NULL;
    int rc = s_skip(buf, buf + n, max_depth, &next);
    if (rc)
        return rc;
    if (next != buf + n)
        return SQ_FAIL(SQ_EFORMAT, "msgpack: %zu trailing bytes after the value",
                       (size_t)(buf + n - next));
    return 0;
}

sq_wire_type_t sq_wire_type(sq_wire_val_t v)
{
    s_head_t h;
    if (!v.p || s_head(v.p, v.n, &h))
        return SQ_WIRE_T_INVALID;
    return h.type;
}

uint32_t sq_wire_count(sq_wire_val_t v)
{
    s_head_t h;
    if (!v.p || s_head(v.p, v.n, &h))
        return 0;
    return (h.type == SQ_WIRE_T_ARRAY || h.type == SQ_WIRE_T_MAP) ? h.count : 0;
}

/* ---- iteration ---- */

static int s_iter_init(sq_wire_iter_t *it, sq_wire_val_t v, sq_wire_type_t want)
{
    s_head_t h;
    memset(it, 0, sizeof *it);
    if (!v.p || s_head(v.p, v.n, &h) || h.type != want || h.hdr > v.n)
        return SQ_FAIL(SQ_EINVAL, "msgpack: expected %s", want == SQ_WIRE_T_MAP ? "map" : "array");
    it->p = v.p + h.hdr;
    it->end = v.p + v.n;
    it->left = h.count;
    return 0;
}

static bool s_iter_one(sq_wire_iter_t *it, sq_wire_val_t *out)
{
    const uint8_t *next = NULL;
    if (s_skip(it->p, it->end, SQ_WIRE_MAX_DEPTH, &next)) {
        it->left = 0;
        return false;
    }
    out->p = it->p;
    out->n = (size_t)(next - it->p);
    it->p = next;
    return true;
}

int sq_wire_iter_init(sq_wire_iter_t *it, sq_wire_val_t array)
{
    return s_iter_init(it, array, SQ_WIRE_T_ARRAY);
}

bool sq_wire_iter_next(sq_wire_iter_t *it, sq_wire_val_t *out)
{
    if (it->left == 0)
        return false;
    if (!s_iter_one(it, out))
        return false;
    it->left--;
    return true;
}

int sq_wire_map_iter_init(sq_wire_iter_t *it, sq_wire_val_t map)
{
    return s_iter_init(it, map, SQ_WIRE_T_MAP);
}

bool sq_wire_map_iter_next(sq_wire_iter_t *it, sq_wire_val_t *key, sq_wire_val_t *val)
{
    if (it->left == 0)
        return false;
    if (!s_iter_one(it, key) || !s_iter_one(it, val)) {
        it->left = 0;
        return false;
    }
    it->left--;
    return true;
}

/* ---- scalar decoding ---- */

int sq_wire_val_str(sq_wire_val_t v, const char **out, size_t *out_len)
{
    s_head_t h;
    if (!v.p || s_head(v.p, v.n, &h) || h.type != SQ_WIRE_T_STR || h.hdr + h.len > v.n)
        return SQ_FAIL(SQ_EINVAL, "expected a string");
    *out = (const char *)v.p + h.hdr;
    *out_len = (size_t)h.len;
    return 0;
}

/* Integer of either sign. OUT: *neg, *mag (two's complement for negatives
 * kept as int64 in *sval). */
static int s_val_int(sq_wire_val_t v, bool *neg, uint64_t *uval, int64_t *sval)
{
    s_head_t h;
    if (!v.p || s_head(v.p, v.n, &h) || h.hdr + h.len > v.n)
        return SQ_EINVAL;
    uint8_t b = v.p[0];
    if (h.type == SQ_WIRE_T_UINT) {
        *uval = b <= 0x7f ? b : s_be(v.p + 1, (int)h.len);
        *neg = false;
        *sval = (int64_t)*uval;
        return 0;
    }
    if (h.type != SQ_WIRE_T_INT)
        return SQ_EINVAL;
    if (b >= 0xe0) {
        *sval = (int8_t)b;
    } else {
        uint64_t raw = s_be(v.p + 1, (int)h.len);
        int bits = (int)h.len * 8;
        /* sign-extend a bits-wide two's complement number */
        *sval = bits == 64 ? (int64_t)raw
                           : (int64_t)(raw ^ (1ull << (bits - 1))) - (int64_t)(1ull << (bits - 1));
    }
    *neg = *sval < 0;
    *uval = (uint64_t)*sval;
    return 0;
}

int sq_wire_val_u64(sq_wire_val_t v, uint64_t *out)
{
    bool neg;
    uint64_t u;
    int64_t s;
    if (s_val_int(v, &neg, &u, &s) || neg)
        return SQ_FAIL(SQ_EINVAL, "expected a non-negative integer");
    *out = u;
    return 0;
}

bool sq_wire_utf8_ok(const char *str, size_t n)
{
    return sq_utf8_ok(str, n);
}

/* ---- map lookup and typed getters ---- */

int sq_wire_map_find(sq_wire_val_t map, const char *key, sq_wire_val_t *out)
{
    sq_wire_iter_t it;
    sq_wire_val_t k, v;
    if (sq_wire_map_iter_init(&it, map))
        return SQ_FAIL(SQ_EFORMAT, "body is not a map");
    size_t klen = strlen(key);
    while (sq_wire_map_iter_next(&it, &k, &v)) {
        const char *s;
        size_t n;
        if (sq_wire_val_str(k, &s, &n) == 0 && n == klen && memcmp(s, key, n) == 0) {
            *out = v;
            return 0;
        }
    }
    return SQ_ENOTFOUND;
}

/* Find key; 1 = present (non-nil), 0 = absent and optional, <0 = error. */
static int s_field(sq_wire_val_t map, const char *key, bool required, sq_wire_val_t *v)
{
    int rc = sq_wire_map_find(map, key, v);
    if (rc == 0 && sq_wire_type(*v) == SQ_WIRE_T_NIL)
        rc = SQ_ENOTFOUND;
    if (rc == SQ_ENOTFOUND)
        return required ? SQ_FAIL(SQ_EINVAL, "field \"%s\": required", key) : 0;
    return rc < 0 ? rc : 1;
}

int sq_wire_get_str(sq_wire_val_t map, const char *key, bool required, size_t max_len,
                    const char **out, size_t *out_len)
{
    sq_wire_val_t v;
    int rc = s_field(map, key, required, &v);
    if (rc <= 0)
        return rc;
    const char *s;
    size_t n;
    if (sq_wire_val_str(v, &s, &n))
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": expected a string", key);
    if (n > max_len)
        return SQ_FAIL(SQ_ETOOBIG, "field \"%s\": %zu bytes, limit %zu", key, n, max_len);
    if (!sq_wire_utf8_ok(s, n))
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": invalid UTF-8 or NUL byte", key);
    *out = s;
    *out_len = n;
    return 0;
}

int sq_wire_get_strdup(sq_wire_val_t map, const char *key, bool required, size_t max_len,
                       char **out)
{
    const char *s = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = sq_wire_get_str(map, key, required, max_len, &s, &n);
    if (rc || !s)
        return rc;
    char *copy = malloc(n + 1);
    if (!copy)
        return SQ_FAIL(SQ_ENOMEM, "field \"%s\": out of memory", key);
    memcpy(copy, s, n);
    copy[n] = '\0';
    *out = copy;
    return 0;
}

int sq_wire_get_u64(sq_wire_val_t map, const char *key, bool required, uint64_t max,
                    uint64_t *out)
{
    sq_wire_val_t v;
    int rc = s_field(map, key, required, &v);
    if (rc <= 0)
        return rc;
    uint64_t u;
    bool neg;
    int64_t s;
    if (s_val_int(v, &neg, &u, &s) || neg)
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": expected a non-negative integer", key);
    if (u > max)
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": %llu over the limit %llu", key,
                       (unsigned long long)u, (unsigned long long)max);
    *out = u;
    return 0;
}

int sq_wire_get_i64(sq_wire_val_t map, const char *key, bool required, int64_t *out)
{
    sq_wire_val_t v;
    int rc = s_field(map, key, required, &v);
    if (rc <= 0)
        return rc;
    uint64_t u;
    bool neg;
    int64_t s;
    if (s_val_int(v, &neg, &u, &s) || (!neg && u > (uint64_t)INT64_MAX))
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": expected an integer", key);
    *out = s;
    return 0;
}

int sq_wire_get_double(sq_wire_val_t map, const char *key, bool required, double *out)
{
    sq_wire_val_t v;
    int rc = s_field(map, key, required, &v);
    if (rc <= 0)
        return rc;
    uint64_t u;
    bool neg;
    int64_t s;
    if (s_val_int(v, &neg, &u, &s) == 0) {
        *out = neg ? (double)s : (double)u;
        return 0;
    }
    if (v.p[0] == 0xca && v.n >= 5) {
        uint32_t bits = (uint32_t)s_be(v.p + 1, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        *out = f;
        return 0;
    }
    if (v.p[0] == 0xcb && v.n >= 9) {
        uint64_t bits = s_be(v.p + 1, 8);
        memcpy(out, &bits, sizeof *out);
        return 0;
    }
    return SQ_FAIL(SQ_EINVAL, "field \"%s\": expected a number", key);
}

int sq_wire_get_bool(sq_wire_val_t map, const char *key, bool required, bool *out)
{
    sq_wire_val_t v;
    int rc = s_field(map, key, required, &v);
    if (rc <= 0)
        return rc;
    if (sq_wire_type(v) != SQ_WIRE_T_BOOL)
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": expected a boolean", key);
    *out = v.p[0] == 0xc3;
    return 0;
}

int sq_wire_get_array(sq_wire_val_t map, const char *key, bool required, uint32_t max_count,
                      sq_wire_val_t *out)
{
    sq_wire_val_t v;
    int rc = s_field(map, key, required, &v);
    if (rc <= 0)
        return rc;
    if (sq_wire_type(v) != SQ_WIRE_T_ARRAY)
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": expected an array", key);
    if (sq_wire_count(v) > max_count)
        return SQ_FAIL(SQ_ETOOBIG, "field \"%s\": %u entries, limit %u", key, sq_wire_count(v),
                       max_count);
    *out = v;
    return 0;
}

int sq_wire_get_map(sq_wire_val_t map, const char *key, bool required, sq_wire_val_t *out)
{
    sq_wire_val_t v;
    int rc = s_field(map, key, required, &v);
    if (rc <= 0)
        return rc;
    if (sq_wire_type(v) != SQ_WIRE_T_MAP)
        return SQ_FAIL(SQ_EINVAL, "field \"%s\": expected a map", key);
    *out = v;
    return 0;
}

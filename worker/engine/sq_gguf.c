/*  sq_gguf: GGUF v3 reader over a read-only mmap.
 *
 *  Everything is validated in sq_gguf_open: a cursor walks the header and
 *  every read is bounds-checked against the file size first. Counts from
 *  the file are bounded by the bytes left (each element takes at least a
 *  known minimum), so no allocation can exceed what the file's own size
 *  justifies. Keys and tensor names go into a hash table (duplicates are a
 *  format error) so lookups and the duplicate check stay linear.
 */
#include "sq_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_hash.h"

#define S_MAX_NESTING 3         /* arrays of arrays of arrays at most */
#define S_MAX_NAME_LEN 65535    /* keys and tensor names */

typedef struct {
    char *key;
    uint32_t type;
    uint32_t elem_type;         /* arrays only */
    uint64_t n;                 /* arrays: element count */
    uint64_t off;               /* file offset of the value (array: first element) */
    uint64_t size;              /* bytes of the value (array: all elements) */
    uint64_t *str_offs;         /* string arrays: file offset of each element */
} s_kv_t;

struct sq_gguf {
    const uint8_t *map;
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_off;
    int64_t n_kv;               /* parsed so far / in all */
    s_kv_t *kvs;                /* kv_cap entries, zeroed */
    int64_t n_tensors;
    sq_gguf_tensor_t *tensors;  /* tensor_cap entries, zeroed */
    uint64_t kv_cap, tensor_cap;
    int64_t *kv_hash;           /* open addressing: index or -1 */
    int64_t *tensor_hash;
    uint64_t n_kv_hash, n_tensor_hash;
    bool any_type;              /* sq_gguf_open_any: tensors of every ggml type */
};

typedef struct {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
} s_cursor_t;

static const size_t s_type_sizes[SQ_GGUF_N_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const s_type_names[SQ_GGUF_N_TYPES] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64"};

/* ggml's tensor types (ggml.h, enum ggml_type): name, elements and bytes
 * a block; the numbers ggml retired (4, 5, 31-33, 36-38) and those after
 * NVFP4 are unknown here */
static const struct {
    const char *name;
    int64_t block;
    size_t bytes;
} s_ggml_types[] = {
    [0] = {"F32", 1, 4},         [1] = {"F16", 1, 2},          [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},      [6] = {"Q5_0", 32, 22},       [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},      [9] = {"Q8_1", 32, 36},       [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},   [12] = {"Q4_K", 256, 144},    [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},   [15] = {"Q8_K", 256, 292},    [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},  [18] = {"IQ3_XXS", 256, 98},  [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},   [21] = {"IQ3_S", 256, 110},   [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},          [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},        [27] = {"I64", 1, 8},         [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},   [30] = {"BF16", 1, 2},        [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},   [39] = {"MXFP4", 32, 17},     [40] = {"NVFP4", 64, 36},
};
_Static_assert(sizeof(sq_block_q8_0_t) == 34, "Q8_0 blocks as ggml's");

bool sq_gguf_ggml_type(uint32_t type, const char **name, int64_t *block, size_t *bytes)
{
    const bool known = type < sizeof s_ggml_types / sizeof s_ggml_types[0] &&
                       s_ggml_types[type].name;
    if (name)
        *name = known ? s_ggml_types[type].name : NULL;
    if (block)
        *block = known ? s_ggml_types[type].block : 0;
    if (bytes)
        *bytes = known ? s_ggml_types[type].bytes : 0;
    return known;
}

size_t sq_gguf_type_size(uint32_t type)
{
    return type < SQ_GGUF_N_TYPES ? s_type_sizes[type] : 0;
}

const char *sq_gguf_type_name(uint32_t type)
{
    return type < SQ_GGUF_N_TYPES ? s_type_names[type] : "?";
}

/* ---- cursor: every read checks the bytes left first ---- */

static uint64_t s_left(const s_cursor_t *c)
{
    return c->size - c->pos;
}

static int s_read(s_cursor_t *c, void *out, uint64_t n, const char *what)
{
    if (s_left(c) < n)
        return SQ_FAIL(SQ_ETRUNC, "%s: needs %llu bytes at offset %llu, file has %llu",
                       what, (unsigned long long)n, (unsigned long long)c->pos,
                       (unsigned long long)c->size);
    memcpy(out, c->base + c->pos, n);
    c->pos += n;
    return 0;
}

static int s_skip(s_cursor_t *c, uint64_t n, const char *what)
{
    if (s_left(c) < n)
        return SQ_FAIL(SQ_ETRUNC, "%s: %llu bytes at offset %llu run past end of file (%llu)",
                       what, (unsigned long long)n, (unsigned long long)c->pos,
                       (unsigned long long)c->size);
    c->pos += n;
    return 0;
}

/* Re-record the current detail with a prefix ("metadata key 3: ..."). */
static int s_wrap(int rc, const char *prefix)
{
    return SQ_FAIL(rc, "%s: %s", prefix, sq_error_detail());
}

/* A string's length and position; the bytes stay in the mapping. */
static int s_read_str(s_cursor_t *c, uint64_t *off, uint64_t *len, const char *what)
{
    int rc = s_read(c, len, 8, what);
    if (rc)
        return rc;
    *off = c->pos;
    return s_skip(c, *len, what);
}

static char *s_copy_name(const s_cursor_t *c, uint64_t off, uint64_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, c->base + off, len);
    s[len] = '\0';
    return s;
}

/* ---- hash table of names (FNV-1a) ---- */

static uint64_t s_hash(const char *s)
{
    return sq_fnv1a_str(s);
}

static int64_t *s_hash_new(int64_t n, uint64_t *cap_p)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap *= 2;
    int64_t *t = malloc(cap * sizeof *t);
    if (t)
        memset(t, 0xff, cap * sizeof *t);   /* all -1 */
    *cap_p = cap;
    return t;
}

/* Slot of name: either holding it or the empty one where it would go. */
static uint64_t s_hash_slot(const int64_t *t, uint64_t cap, const char *name,
                            const char *(*name_of)(const sq_gguf_t *, int64_t),
                            const sq_gguf_t *g)
{
    uint64_t i = s_hash(name) & (cap - 1);
    while (t[i] >= 0 && strcmp(name_of(g, t[i]), name) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static const char *s_tensor_name(const sq_gguf_t *g, int64_t i)
{
    return g->tensors[i].name;
}

/* ---- metadata ---- */

/* Skip (and check) one value of type at the cursor. */
static int s_skip_value(s_cursor_t *c, uint32_t type, int depth, const char *key);

static int s_skip_array(s_cursor_t *c, int depth, const char *key, uint32_t *elem_type,
                        uint64_t *n)
{
    int rc;
    if ((rc = s_read(c, elem_type, 4, key)) || (rc = s_read(c, n, 8, key)))
        return rc;
    if (*elem_type >= SQ_GGUF_N_TYPES)
        return SQ_FAIL(SQ_EFORMAT, "key %s: array element type %u unknown", key, *elem_type);
    size_t esize = s_type_sizes[*elem_type];
    if (esize) {
        if (*n > s_left(c) / esize)
            return SQ_FAIL(SQ_ETRUNC, "key %s: array of %llu %s runs past end of file", key,
                           (unsigned long long)*n, s_type_names[*elem_type]);
        c->pos += *n * esize;
        return 0;
    }
    if (depth >= S_MAX_NESTING)
        return SQ_FAIL(SQ_EFORMAT, "key %s: arrays nested deeper than %d", key, S_MAX_NESTING);
    /* strings and arrays take at least 8 (resp. 12) bytes each */
    if (*n > s_left(c) / 8)
        return SQ_FAIL(SQ_ETRUNC, "key %s: array count %llu exceeds the file", key,
                       (unsigned long long)*n);
    for (uint64_t j = 0; j < *n; j++)
        if ((rc = s_skip_value(c, *elem_type, depth + 1, key)))
            return rc;
    return 0;
}

static int s_skip_value(s_cursor_t *c, uint32_t type, int depth, const char *key)
{
    uint64_t off, len, n;
    uint32_t et;
    if (type >= SQ_GGUF_N_TYPES)
        return SQ_FAIL(SQ_EFORMAT, "key %s: value type %u unknown", key, type);
    if (type == SQ_GGUF_STRING)
        return s_read_str(c, &off, &len, key);
    if (type == SQ_GGUF_ARRAY)
        return s_skip_array(c, depth, key, &et, &n);
    return s_skip(c, s_type_sizes[type], key);
}

static int s_parse_kv(sq_gguf_t *g, s_cursor_t *c, s_kv_t *kv, int64_t idx)
{
    uint64_t koff, klen;
    int rc = s_read_str(c, &koff, &klen, "metadata key");
    if (rc) {
        char what[64];
        snprintf(what, sizeof what, "metadata key %lld", (long long)idx);
        return s_wrap(rc, what);
    }
    if (klen == 0 || klen > S_MAX_NAME_LEN)
        return SQ_FAIL(SQ_EFORMAT, "metadata key %lld: length %llu out of range", (long long)idx,
                       (unsigned long long)klen);
    if (!(kv->key = s_copy_name(c, koff, klen)))
        return SQ_FAIL(SQ_ENOMEM, "metadata key %lld", (long long)idx);
    if (strlen(kv->key) != klen)
        return SQ_FAIL(SQ_EFORMAT, "metadata key %lld contains a NUL byte", (long long)idx);
    if ((rc = s_read(c, &kv->type, 4, kv->key)))
        return rc;
    if (kv->type >= SQ_GGUF_N_TYPES)
        return SQ_FAIL(SQ_EFORMAT, "key %s: value type %u unknown", kv->key, kv->type);
    uint64_t start = c->pos;
    if (kv->type == SQ_GGUF_ARRAY) {
        if ((rc = s_skip_array(c, 1, kv->key, &kv->elem_type, &kv->n)))
            return rc;
        kv->off = start + 12;
    } else {
        if ((rc = s_skip_value(c, kv->type, 0, kv->key)))
            return rc;
        kv->off = start;
        kv->n = 1;
    }
    kv->size = c->pos - kv->off;
    if (kv->type == SQ_GGUF_ARRAY && kv->elem_type == SQ_GGUF_STRING) {
        /* index the strings for random access; each was checked above */
        kv->str_offs = malloc((kv->n ? kv->n : 1) * sizeof(uint64_t));
        if (!kv->str_offs)
            return SQ_FAIL(SQ_ENOMEM, "key %s: %llu strings", kv->key, (unsigned long long)kv->n);
        uint64_t p = kv->off;
        for (uint64_t j = 0; j < kv->n; j++) {
            uint64_t len;
            kv->str_offs[j] = p;
            memcpy(&len, c->base + p, 8);
            p += 8 + len;
        }
    }
    uint64_t slot = s_hash_slot(g->kv_hash, g->n_kv_hash, kv->key, sq_gguf_kv_key, g);
    if (g->kv_hash[slot] >= 0)
        return SQ_FAIL(SQ_EFORMAT, "key %s appears twice", kv->key);
    g->kv_hash[slot] = idx;
    return 0;
}

static int s_parse_alignment(sq_gguf_t *g)
{
    g->alignment = SQ_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = sq_gguf_find_key(g, "general.alignment");
    if (i < 0)
        return 0;
    if (g->kvs[i].type != SQ_GGUF_UINT32)
        return SQ_FAIL(SQ_EFORMAT, "key general.alignment: type %s, expected uint32",
                       s_type_names[g->kvs[i].type]);
    uint32_t a;
    memcpy(&a, g->map + g->kvs[i].off, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return SQ_FAIL(SQ_EFORMAT, "key general.alignment: %u is not a power of two", a);
    g->alignment = a;
    return 0;
}

/* ---- tensors ---- */

static int s_tensor_size(sq_gguf_tensor_t *t)
{
    int64_t n = 1;
    for (int d = 0; d < SQ_GGUF_MAX_DIMS; d++) {
        if (t->ne[d] < 0)
            return SQ_FAIL(SQ_EFORMAT, "tensor %s: dimension %d is negative", t->name, d);
        if (t->ne[d] != 0 && n > INT64_MAX / t->ne[d])
            return SQ_FAIL(SQ_EFORMAT, "tensor %s: element count overflows", t->name);
        n *= t->ne[d];
    }
    t->n_elements = n;
    const char *name;
    int64_t block;
    size_t bytes;
    if (!sq_gguf_ggml_type((uint32_t)t->dtype, &name, &block, &bytes)) {
        t->size_bytes = 0;      /* (sq_gguf_open_any only) a type of unknown size */
        return 0;
    }
    if (t->ne[0] % block != 0)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s: %s row of %lld is not a multiple of %lld",
                       t->name, name, (long long)t->ne[0], (long long)block);
    if (n / block > INT64_MAX / (int64_t)bytes)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s: byte size overflows", t->name);
    t->size_bytes = (size_t)(n / block) * bytes;
    return 0;
}

static int s_parse_tensor_info(sq_gguf_t *g, s_cursor_t *c, int64_t idx)
{
    sq_gguf_tensor_t *t = &g->tensors[idx];
    uint64_t noff, nlen;
    int rc = s_read_str(c, &noff, &nlen, "tensor name");
    if (rc) {
        char what[64];
        snprintf(what, sizeof what, "tensor %lld", (long long)idx);
        return s_wrap(rc, what);
    }
    if (nlen == 0 || nlen > S_MAX_NAME_LEN)
        return SQ_FAIL(SQ_EFORMAT, "tensor %lld: name length %llu out of range", (long long)idx,
                       (unsigned long long)nlen);
    if (!(t->name = s_copy_name(c, noff, nlen)))
        return SQ_FAIL(SQ_ENOMEM, "tensor %lld", (long long)idx);
    if (strlen(t->name) != nlen)
        return SQ_FAIL(SQ_EFORMAT, "tensor %lld: name contains a NUL byte", (long long)idx);
    uint32_t n_dims, type;
    if ((rc = s_read(c, &n_dims, 4, t->name)))
        return rc;
    if (n_dims < 1 || n_dims > SQ_GGUF_MAX_DIMS)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s: %u dimensions (1..%d allowed)", t->name, n_dims,
                       SQ_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < SQ_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    if ((rc = s_read(c, t->ne, 8ull * n_dims, t->name)) || (rc = s_read(c, &type, 4, t->name)) ||
        (rc = s_read(c, &t->offset, 8, t->name)))
        return rc;
    const char *tname;
    const bool known = sq_gguf_ggml_type(type, &tname, NULL, NULL);
    if (type != SQ_DTYPE_F32 && type != SQ_DTYPE_F16 && type != SQ_DTYPE_Q8_0 &&
        (!g->any_type || type > INT32_MAX))
        return SQ_FAIL(SQ_EUNSUPPORTED, "tensor %s: ggml type %u%s%s%s not supported by the "
                       "engine (F32, F16, Q8_0)", t->name, type, known ? " (" : "",
                       known ? tname : "", known ? ")" : "");
    t->dtype = (int)type;
    if ((rc = s_tensor_size(t)))
        return rc;
    uint64_t slot = s_hash_slot(g->tensor_hash, g->n_tensor_hash, t->name, s_tensor_name, g);
    if (g->tensor_hash[slot] >= 0)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s appears twice", t->name);
    g->tensor_hash[slot] = idx;
    return 0;
}

static int s_place_tensors(sq_gguf_t *g)
{
    uint64_t data_size = g->size - g->data_off;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        sq_gguf_tensor_t *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return SQ_FAIL(SQ_EFORMAT, "tensor %s: offset %llu not aligned to %u", t->name,
                           (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->size_bytes > data_size - t->offset)
            return SQ_FAIL(SQ_ETRUNC,
                           "tensor %s: data [%llu, +%zu) past end of data section (%llu bytes)",
                           t->name, (unsigned long long)t->offset, t->size_bytes,
                           (unsigned long long)data_size);
        /* a type of unknown size (sq_gguf_open_any) has no data to read */
        if (sq_gguf_ggml_type((uint32_t)t->dtype, NULL, NULL, NULL))
            t->data = g->map + g->data_off + t->offset;
    }
    return 0;
}

static int s_parse(sq_gguf_t *g)
{
    s_cursor_t c = {g->map, g->size, 0};
    char magic[4];
    uint64_t n_tensors, n_kv;
    int rc;
    if ((rc = s_read(&c, magic, 4, "header")))
        return rc;
    if (memcmp(magic, SQ_GGUF_MAGIC, 4) != 0)
        return SQ_FAIL(SQ_EFORMAT, "not a GGUF file (bad magic)");
    if ((rc = s_read(&c, &g->version, 4, "header")))
        return rc;
    if (g->version != SQ_GGUF_VERSION)
        return SQ_FAIL(SQ_EUNSUPPORTED, "GGUF version %u (only 3 is supported)", g->version);
    if ((rc = s_read(&c, &n_tensors, 8, "header")) || (rc = s_read(&c, &n_kv, 8, "header")))
        return rc;
    /* a kv takes >= 12 bytes (key length + type), a tensor info >= 32 */
    if (n_kv > s_left(&c) / 12)
        return SQ_FAIL(SQ_EFORMAT, "header: %llu metadata entries cannot fit in the file",
                       (unsigned long long)n_kv);
    if (n_tensors > s_left(&c) / 32)
        return SQ_FAIL(SQ_EFORMAT, "header: %llu tensors cannot fit in the file",
                       (unsigned long long)n_tensors);
    g->kv_cap = n_kv;
    g->tensor_cap = n_tensors;
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    g->kv_hash = s_hash_new((int64_t)n_kv, &g->n_kv_hash);
    g->tensor_hash = s_hash_new((int64_t)n_tensors, &g->n_tensor_hash);
    if (!g->kvs || !g->tensors || !g->kv_hash || !g->tensor_hash)
        return SQ_FAIL(SQ_ENOMEM, "header: %llu keys, %llu tensors", (unsigned long long)n_kv,
                       (unsigned long long)n_tensors);
    for (uint64_t i = 0; i < n_kv; i++, g->n_kv++)
        if ((rc = s_parse_kv(g, &c, &g->kvs[i], (int64_t)i)))
            return rc;
    if ((rc = s_parse_alignment(g)))
        return rc;
    for (uint64_t i = 0; i < n_tensors; i++, g->n_tensors++)
        if ((rc = s_parse_tensor_info(g, &c, (int64_t)i)))
            return rc;
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_off = c.pos + pad;
    if (g->data_off > g->size) {
        if (n_tensors > 0)
            return SQ_FAIL(SQ_ETRUNC, "data section starts at %llu, past end of file (%llu)",
                           (unsigned long long)g->data_off, (unsigned long long)g->size);
        g->data_off = g->size;
    }
    return s_place_tensors(g);
}

static sq_gguf_t *s_open(const char *path, bool any_type)
{
    sq_gguf_t *g = calloc(1, sizeof *g);
    if (!g) {
        SQ_FAIL(SQ_ENOMEM, "%s", path);
        return NULL;
    }
    g->any_type = any_type;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        SQ_FAIL(-errno, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 24) {
        SQ_FAIL(S_ISREG(st.st_mode) ? SQ_ETRUNC : SQ_EINVAL,
                "%s: %s", path, S_ISREG(st.st_mode) ? "too short for a GGUF header"
                                                   : "not a regular file");
        goto fail;
    }
    g->size = (uint64_t)st.st_size;
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        SQ_FAIL(-errno, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    g->map = m;
    /* start reading the weights in now rather than one fault at a time */
    posix_madvise(m, g->size, POSIX_MADV_WILLNEED);
    close(fd);
    fd = -1;
    int rc = s_parse(g);
    if (rc) {
        s_wrap(rc, path);
        goto fail;
    }
    return g;
fail:
    if (fd >= 0)
        close(fd);
    sq_gguf_destroy(&g);
    return NULL;
}

sq_gguf_t *sq_gguf_open(const char *path)
{
    return s_open(path, false);
}

sq_gguf_t *sq_gguf_open_any(const char *path)
{
    return s_open(path, true);
}

void sq_gguf_destroy(sq_gguf_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_gguf_t *g = *self_p;
    /* all slots: one past the parsed ones may hold a half-parsed entry */
    for (uint64_t i = 0; g->kvs && i < g->kv_cap; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].str_offs);
    }
    for (uint64_t i = 0; g->tensors && i < g->tensor_cap; i++)
        free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_hash);
    free(g->tensor_hash);
    if (g->map)
        munmap((void *)g->map, g->size);
    free(g);
    *self_p = NULL;
}

/* ---- accessors ---- */

uint32_t sq_gguf_version(const sq_gguf_t *self)
{
    return self->version;
}

uint32_t sq_gguf_alignment(const sq_gguf_t *self)
{
    return self->alignment;
}

uint64_t sq_gguf_data_offset(const sq_gguf_t *self)
{
    return self->data_off;
}

uint64_t sq_gguf_file_size(const sq_gguf_t *self)
{
    return self->size;
}

int64_t sq_gguf_n_kv(const sq_gguf_t *self)
{
    return self->n_kv;
}

int64_t sq_gguf_find_key(const sq_gguf_t *self, const char *key)
{
    if (!self->kv_hash)
        return -1;
    return self->kv_hash[s_hash_slot(self->kv_hash, self->n_kv_hash, key, sq_gguf_kv_key, self)];
}

const char *sq_gguf_kv_key(const sq_gguf_t *self, int64_t i)
{
    return i >= 0 && i < self->n_kv ? self->kvs[i].key : NULL;
}

uint32_t sq_gguf_kv_type(const sq_gguf_t *self, int64_t i)
{
    return i >= 0 && i < self->n_kv ? self->kvs[i].type : SQ_GGUF_N_TYPES;
}

/* Decode a scalar of type at p into one of three forms; returns which:
 * 'i' signed, 'u' unsigned, 'f' float, 0 not numeric. */
static int s_decode(const uint8_t *p, uint32_t type, int64_t *i, uint64_t *u, double *f)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } v;
    size_t n = sq_gguf_type_size(type);
    if (n == 0)
        return 0;
    memcpy(&v, p, n);
    switch (type) {
    case SQ_GGUF_UINT8: *u = v.u8; return 'u';
    case SQ_GGUF_BOOL: *u = v.u8 != 0; return 'u';
    case SQ_GGUF_UINT16: *u = v.u16; return 'u';
    case SQ_GGUF_UINT32: *u = v.u32; return 'u';
    case SQ_GGUF_UINT64: *u = v.u64; return 'u';
    case SQ_GGUF_INT8: *i = v.i8; return 'i';
    case SQ_GGUF_INT16: *i = v.i16; return 'i';
    case SQ_GGUF_INT32: *i = v.i32; return 'i';
    case SQ_GGUF_INT64: *i = v.i64; return 'i';
    case SQ_GGUF_FLOAT32: *f = v.f32; return 'f';
    case SQ_GGUF_FLOAT64: *f = v.f64; return 'f';
    default: return 0;
    }
}

static int s_to_int(const uint8_t *p, uint32_t type, int64_t *out)
{
    int64_t i;
    uint64_t u;
    double f;
    switch (s_decode(p, type, &i, &u, &f)) {
    case 'i': *out = i; return 0;
    case 'u':
        if (u > INT64_MAX)
            return SQ_EINVAL;
        *out = (int64_t)u;
        return 0;
    default: return SQ_EINVAL;
    }
}

static int s_to_float(const uint8_t *p, uint32_t type, double *out)
{
    int64_t i;
    uint64_t u;
    switch (s_decode(p, type, &i, &u, out)) {
    case 'f': return 0;
    case 'i': *out = (double)i; return 0;
    case 'u': *out = (double)u; return 0;
    default: return SQ_EINVAL;
    }
}

static const s_kv_t *s_kv(const sq_gguf_t *self, int64_t i)
{
    return i >= 0 && i < self->n_kv ? &self->kvs[i] : NULL;
}

int sq_gguf_kv_int(const sq_gguf_t *self, int64_t i, int64_t *out)
{
    const s_kv_t *kv = s_kv(self, i);
    return kv ? s_to_int(self->map + kv->off, kv->type, out) : SQ_EINVAL;
}

int sq_gguf_kv_uint(const sq_gguf_t *self, int64_t i, uint64_t *out)
{
    const s_kv_t *kv = s_kv(self, i);
    int64_t v;
    if (!kv)
        return SQ_EINVAL;
    if (kv->type == SQ_GGUF_UINT64) {
        memcpy(out, self->map + kv->off, 8);
        return 0;
    }
    if (s_to_int(self->map + kv->off, kv->type, &v) != 0 || v < 0)
        return SQ_EINVAL;
    *out = (uint64_t)v;
    return 0;
}

int sq_gguf_kv_float(const sq_gguf_t *self, int64_t i, double *out)
{
    const s_kv_t *kv = s_kv(self, i);
    return kv ? s_to_float(self->map + kv->off, kv->type, out) : SQ_EINVAL;
}

static void s_str_at(const sq_gguf_t *self, uint64_t off, sq_gguf_str_t *out)
{
    memcpy(&out->len, self->map + off, 8);
    out->data = (const char *)self->map + off + 8;
}

int sq_gguf_kv_str(const sq_gguf_t *self, int64_t i, sq_gguf_str_t *out)
{
    const s_kv_t *kv = s_kv(self, i);
    if (!kv || kv->type != SQ_GGUF_STRING)
        return SQ_EINVAL;
    s_str_at(self, kv->off, out);
    return 0;
}

int sq_gguf_kv_arr(const sq_gguf_t *self, int64_t i, uint32_t *elem_type, uint64_t *n)
{
    const s_kv_t *kv = s_kv(self, i);
    if (!kv || kv->type != SQ_GGUF_ARRAY)
        return SQ_EINVAL;
    *elem_type = kv->elem_type;
    *n = kv->n;
    return 0;
}

const void *sq_gguf_kv_raw(const sq_gguf_t *self, int64_t i, size_t *size_bytes)
{
    const s_kv_t *kv = s_kv(self, i);
    if (!kv)
        return NULL;
    *size_bytes = (size_t)kv->size;
    return self->map + kv->off;
}

int sq_gguf_kv_arr_str(const sq_gguf_t *self, int64_t i, uint64_t j, sq_gguf_str_t *out)
{
    const s_kv_t *kv = s_kv(self, i);
    if (!kv || kv->type != SQ_GGUF_ARRAY || kv->elem_type != SQ_GGUF_STRING || j >= kv->n)
        return SQ_EINVAL;
    s_str_at(self, kv->str_offs[j], out);
    return 0;
}

/* Pointer to numeric element j of array kv i, or NULL. */
static const uint8_t *s_arr_elem(const sq_gguf_t *self, int64_t i, uint64_t j, uint32_t *type)
{
    const s_kv_t *kv = s_kv(self, i);
    if (!kv || kv->type != SQ_GGUF_ARRAY || j >= kv->n)
        return NULL;
    size_t es = sq_gguf_type_size(kv->elem_type);
    if (es == 0)
        return NULL;
    *type = kv->elem_type;
    return self->map + kv->off + j * es;
}

int sq_gguf_kv_arr_int(const sq_gguf_t *self, int64_t i, uint64_t j, int64_t *out)
{
    uint32_t type;
    const uint8_t *p = s_arr_elem(self, i, j, &type);
    return p ? s_to_int(p, type, out) : SQ_EINVAL;
}

int sq_gguf_kv_arr_float(const sq_gguf_t *self, int64_t i, uint64_t j, double *out)
{
    uint32_t type;
    const uint8_t *p = s_arr_elem(self, i, j, &type);
    return p ? s_to_float(p, type, out) : SQ_EINVAL;
}

/* ---- by key ---- */

static int s_find(const sq_gguf_t *self, const char *key, int64_t *i)
{
    *i = sq_gguf_find_key(self, key);
    return *i < 0 ? SQ_FAIL(SQ_ENOTFOUND, "key %s missing", key) : 0;
}

int sq_gguf_get_u32(const sq_gguf_t *self, const char *key, uint32_t *out)
{
    int64_t i, v;
    int rc = s_find(self, key, &i);
    if (rc)
        return rc;
    if (sq_gguf_kv_int(self, i, &v) != 0)
        return SQ_FAIL(SQ_EFORMAT, "key %s: type %s, expected an integer", key,
                       sq_gguf_type_name(self->kvs[i].type));
    if (v < 0 || v > UINT32_MAX)
        return SQ_FAIL(SQ_EFORMAT, "key %s: %lld out of range", key, (long long)v);
    *out = (uint32_t)v;
    return 0;
}

int sq_gguf_get_f32(const sq_gguf_t *self, const char *key, float *out)
{
    int64_t i;
    double v;
    int rc = s_find(self, key, &i);
    if (rc)
        return rc;
    if (sq_gguf_kv_float(self, i, &v) != 0)
        return SQ_FAIL(SQ_EFORMAT, "key %s: type %s, expected a number", key,
                       sq_gguf_type_name(self->kvs[i].type));
    *out = (float)v;
    return 0;
}

int sq_gguf_get_str(const sq_gguf_t *self, const char *key, sq_gguf_str_t *out)
{
    int64_t i;
    int rc = s_find(self, key, &i);
    if (rc)
        return rc;
    if (sq_gguf_kv_str(self, i, out) != 0)
        return SQ_FAIL(SQ_EFORMAT, "key %s: type %s, expected a string", key,
                       sq_gguf_type_name(self->kvs[i].type));
    return 0;
}

int sq_gguf_get_u32_or(const sq_gguf_t *self, const char *key, uint32_t dflt, uint32_t *out)
{
    *out = dflt;
    return sq_gguf_find_key(self, key) < 0 ? 0 : sq_gguf_get_u32(self, key, out);
}

int sq_gguf_get_f32_or(const sq_gguf_t *self, const char *key, float dflt, float *out)
{
    *out = dflt;
    return sq_gguf_find_key(self, key) < 0 ? 0 : sq_gguf_get_f32(self, key, out);
}

bool sq_gguf_str_eq(sq_gguf_str_t s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.data, cstr, n) == 0;
}

int64_t sq_gguf_n_tensors(const sq_gguf_t *self)
{
    return self->n_tensors;
}

const sq_gguf_tensor_t *sq_gguf_tensor(const sq_gguf_t *self, int64_t i)
{
    return i >= 0 && i < self->n_tensors ? &self->tensors[i] : NULL;
}

const char *sq_gguf_shape(const sq_gguf_tensor_t *t, char *buf, size_t size)
{
    size_t k = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    for (int d = 0; d <= t->n_dims && k < size; d++) {
        const int n = d == t->n_dims ? snprintf(buf + k, size - k, "]")
                                     : snprintf(buf + k, size - k, "%s%lld", d ? ", " : "[",
                                                (long long)t->ne[d]);
        k += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

const sq_gguf_tensor_t *sq_gguf_find_tensor(const sq_gguf_t *self, const char *name)
{
    if (!self->tensor_hash)
        return NULL;
    int64_t i = self->tensor_hash[s_hash_slot(self->tensor_hash, self->n_tensor_hash, name,
                                              s_tensor_name, self)];
    return i >= 0 ? &self->tensors[i] : NULL;
}

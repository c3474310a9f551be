/*  sq_gguf_writer: GGUF v3 writer (see the header for the file layout and
 *  the calling sequence).
 *
 *  The writer owns: the encoded metadata bytes (a growing buffer), copies
 *  of the keys (to refuse duplicates) and of the tensor infos, and the
 *  FILE while open. Tensor data never passes through it in bulk: each
 *  write goes straight to the stdio buffer.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* strdup */
#endif

#include "sq_gguf_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"

#define S_HEADER_BYTES 24u     /* magic, version, n_tensors, n_kv */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} s_buf_t;

typedef struct {
    char *name;
    int dtype;
    int n_dims;
    int64_t ne[SQ_GGUF_MAX_DIMS];
    uint64_t bytes;
    uint64_t offset;         /* relative to the data section */
    int64_t info_pos;        /* file offset of its tensor info */
} s_tensor_t;

struct sq_gguf_writer {
    uint32_t alignment;
    s_buf_t kv;              /* encoded key/values */
    char **keys;             /* (n_kv) copies */
    size_t *kv_off;          /* (n_kv) offset of each in kv */
    int64_t n_kv;
    s_tensor_t *tensors;     /* (n_tensors) */
    int64_t n_tensors;
    FILE *file;
    char *path;
    uint64_t data_pos;       /* file offset of the data section */
    uint64_t end_pos;        /* file size once complete */
    int64_t cur;             /* tensor being written */
    uint64_t cur_done;       /* its bytes written so far */
};

/* ---- encoding -------------------------------------------------------- */

static int s_reserve(s_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data)
        return SQ_FAIL(SQ_ENOMEM, "gguf writer: no memory for %zu bytes of metadata", cap);
    b->data = data;
    b->cap = cap;
    return 0;
}

static int s_put(s_buf_t *b, const void *p, size_t n)
{
    int rc = s_reserve(b, n);
    if (rc == 0 && n > 0) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    }
    return rc;
}

static int s_put_u32(s_buf_t *b, uint32_t v) { return s_put(b, &v, 4); }
static int s_put_u64(s_buf_t *b, uint64_t v) { return s_put(b, &v, 8); }

static int s_put_str(s_buf_t *b, const char *s, uint64_t len)
{
    int rc = s_put_u64(b, len);
    return rc ? rc : s_put(b, s, len);
}

/* ---- metadata -------------------------------------------------------- */

/* Start key/value `key` of type: refuses duplicates and use after open. */
static int s_begin_kv(sq_gguf_writer_t *self, const char *key, uint32_t type)
{
    if (self->file || self->end_pos)
        return SQ_FAIL(SQ_ESTATE, "gguf writer: key %s added after the file was opened", key);
    for (int64_t i = 0; i < self->n_kv; i++)
        if (strcmp(self->keys[i], key) == 0)
            return SQ_FAIL(SQ_EINVAL, "gguf writer: duplicate key %s", key);
    char **keys = realloc(self->keys, (size_t) (self->n_kv + 1) * sizeof *keys);
    if (keys)
        self->keys = keys;
    size_t *offs = realloc(self->kv_off, (size_t) (self->n_kv + 1) * sizeof *offs);
    if (offs)
        self->kv_off = offs;
    char *copy = strdup(key);
    if (!keys || !offs || !copy) {
        free(copy);
        return SQ_FAIL(SQ_ENOMEM, "gguf writer: no memory for key %s", key);
    }
    self->keys[self->n_kv] = copy;
    self->kv_off[self->n_kv] = self->kv.len;
    self->n_kv++;
    int rc = s_put_str(&self->kv, key, strlen(key));
    return rc ? rc : s_put_u32(&self->kv, type);
}

static int s_add_scalar(sq_gguf_writer_t *self, const char *key, uint32_t type, const void *v)
{
    int rc = s_begin_kv(self, key, type);
    return rc ? rc : s_put(&self->kv, v, sq_gguf_type_size(type));
}

int sq_gguf_writer_add_u8(sq_gguf_writer_t *self, const char *key, uint8_t v)
{ return s_add_scalar(self, key, SQ_GGUF_UINT8, &v); }
int sq_gguf_writer_add_i8(sq_gguf_writer_t *self, const char *key, int8_t v)
{ return s_add_scalar(self, key, SQ_GGUF_INT8, &v); }
int sq_gguf_writer_add_u16(sq_gguf_writer_t *self, const char *key, uint16_t v)
{ return s_add_scalar(self, key, SQ_GGUF_UINT16, &v); }
int sq_gguf_writer_add_i16(sq_gguf_writer_t *self, const char *key, int16_t v)
{ return s_add_scalar(self, key, SQ_GGUF_INT16, &v); }
int sq_gguf_writer_add_u32(sq_gguf_writer_t *self, const char *key, uint32_t v)
{ return s_add_scalar(self, key, SQ_GGUF_UINT32, &v); }
int sq_gguf_writer_add_i32(sq_gguf_writer_t *self, const char *key, int32_t v)
{ return s_add_scalar(self, key, SQ_GGUF_INT32, &v); }
int sq_gguf_writer_add_f32(sq_gguf_writer_t *self, const char *key, float v)
{ return s_add_scalar(self, key, SQ_GGUF_FLOAT32, &v); }
int sq_gguf_writer_add_u64(sq_gguf_writer_t *self, const char *key, uint64_t v)
{ return s_add_scalar(self, key, SQ_GGUF_UINT64, &v); }
int sq_gguf_writer_add_i64(sq_gguf_writer_t *self, const char *key, int64_t v)
{ return s_add_scalar(self, key, SQ_GGUF_INT64, &v); }
int sq_gguf_writer_add_f64(sq_gguf_writer_t *self, const char *key, double v)
{ return s_add_scalar(self, key, SQ_GGUF_FLOAT64, &v); }

int sq_gguf_writer_add_bool(sq_gguf_writer_t *self, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;   /* GGUF bool is one byte, 0 or 1 */
    return s_add_scalar(self, key, SQ_GGUF_BOOL, &b);
}

int sq_gguf_writer_add_str(sq_gguf_writer_t *self, const char *key, const char *s, size_t len)
{
    int rc = s_begin_kv(self, key, SQ_GGUF_STRING);
    return rc ? rc : s_put_str(&self->kv, s, len);
}

int sq_gguf_writer_add_array(sq_gguf_writer_t *self, const char *key, uint32_t elem_type,
                             const void *data, uint64_t n)
{
    size_t size = sq_gguf_type_size(elem_type);
    if (size == 0)
        return SQ_FAIL(SQ_EINVAL, "gguf writer: key %s: array of %s is not a scalar array",
                       key, sq_gguf_type_name(elem_type));
    if (n > SIZE_MAX / size)
        return SQ_FAIL(SQ_ETOOBIG, "gguf writer: key %s: %llu elements", key,
                       (unsigned long long) n);
    int rc = s_begin_kv(self, key, SQ_GGUF_ARRAY);
    if (rc == 0)
        rc = s_put_u32(&self->kv, elem_type);
    if (rc == 0)
        rc = s_put_u64(&self->kv, n);
    return rc ? rc : s_put(&self->kv, data, (size_t) n * size);
}

int sq_gguf_writer_add_str_array(sq_gguf_writer_t *self, const char *key,
                                 const char *const *strs, const uint32_t *lens, uint64_t n)
{
    int rc = s_begin_kv(self, key, SQ_GGUF_ARRAY);
    if (rc == 0)
        rc = s_put_u32(&self->kv, SQ_GGUF_STRING);
    if (rc == 0)
        rc = s_put_u64(&self->kv, n);
    for (uint64_t i = 0; i < n && rc == 0; i++)
        rc = s_put_str(&self->kv, strs[i], lens ? lens[i] : strlen(strs[i]));
    return rc;
}

int sq_gguf_writer_add_raw(sq_gguf_writer_t *self, const char *key, uint32_t type,
                           const void *payload, size_t n)
{
    int rc = s_begin_kv(self, key, type);
    return rc ? rc : s_put(&self->kv, payload, n);
}

/* ---- tensors --------------------------------------------------------- */

/* Bytes of a tensor, or 0 with the error recorded. */
static uint64_t s_tensor_bytes(const char *name, int dtype, int n_dims, const int64_t *ne)
{
    if (n_dims < 1 || n_dims > SQ_GGUF_MAX_DIMS) {
        SQ_FAIL(SQ_EINVAL, "gguf writer: tensor %s: %d dimensions", name, n_dims);
        return 0;
    }
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || (uint64_t) ne[d] > (UINT64_C(1) << 40) / n) {
            SQ_FAIL(SQ_EINVAL, "gguf writer: tensor %s: bad dimension %d = %lld", name, d,
                    (long long) ne[d]);
            return 0;
        }
        n *= (uint64_t) ne[d];
    }
    switch (dtype) {
    case SQ_DTYPE_F32: return n * 4;
    case SQ_DTYPE_F16: return n * 2;
    case SQ_DTYPE_Q8_0:
        if (ne[0] % SQ_QK8_0 == 0)
            return n / SQ_QK8_0 * sizeof(sq_block_q8_0_t);
        SQ_FAIL(SQ_EINVAL, "gguf writer: tensor %s: Q8_0 rows of %lld values are not whole "
                "blocks of %d", name, (long long) ne[0], SQ_QK8_0);
        return 0;
    default:
        SQ_FAIL(SQ_EUNSUPPORTED, "gguf writer: tensor %s: type %d", name, dtype);
        return 0;
    }
}

int sq_gguf_writer_add_tensor(sq_gguf_writer_t *self, const char *name, int dtype,
                              int n_dims, const int64_t *ne)
{
    if (self->file || self->end_pos)
        return SQ_FAIL(SQ_ESTATE, "gguf writer: tensor %s added after the file was opened", name);
    for (int64_t i = 0; i < self->n_tensors; i++)
        if (strcmp(self->tensors[i].name, name) == 0)
            return SQ_FAIL(SQ_EINVAL, "gguf writer: duplicate tensor %s", name);
    uint64_t bytes = s_tensor_bytes(name, dtype, n_dims, ne);
    if (bytes == 0)
        return sq_error_code();
    s_tensor_t *t = realloc(self->tensors, (size_t) (self->n_tensors + 1) * sizeof *t);
    if (!t)
        return SQ_FAIL(SQ_ENOMEM, "gguf writer: no memory for tensor %s", name);
    self->tensors = t;
    t = &self->tensors[self->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return SQ_FAIL(SQ_ENOMEM, "gguf writer: no memory for tensor %s", name);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < SQ_GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->bytes = bytes;
    uint64_t a = self->alignment;
    if (self->n_tensors > 0) {
        const s_tensor_t *prev = t - 1;
        t->offset = (prev->offset + prev->bytes + a - 1) / a * a;
    }
    self->n_tensors++;
    return 0;
}

uint64_t sq_gguf_writer_tensor_bytes(const sq_gguf_writer_t *self, int64_t i)
{
    return i >= 0 && i < self->n_tensors ? self->tensors[i].bytes : 0;
}

int sq_gguf_writer_tensor_shape(const sq_gguf_writer_t *self, int64_t i, int *dtype,
                                int64_t *n_in, int64_t *n_rows)
{
    if (i < 0 || i >= self->n_tensors)
        return SQ_FAIL(SQ_EINVAL, "gguf writer: no tensor %lld", (long long) i);
    const s_tensor_t *t = &self->tensors[i];
    *dtype = t->dtype;
    *n_in = t->ne[0];
    *n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    return 0;
}

/* ---- file ------------------------------------------------------------ */

static int s_fwrite(sq_gguf_writer_t *self, const void *p, size_t n)
{
    if (n > 0 && fwrite(p, 1, n, self->file) != n)
        return SQ_FAIL(-errno ? -errno : SQ_EIO, "gguf writer: %s: write failed: %s",
                       self->path, strerror(errno));
    return 0;
}

static int s_pad(sq_gguf_writer_t *self, uint64_t pos)
{
    static const uint8_t zeros[256];
    uint64_t n = (self->alignment - pos % self->alignment) % self->alignment;
    return s_fwrite(self, zeros, (size_t) n);
}

/* Header, key/values and tensor infos, as one buffer. */
static int s_encode_head(sq_gguf_writer_t *self, s_buf_t *b)
{
    uint32_t version = SQ_GGUF_VERSION;
    int rc = s_put(b, SQ_GGUF_MAGIC, 4);
    if (rc == 0) rc = s_put_u32(b, version);
    if (rc == 0) rc = s_put_u64(b, (uint64_t) self->n_tensors);
    if (rc == 0) rc = s_put_u64(b, (uint64_t) self->n_kv);
    if (rc == 0) rc = s_put(b, self->kv.data, self->kv.len);
    for (int64_t i = 0; i < self->n_tensors && rc == 0; i++) {
        s_tensor_t *t = &self->tensors[i];
        t->info_pos = (int64_t) b->len;
        rc = s_put_str(b, t->name, strlen(t->name));
        if (rc == 0) rc = s_put_u32(b, (uint32_t) t->n_dims);
        for (int d = 0; d < t->n_dims && rc == 0; d++)
            rc = s_put_u64(b, (uint64_t) t->ne[d]);
        if (rc == 0) rc = s_put_u32(b, (uint32_t) t->dtype);
        if (rc == 0) rc = s_put_u64(b, t->offset);
    }
    return rc;
}

int sq_gguf_writer_open(sq_gguf_writer_t *self, const char *path)
{
    if (self->file || self->end_pos)
        return SQ_FAIL(SQ_ESTATE, "gguf writer: %s: already opened", path);
    s_buf_t head = { 0 };
    int rc = s_encode_head(self, &head);
    if (rc < 0)
        goto fail;
    free(self->path);
    if (!(self->path = strdup(path))) {
        rc = SQ_FAIL(SQ_ENOMEM, "gguf writer: no memory");
        goto fail;
    }
    self->file = fopen(path, "wb");
    if (!self->file) {
        rc = SQ_FAIL(-errno, "gguf writer: cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    setvbuf(self->file, NULL, _IOFBF, 1 << 20);
    rc = s_fwrite(self, head.data, head.len);
    if (rc == 0)
        rc = s_pad(self, head.len);
    uint64_t a = self->alignment;
    self->data_pos = (head.len + a - 1) / a * a;
    self->end_pos = self->data_pos;
    if (self->n_tensors > 0) {
        const s_tensor_t *last = &self->tensors[self->n_tensors - 1];
        self->end_pos += last->offset + last->bytes;
    }
    self->cur = 0;
    self->cur_done = 0;
fail:
    free(head.data);
    return rc;
}

int sq_gguf_writer_write(sq_gguf_writer_t *self, const void *data, size_t n)
{
    if (!self->file)
        return SQ_FAIL(SQ_ESTATE, "gguf writer: tensor data written to a file that is not open");
    const uint8_t *p = data;
    while (n > 0) {
        if (self->cur >= self->n_tensors)
            return SQ_FAIL(SQ_EINVAL, "gguf writer: %s: %zu bytes past the last tensor",
                           self->path, n);
        const s_tensor_t *t = &self->tensors[self->cur];
        uint64_t room = t->bytes - self->cur_done;
        size_t k = n < room ? n : (size_t) room;
        int rc = s_fwrite(self, p, k);
        if (rc < 0)
            return rc;
        p += k;
        n -= k;
        self->cur_done += k;
        if (self->cur_done == t->bytes) {
            if (self->cur + 1 < self->n_tensors && (rc = s_pad(self, t->offset + t->bytes)) < 0)
                return rc;
            self->cur++;
            self->cur_done = 0;
        }
    }
    return 0;
}

int sq_gguf_writer_close(sq_gguf_writer_t *self)
{
    if (!self->file)
        return SQ_FAIL(SQ_ESTATE, "gguf writer: close of a file that is not open");
    int rc = 0;
    if (self->cur < self->n_tensors)
        rc = SQ_FAIL(SQ_ETRUNC, "gguf writer: %s: tensor %s has %llu of %llu bytes",
                     self->path, self->tensors[self->cur].name,
                     (unsigned long long) self->cur_done,
                     (unsigned long long) self->tensors[self->cur].bytes);
    if (fclose(self->file) != 0 && rc == 0)
        rc = SQ_FAIL(-errno, "gguf writer: %s: close failed: %s", self->path, strerror(errno));
    self->file = NULL;
    return rc;
}

int64_t sq_gguf_writer_pos(const sq_gguf_writer_t *self, sq_gguf_pos_t what, int64_t index)
{
    if (self->end_pos == 0)
        return -1;
    bool in_kv = index >= 0 && index < self->n_kv;
    bool in_t = index >= 0 && index < self->n_tensors;
    switch (what) {
    case SQ_GGUF_POS_N_TENSORS: return 8;
    case SQ_GGUF_POS_N_KV: return 16;
    case SQ_GGUF_POS_KV: return in_kv ? (int64_t) (S_HEADER_BYTES + self->kv_off[index]) : -1;
    case SQ_GGUF_POS_TENSOR_INFO: return in_t ? self->tensors[index].info_pos : -1;
    case SQ_GGUF_POS_TENSOR_OFFSET:
        /* the offset is the last field of the info */
        return in_t ? self->tensors[index].info_pos + 8 + (int64_t) strlen(self->tensors[index].name)
                      + 4 + 8 * self->tensors[index].n_dims + 4 : -1;
    case SQ_GGUF_POS_DATA: return (int64_t) self->data_pos;
    case SQ_GGUF_POS_TENSOR_DATA:
        return in_t ? (int64_t) (self->data_pos + self->tensors[index].offset) : -1;
    case SQ_GGUF_POS_END: return (int64_t) self->end_pos;
    }
    return -1;
}

int64_t sq_gguf_writer_n_kv(const sq_gguf_writer_t *self) { return self->n_kv; }
int64_t sq_gguf_writer_n_tensors(const sq_gguf_writer_t *self) { return self->n_tensors; }

/* ---- lifetime -------------------------------------------------------- */

sq_gguf_writer_t *sq_gguf_writer_new(uint32_t alignment)
{
    if (alignment != 0 && (alignment & (alignment - 1)) != 0) {
        SQ_FAIL(SQ_EINVAL, "gguf writer: alignment %u is not a power of two", alignment);
        return NULL;
    }
    sq_gguf_writer_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->alignment = alignment ? alignment : SQ_GGUF_DEFAULT_ALIGNMENT;
    if (alignment && sq_gguf_writer_add_u32(self, "general.alignment", alignment) < 0)
        sq_gguf_writer_destroy(&self);
    return self;
}

void sq_gguf_writer_destroy(sq_gguf_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_gguf_writer_t *self = *self_p;
    if (self->file)
        fclose(self->file);
    for (int64_t i = 0; i < self->n_kv; i++)
        free(self->keys[i]);
    for (int64_t i = 0; i < self->n_tensors; i++)
        free(self->tensors[i].name);
    free(self->keys);
    free(self->kv_off);
    free(self->tensors);
    free(self->kv.data);
    free(self->path);
    free(self);
    *self_p = NULL;
}

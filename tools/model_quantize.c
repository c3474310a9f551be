/*  shardq-model quantize: copy a GGUF model with its matrices in Q8_0.
 *
 *  A 2-D F32 or F16 tensor whose rows are whole blocks of 32 becomes Q8_0
 *  (llama.cpp's rule for this type); vectors, rows of other lengths and
 *  tensors that are already Q8_0 are copied byte for byte. Metadata is
 *  copied key by key with general.file_type set to 7 (mostly Q8_0) and
 *  general.quantization_version 2 added, as llama.cpp's quantizer does.
 *  Data streams one row at a time from the input mapping to the writer.
 */
#include <stdlib.h>
#include <string.h>

#include "shardq_model.h"
#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_gguf_writer.h"

#define S_FILE_TYPE_Q8_0 7

static bool s_to_q8_0(const sq_gguf_tensor_t *t)
{
    return t->n_dims == 2 && t->ne[0] % SQ_QK8_0 == 0
        && (t->dtype == SQ_DTYPE_F32 || t->dtype == SQ_DTYPE_F16);
}

/* Copy a scalar value (raw little-endian payload) of the given type. */
static int s_copy_scalar(sq_gguf_writer_t *w, const char *key, uint32_t type, const void *raw)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } v;
    memcpy(&v, raw, sq_gguf_type_size(type));
    switch (type) {
    case SQ_GGUF_UINT8: return sq_gguf_writer_add_u8(w, key, v.u8);
    case SQ_GGUF_INT8: return sq_gguf_writer_add_i8(w, key, v.i8);
    case SQ_GGUF_UINT16: return sq_gguf_writer_add_u16(w, key, v.u16);
    case SQ_GGUF_INT16: return sq_gguf_writer_add_i16(w, key, v.i16);
    case SQ_GGUF_UINT32: return sq_gguf_writer_add_u32(w, key, v.u32);
    case SQ_GGUF_INT32: return sq_gguf_writer_add_i32(w, key, v.i32);
    case SQ_GGUF_FLOAT32: return sq_gguf_writer_add_f32(w, key, v.f32);
    case SQ_GGUF_BOOL: return sq_gguf_writer_add_bool(w, key, v.u8 != 0);
    case SQ_GGUF_UINT64: return sq_gguf_writer_add_u64(w, key, v.u64);
    case SQ_GGUF_INT64: return sq_gguf_writer_add_i64(w, key, v.i64);
    case SQ_GGUF_FLOAT64: return sq_gguf_writer_add_f64(w, key, v.f64);
    default: return SQ_FAIL(SQ_EUNSUPPORTED, "quantize: key %s: type %u", key, type);
    }
}

static int s_copy_str_array(sq_gguf_writer_t *w, const sq_gguf_t *g, int64_t i, uint64_t n)
{
    const char **strs = malloc((n ? n : 1) * sizeof *strs);
    uint32_t *lens = malloc((n ? n : 1) * sizeof *lens);
    int rc = 0;
    if (!strs || !lens)
        rc = SQ_FAIL(SQ_ENOMEM, "quantize: key %s: %llu strings", sq_gguf_kv_key(g, i),
                     (unsigned long long) n);
    for (uint64_t j = 0; j < n && rc == 0; j++) {
        sq_gguf_str_t s;
        rc = sq_gguf_kv_arr_str(g, i, j, &s);
        if (rc == 0 && s.len > UINT32_MAX)
            rc = SQ_FAIL(SQ_ETOOBIG, "quantize: key %s: string %llu too long",
                         sq_gguf_kv_key(g, i), (unsigned long long) j);
        strs[j] = s.data;
        lens[j] = (uint32_t) s.len;
    }
    if (rc == 0)
        rc = sq_gguf_writer_add_str_array(w, sq_gguf_kv_key(g, i), strs, lens, n);
    free(strs);
    free(lens);
    return rc;
}

static int s_copy_kv(sq_gguf_writer_t *w, const sq_gguf_t *g, int64_t i)
{
    const char *key = sq_gguf_kv_key(g, i);
    uint32_t type = sq_gguf_kv_type(g, i);
    size_t size;
    if (type == SQ_GGUF_STRING) {
        sq_gguf_str_t s;
        int rc = sq_gguf_kv_str(g, i, &s);
        return rc ? rc : sq_gguf_writer_add_str(w, key, s.data, s.len);
    }
    if (type != SQ_GGUF_ARRAY)
        return s_copy_scalar(w, key, type, sq_gguf_kv_raw(g, i, &size));
    uint32_t et;
    uint64_t n;
    int rc = sq_gguf_kv_arr(g, i, &et, &n);
    if (rc < 0)
        return rc;
    if (et == SQ_GGUF_STRING)
        return s_copy_str_array(w, g, i, n);
    if (et == SQ_GGUF_ARRAY)
        return SQ_FAIL(SQ_EUNSUPPORTED, "quantize: key %s: arrays of arrays are not copied", key);
    return sq_gguf_writer_add_array(w, key, et, sq_gguf_kv_raw(g, i, &size), n);
}

/* Copy the keys of g except general.alignment (the writer was made with
 * the same alignment and writes that key itself) and except skip. */
static int s_copy_kvs_except(sq_gguf_writer_t *w, const sq_gguf_t *g, const char *skip)
{
    int rc = 0;
    for (int64_t i = 0; i < sq_gguf_n_kv(g) && rc == 0; i++) {
        const char *key = sq_gguf_kv_key(g, i);
        if (strcmp(key, "general.alignment") != 0 && (!skip || strcmp(key, skip) != 0))
            rc = s_copy_kv(w, g, i);
    }
    return rc;
}

int sq_model_copy_kvs(sq_gguf_writer_t *w, const sq_gguf_t *g)
{
    return s_copy_kvs_except(w, g, NULL);
}

static int s_add_metadata(sq_gguf_writer_t *w, const sq_gguf_t *g)
{
    int rc = s_copy_kvs_except(w, g, "general.file_type");
    if (rc == 0)
        rc = sq_gguf_writer_add_u32(w, "general.file_type", S_FILE_TYPE_Q8_0);
    /* llama.cpp marks quantized files with the block format's version */
    if (rc == 0 && sq_gguf_find_key(g, "general.quantization_version") < 0)
        rc = sq_gguf_writer_add_u32(w, "general.quantization_version", 2);
    for (int64_t i = 0; i < sq_gguf_n_tensors(g) && rc == 0; i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        rc = sq_gguf_writer_add_tensor(w, t->name, s_to_q8_0(t) ? SQ_DTYPE_Q8_0 : t->dtype,
                                       t->n_dims, t->ne);
    }
    return rc;
}

static int s_write_tensor(sq_gguf_writer_t *w, const sq_gguf_tensor_t *t, float *x, void *q)
{
    if (!s_to_q8_0(t))
        return sq_gguf_writer_write(w, t->data, t->size_bytes);
    int64_t n_in = t->ne[0];
    size_t in_row = sq_cpu_row_bytes(t->dtype, n_in);
    size_t out_row = sq_cpu_row_bytes(SQ_DTYPE_Q8_0, n_in);
    int rc = 0;
    for (int64_t r = 0; r < t->ne[1] && rc == 0; r++) {
        sq_cpu_dequantize_row(t->dtype, (const char *) t->data + (size_t) r * in_row, x, n_in);
        sq_cpu_quantize_row_q8_0(x, q, n_in);
        rc = sq_gguf_writer_write(w, q, out_row);
    }
    return rc;
}

static int s_write_data(sq_gguf_writer_t *w, const sq_gguf_t *g)
{
    int64_t n_max = 1;
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++)
        if (sq_gguf_tensor(g, i)->ne[0] > n_max)
            n_max = sq_gguf_tensor(g, i)->ne[0];
    float *x = malloc((size_t) n_max * sizeof *x);
    void *q = malloc((size_t) n_max * sizeof *x);
    int rc = x && q ? 0 : SQ_FAIL(SQ_ENOMEM, "quantize: no memory for rows of %lld",
                                  (long long) n_max);
    for (int64_t i = 0; i < sq_gguf_n_tensors(g) && rc == 0; i++)
        rc = s_write_tensor(w, sq_gguf_tensor(g, i), x, q);
    free(x);
    free(q);
    return rc;
}

int sq_model_quantize(const char *in_path, const char *out_path, FILE *out)
{
    sq_gguf_t *g = sq_gguf_open(in_path);
    if (!g)
        return sq_error_code() ? sq_error_code() : SQ_EFORMAT;
    bool has_alignment = sq_gguf_find_key(g, "general.alignment") >= 0;
    sq_gguf_writer_t *w = sq_gguf_writer_new(has_alignment ? sq_gguf_alignment(g) : 0);
    int rc = w ? s_add_metadata(w, g) : SQ_FAIL(SQ_ENOMEM, "quantize: no memory");
    if (rc == 0 && (rc = sq_gguf_writer_open(w, out_path)) == 0) {
        rc = s_write_data(w, g);
        if (rc == 0)
            rc = sq_gguf_writer_close(w);
        if (rc < 0) {
            sq_gguf_writer_destroy(&w);   /* closes without a second error */
            remove(out_path);
        }
    }
    if (rc == 0) {
        int64_t n_q = 0;
        for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++)
            n_q += s_to_q8_0(sq_gguf_tensor(g, i));
        fprintf(out, "wrote %s: %lld of %lld tensors in Q8_0, %lld bytes (input %llu bytes)\n",
                out_path, (long long) n_q, (long long) sq_gguf_n_tensors(g),
                (long long) sq_gguf_writer_pos(w, SQ_GGUF_POS_END, 0),
                (unsigned long long) sq_gguf_file_size(g));
    }
    sq_gguf_writer_destroy(&w);
    sq_gguf_destroy(&g);
    return rc;
}

/*  shardq-model info: print a GGUF file's header, metadata and tensors.
 *
 *  Everything comes through the engine's reader (sq_gguf), so a file that
 *  info accepts is one the engine can open. Strings are printed escaped
 *  and cut at 48 bytes; arrays show their first 8 elements.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shardq_model.h"
#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_gguf.h"

#define S_STR_MAX 48
#define S_ARR_SHOWN 8

static const char *s_dtype_name(int dtype)
{
    return dtype == SQ_DTYPE_F32 ? "F32" : dtype == SQ_DTYPE_F16 ? "F16"
         : dtype == SQ_DTYPE_Q8_0 ? "Q8_0" : "?";
}

static void s_print_str(FILE *out, sq_gguf_str_t s)
{
    fputc('"', out);
    for (uint64_t i = 0; i < s.len && i < S_STR_MAX; i++) {
        unsigned char c = (unsigned char) s.data[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputs(s.len > S_STR_MAX ? "\"..." : "\"", out);
}

/* Scalar kv i, or element j of array kv i when j >= 0. */
static void s_print_value(FILE *out, const sq_gguf_t *g, int64_t i, int64_t j, uint32_t type)
{
    int64_t v;
    uint64_t u;
    double f;
    sq_gguf_str_t s;
    if (type == SQ_GGUF_STRING) {
        if ((j < 0 ? sq_gguf_kv_str(g, i, &s) : sq_gguf_kv_arr_str(g, i, (uint64_t) j, &s)) == 0)
            s_print_str(out, s);
    } else if (type == SQ_GGUF_FLOAT32 || type == SQ_GGUF_FLOAT64) {
        if ((j < 0 ? sq_gguf_kv_float(g, i, &f) : sq_gguf_kv_arr_float(g, i, (uint64_t) j, &f)) == 0)
            fprintf(out, "%.9g", f);
    } else if (type == SQ_GGUF_UINT64 && j < 0 && sq_gguf_kv_uint(g, i, &u) == 0) {
        fprintf(out, "%" PRIu64, u);
    } else if (type == SQ_GGUF_BOOL && j < 0 && sq_gguf_kv_int(g, i, &v) == 0) {
        fputs(v ? "true" : "false", out);
    } else if ((j < 0 ? sq_gguf_kv_int(g, i, &v) : sq_gguf_kv_arr_int(g, i, (uint64_t) j, &v)) == 0) {
        fprintf(out, "%" PRId64, v);
    } else {
        fputs("?", out);
    }
}

static void s_print_kv(FILE *out, const sq_gguf_t *g, int64_t i)
{
    uint32_t type = sq_gguf_kv_type(g, i);
    fprintf(out, "  %-44s ", sq_gguf_kv_key(g, i));
    if (type != SQ_GGUF_ARRAY) {
        fprintf(out, "%-8s ", sq_gguf_type_name(type));
        s_print_value(out, g, i, -1, type);
        fputc('\n', out);
        return;
    }
    uint32_t et;
    uint64_t n;
    sq_gguf_kv_arr(g, i, &et, &n);
    char tname[32];
    snprintf(tname, sizeof tname, "%s[%" PRIu64 "]", sq_gguf_type_name(et), n);
    fprintf(out, "%-8s [", tname);
    for (uint64_t j = 0; j < n && j < S_ARR_SHOWN; j++) {
        fputs(j ? ", " : "", out);
        if (et == SQ_GGUF_ARRAY)
            fputs("[...]", out);
        else
            s_print_value(out, g, i, (int64_t) j, et);
    }
    fputs(n > S_ARR_SHOWN ? ", ...]\n" : "]\n", out);
}

static void s_print_tensors(FILE *out, const sq_gguf_t *g)
{
    int64_t n = sq_gguf_n_tensors(g);
    uint64_t params = 0, bytes[3] = { 0 }, count[3] = { 0 };
    fprintf(out, "tensors (%" PRId64 "):\n", n);
    fprintf(out, "  %-32s %-5s %-22s %12s %12s\n", "name", "type", "shape", "bytes", "offset");
    for (int64_t i = 0; i < n; i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        char shape[SQ_GGUF_SHAPE_BYTES];
        fprintf(out, "  %-32s %-5s %-22s %12zu %12" PRIu64 "\n", t->name, s_dtype_name(t->dtype),
                sq_gguf_shape(t, shape, sizeof shape), t->size_bytes, t->offset);
        params += (uint64_t) t->n_elements;
        int slot = t->dtype == SQ_DTYPE_F32 ? 0 : t->dtype == SQ_DTYPE_F16 ? 1 : 2;
        bytes[slot] += t->size_bytes;
        count[slot]++;
    }
    fprintf(out, "total: %" PRIu64 " parameters, %" PRIu64 " bytes of tensor data "
            "(F32: %" PRIu64 " tensors %" PRIu64 " bytes, F16: %" PRIu64 " tensors %" PRIu64
            " bytes, Q8_0: %" PRIu64 " tensors %" PRIu64 " bytes)\n",
            params, bytes[0] + bytes[1] + bytes[2], count[0], bytes[0], count[1], bytes[1],
            count[2], bytes[2]);
}

int sq_model_info(const char *path, FILE *out)
{
    sq_gguf_t *g = sq_gguf_open(path);
    if (!g)
        return sq_error_code() ? sq_error_code() : SQ_EFORMAT;
    fprintf(out, "file: %s\n", path);
    fprintf(out, "gguf version %u, alignment %u, data at %" PRIu64 ", %" PRIu64 " bytes\n",
            sq_gguf_version(g), sq_gguf_alignment(g), sq_gguf_data_offset(g),
            sq_gguf_file_size(g));
    fprintf(out, "metadata (%" PRId64 " keys):\n", sq_gguf_n_kv(g));
    for (int64_t i = 0; i < sq_gguf_n_kv(g); i++)
        s_print_kv(out, g, i);
    s_print_tensors(out, g);
    sq_gguf_destroy(&g);
    return 0;
}

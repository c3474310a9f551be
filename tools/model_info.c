/*  shardq-model info: print a GGUF file's header, metadata and tensors.
 *
 *  Everything comes through the engine's reader (sq_gguf), opened for
 *  inspection (sq_gguf_open_any): a well-formed file is shown whatever its
 *  tensor types, and when some are types the engine does not run (Q4_0,
 *  Q4_K, BF16, ...) a last line says the engine cannot load it and why.
 *  Strings are printed escaped and cut at 48 bytes; arrays show their
 *  first 8 elements.
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

/* A tensor type's name ("Q4_K"), or "type N" for a number ggml's table
 * here does not know (into buf) */
static const char *s_dtype_name(int dtype, char *buf, size_t size)
{
    const char *name;
    if (sq_gguf_ggml_type((uint32_t)dtype, &name, NULL, NULL))
        return name;
    snprintf(buf, size, "type %d", dtype);
    return buf;
}

static bool s_engine_runs(int dtype)
{
    return dtype == SQ_DTYPE_F32 || dtype == SQ_DTYPE_F16 || dtype == SQ_DTYPE_Q8_0;
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

/* Tensor types counted one by one in the totals; higher numbers (none
 * that ggml knows) together */
#define S_TYPES 64

/* Tensors, totals per type (in type order; a type of unknown size says
 * so), and whether the engine runs every type. Returns how many tensors
 * are of types it does not run. */
static int64_t s_print_tensors(FILE *out, const sq_gguf_t *g)
{
    int64_t n = sq_gguf_n_tensors(g), n_foreign = 0;
    uint64_t params = 0, total = 0, count[S_TYPES + 1] = {0}, bytes[S_TYPES + 1] = {0};
    char tbuf[24];
    fprintf(out, "tensors (%" PRId64 "):\n", n);
    fprintf(out, "  %-32s %-8s %-22s %12s %12s\n", "name", "type", "shape", "bytes", "offset");
    for (int64_t i = 0; i < n; i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        char shape[SQ_GGUF_SHAPE_BYTES], size[24] = "?";
        if (sq_gguf_ggml_type((uint32_t)t->dtype, NULL, NULL, NULL))
            snprintf(size, sizeof size, "%zu", t->size_bytes);
        fprintf(out, "  %-32s %-8s %-22s %12s %12" PRIu64 "\n", t->name,
                s_dtype_name(t->dtype, tbuf, sizeof tbuf), sq_gguf_shape(t, shape, sizeof shape),
                size, t->offset);
        const int k = t->dtype >= 0 && t->dtype < S_TYPES ? t->dtype : S_TYPES;
        params += (uint64_t) t->n_elements;
        total += t->size_bytes;
        count[k]++;
        bytes[k] += t->size_bytes;
        n_foreign += !s_engine_runs(t->dtype);
    }
    fprintf(out, "total: %" PRIu64 " parameters, %" PRIu64 " bytes of tensor data (", params,
            total);
    const char *sep = "";
    for (int k = 0; k <= S_TYPES; k++) {
        if (!count[k])
            continue;
        fprintf(out, "%s%s: %" PRIu64 " tensor%s", sep,
                k < S_TYPES ? s_dtype_name(k, tbuf, sizeof tbuf) : "other types", count[k],
                count[k] == 1 ? "" : "s");
        if (k < S_TYPES && sq_gguf_ggml_type((uint32_t)k, NULL, NULL, NULL))
            fprintf(out, " %" PRIu64 " bytes", bytes[k]);
        else
            fputs(", size unknown", out);
        sep = ", ";
    }
    fputs(")\n", out);
    return n_foreign;
}

/* The line saying the engine cannot load the file, naming the first
 * tensor of a type it does not run */
static void s_print_foreign(FILE *out, const sq_gguf_t *g, int64_t n_foreign)
{
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        char tbuf[24];
        if (s_engine_runs(t->dtype))
            continue;
        fprintf(out, "the engine cannot load this file: %" PRId64 " tensor%s of types it does "
                "not run, the first %s (%s); it runs F32, F16 and Q8_0\n", n_foreign,
                n_foreign == 1 ? " is" : "s are", t->name,
                s_dtype_name(t->dtype, tbuf, sizeof tbuf));
        return;
    }
}

int sq_model_info(const char *path, FILE *out)
{
    sq_gguf_t *g = sq_gguf_open_any(path);
    if (!g)
        return sq_error_code() ? sq_error_code() : SQ_EFORMAT;
    fprintf(out, "file: %s\n", path);
    fprintf(out, "gguf version %u, alignment %u, data at %" PRIu64 ", %" PRIu64 " bytes\n",
            sq_gguf_version(g), sq_gguf_alignment(g), sq_gguf_data_offset(g),
            sq_gguf_file_size(g));
    fprintf(out, "metadata (%" PRId64 " keys):\n", sq_gguf_n_kv(g));
    for (int64_t i = 0; i < sq_gguf_n_kv(g); i++)
        s_print_kv(out, g, i);
    const int64_t n_foreign = s_print_tensors(out, g);
    if (n_foreign > 0)
        s_print_foreign(out, g, n_foreign);
    sq_gguf_destroy(&g);
    return 0;
}

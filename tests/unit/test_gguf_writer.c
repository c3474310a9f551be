/*  test_gguf_writer: files written by sq_gguf_writer read back with the
 *  engine's GGUF reader (sq_gguf): every metadata type, arrays, tensor
 *  infos, alignment, data written in odd-sized pieces; and the writer's
 *  refusals (duplicates, bad shapes, too much or too little data).
 *  Usage: test_gguf_writer SCRATCH_DIR
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_gguf_writer.h"
#include "sq_test.h"

static char path[4096];

static int64_t s_int(const sq_gguf_t *g, const char *key)
{
    int64_t v = -12345;
    int64_t i = sq_gguf_find_key(g, key);
    if (i < 0 || sq_gguf_kv_int(g, i, &v) < 0)
        return -12345;
    return v;
}

static double s_float(const sq_gguf_t *g, const char *key)
{
    double v = NAN;
    int64_t i = sq_gguf_find_key(g, key);
    if (i >= 0)
        sq_gguf_kv_float(g, i, &v);
    return v;
}

static uint32_t s_type(const sq_gguf_t *g, const char *key)
{
    int64_t i = sq_gguf_find_key(g, key);
    return i < 0 ? 999u : sq_gguf_kv_type(g, i);
}

static void test_all_value_types(void)
{
    sq_gguf_writer_t *w = sq_gguf_writer_new(0);
    SQ_REQUIRE(w);
    SQ_CHECK(sq_gguf_writer_add_u8(w, "t.u8", 200) == 0);
    SQ_CHECK(sq_gguf_writer_add_i8(w, "t.i8", -100) == 0);
    SQ_CHECK(sq_gguf_writer_add_u16(w, "t.u16", 60000) == 0);
    SQ_CHECK(sq_gguf_writer_add_i16(w, "t.i16", -30000) == 0);
    SQ_CHECK(sq_gguf_writer_add_u32(w, "t.u32", 4000000000u) == 0);
    SQ_CHECK(sq_gguf_writer_add_i32(w, "t.i32", -2000000000) == 0);
    SQ_CHECK(sq_gguf_writer_add_f32(w, "t.f32", 1.5f) == 0);
    SQ_CHECK(sq_gguf_writer_add_bool(w, "t.bool", true) == 0);
    SQ_CHECK(sq_gguf_writer_add_u64(w, "t.u64", UINT64_C(1) << 40) == 0);
    SQ_CHECK(sq_gguf_writer_add_i64(w, "t.i64", -(INT64_C(1) << 50)) == 0);
    SQ_CHECK(sq_gguf_writer_add_f64(w, "t.f64", -2.25) == 0);
    SQ_CHECK(sq_gguf_writer_add_str(w, "t.str", "h\xc3\xa9llo", 6) == 0);
    SQ_CHECK(sq_gguf_writer_add_str(w, "t.empty", "", 0) == 0);
    int32_t ints[] = { 3, -1, 7 };
    float floats[] = { 0.5f, -0.25f };
    SQ_CHECK(sq_gguf_writer_add_array(w, "t.arr_i32", SQ_GGUF_INT32, ints, 3) == 0);
    SQ_CHECK(sq_gguf_writer_add_array(w, "t.arr_f32", SQ_GGUF_FLOAT32, floats, 2) == 0);
    SQ_CHECK(sq_gguf_writer_add_array(w, "t.arr_empty", SQ_GGUF_UINT8, NULL, 0) == 0);
    const char *strs[] = { "a", "\xe2\x96\x81the", "" };
    SQ_CHECK(sq_gguf_writer_add_str_array(w, "t.arr_str", strs, NULL, 3) == 0);
    /* refusals */
    SQ_CHECK(sq_gguf_writer_add_u8(w, "t.u8", 1) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "duplicate key t.u8") != NULL);
    SQ_CHECK(sq_gguf_writer_add_array(w, "t.bad", SQ_GGUF_STRING, strs, 3) == SQ_EINVAL);
    SQ_CHECK(sq_gguf_writer_open(w, path) == 0);
    SQ_CHECK(sq_gguf_writer_add_u8(w, "t.late", 1) == SQ_ESTATE);
    SQ_CHECK(sq_gguf_writer_close(w) == 0);
    int64_t end = sq_gguf_writer_pos(w, SQ_GGUF_POS_END, 0);
    sq_gguf_writer_destroy(&w);
    SQ_CHECK(w == NULL);

    sq_gguf_t *g = sq_gguf_open(path);
    SQ_REQUIRE(g);
    SQ_CHECK((int64_t) sq_gguf_file_size(g) == end);
    SQ_CHECK(sq_gguf_n_kv(g) == 17);
    SQ_CHECK(sq_gguf_n_tensors(g) == 0);
    SQ_CHECK(sq_gguf_alignment(g) == 32);
    SQ_CHECK(s_type(g, "t.u8") == SQ_GGUF_UINT8 && s_int(g, "t.u8") == 200);
    SQ_CHECK(s_type(g, "t.i8") == SQ_GGUF_INT8 && s_int(g, "t.i8") == -100);
    SQ_CHECK(s_type(g, "t.u16") == SQ_GGUF_UINT16 && s_int(g, "t.u16") == 60000);
    SQ_CHECK(s_type(g, "t.i16") == SQ_GGUF_INT16 && s_int(g, "t.i16") == -30000);
    SQ_CHECK(s_type(g, "t.u32") == SQ_GGUF_UINT32 && s_int(g, "t.u32") == 4000000000LL);
    SQ_CHECK(s_type(g, "t.i32") == SQ_GGUF_INT32 && s_int(g, "t.i32") == -2000000000LL);
    SQ_CHECK(s_type(g, "t.f32") == SQ_GGUF_FLOAT32 && s_float(g, "t.f32") == 1.5);
    SQ_CHECK(s_type(g, "t.bool") == SQ_GGUF_BOOL && s_int(g, "t.bool") == 1);
    SQ_CHECK(s_type(g, "t.u64") == SQ_GGUF_UINT64 && s_int(g, "t.u64") == (INT64_C(1) << 40));
    SQ_CHECK(s_type(g, "t.i64") == SQ_GGUF_INT64 && s_int(g, "t.i64") == -(INT64_C(1) << 50));
    SQ_CHECK(s_type(g, "t.f64") == SQ_GGUF_FLOAT64 && s_float(g, "t.f64") == -2.25);
    sq_gguf_str_t s;
    SQ_CHECK(sq_gguf_get_str(g, "t.str", &s) == 0 && s.len == 6 && memcmp(s.data, "h\xc3\xa9llo", 6) == 0);
    SQ_CHECK(sq_gguf_get_str(g, "t.empty", &s) == 0 && s.len == 0);
    uint32_t et;
    uint64_t n;
    int64_t k = sq_gguf_find_key(g, "t.arr_i32"), v;
    SQ_CHECK(sq_gguf_kv_arr(g, k, &et, &n) == 0 && et == SQ_GGUF_INT32 && n == 3);
    SQ_CHECK(sq_gguf_kv_arr_int(g, k, 1, &v) == 0 && v == -1);
    double f;
    k = sq_gguf_find_key(g, "t.arr_f32");
    SQ_CHECK(sq_gguf_kv_arr(g, k, &et, &n) == 0 && et == SQ_GGUF_FLOAT32 && n == 2);
    SQ_CHECK(sq_gguf_kv_arr_float(g, k, 1, &f) == 0 && f == -0.25);
    k = sq_gguf_find_key(g, "t.arr_empty");
    SQ_CHECK(sq_gguf_kv_arr(g, k, &et, &n) == 0 && et == SQ_GGUF_UINT8 && n == 0);
    k = sq_gguf_find_key(g, "t.arr_str");
    SQ_CHECK(sq_gguf_kv_arr(g, k, &et, &n) == 0 && et == SQ_GGUF_STRING && n == 3);
    SQ_CHECK(sq_gguf_kv_arr_str(g, k, 1, &s) == 0 && s.len == 6 && memcmp(s.data, strs[1], 6) == 0);
    SQ_CHECK(sq_gguf_kv_arr_str(g, k, 2, &s) == 0 && s.len == 0);
    sq_gguf_destroy(&g);
}

/* Tensors of each type, data streamed in 7-byte pieces, alignment 64. */
static void test_tensors(void)
{
    sq_gguf_writer_t *w = sq_gguf_writer_new(64);
    SQ_REQUIRE(w);
    SQ_CHECK(sq_gguf_writer_add_str(w, "general.architecture", "llama", 5) == 0);
    int64_t ne_a[] = { 5 }, ne_b[] = { 3, 4 }, ne_c[] = { 64, 3 }, ne_d[] = { 2, 1, 3, 2 };
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "a", SQ_DTYPE_F32, 1, ne_a) == 0);
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "b", SQ_DTYPE_F16, 2, ne_b) == 0);
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "c", SQ_DTYPE_Q8_0, 2, ne_c) == 0);
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "d", SQ_DTYPE_F32, 4, ne_d) == 0);
    /* refusals name the tensor */
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "a", SQ_DTYPE_F32, 1, ne_a) == SQ_EINVAL);
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "q", SQ_DTYPE_Q8_0, 1, ne_a) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "tensor q") != NULL);
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "t", 2, 1, ne_a) == SQ_EUNSUPPORTED);
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "z", SQ_DTYPE_F32, 5, ne_d) == SQ_EINVAL);
    int64_t zero[] = { 0 };
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "z", SQ_DTYPE_F32, 1, zero) == SQ_EINVAL);
    SQ_CHECK(sq_gguf_writer_tensor_bytes(w, 0) == 20);
    SQ_CHECK(sq_gguf_writer_tensor_bytes(w, 1) == 24);
    SQ_CHECK(sq_gguf_writer_tensor_bytes(w, 2) == 6 * 34);
    SQ_CHECK(sq_gguf_writer_tensor_bytes(w, 3) == 48);
    SQ_CHECK(sq_gguf_writer_tensor_bytes(w, 4) == 0);
    uint64_t total = 20 + 24 + 204 + 48;
    uint8_t *bytes = malloc(total);
    for (uint64_t i = 0; i < total; i++)
        bytes[i] = (uint8_t) (i * 37 + 11);
    /* F16 and Q8_0 bytes are arbitrary but must be valid numbers: keep
     * every fp16 exponent below all-ones (no NaN or Inf) */
    for (uint64_t i = 20; i < total; i += 2)
        bytes[i + 1] &= 0x3f;
    SQ_CHECK(sq_gguf_writer_write(w, bytes, 7) == SQ_ESTATE);   /* not open yet */
    SQ_REQUIRE(sq_gguf_writer_open(w, path) == 0);
    for (uint64_t off = 0; off < total; off += 7)
        SQ_CHECK(sq_gguf_writer_write(w, bytes + off, total - off < 7 ? total - off : 7) == 0);
    SQ_CHECK(sq_gguf_writer_write(w, bytes, 1) == SQ_EINVAL);
    SQ_CHECK(sq_gguf_writer_close(w) == 0);
    SQ_CHECK(sq_gguf_writer_pos(w, SQ_GGUF_POS_DATA, 0) % 64 == 0);
    SQ_CHECK(sq_gguf_writer_pos(w, SQ_GGUF_POS_TENSOR_DATA, 3) % 64 == 0);
    SQ_CHECK(sq_gguf_writer_pos(w, SQ_GGUF_POS_TENSOR_DATA, 9) == -1);
    sq_gguf_writer_destroy(&w);

    sq_gguf_t *g = sq_gguf_open(path);
    SQ_REQUIRE(g);
    SQ_CHECK(sq_gguf_alignment(g) == 64);
    SQ_REQUIRE(sq_gguf_n_tensors(g) == 4);
    const int64_t *shapes[] = { ne_a, ne_b, ne_c, ne_d };
    int dims[] = { 1, 2, 2, 4 }, dtypes[] = { SQ_DTYPE_F32, SQ_DTYPE_F16, SQ_DTYPE_Q8_0, SQ_DTYPE_F32 };
    uint64_t off = 0;
    for (int i = 0; i < 4; i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        SQ_CHECK(t->name[0] == "abcd"[i] && t->name[1] == '\0');
        SQ_CHECK(t->dtype == dtypes[i] && t->n_dims == dims[i]);
        for (int d = 0; d < dims[i]; d++)
            SQ_CHECK(t->ne[d] == shapes[i][d]);
        SQ_CHECK(t->offset % 64 == 0);
        SQ_CHECK(memcmp(t->data, bytes + off, t->size_bytes) == 0);
        off += t->size_bytes;
    }
    SQ_CHECK(off == total);
    sq_gguf_destroy(&g);
    free(bytes);
}

static void test_incomplete(void)
{
    sq_gguf_writer_t *w = sq_gguf_writer_new(32);
    SQ_REQUIRE(w);
    int64_t ne[] = { 8 };
    SQ_CHECK(sq_gguf_writer_add_tensor(w, "x", SQ_DTYPE_F32, 1, ne) == 0);
    SQ_REQUIRE(sq_gguf_writer_open(w, path) == 0);
    float v[4] = { 0 };
    SQ_CHECK(sq_gguf_writer_write(w, v, sizeof v) == 0);
    SQ_CHECK(sq_gguf_writer_close(w) == SQ_ETRUNC);
    SQ_CHECK(strstr(sq_error_detail(), "tensor x has 16 of 32 bytes") != NULL);
    SQ_CHECK(sq_gguf_writer_close(w) == SQ_ESTATE);
    sq_gguf_writer_destroy(&w);
    /* the reader refuses what was left */
    SQ_CHECK(sq_gguf_open(path) == NULL);
    SQ_CHECK(sq_gguf_writer_new(48) == NULL);
    w = sq_gguf_writer_new(0);
    SQ_CHECK(sq_gguf_writer_open(w, "/nonexistent-dir/x.gguf") < 0);
    SQ_CHECK(strstr(sq_error_detail(), "/nonexistent-dir/x.gguf") != NULL);
    sq_gguf_writer_destroy(&w);
}

int main(int argc, char **argv)
{
    snprintf(path, sizeof path, "%s/test_gguf_writer.gguf", argc > 1 ? argv[1] : ".");
    SQ_RUN(test_all_value_types);
    SQ_RUN(test_tensors);
    SQ_RUN(test_incomplete);
    remove(path);
    return sq_test_summary("gguf_writer");
}

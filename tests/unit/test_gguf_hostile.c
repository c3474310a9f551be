/*  test_gguf_hostile: the GGUF reader against broken and hostile files.
 *
 *  A valid file is written with sq_gguf_writer, which tells where each
 *  section lies; the test then cuts it at every section boundary and at
 *  every byte of the header, and corrupts counts, lengths, types, offsets
 *  and shapes at exact places. Each must give an error whose detail names
 *  the problem (the key or tensor where there is one), never a crash. A
 *  final loop flips random bytes: the file may then open or not, but
 *  every accessor must stay in bounds (build with SQ_SANITIZE=ON to have
 *  ASan/UBSan check that).
 *  Usage: test_gguf_hostile SCRATCH_DIR
 */
#include <stdlib.h>
#include <string.h>

#include "gguf_probe.h"
#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_gguf_writer.h"
#include "sq_test.h"

static char path[4096];
static uint8_t *base;            /* the valid file */
static size_t base_len;
static int64_t pos_kv[8], pos_info[4], pos_off[4], pos_tdata[4], pos_data;
static int64_t n_kv, n_tensors;

static const char *tokens[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81the", "a" };

/* Write the valid file and remember where everything is. */
static int s_make_base(void)
{
    sq_gguf_writer_t *w = sq_gguf_writer_new(32);
    float scores[5] = { 0, 0, 0, -1, -2 };
    int64_t ne_n[] = { 64 }, ne_h[] = { 8, 3 }, ne_q[] = { 64, 2 };
    int rc = w ? 0 : -1;
    if (rc == 0) rc = sq_gguf_writer_add_str(w, "general.architecture", "llama", 5);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.block_count", 1);
    if (rc == 0) rc = sq_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", tokens, NULL, 5);
    if (rc == 0) rc = sq_gguf_writer_add_array(w, "tokenizer.ggml.scores", SQ_GGUF_FLOAT32, scores, 5);
    if (rc == 0) rc = sq_gguf_writer_add_tensor(w, "norm.weight", SQ_DTYPE_F32, 1, ne_n);
    if (rc == 0) rc = sq_gguf_writer_add_tensor(w, "half.weight", SQ_DTYPE_F16, 2, ne_h);
    if (rc == 0) rc = sq_gguf_writer_add_tensor(w, "quant.weight", SQ_DTYPE_Q8_0, 2, ne_q);
    if (rc == 0) rc = sq_gguf_writer_open(w, path);
    static uint8_t zeros[512];
    for (int t = 0; t < 3 && rc == 0; t++)
        rc = sq_gguf_writer_write(w, zeros, sq_gguf_writer_tensor_bytes(w, t));
    if (rc == 0) rc = sq_gguf_writer_close(w);
    if (rc < 0) {
        sq_gguf_writer_destroy(&w);
        return -1;
    }
    n_kv = sq_gguf_writer_n_kv(w);
    n_tensors = sq_gguf_writer_n_tensors(w);
    for (int64_t i = 0; i < n_kv; i++)
        pos_kv[i] = sq_gguf_writer_pos(w, SQ_GGUF_POS_KV, i);
    for (int64_t i = 0; i < n_tensors; i++) {
        pos_info[i] = sq_gguf_writer_pos(w, SQ_GGUF_POS_TENSOR_INFO, i);
        pos_off[i] = sq_gguf_writer_pos(w, SQ_GGUF_POS_TENSOR_OFFSET, i);
        pos_tdata[i] = sq_gguf_writer_pos(w, SQ_GGUF_POS_TENSOR_DATA, i);
    }
    pos_data = sq_gguf_writer_pos(w, SQ_GGUF_POS_DATA, 0);
    base_len = (size_t) sq_gguf_writer_pos(w, SQ_GGUF_POS_END, 0);
    sq_gguf_writer_destroy(&w);
    FILE *f = fopen(path, "rb");
    base = malloc(base_len);
    size_t got = f && base ? fread(base, 1, base_len, f) : 0;
    if (f)
        fclose(f);
    return got == base_len ? 0 : -1;
}

static void s_write_file(const uint8_t *bytes, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(bytes, 1, len, f);
        fclose(f);
    }
}

/* The bytes must be refused with rc (0: any error) and a detail containing
 * want (NULL: any non-empty detail). */
static bool s_refused(const uint8_t *bytes, size_t len, int rc, const char *want)
{
    s_write_file(bytes, len);
    sq_error_clear();
    sq_gguf_t *g = sq_gguf_open(path);
    if (g) {
        fprintf(stderr, "accepted a bad file (%zu bytes, expected \"%s\")\n", len, want ? want : "");
        sq_gguf_destroy(&g);
        return false;
    }
    const char *detail = sq_error_detail();
    bool ok = detail[0] != '\0' && (rc == 0 || sq_error_code() == rc)
              && (!want || strstr(detail, want) != NULL);
    if (!ok)
        fprintf(stderr, "wanted rc %d \"%s\", got rc %d \"%s\"\n", rc, want ? want : "",
                sq_error_code(), detail);
    return ok;
}

/* A copy of base with a little-endian value of n bytes stored at pos. */
static bool s_patched_refused(int64_t pos, uint64_t value, int n, int rc, const char *want)
{
    uint8_t *copy = malloc(base_len);
    memcpy(copy, base, base_len);
    memcpy(copy + pos, &value, (size_t) n);
    bool ok = s_refused(copy, base_len, rc, want);
    free(copy);
    return ok;
}

static void test_base_is_valid(void)
{
    s_write_file(base, base_len);
    sq_gguf_t *g = sq_gguf_open(path);
    SQ_REQUIRE(g);
    SQ_CHECK(sq_gguf_n_kv(g) == n_kv && sq_gguf_n_tensors(g) == n_tensors);
    SQ_CHECK(sq_gguf_find_tensor(g, "quant.weight") != NULL);
    sq_gguf_destroy(&g);
}

static void test_truncated_at_sections(void)
{
    int64_t cuts[64];
    int n = 0;
    int64_t fixed[] = { 0, 3, 4, 8, 16, 24, pos_data, (int64_t) base_len - 1 };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        cuts[n++] = fixed[i];
    for (int64_t i = 0; i < n_kv; i++) {
        cuts[n++] = pos_kv[i];
        cuts[n++] = pos_kv[i] + 8;    /* inside the key, after its length */
    }
    for (int64_t i = 0; i < n_tensors; i++) {
        cuts[n++] = pos_info[i];
        cuts[n++] = pos_off[i];
        cuts[n++] = pos_tdata[i];
        cuts[n++] = pos_tdata[i] + 1;
    }
    for (int i = 0; i < n; i++)
        SQ_CHECK(s_refused(base, (size_t) cuts[i], 0, NULL));
    /* cut inside a tensor's data: the error names the tensor */
    SQ_CHECK(s_refused(base, (size_t) pos_tdata[2] + 5, SQ_ETRUNC, "quant.weight"));
}

static void test_truncated_everywhere(void)
{
    /* every byte of the header, metadata and tensor infos */
    for (size_t len = 0; len < (size_t) pos_data; len++)
        SQ_CHECK(s_refused(base, len, 0, NULL));
    srand(3);
    for (int r = 0; r < 100; r++)
        SQ_CHECK(s_refused(base, (size_t) pos_data + (size_t) rand() % (base_len - (size_t) pos_data),
                           0, NULL));
}

static void test_bad_header(void)
{
    SQ_CHECK(s_patched_refused(0, 0x46554746u, 4, SQ_EFORMAT, "magic"));
    SQ_CHECK(s_patched_refused(4, 2, 4, SQ_EUNSUPPORTED, "version 2"));
    SQ_CHECK(s_patched_refused(4, 4, 4, SQ_EUNSUPPORTED, "version 4"));
    /* counts: huge, or one more than there is */
    SQ_CHECK(s_patched_refused(16, UINT64_C(1) << 62, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(16, UINT64_MAX, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(16, (uint64_t) n_kv + 1, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(8, UINT64_C(1) << 62, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(8, UINT64_MAX, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(8, (uint64_t) n_tensors + 1, 8, 0, NULL));
}

/* kv i: [u64 key len][key][u32 type][value] */
static int64_t s_kv_type_pos(int64_t i)
{
    uint64_t key_len;
    memcpy(&key_len, base + pos_kv[i], 8);
    return pos_kv[i] + 8 + (int64_t) key_len;
}

static void test_bad_metadata(void)
{
    /* kv 0 is general.alignment (u32 32); kv 1 general.architecture (string);
     * kv 3 tokenizer.ggml.tokens (array of 5 strings); kv 4 scores */
    SQ_CHECK(s_patched_refused(pos_kv[1], UINT64_C(1) << 63, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(pos_kv[1], base_len, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(s_kv_type_pos(1), 99, 4, SQ_EFORMAT, "general.architecture"));
    SQ_CHECK(s_patched_refused(s_kv_type_pos(1) + 4, UINT64_C(1) << 40, 8, 0,
                               "general.architecture"));
    SQ_CHECK(s_patched_refused(s_kv_type_pos(1) + 4, UINT64_MAX, 8, 0, "general.architecture"));
    /* arrays: element type, count, a string inside */
    int64_t arr = s_kv_type_pos(3) + 4;
    SQ_CHECK(s_patched_refused(arr, 99, 4, SQ_EFORMAT, "tokenizer.ggml.tokens"));
    SQ_CHECK(s_patched_refused(arr + 4, UINT64_C(1) << 61, 8, 0, "tokenizer.ggml.tokens"));
    SQ_CHECK(s_patched_refused(arr + 4, UINT64_MAX, 8, 0, "tokenizer.ggml.tokens"));
    SQ_CHECK(s_patched_refused(arr + 12, UINT64_C(1) << 50, 8, 0, "tokenizer.ggml.tokens"));
    SQ_CHECK(s_patched_refused(s_kv_type_pos(4) + 8, UINT64_C(1) << 60, 8, 0,
                               "tokenizer.ggml.scores"));
    /* alignment: zero, not a power of two, wrong type */
    SQ_CHECK(s_patched_refused(s_kv_type_pos(0) + 4, 0, 4, SQ_EFORMAT, "general.alignment"));
    SQ_CHECK(s_patched_refused(s_kv_type_pos(0) + 4, 48, 4, SQ_EFORMAT, "general.alignment"));
    SQ_CHECK(s_patched_refused(s_kv_type_pos(0), SQ_GGUF_INT32, 4, SQ_EFORMAT, "general.alignment"));
    /* the same key twice: kv 0 (general.alignment) and kv 2
     * (llama.block_count) have 17-byte keys; give kv 0 kv 2's name */
    uint64_t l0, l2;
    memcpy(&l0, base + pos_kv[0], 8);
    memcpy(&l2, base + pos_kv[2], 8);
    SQ_REQUIRE(l0 == 17 && l2 == 17);
    uint8_t *copy = malloc(base_len);
    memcpy(copy, base, base_len);
    memcpy(copy + pos_kv[0] + 8, base + pos_kv[2] + 8, 17);
    SQ_CHECK(s_refused(copy, base_len, SQ_EFORMAT, "llama.block_count"));
    free(copy);
}

/* tensor info i: [u64 name len][name][u32 n_dims][u64 ne...][u32 type][u64 offset] */
static void test_bad_tensors(void)
{
    int64_t dims_pos = pos_off[1] - 4 - 16 - 4;   /* half.weight: 2 dims */
    SQ_CHECK(s_patched_refused(pos_info[1], UINT64_C(1) << 62, 8, 0, NULL));
    SQ_CHECK(s_patched_refused(dims_pos, 5, 4, SQ_EFORMAT, "half.weight"));
    SQ_CHECK(s_patched_refused(dims_pos, 0, 4, SQ_EFORMAT, "half.weight"));
    SQ_CHECK(s_patched_refused(pos_off[1] - 4, 2, 4, SQ_EUNSUPPORTED, "half.weight"));
    SQ_CHECK(s_patched_refused(pos_off[1] - 4, 9999, 4, SQ_EUNSUPPORTED, "half.weight"));
    /* shapes: huge, negative, overflowing, Q8_0 rows not whole blocks */
    SQ_CHECK(s_patched_refused(dims_pos + 12, UINT64_C(1) << 40, 8, 0, "half.weight"));
    SQ_CHECK(s_patched_refused(dims_pos + 12, UINT64_MAX, 8, 0, "half.weight"));
    SQ_CHECK(s_patched_refused(dims_pos + 4, UINT64_C(1) << 62, 8, 0, "half.weight"));
    SQ_CHECK(s_patched_refused(pos_off[2] - 4 - 16, 40, 8, SQ_EFORMAT, "quant.weight"));
    /* offsets: past the end, misaligned, wrapping around */
    SQ_CHECK(s_patched_refused(pos_off[2], (base_len + 31) / 32 * 32, 8, SQ_ETRUNC, "quant.weight"));
    SQ_CHECK(s_patched_refused(pos_off[2], (uint64_t) (pos_tdata[2] - pos_data) + 1, 8, SQ_EFORMAT,
                               "quant.weight"));
    SQ_CHECK(s_patched_refused(pos_off[2], UINT64_MAX - 31, 8, 0, "quant.weight"));
    SQ_CHECK(s_patched_refused(pos_off[0], UINT64_C(1) << 63, 8, 0, "norm.weight"));
}

static void test_random_corruption(void)
{
    uint8_t *copy = malloc(base_len);
    int opened = 0, refused = 0;
    srand(5);
    for (int r = 0; r < 3000; r++) {
        memcpy(copy, base, base_len);
        int n_flips = 1 + rand() % 4;
        for (int k = 0; k < n_flips; k++) {
            size_t at = (size_t) rand() % (size_t) pos_data;   /* header and infos */
            copy[at] = (uint8_t) (rand() % 3 == 0 ? 0xff : rand());
        }
        s_write_file(copy, base_len);
        sq_error_clear();
        sq_gguf_t *g = sq_gguf_open(path);
        if (g) {
            opened++;
            (void) gguf_probe(g);
            sq_gguf_destroy(&g);
        } else {
            refused++;
            SQ_CHECK(sq_error_detail()[0] != '\0');
        }
    }
    fprintf(stderr, "random corruption: %d opened, %d refused\n", opened, refused);
    SQ_CHECK(refused > 0);
    free(copy);
}

/* Nested arrays written raw: [u32 elem type][u64 n] headers, depth deep,
 * innermost an empty u8 array. */
static size_t s_nested(uint8_t *buf, int depth)
{
    size_t k = 0;
    for (int d = 0; d < depth; d++) {
        uint32_t et = d + 1 < depth ? SQ_GGUF_ARRAY : SQ_GGUF_UINT8;
        uint64_t n = d + 1 < depth ? 1 : 0;
        memcpy(buf + k, &et, 4);
        memcpy(buf + k + 4, &n, 8);
        k += 12;
    }
    return k;
}

static bool s_nested_opens(int depth)
{
    uint8_t payload[12 * 16];
    sq_gguf_writer_t *w = sq_gguf_writer_new(0);
    bool ok = w && sq_gguf_writer_add_raw(w, "t.nested", SQ_GGUF_ARRAY, payload,
                                          s_nested(payload, depth)) == 0
              && sq_gguf_writer_open(w, path) == 0 && sq_gguf_writer_close(w) == 0;
    sq_gguf_writer_destroy(&w);
    sq_gguf_t *g = ok ? sq_gguf_open(path) : NULL;
    ok = g != NULL;
    sq_gguf_destroy(&g);
    return ok;
}

static void test_nested_arrays(void)
{
    SQ_CHECK(s_nested_opens(1));
    SQ_CHECK(s_nested_opens(2));
    SQ_CHECK(!s_nested_opens(16));
    SQ_CHECK(strstr(sq_error_detail(), "t.nested") != NULL);
    /* many empty arrays in an array: linear work, accepted */
    size_t n = 10000, k = 0;
    uint8_t *payload = malloc(12 + 12 * n);
    uint32_t et = SQ_GGUF_ARRAY, inner = SQ_GGUF_UINT8;
    uint64_t zero = 0;
    memcpy(payload, &et, 4);
    memcpy(payload + 4, &n, 8);
    for (k = 12; k < 12 + 12 * n; k += 12) {
        memcpy(payload + k, &inner, 4);
        memcpy(payload + k + 4, &zero, 8);
    }
    sq_gguf_writer_t *w = sq_gguf_writer_new(0);
    SQ_CHECK(sq_gguf_writer_add_raw(w, "t.many", SQ_GGUF_ARRAY, payload, k) == 0);
    SQ_CHECK(sq_gguf_writer_open(w, path) == 0 && sq_gguf_writer_close(w) == 0);
    sq_gguf_writer_destroy(&w);
    sq_gguf_t *g = sq_gguf_open(path);
    SQ_CHECK(g != NULL);
    uint32_t got_et;
    uint64_t got_n;
    SQ_CHECK(g && sq_gguf_kv_arr(g, 0, &got_et, &got_n) == 0 && got_et == SQ_GGUF_ARRAY
             && got_n == n);
    sq_gguf_destroy(&g);
    free(payload);
}

static void test_not_a_file(void)
{
    sq_error_clear();
    SQ_CHECK(sq_gguf_open("/nonexistent/model.gguf") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "/nonexistent/model.gguf") != NULL);
    SQ_CHECK(sq_gguf_open("/") == NULL);
    SQ_CHECK(sq_error_detail()[0] != '\0');
}

int main(int argc, char **argv)
{
    snprintf(path, sizeof path, "%s/test_gguf_hostile.gguf", argc > 1 ? argv[1] : ".");
    if (s_make_base() < 0) {
        fprintf(stderr, "cannot write the base file %s: %s\n", path, sq_error_detail());
        return 1;
    }
    SQ_RUN(test_base_is_valid);
    SQ_RUN(test_truncated_at_sections);
    SQ_RUN(test_truncated_everywhere);
    SQ_RUN(test_bad_header);
    SQ_RUN(test_bad_metadata);
    SQ_RUN(test_bad_tensors);
    SQ_RUN(test_random_corruption);
    SQ_RUN(test_nested_arrays);
    SQ_RUN(test_not_a_file);
    remove(path);
    free(base);
    return sq_test_summary("gguf_hostile");
}

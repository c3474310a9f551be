/*  test_gguf: the GGUF reader on the bundled models and on hostile files.
 *
 *  Hostile files are built here byte by byte (a small valid file whose
 *  field positions are recorded, then patched one field at a time), so the
 *  test does not depend on the writer it would otherwise be checking.
 *  Every case must fail with the expected code and a detail naming the
 *  field, and never crash (ASan builds run the same test).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_engine.h"
#include "sq_gguf.h"
#include "sq_test.h"
#include "test_model_util.h"

static const char *s_model_dir;
static char s_tmp[256];

/* ---- a tiny byte builder ---- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} s_buf_t;

static void s_put(s_buf_t *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static size_t s_u32(s_buf_t *b, uint32_t v) { size_t at = b->n; s_put(b, &v, 4); return at; }
static size_t s_u64(s_buf_t *b, uint64_t v) { size_t at = b->n; s_put(b, &v, 8); return at; }
static size_t s_str(s_buf_t *b, const char *s)
{
    size_t at = s_u64(b, strlen(s));
    s_put(b, s, strlen(s));
    return at;
}

/* Positions of the fields a case patches. */
typedef struct {
    size_t n_tensors, n_kv, key0_len, val0_type, align_val, arr_type, arr_count, str1_len,
        t_ndims, t_ne0, t_type, t_offset, data;
} s_fields_t;

/* Valid file: 3 kvs (string, uint32 alignment, string array), 2 F32
 * tensors [32, 2] and [8]. */
static s_buf_t s_build(s_fields_t *f)
{
    s_buf_t b = {0};
    s_put(&b, "GGUF", 4);
    s_u32(&b, 3);
    f->n_tensors = s_u64(&b, 2);
    f->n_kv = s_u64(&b, 3);
    f->key0_len = s_str(&b, "general.architecture");
    f->val0_type = s_u32(&b, SQ_GGUF_STRING);
    s_str(&b, "llama");
    s_str(&b, "general.alignment");
    s_u32(&b, SQ_GGUF_UINT32);
    f->align_val = s_u32(&b, 32);
    s_str(&b, "tokenizer.ggml.tokens");
    s_u32(&b, SQ_GGUF_ARRAY);
    f->arr_type = s_u32(&b, SQ_GGUF_STRING);
    f->arr_count = s_u64(&b, 2);
    s_str(&b, "a");
    f->str1_len = s_str(&b, "bc");
    s_str(&b, "w");
    f->t_ndims = s_u32(&b, 2);
    f->t_ne0 = s_u64(&b, 32);
    s_u64(&b, 2);
    f->t_type = s_u32(&b, SQ_DTYPE_F32);
    f->t_offset = s_u64(&b, 0);
    s_str(&b, "v");
    s_u32(&b, 1);
    s_u64(&b, 8);
    s_u32(&b, SQ_DTYPE_F32);
    s_u64(&b, 256);
    while (b.n % 32)
        s_put(&b, "", 1);
    f->data = b.n;
    for (int i = 0; i < 64 + 8; i++) {
        float v = (float)i;
        s_put(&b, &v, 4);
    }
    return b;
}

static void s_write(const void *p, size_t n)
{
    FILE *fp = fopen(s_tmp, "wb");
    fwrite(p, 1, n, fp);
    fclose(fp);
}

/* Open the bytes; expect failure with rc and a detail containing needle. */
static void s_expect_fail(const s_buf_t *b, int rc, const char *needle)
{
    s_write(b->p, b->n);
    sq_error_clear();
    sq_gguf_t *g = sq_gguf_open(s_tmp);
    SQ_CHECK(g == NULL);
    SQ_CHECK(sq_error_code() == rc);
    if (!strstr(sq_error_detail(), needle)) {
        fprintf(stderr, "   detail \"%s\" lacks \"%s\"\n", sq_error_detail(), needle);
        SQ_CHECK(!"detail names the problem");
    }
    sq_gguf_destroy(&g);
}

static void s_patch64(s_buf_t *b, size_t at, uint64_t v) { memcpy(b->p + at, &v, 8); }
static void s_patch32(s_buf_t *b, size_t at, uint32_t v) { memcpy(b->p + at, &v, 4); }

static void test_built_file_reads_back(void)
{
    s_fields_t f;
    s_buf_t b = s_build(&f);
    s_write(b.p, b.n);
    sq_gguf_t *g = sq_gguf_open(s_tmp);
    SQ_REQUIRE(g);
    SQ_CHECK(sq_gguf_n_kv(g) == 3 && sq_gguf_n_tensors(g) == 2);
    sq_gguf_str_t s;
    SQ_CHECK(sq_gguf_get_str(g, "general.architecture", &s) == 0 && sq_gguf_str_eq(s, "llama"));
    int64_t k = sq_gguf_find_key(g, "tokenizer.ggml.tokens");
    SQ_CHECK(sq_gguf_kv_arr_str(g, k, 1, &s) == 0 && sq_gguf_str_eq(s, "bc"));
    SQ_CHECK(sq_gguf_kv_arr_str(g, k, 2, &s) == SQ_EINVAL);
    const sq_gguf_tensor_t *t = sq_gguf_find_tensor(g, "v");
    SQ_REQUIRE(t);
    SQ_CHECK(((const float *)t->data)[3] == 67.0f);
    SQ_CHECK(sq_gguf_find_tensor(g, "nope") == NULL);
    uint32_t u;
    SQ_CHECK(sq_gguf_get_u32(g, "missing", &u) == SQ_ENOTFOUND);
    SQ_CHECK(sq_gguf_get_u32(g, "general.architecture", &u) == SQ_EFORMAT);
    SQ_CHECK(strstr(sq_error_detail(), "general.architecture") != NULL);
    sq_gguf_destroy(&g);
    sq_gguf_destroy(&g);    /* safe twice */
    free(b.p);
}

static void test_corrupted_fields(void)
{
    struct {
        const char *what;
        int field;      /* index into s_fields_t as size_t[] */
        int width;
        uint64_t value;
        int rc;
        const char *needle;
    } cases[] = {
        {"huge n_tensors", 0, 8, UINT64_MAX / 2, SQ_EFORMAT, "tensors cannot fit"},
        {"huge n_kv", 1, 8, 1ull << 40, SQ_EFORMAT, "metadata entries cannot fit"},
        {"huge key length", 2, 8, UINT64_MAX - 3, SQ_ETRUNC, "metadata key 0"},
        {"bad value type", 3, 4, 77, SQ_EFORMAT, "general.architecture: value type 77"},
        {"alignment 3", 4, 4, 3, SQ_EFORMAT, "general.alignment"},
        {"bad element type", 5, 4, 99, SQ_EFORMAT, "tokenizer.ggml.tokens: array element type"},
        {"huge array count", 6, 8, 1ull << 60, SQ_ETRUNC, "tokenizer.ggml.tokens"},
        {"huge string in array", 7, 8, 1ull << 62, SQ_ETRUNC, "tokenizer.ggml.tokens"},
        {"five dims", 8, 4, 5, SQ_EFORMAT, "tensor w: 5 dimensions"},
        {"ne overflow", 9, 8, 1ull << 62, SQ_EFORMAT, "tensor w:"},
        {"unsupported type", 10, 4, 12, SQ_EUNSUPPORTED, "tensor w: ggml type 12"},
        {"negative type", 10, 4, 0x80000000u, SQ_EUNSUPPORTED, "tensor w: ggml type"},
        {"misaligned offset", 11, 8, 4, SQ_EFORMAT, "tensor w: offset 4 not aligned"},
        {"offset past end", 11, 8, 1ull << 40, SQ_ETRUNC, "tensor w: data"},
        {"offset wraps", 11, 8, UINT64_MAX - 31, SQ_ETRUNC, "tensor w: data"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_fields_t f;
        s_buf_t b = s_build(&f);
        size_t at = ((size_t *)&f)[cases[i].field];
        if (cases[i].width == 8)
            s_patch64(&b, at, cases[i].value);
        else
            s_patch32(&b, at, (uint32_t)cases[i].value);
        fprintf(stderr, "   case %s\n", cases[i].what);
        s_expect_fail(&b, cases[i].rc, cases[i].needle);
        free(b.p);
    }
}

/* The inspector's open (sq_gguf_open_any) takes tensors of any ggml type:
 * a known one sized by its blocks and checked like the engine's, an
 * unknown number without size or data; a row that is no whole block is
 * still malformed. sq_gguf_open refuses them naming the type. */
static void test_any_type(void)
{
    s_fields_t f;
    s_buf_t b = s_build(&f);
    s_patch32(&b, f.t_type, 2);   /* Q4_0: [32, 2] is 2 blocks of 18 bytes */
    s_expect_fail(&b, SQ_EUNSUPPORTED, "tensor w: ggml type 2 (Q4_0) not supported by the engine");
    sq_gguf_t *g = sq_gguf_open_any(s_tmp);
    SQ_REQUIRE(g);
    const sq_gguf_tensor_t *t = sq_gguf_find_tensor(g, "w");
    SQ_CHECK(t && t->dtype == 2 && t->size_bytes == 36 && t->data != NULL);
    SQ_CHECK(sq_gguf_find_tensor(g, "v")->dtype == SQ_DTYPE_F32);
    sq_gguf_destroy(&g);
    const char *name;
    int64_t block;
    size_t bytes;
    SQ_CHECK(sq_gguf_ggml_type(12, &name, &block, &bytes) && !strcmp(name, "Q4_K") &&
             block == 256 && bytes == 144);
    SQ_CHECK(sq_gguf_ggml_type(30, &name, &block, &bytes) && !strcmp(name, "BF16") &&
             block == 1 && bytes == 2);
    SQ_CHECK(!sq_gguf_ggml_type(4, &name, &block, &bytes) && !name && !block && !bytes);
    SQ_CHECK(!sq_gguf_ggml_type(4000, NULL, NULL, NULL));
    /* an unknown number: no size, no data; the offset still checked */
    s_patch32(&b, f.t_type, 77);
    s_expect_fail(&b, SQ_EUNSUPPORTED, "tensor w: ggml type 77 not supported by the engine");
    s_write(b.p, b.n);
    SQ_REQUIRE((g = sq_gguf_open_any(s_tmp)) != NULL);
    t = sq_gguf_find_tensor(g, "w");
    SQ_CHECK(t && t->dtype == 77 && t->size_bytes == 0 && t->data == NULL && t->n_elements == 64);
    sq_gguf_destroy(&g);
    s_patch64(&b, f.t_offset, 1ull << 40);
    s_write(b.p, b.n);
    SQ_CHECK(sq_gguf_open_any(s_tmp) == NULL && sq_error_code() == SQ_ETRUNC);
    free(b.p);
    /* Q4_K: a row of 32 is not a whole block of 256 */
    b = s_build(&f);
    s_patch32(&b, f.t_type, 12);
    s_write(b.p, b.n);
    SQ_CHECK(sq_gguf_open_any(s_tmp) == NULL && sq_error_code() == SQ_EFORMAT);
    SQ_CHECK(strstr(sq_error_detail(), "tensor w: Q4_K row of 32 is not a multiple of 256"));
    free(b.p);
}

static void test_q8_row_and_duplicates(void)
{
    s_fields_t f;
    s_buf_t b = s_build(&f);
    s_patch32(&b, f.t_type, SQ_DTYPE_Q8_0);
    s_patch64(&b, f.t_ne0, 33);
    s_expect_fail(&b, SQ_EFORMAT, "tensor w: Q8_0 row of 33");
    free(b.p);
    /* rename tensor "v" to "w": a duplicate */
    b = s_build(&f);
    uint8_t *v = memchr(b.p + f.t_offset + 8, 'v', b.n - f.t_offset - 8);
    SQ_REQUIRE(v);
    *v = 'w';
    s_expect_fail(&b, SQ_EFORMAT, "tensor w appears twice");
    free(b.p);
    b = s_build(&f);
    memcpy(b.p + f.key0_len + 8, "general.alignment\0\0\0", 20);
    s_patch64(&b, f.key0_len, 17);   /* now "general.alignment" twice, value spills */
    s_expect_fail(&b, SQ_EFORMAT, "general.alignment");
    free(b.p);
    b = s_build(&f);
    memcpy(b.p, "GGUG", 4);
    s_expect_fail(&b, SQ_EFORMAT, "bad magic");
    s_patch32(&b, 0, 0x46554747);   /* "GGUF" */
    s_patch32(&b, 4, 2);
    s_expect_fail(&b, SQ_EUNSUPPORTED, "version 2");
    free(b.p);
}

/* Every prefix of the built file fails cleanly; only the whole opens. */
static void test_every_truncation(void)
{
    s_fields_t f;
    s_buf_t b = s_build(&f);
    int n_ok = 0;
    for (size_t n = 0; n <= b.n; n++) {
        s_write(b.p, n);
        sq_gguf_t *g = sq_gguf_open(s_tmp);
        if (g) {
            n_ok++;
            SQ_CHECK(n == b.n);
        } else {
            SQ_CHECK(sq_error_detail()[0] != '\0');
        }
        sq_gguf_destroy(&g);
    }
    SQ_CHECK(n_ok == 1);
    free(b.p);
}

static void test_bundled_models(void)
{
    const char *names[] = {"stories260K.gguf", "stories260K-q8_0.gguf"};
    for (int m = 0; m < 2; m++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", s_model_dir, names[m]);
        sq_gguf_t *g = sq_gguf_open(path);
        if (!g)
            fprintf(stderr, "   %s\n", sq_error_detail());
        SQ_REQUIRE(g);
        uint32_t dim, ff, ftype;
        sq_gguf_str_t arch;
        SQ_CHECK(sq_gguf_get_str(g, "general.architecture", &arch) == 0 &&
                 sq_gguf_str_eq(arch, "llama"));
        SQ_CHECK(sq_gguf_get_u32(g, "llama.embedding_length", &dim) == 0 && dim == 64);
        SQ_CHECK(sq_gguf_get_u32(g, "llama.feed_forward_length", &ff) == 0 && ff == 172);
        SQ_CHECK(sq_gguf_get_u32(g, "general.file_type", &ftype) == 0 && ftype == (m ? 7u : 0u));
        int64_t k = sq_gguf_find_key(g, "tokenizer.ggml.tokens");
        uint32_t et;
        uint64_t n;
        sq_gguf_str_t s;
        SQ_CHECK(sq_gguf_kv_arr(g, k, &et, &n) == 0 && et == SQ_GGUF_STRING && n == 512);
        SQ_CHECK(sq_gguf_kv_arr_str(g, k, 1, &s) == 0 && sq_gguf_str_eq(s, "<s>"));
        SQ_CHECK(sq_gguf_kv_arr_str(g, k, 13, &s) == 0 && sq_gguf_str_eq(s, "<0x0A>"));
        SQ_CHECK(sq_gguf_n_tensors(g) == 2 + 9 * 5);
        const sq_gguf_tensor_t *t = sq_gguf_find_tensor(g, "blk.4.ffn_down.weight");
        SQ_REQUIRE(t);
        SQ_CHECK(t->dtype == SQ_DTYPE_F32 && t->ne[0] == 172 && t->ne[1] == 64);
        t = sq_gguf_find_tensor(g, "blk.0.attn_q.weight");
        SQ_REQUIRE(t);
        SQ_CHECK(t->dtype == (m ? SQ_DTYPE_Q8_0 : SQ_DTYPE_F32) && t->n_elements == 64 * 64);
        SQ_CHECK((uintptr_t)t->data % 32 == 0);
        SQ_CHECK(sq_gguf_find_tensor(g, "output.weight") == NULL);
        sq_gguf_destroy(&g);
    }
}

/* Cut the real file inside its header at many points and inside its data:
 * every cut fails with an error, none crashes. */
static void test_bundled_truncated(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/stories260K-q8_0.gguf", s_model_dir);
    size_t n;
    char *p = tm_slurp(path, &n);
    SQ_REQUIRE(p);
    int n_fail = 0, n_cuts = 0;
    for (size_t cut = 0; cut < n; cut += (cut < 12000 ? 29 : 9973)) {
        s_write(p, cut);
        sq_gguf_t *g = sq_gguf_open(s_tmp);
        n_cuts++;
        n_fail += g == NULL;
        sq_gguf_destroy(&g);
    }
    SQ_CHECK(n_fail == n_cuts);
    free(p);
}

/* Random byte changes in the real file's header (seeded, so a failure
 * replays): the reader refuses or accepts; what it accepts the engine
 * then loads and runs or refuses with a detail. Never a crash. */
static void test_bundled_mutations(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/stories260K.gguf", s_model_dir);
    size_t n;
    char *orig = tm_slurp(path, &n);
    sq_gguf_t *g = sq_gguf_open(path);
    SQ_REQUIRE(orig && g);
    const uint64_t header = sq_gguf_data_offset(g);
    sq_gguf_destroy(&g);
    char *p = malloc(n);
    uint64_t rng = 42;
    int n_open = 0, n_load = 0;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(p, orig, n);
        for (int k = 0; k < 1 + iter % 3; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            p[(rng >> 33) % header] = (char)(rng >> 17);
        }
        s_write(p, n);
        sq_error_clear();
        g = sq_gguf_open(s_tmp);
        if (!g) {
            SQ_CHECK(sq_error_detail()[0] != '\0');
            continue;
        }
        n_open++;
        sq_gguf_destroy(&g);
        sq_engine_params_t ep = {.model_path = s_tmp, .n_threads = 1, .n_ctx = 8};
        sq_engine_t *e = sq_engine_new(&ep);
        if (e) {
            n_load++;
            float logits[4096];
            sq_batch_entry_t b = {.slot = 0, .token = 1, .pos = 0, .want_logits = true};
            if (sq_model_hparams(sq_engine_model(e))->n_vocab <= 4096)
                SQ_CHECK(sq_model_forward(sq_engine_model(e), &b, 1, logits) == 0);
        } else {
            SQ_CHECK(sq_error_detail()[0] != '\0');
        }
        sq_engine_destroy(&e);
    }
    fprintf(stderr, "   300 mutated headers: %d opened, %d loaded as models\n", n_open, n_load);
    free(p);
    free(orig);
}

int main(int argc, char **argv)
{
    s_model_dir = argc > 1 ? argv[1] : "models";
    snprintf(s_tmp, sizeof s_tmp, "/tmp/test_gguf_%d.gguf", (int)getpid());
    SQ_RUN(test_built_file_reads_back);
    SQ_RUN(test_corrupted_fields);
    SQ_RUN(test_q8_row_and_duplicates);
    SQ_RUN(test_any_type);
    SQ_RUN(test_every_truncation);
    SQ_RUN(test_bundled_models);
    SQ_RUN(test_bundled_truncated);
    SQ_RUN(test_bundled_mutations);
    unlink(s_tmp);
    return sq_test_summary("gguf");
}

/*  test_shardq_model: the shardq-model binary, run as a real process.
 *
 *  Checks exit codes and messages of the CLI, that `random` writes models
 *  the engine's reader and tokenizer load with the asked shape (seeded,
 *  reproducible), and that `quantize` of the bundled F32 model matches the
 *  bundled Q8_0 file tensor by tensor.
 *  Usage: test_shardq_model SHARDQ_MODEL MODELS_DIR SCRATCH_DIR
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "sq_cpu_kernels.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_gguf_writer.h"
#include "sq_test.h"
#include "sq_tokenizer.h"
#include "sq_version.h"

static const char *tool, *models, *scratch;
static char output[1 << 16];

/* Run the tool with args (a shell word list), stdout and stderr captured
 * into output. Returns the exit code, or -1 when it did not exit. */
static int s_run(const char *args)
{
    char cmd[8192];
    if (snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", tool, args) >= (int)sizeof cmd)
        return -1; /* a command cut short would be another command */
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(output, 1, sizeof output - 1, p);
    output[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *s_path(const char *name)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", scratch, name);
    return buf[k];
}

static uint32_t s_u32(const sq_gguf_t *g, const char *key)
{
    uint32_t v = 0;
    return sq_gguf_get_u32(g, key, &v) == 0 ? v : 0xffffffffu;
}

static bool s_same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* In the GGUF file at path, give tensor name ggml type number type (its
 * info's u32 after the name, n_dims and the dims). 0 or -1. */
static int s_retype(const char *path, const char *name, uint32_t type)
{
    FILE *f = fopen(path, "r+b");
    static char buf[1 << 16];
    const size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    char key[64];
    const uint64_t len = strlen(name);
    memcpy(key, &len, 8);
    memcpy(key + 8, name, len);
    long at = -1;
    for (size_t i = 0; i + 8 + len <= n && at < 0; i++)
        if (memcmp(buf + i, key, 8 + len) == 0)
            at = (long)(i + 8 + len);
    uint32_t n_dims = 0;
    if (at >= 0)
        memcpy(&n_dims, buf + at, 4);
    const bool ok = at >= 0 && fseek(f, at + 4 + 8 * (long)n_dims, SEEK_SET) == 0 &&
                    fwrite(&type, 4, 1, f) == 1;
    if (f)
        fclose(f);
    return ok ? 0 : -1;
}

/* info on a file with tensors the engine does not run (Q4_0, Q4_K, BF16,
 * a type number ggml's table lacks): every tensor shown by its type's
 * name, sizes where the type's block is known, and a line saying the
 * engine cannot load it; exit 0 (it refused the whole file:
 * "ggml type 12 not supported"). The engine still refuses it. */
static void test_info_foreign_types(void)
{
    const char *path = s_path("foreign.gguf");
    sq_gguf_writer_t *w = sq_gguf_writer_new(32);
    SQ_REQUIRE(w);
    SQ_CHECK(sq_gguf_writer_add_str(w, "general.architecture", "llama", 5) == 0);
    const char *names[] = {"f", "q4_0", "q4_k", "bf16", "odd"};
    const int64_t ne[][2] = {{64, 2}, {64, 2}, {256, 2}, {64, 2}, {64, 1}};
    for (int i = 0; i < 5; i++)
        SQ_CHECK(sq_gguf_writer_add_tensor(w, names[i], SQ_DTYPE_F32, 2, ne[i]) == 0);
    SQ_REQUIRE(sq_gguf_writer_open(w, path) == 0);
    static const float zeros[512];
    for (int i = 0; i < 5; i++)
        SQ_CHECK(sq_gguf_writer_write(w, zeros, (size_t)(ne[i][0] * ne[i][1]) * 4) == 0);
    SQ_REQUIRE(sq_gguf_writer_close(w) == 0);
    sq_gguf_writer_destroy(&w);
    SQ_REQUIRE(s_retype(path, "q4_0", 2) == 0 && s_retype(path, "q4_k", 12) == 0 &&
               s_retype(path, "bf16", 30) == 0 && s_retype(path, "odd", 50) == 0);
    char args[8192];
    snprintf(args, sizeof args, "info '%s'", path);
    SQ_CHECK(s_run(args) == 0);
    fputs(output, stderr);
    SQ_CHECK(strstr(output, "general.architecture") != NULL);
    SQ_CHECK(strstr(output, "\n  q4_0                             Q4_0     [64, 2]          "
                            "                72          512\n") != NULL);
    SQ_CHECK(strstr(output, "\n  q4_k                             Q4_K     [256, 2]         "
                            "               288         1024\n") != NULL);
    SQ_CHECK(strstr(output, "\n  bf16                             BF16     [64, 2]          "
                            "               256         3072\n") != NULL);
    SQ_CHECK(strstr(output, "\n  odd                              type 50  [64, 1]          "
                            "                 ?         3584\n") != NULL);
    SQ_CHECK(strstr(output, "total: 960 parameters, 1128 bytes of tensor data (F32: 1 tensor 512 "
                            "bytes, Q4_0: 1 tensor 72 bytes, Q4_K: 1 tensor 288 bytes, BF16: 1 "
                            "tensor 256 bytes, type 50: 1 tensor, size unknown)\n") != NULL);
    SQ_CHECK(strstr(output, "the engine cannot load this file: 4 tensors are of types it does not "
                            "run, the first q4_0 (Q4_0); it runs F32, F16 and Q8_0") != NULL);
    /* the engine's own reader still refuses it, naming the type */
    sq_gguf_t *g = sq_gguf_open(path);
    SQ_CHECK(g == NULL);
    sq_gguf_destroy(&g);
    SQ_CHECK(strstr(sq_error_detail(), "tensor q4_0: ggml type 2 (Q4_0) not supported by the "
                                       "engine (F32, F16, Q8_0)") != NULL);
    remove(path);
}

static void test_cli(void)
{
    SQ_CHECK(s_run("--version") == 0 && strstr(output, SQ_VERSION) != NULL);
    SQ_CHECK(s_run("--help") == 0 && strstr(output, "quantize IN OUT q8_0") != NULL);
    SQ_CHECK(s_run("") == 2);
    SQ_CHECK(s_run("frobnicate") == 2 && strstr(output, "unknown command frobnicate") != NULL);
    SQ_CHECK(s_run("info") == 2);
    SQ_CHECK(s_run("random x.gguf") == 2 && strstr(output, "--shape") != NULL);
    SQ_CHECK(s_run("random --shape gpt-9 x.gguf") == 2 && strstr(output, "gpt-9") != NULL);
    SQ_CHECK(s_run("random --shape tiny-gqa --type q4_0 x.gguf") == 2 && strstr(output, "q4_0"));
    SQ_CHECK(s_run("random --shape tiny-gqa --dim -4 x.gguf") == 2 && strstr(output, "--dim"));
    SQ_CHECK(s_run("random --shape tiny-gqa --bogus x.gguf") == 2 && strstr(output, "--bogus"));
    SQ_CHECK(s_run("quantize a b q4_0") == 2 && strstr(output, "q4_0") != NULL);
    SQ_CHECK(s_run("info /nonexistent/model.gguf") == 1
             && strstr(output, "/nonexistent/model.gguf") != NULL);
    /* the system's reason once, not twice */
    const char *why = strstr(output, "No such file or directory");
    SQ_CHECK(why && !strstr(why + 1, "No such file or directory"));
    char args[8192];
    snprintf(args, sizeof args, "info '%s/README.md'", models);
    SQ_CHECK(s_run(args) == 1 && strstr(output, "magic") != NULL);
    /* a shape that cannot exist: the message says why, nothing is left behind */
    snprintf(args, sizeof args, "random --shape tiny-gqa --heads 5 '%s'", s_path("bad.gguf"));
    SQ_CHECK(s_run(args) == 1 && strstr(output, "5 heads") != NULL);
    SQ_CHECK(fopen(s_path("bad.gguf"), "rb") == NULL);
    snprintf(args, sizeof args, "random --shape tiny-gqa --kv-heads 3 '%s'", s_path("bad.gguf"));
    SQ_CHECK(s_run(args) == 1 && strstr(output, "kv heads") != NULL);
    snprintf(args, sizeof args, "random --shape tiny-gqa /nonexistent/dir/x.gguf");
    SQ_CHECK(s_run(args) == 1 && strstr(output, "/nonexistent/dir/x.gguf") != NULL);
}

/* A random model loads with its shape, and its vocabulary round-trips. */
static void s_check_random(const char *file, int64_t dim, int64_t layers, int64_t heads,
                           int64_t kv_heads, int64_t ffn, int64_t vocab, int matrix_dtype)
{
    sq_gguf_t *g = sq_gguf_open(file);
    SQ_REQUIRE(g);
    SQ_CHECK(s_u32(g, "llama.embedding_length") == dim);
    SQ_CHECK(s_u32(g, "llama.block_count") == layers);
    SQ_CHECK(s_u32(g, "llama.attention.head_count") == heads);
    SQ_CHECK(s_u32(g, "llama.attention.head_count_kv") == kv_heads);
    SQ_CHECK(s_u32(g, "llama.feed_forward_length") == ffn);
    SQ_CHECK(s_u32(g, "llama.rope.dimension_count") == dim / heads);
    SQ_CHECK(sq_gguf_n_tensors(g) == 3 + 9 * layers);
    const sq_gguf_tensor_t *t = sq_gguf_find_tensor(g, "blk.0.attn_k.weight");
    SQ_REQUIRE(t);
    SQ_CHECK(t->ne[0] == dim && t->ne[1] == dim / heads * kv_heads && t->dtype == matrix_dtype);
    t = sq_gguf_find_tensor(g, "output.weight");
    SQ_CHECK(t && t->ne[0] == dim && t->ne[1] == vocab);
    t = sq_gguf_find_tensor(g, "blk.0.ffn_norm.weight");
    SQ_REQUIRE(t && t->dtype == SQ_DTYPE_F32 && t->n_dims == 1);
    SQ_CHECK(((const float *) t->data)[0] == 1.0f);
    /* weights are small and not all equal */
    t = sq_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    SQ_REQUIRE(t && t->ne[0] == ffn && t->ne[1] == dim);
    float row[4096];
    SQ_REQUIRE(ffn <= 4096);
    sq_cpu_dequantize_row(t->dtype, t->data, row, ffn);
    float amax = 0, sum = 0;
    for (int64_t i = 0; i < ffn; i++) {
        amax = fmaxf(amax, fabsf(row[i]));
        sum += fabsf(row[i]);
    }
    SQ_CHECK(amax > 0 && amax <= 1.0f / sqrtf((float) ffn) * 1.01f && sum / ffn > amax / 10);
    sq_tokenizer_t *tok = sq_tokenizer_from_gguf(g);
    SQ_REQUIRE(tok);
    SQ_CHECK(sq_tokenizer_n_vocab(tok) == vocab);
    const char *text = "Revenue \xe8\x90\xa5\xe6\x94\xb6 rose 12%\n";
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    char *back = NULL;
    SQ_CHECK(sq_tokenizer_encode(tok, text, strlen(text), true, &ids, &n) == 0);
    SQ_CHECK(sq_tokenizer_decode(tok, ids, n, &back, &len) == 0);
    SQ_CHECK(back && len == strlen(text) && memcmp(back, text, len) == 0);
    free(ids);
    free(back);
    sq_tokenizer_destroy(&tok);
    sq_gguf_destroy(&g);
}

static void test_random(void)
{
    char args[8192];
    snprintf(args, sizeof args, "random --shape tiny-gqa --seed 7 '%s'", s_path("a.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    s_check_random(s_path("a.gguf"), 64, 2, 8, 2, 128, 300, SQ_DTYPE_F32);
    /* same seed, same bytes; another seed, other bytes */
    snprintf(args, sizeof args, "random --shape=tiny-gqa --seed=7 '%s'", s_path("b.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    SQ_CHECK(s_same_file(s_path("a.gguf"), s_path("b.gguf")));
    snprintf(args, sizeof args, "random --shape tiny-gqa --seed 8 '%s'", s_path("b.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    SQ_CHECK(!s_same_file(s_path("a.gguf"), s_path("b.gguf")));
    /* overrides: one KV head for 4 query heads (replication under TP) */
    snprintf(args, sizeof args, "random --shape tiny-gqa --dim 96 --heads 4 --kv-heads 1 "
             "--layers 3 --ffn 160 --vocab 512 --type q8_0 '%s'", s_path("c.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    s_check_random(s_path("c.gguf"), 96, 3, 4, 1, 160, 512, SQ_DTYPE_Q8_0);
    snprintf(args, sizeof args, "random --shape tiny-gqa --type f16 '%s'", s_path("d.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    s_check_random(s_path("d.gguf"), 64, 2, 8, 2, 128, 300, SQ_DTYPE_F16);
    /* tied: no output.weight */
    snprintf(args, sizeof args, "random --shape tiny-gqa --tied '%s'", s_path("e.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    sq_gguf_t *g = sq_gguf_open(s_path("e.gguf"));
    SQ_REQUIRE(g);
    SQ_CHECK(sq_gguf_find_tensor(g, "output.weight") == NULL);
    sq_gguf_destroy(&g);
    /* F32 and Q8_0 of one seed hold the same weights: quantize(F32) == Q8_0 */
    snprintf(args, sizeof args, "random --shape tiny-gqa --seed 7 --type q8_0 '%s'",
             s_path("b.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    snprintf(args, sizeof args, "quantize '%s' '%s' q8_0", s_path("a.gguf"), s_path("d.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    sq_gguf_t *qa = sq_gguf_open(s_path("d.gguf")), *qb = sq_gguf_open(s_path("b.gguf"));
    SQ_REQUIRE(qa && qb && sq_gguf_n_tensors(qa) == sq_gguf_n_tensors(qb));
    for (int64_t i = 0; i < sq_gguf_n_tensors(qa); i++) {
        const sq_gguf_tensor_t *ta = sq_gguf_tensor(qa, i), *tb = sq_gguf_tensor(qb, i);
        SQ_CHECK(ta->dtype == tb->dtype && ta->size_bytes == tb->size_bytes
                 && memcmp(ta->data, tb->data, ta->size_bytes) == 0);
    }
    sq_gguf_destroy(&qa);
    sq_gguf_destroy(&qb);
    snprintf(args, sizeof args, "info '%s'", s_path("c.gguf"));
    SQ_CHECK(s_run(args) == 0 && strstr(output, "blk.2.ffn_down.weight") != NULL
             && strstr(output, "llama.attention.head_count_kv") != NULL);
    for (const char *f = "abcde"; *f; f++) {
        char name[8] = { *f, '.', 'g', 'g', 'u', 'f', 0 };
        remove(s_path(name));
    }
}

/* quantize(stories260K.gguf) against the bundled stories260K-q8_0.gguf:
 * the same tensors, types and shapes; every scale equal (fp16) and every
 * quant within one step (rounding ties may go either way). */
static void test_quantize(void)
{
    char args[16384], in[4096], ref_path[4096];
    snprintf(in, sizeof in, "%s/stories260K.gguf", models);
    snprintf(ref_path, sizeof ref_path, "%s/stories260K-q8_0.gguf", models);
    snprintf(args, sizeof args, "quantize '%s' '%s' q8_0", in, s_path("q.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    SQ_CHECK(strstr(output, "31 of 47 tensors") != NULL);
    snprintf(args, sizeof args, "quantize '%s' '%s' q8_0", in, in);
    SQ_CHECK(s_run(args) == 2 && strstr(output, "both input and output") != NULL);
    sq_gguf_t *q = sq_gguf_open(s_path("q.gguf")), *ref = sq_gguf_open(ref_path);
    SQ_REQUIRE(q && ref);
    SQ_CHECK(s_u32(q, "general.file_type") == 7);
    SQ_CHECK(s_u32(q, "llama.block_count") == 5);
    SQ_CHECK(sq_gguf_file_size(q) <= sq_gguf_file_size(ref) + 4096);
    SQ_REQUIRE(sq_gguf_n_tensors(q) == sq_gguf_n_tensors(ref));
    int64_t n_far = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(ref); i++) {
        const sq_gguf_tensor_t *r = sq_gguf_tensor(ref, i);
        const sq_gguf_tensor_t *t = sq_gguf_find_tensor(q, r->name);
        SQ_REQUIRE(t);
        SQ_CHECK(t->dtype == r->dtype && t->ne[0] == r->ne[0] && t->ne[1] == r->ne[1]);
        if (t->dtype != r->dtype || t->size_bytes != r->size_bytes)
            continue;
        if (t->dtype != SQ_DTYPE_Q8_0) {
            SQ_CHECK(memcmp(t->data, r->data, t->size_bytes) == 0);
            continue;
        }
        const sq_block_q8_0_t *bt = t->data, *br = r->data;
        for (size_t b = 0; b < t->size_bytes / sizeof *bt; b++) {
            n_far += bt[b].d != br[b].d;
            for (int k = 0; k < SQ_QK8_0; k++)
                n_far += abs(bt[b].qs[k] - br[b].qs[k]) > 1;
        }
    }
    SQ_CHECK(n_far == 0);
    /* the tokenizer metadata survived the copy */
    sq_tokenizer_t *tok = sq_tokenizer_from_gguf(q);
    SQ_CHECK(tok && sq_tokenizer_n_vocab(tok) == 512);
    sq_tokenizer_destroy(&tok);
    sq_gguf_destroy(&q);
    sq_gguf_destroy(&ref);
    /* quantizing a Q8_0 file copies its tensors unchanged */
    snprintf(args, sizeof args, "quantize '%s' '%s' q8_0", ref_path, s_path("q2.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    q = sq_gguf_open(s_path("q2.gguf"));
    ref = sq_gguf_open(ref_path);
    SQ_REQUIRE(q && ref);
    for (int64_t i = 0; i < sq_gguf_n_tensors(ref); i++) {
        const sq_gguf_tensor_t *r = sq_gguf_tensor(ref, i), *t = sq_gguf_tensor(q, i);
        SQ_CHECK(t->size_bytes == r->size_bytes && memcmp(t->data, r->data, r->size_bytes) == 0);
    }
    sq_gguf_destroy(&q);
    sq_gguf_destroy(&ref);
    remove(s_path("q.gguf"));
    remove(s_path("q2.gguf"));
}

/* lora-random and lora-merge: no file is both read and written, numbers
 * are whole numbers, and a failure while writing leaves no file. */
static void test_lora_tools(void)
{
    char args[16384], base[1024];
    snprintf(base, sizeof base, "%s", s_path("base.gguf"));
    snprintf(args, sizeof args, "cp '%s/stories260K.gguf' '%s'", models, base);
    SQ_REQUIRE(system(args) == 0);
    snprintf(args, sizeof args, "lora-random --base '%s' --rank 4 '%s'", base, s_path("a.gguf"));
    SQ_REQUIRE(s_run(args) == 0);
    /* the base as the output: refused before anything is opened */
    snprintf(args, sizeof args, "lora-merge '%s' '%s' '%s'", base, s_path("a.gguf"), base);
    SQ_CHECK(s_run(args) == 2 && strstr(output, "both an input and the output"));
    snprintf(args, sizeof args, "lora-merge '%s' '%s' '%s'", base, s_path("a.gguf"),
             s_path("a.gguf"));
    SQ_CHECK(s_run(args) == 2 && strstr(output, "both an input and the output"));
    snprintf(args, sizeof args, "lora-random --base '%s' --rank 4 '%s'", base, base);
    SQ_CHECK(s_run(args) == 2 && strstr(output, "both the base and the output"));
    snprintf(args, sizeof args, "%s/stories260K.gguf", models);
    SQ_CHECK(s_same_file(base, args));
    /* numbers are numbers */
    const char *bad[] = {"--alpha abc", "--gain xyz", "--seed foo", "--seed -1", "--alpha inf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "lora-random --base '%s' --rank 4 %s '%s'", base, bad[i],
                 s_path("b.gguf"));
        SQ_CHECK(s_run(args) == 2 && strstr(output, strchr(bad[i], ' ') + 1) != NULL);
        SQ_CHECK(fopen(s_path("b.gguf"), "rb") == NULL);
    }
    SQ_CHECK(s_run("random --shape tiny-gqa --seed -1 x.gguf") == 2 &&
             strstr(output, "--seed -1"));
    /* a write that fails half way (a file size limit) leaves no file */
    snprintf(args, sizeof args, "sh -c \"trap '' XFSZ; ulimit -f 200; exec '%s' lora-merge '%s' "
             "'%s' '%s'\" > /dev/null 2>&1", tool, base, s_path("a.gguf"), s_path("m.gguf"));
    SQ_CHECK(system(args) != 0);
    SQ_CHECK(fopen(s_path("m.gguf"), "rb") == NULL);
    snprintf(args, sizeof args, "sh -c \"trap '' XFSZ; ulimit -f 200; exec '%s' lora-random "
             "--base '%s' --rank 512 '%s'\" > /dev/null 2>&1", tool, base, s_path("r.gguf"));
    SQ_CHECK(system(args) != 0);
    SQ_CHECK(fopen(s_path("r.gguf"), "rb") == NULL);
    remove(base);
    remove(s_path("a.gguf"));
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: test_shardq_model SHARDQ_MODEL MODELS_DIR SCRATCH_DIR\n");
        return 2;
    }
    tool = argv[1];
    models = argv[2];
    scratch = argv[3];
    SQ_RUN(test_cli);
    SQ_RUN(test_random);
    SQ_RUN(test_quantize);
    SQ_RUN(test_lora_tools);
    SQ_RUN(test_info_foreign_types);
    return sq_test_summary("shardq_model");
}

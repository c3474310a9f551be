/*  LoRA tensor names: publishing (sq_lora_check, with and without the base
 *  model) and loading (sq_model_adapter_load) agree on which names are an
 *  adapter's. A layer is "blk.N." with N plain digits, as the loader looks
 *  it up: "blk.01.", "blk.+1." and "blk. 1." were taken for layer 1 by the
 *  check (sscanf "%d") and then refused by the loader with a message
 *  about targets; both now refuse them naming the tensor, and the loader
 *  names a layer the model does not have. Both require the adapter's
 *  type keys.
 *  Argument: the bundled stories260K.gguf (F32, 5 layers of 64).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cpu_kernels.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_gguf_writer.h"
#include "sq_lora.h"
#include "sq_test.h"

static const char *s_base_path;
static char s_path[256];

/* An adapter of one rank-2 pair on attn_q of the layer written as layer
 * (its text between "blk." and ".attn_q"); F32 zeros; without the key
 * omit unless NULL. 0 or an error. */
static int s_write(const char *layer, const char *omit)
{
    sq_gguf_writer_t *w = sq_gguf_writer_new(32);
    if (!w)
        return SQ_ENOMEM;
    char na[96], nb[96];
    snprintf(na, sizeof na, "blk.%s.attn_q.weight.lora_a", layer);
    snprintf(nb, sizeof nb, "blk.%s.attn_q.weight.lora_b", layer);
    const int64_t ne_a[2] = {64, 2}, ne_b[2] = {2, 64};
    int rc = sq_gguf_writer_add_str(w, "general.architecture", "llama", 5);
    if (rc == 0 && !(omit && strcmp(omit, "general.type") == 0))
        rc = sq_gguf_writer_add_str(w, "general.type", "adapter", 7);
    if (rc == 0 && !(omit && strcmp(omit, "adapter.type") == 0))
        rc = sq_gguf_writer_add_str(w, "adapter.type", "lora", 4);
    if (rc == 0)
        rc = sq_gguf_writer_add_f32(w, "adapter.lora.alpha", 2.0f);
    if (rc == 0)
        rc = sq_gguf_writer_add_tensor(w, na, SQ_DTYPE_F32, 2, ne_a);
    if (rc == 0)
        rc = sq_gguf_writer_add_tensor(w, nb, SQ_DTYPE_F32, 2, ne_b);
    if (rc == 0)
        rc = sq_gguf_writer_open(w, s_path);
    float *zeros = calloc(2 * 64, sizeof *zeros);
    for (int i = 0; rc == 0 && i < 2; i++)
        rc = zeros ? sq_gguf_writer_write(w, zeros, 2 * 64 * sizeof *zeros) : SQ_ENOMEM;
    if (rc == 0)
        rc = sq_gguf_writer_close(w);
    free(zeros);
    sq_gguf_writer_destroy(&w);
    return rc;
}

/* sq_lora_check of the adapter for layer (with base unless NULL) */
static int s_check(const char *layer, const sq_gguf_t *base)
{
    int rc = s_write(layer, NULL);
    sq_gguf_t *g = rc == 0 ? sq_gguf_open(s_path) : NULL;
    if (!g) {
        fprintf(stderr, "cannot write or read the adapter: %s\n", sq_error_detail());
        return 1;
    }
    int rank = 0;
    unsigned targets = 0;
    rc = sq_lora_check(g, base, &rank, &targets);
    sq_gguf_destroy(&g);
    return rc;
}

static void test_check(void)
{
    sq_gguf_t *base = sq_gguf_open(s_base_path);
    SQ_REQUIRE(base);
    SQ_CHECK(s_check("1", NULL) == 0 && s_check("1", base) == 0);
    SQ_CHECK(s_check("0", NULL) == 0);
    static const char *const bad[] = {"01", "+1", " 1", "-1", "1x", "", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        SQ_CHECK(s_check(bad[i], NULL) == SQ_EFORMAT);
        char want[64];
        snprintf(want, sizeof want, "tensor blk.%s.attn_q.weight.lora_", bad[i]);
        SQ_CHECK(strstr(sq_error_detail(), want) && strstr(sq_error_detail(), "not a LoRA"));
    }
    /* a layer the base does not have: only the check with the base knows */
    SQ_CHECK(s_check("7", NULL) == 0);
    SQ_CHECK(s_check("7", base) == SQ_EFORMAT && strstr(sq_error_detail(), "blk.7.attn_q"));
    sq_gguf_destroy(&base);
}

/* The loader refuses the same names, naming the tensor, and takes "1". */
static void test_load(void)
{
    sq_engine_params_t ep = {.model_path = s_base_path, .n_threads = 1, .n_slots = 1};
    sq_engine_t *e = sq_engine_new(&ep);
    SQ_REQUIRE(e);
    static const char *const layers[] = {"1", "01", "+1", "7"};
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        SQ_REQUIRE(s_write(layers[i], NULL) == 0);
        sq_gguf_t *g = sq_gguf_open(s_path);
        SQ_REQUIRE(g);
        int id = 0;
        int rc = sq_model_adapter_load(sq_engine_model(e), g, 0.0f, &id);
        sq_gguf_destroy(&g);
        if (i == 0) {
            SQ_CHECK(rc == 0 && id > 0);
            SQ_CHECK(sq_model_adapter_unload(sq_engine_model(e), id) == 0);
            continue;
        }
        char want[64];
        snprintf(want, sizeof want, "tensor blk.%s.attn_q.weight.lora_", layers[i]);
        SQ_CHECK(rc == SQ_EFORMAT && id == 0);
        SQ_CHECK(strstr(sq_error_detail(), want) && strstr(sq_error_detail(), "5-layer model"));
    }
    sq_engine_destroy(&e);
}

/* A file without general.type = "adapter" or adapter.type = "lora" is
 * refused by publishing and loading alike (the loader took it). */
static void test_keys(void)
{
    sq_engine_params_t ep = {.model_path = s_base_path, .n_threads = 1, .n_slots = 1};
    sq_engine_t *e = sq_engine_new(&ep);
    SQ_REQUIRE(e);
    static const char *const keys[] = {"general.type", "adapter.type"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        SQ_REQUIRE(s_write("1", keys[i]) == 0);
        sq_gguf_t *g = sq_gguf_open(s_path);
        SQ_REQUIRE(g);
        char want[64];
        snprintf(want, sizeof want, "key %s: must be", keys[i]);
        int rank = 0, id = 0;
        unsigned targets = 0;
        SQ_CHECK(sq_lora_check(g, NULL, &rank, &targets) == SQ_EFORMAT);
        SQ_CHECK(strstr(sq_error_detail(), want));
        SQ_CHECK(sq_model_adapter_load(sq_engine_model(e), g, 0.0f, &id) == SQ_EFORMAT && id == 0);
        SQ_CHECK(strstr(sq_error_detail(), want));
        sq_gguf_destroy(&g);
    }
    sq_engine_destroy(&e);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_lora_names BASE_GGUF SCRATCH_DIR\n");
        return 2;
    }
    s_base_path = argv[1];
    snprintf(s_path, sizeof s_path, "%s/lora-names.gguf", argv[2]);
    SQ_RUN(test_check);
    SQ_RUN(test_load);
    SQ_RUN(test_keys);
    return sq_test_summary("lora_names");
}

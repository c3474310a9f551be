/*  test_cuda_memory: a model larger than the device's memory (label unit,
 *  on the CPU emulator, whose device holds SQ_EMU_DEVICE_BYTES; CTest
 *  sets it between the backend's own buffers and the model).
 *
 *    test_cuda_emu_memory BIG_MODEL SMALL_MODEL
 *
 *  Loading BIG_MODEL fails with SQ_ENOMEM, and the message names the
 *  tensor, the bytes asked for and what the device has free; every
 *  tensor loaded before it is freed again (the device's free memory is
 *  what it was); the backend then still loads and runs SMALL_MODEL.
 *  Then SMALL_MODEL with an automatic slot count (SQ_MODEL_SLOTS_AUTO) at
 *  4,096 positions: as many sequences as fit with a tenth of the memory
 *  kept, and the last slot runs; at 4M positions not even one fits: SQ_ENOMEM
 *  naming the sizes, and nothing stays allocated.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>

#include "sq_backend_cuda.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_model.h"
#include "sq_test.h"
#include "sq_tp_comm.h"
#include "test_model_util.h"

static const char *s_big, *s_small;

static size_t s_free_bytes(void)
{
    size_t free_b = 0, total_b = 0;
    SQ_CHECK(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess);
    return free_b;
}

static void test_too_big_then_fits(void)
{
    sq_backend_t *be = sq_backend_cuda_new(0);
    sq_tp_comm_t *comm = sq_tp_comm_local_new();
    SQ_REQUIRE(be && comm);
    const size_t free0 = s_free_bytes();
    sq_gguf_t *big = sq_gguf_open(s_big);
    SQ_REQUIRE(big);
    sq_model_params_t p = {.n_ctx = 64, .n_slots = 1};
    sq_model_t *m = sq_model_new(big, be, comm, &p);
    SQ_CHECK(m == NULL);
    SQ_CHECK(sq_error_code() == SQ_ENOMEM);
    const char *why = sq_error_detail();
    printf("loading %s on a device of %zu free bytes: %s\n", s_big, free0, why);
    SQ_CHECK(strstr(why, "tensor ") != NULL);
    SQ_CHECK(strstr(why, "bytes of device memory") != NULL);
    SQ_CHECK(strstr(why, "MiB free") != NULL);
    sq_model_destroy(&m);
    SQ_CHECK(s_free_bytes() == free0);   /* the tensors loaded before were freed */
    sq_gguf_destroy(&big);
    sq_gguf_t *small = sq_gguf_open(s_small);
    SQ_REQUIRE(small);
    m = sq_model_new(small, be, comm, &p);
    SQ_REQUIRE(m);
    float *logits = malloc((size_t)sq_model_hparams(m)->n_vocab * sizeof(float));
    const sq_batch_entry_t b = tm_entry(0, 1, 0, true);
    SQ_CHECK(logits && sq_model_forward(m, &b, 1, logits) == 0);
    free(logits);
    sq_model_destroy(&m);
    sq_gguf_destroy(&small);
    SQ_CHECK(s_free_bytes() == free0);
    sq_tp_comm_destroy(&comm);
    sq_backend_destroy(&be);
}

static void test_auto_slots(void)
{
    sq_backend_t *be = sq_backend_cuda_new(0);
    sq_tp_comm_t *comm = sq_tp_comm_local_new();
    sq_gguf_t *small = sq_gguf_open(s_small);
    SQ_REQUIRE(be && comm && small);
    const size_t free0 = s_free_bytes();
    sq_model_params_t p = {.n_ctx = 4096, .n_slots = SQ_MODEL_SLOTS_AUTO};
    sq_model_t *m = sq_model_new(small, be, comm, &p);
    SQ_REQUIRE(m);
    /* pages: as many as fit; slots: as many sequences of a quarter of the
     * context as the pages hold */
    const int slots = sq_model_n_slots(m), pages = sq_model_kv_pages(m);
    const int whole = sq_kv_pages_for(p.n_ctx);
    const size_t kv = sq_model_kv_bytes(m), per_page = kv / (size_t)pages;
    const size_t left = s_free_bytes(), before_kv = left + kv;
    printf("auto pages at %d positions on a device of %zu free bytes: %d (%zu bytes each; %d "
           "whole contexts), %d slots, %zu bytes left\n", p.n_ctx, free0, pages, per_page,
           pages / whole, slots, left);
    SQ_CHECK(pages >= 2 * whole && pages < SQ_MODEL_SLOTS_AUTO_MAX * whole);
    SQ_CHECK(slots == 4 * pages / whole);
    SQ_CHECK(kv == (size_t)pages * per_page);
    SQ_CHECK(left >= before_kv / 10);                          /* a tenth kept */
    SQ_CHECK(left < before_kv / 10 + per_page + (2u << 20));   /* and no room for another */
    SQ_CHECK(sq_model_kv_pages_free(m) == pages);
    float *logits = malloc((size_t)sq_model_hparams(m)->n_vocab * sizeof(float));
    const sq_batch_entry_t b = tm_entry(slots - 1, 1, 0, true);
    SQ_CHECK(logits && sq_model_forward(m, &b, 1, logits) == 0);
    SQ_CHECK(sq_model_kv_pages_held(m, slots - 1) == 1 && sq_model_kv_pages_free(m) == pages - 1);
    free(logits);
    sq_model_destroy(&m);
    /* the model's memory is back (the backend keeps the scratch the step
     * sized, for the next model) */
    const size_t free1 = s_free_bytes();
    SQ_CHECK(free1 >= left + kv);
    p.n_ctx = 1 << 22;
    m = sq_model_new(small, be, comm, &p);
    SQ_CHECK(m == NULL && sq_error_code() == SQ_ENOMEM);
    printf("auto slots at %d positions: %s\n", p.n_ctx, sq_error_detail());
    SQ_CHECK(strstr(sq_error_detail(), "KV cache: one sequence of 4194304 positions takes") != NULL);
    SQ_CHECK(s_free_bytes() == free1);
    sq_gguf_destroy(&small);
    sq_tp_comm_destroy(&comm);
    sq_backend_destroy(&be);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_cuda_emu_memory BIG_MODEL SMALL_MODEL\n");
        return 2;
    }
    s_big = argv[1];
    s_small = argv[2];
    SQ_RUN(test_too_big_then_fits);
    SQ_RUN(test_auto_slots);
    return sq_test_summary("cuda_memory");
}

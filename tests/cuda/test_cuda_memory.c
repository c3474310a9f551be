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

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_cuda_emu_memory BIG_MODEL SMALL_MODEL\n");
        return 2;
    }
    s_big = argv[1];
    s_small = argv[2];
    SQ_RUN(test_too_big_then_fits);
    return sq_test_summary("cuda_memory");
}

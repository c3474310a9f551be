/*  fuzz_lora: libFuzzer target for LoRA adapter files (sq_model_adapter_load,
 *  sq_lora_check) against the bundled F32 base model stories260K.
 *
 *  The input is the adapter file. It is read the two ways the product reads
 *  one: a worker maps it (sq_gguf_open) and loads it into its model
 *  (sq_model_adapter_load with scale 0: alpha / r, as sq_batcher.c does),
 *  and `shardq lora publish --base` checks it against the base model's file
 *  (sq_lora_check, client/shardq_lora.c), also without a base. The reader
 *  maps a path, so each input goes to an anonymous in-memory file (memfd)
 *  opened through /proc/self/fd, as fuzz_gguf does: no disk I/O. The base
 *  model is loaded once (CPU backend, a group of one), from $SQ_FUZZ_MODEL
 *  or models/stories260K.gguf next to the tests/ folder this file was
 *  compiled from. What sq_lora.h and sq_model.h promise is checked, and a
 *  broken promise calls abort() so that libFuzzer reports it:
 *    - a refused file: a negative SQ_E* code and a detail naming the key or
 *      tensor at fault; the model keeps no adapter (the next id is 1);
 *    - an accepted one: id 1, a forward pass with it runs, unload frees the
 *      id, and a second unload is SQ_ENOTFOUND;
 *    - publishing and loading agree: a file sq_lora_check accepts against
 *      the base loads, and one that loads passes sq_lora_check; a check
 *      without base accepts what the check with base accepts, with the
 *      same rank and targets.
 */
#define _GNU_SOURCE   /* memfd_create */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_lora.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int s_fd = -1;
static char s_path[64];
static sq_engine_t *s_engine;
static sq_gguf_t *s_base;       /* the base file again, for sq_lora_check */

static void s_setup(void)
{
    char model[4096];
    const char *env = getenv("SQ_FUZZ_MODEL");
    const char *me = __FILE__, *cut = strstr(me, "tests/fuzz/fuzz_lora.c");
    if (env && *env)
        snprintf(model, sizeof model, "%s", env);
    else
        snprintf(model, sizeof model, "%.*smodels/stories260K.gguf", cut ? (int)(cut - me) : 0,
                 me);
    /* one slot, F32 cache: the smallest model the worker could run */
    sq_engine_params_t ep = {.model_path = model, .n_threads = 1, .n_slots = 1, .n_ctx = 16,
                             .kv_type = SQ_KV_F32};
    s_engine = sq_engine_new(&ep);
    s_base = sq_gguf_open(model);
    if (!s_engine || !s_base) {
        fprintf(stderr, "fuzz_lora: cannot load %s (set SQ_FUZZ_MODEL): %s\n", model,
                sq_error_detail());
        abort();
    }
    s_fd = memfd_create("fuzz_lora", MFD_CLOEXEC);
    SQ_FUZZ_CHECK(s_fd >= 0);
    snprintf(s_path, sizeof s_path, "/proc/self/fd/%d", s_fd);
}

/* A refusal: a code, and a detail that says what is wrong. */
static void s_check_refused(int rc)
{
    const char *d = sq_error_detail();
    SQ_FUZZ_CHECK(rc == SQ_EFORMAT || rc == SQ_EUNSUPPORTED || rc == SQ_ENOMEM || rc == SQ_ETRUNC);
    SQ_FUZZ_CHECK(d && (strstr(d, "tensor") || strstr(d, "key ") || strstr(d, "adapter")));
}

/* The worker's way: load into the model, use it, unload it. */
static int s_load(const sq_gguf_t *g)
{
    sq_model_t *m = sq_engine_model(s_engine);
    int id = 0;
    sq_error_clear();
    int rc = sq_model_adapter_load(m, g, 0.0f, &id);
    if (rc) {
        s_check_refused(rc);
        return rc;
    }
    SQ_FUZZ_CHECK(id == 1);
    sq_batch_entry_t b = {.slot = 0, .token = 1, .pos = 0, .want_logits = true, .adapter = id};
    int32_t tok = -1;
    SQ_FUZZ_CHECK(sq_model_forward_argmax(m, &b, 1, &tok) == 0);
    /* an adapter whose values overflow gives logits without a finite
     * maximum: no token, said so (SQ_SAMPLER_NOT_FINITE), never a made-up one */
    SQ_FUZZ_CHECK(tok == SQ_SAMPLER_NOT_FINITE ||
                  (tok >= 0 && tok < sq_model_hparams(m)->n_vocab));
    SQ_FUZZ_CHECK(sq_model_adapter_unload(m, id) == 0);
    SQ_FUZZ_CHECK(sq_model_adapter_unload(m, id) == SQ_ENOTFOUND);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_engine)
        s_setup();
    if (ftruncate(s_fd, 0) != 0 || pwrite(s_fd, data, size, 0) != (ssize_t)size)
        return 0;
    sq_error_clear();
    sq_gguf_t *g = sq_gguf_open(s_path);
    if (!g) {
        SQ_FUZZ_CHECK(sq_error_code() < 0 && sq_error_detail()[0] != '\0');
        return 0;
    }
    int rank = -1, rank_nb = -1;
    unsigned targets = 0, targets_nb = 0;
    sq_error_clear();
    int rc_check = sq_lora_check(g, s_base, &rank, &targets);
    if (rc_check) {
        SQ_FUZZ_CHECK(rc_check == SQ_EFORMAT);
        s_check_refused(rc_check);
    } else {
        SQ_FUZZ_CHECK(rank >= 1 && rank <= 1024 && targets != 0 &&
                      targets < (1u << SQ_LORA_N_TARGETS));
    }
    sq_error_clear();
    int rc_nb = sq_lora_check(g, NULL, &rank_nb, &targets_nb);
    if (rc_nb)
        s_check_refused(rc_nb);
    if (rc_check == 0)
        SQ_FUZZ_CHECK(rc_nb == 0 && rank_nb == rank && targets_nb == targets);
    int rc_load = s_load(g);
    if (rc_check == 0)
        SQ_FUZZ_CHECK(rc_load == 0);
    if (rc_load == 0)
        SQ_FUZZ_CHECK(rc_check == 0);
    sq_gguf_destroy(&g);
    return 0;
}

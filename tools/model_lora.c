/*  shardq-model lora-random: a random LoRA adapter shaped for a base model.
 *
 *  Writes the llama.cpp LoRA convention (general.type = adapter,
 *  adapter.type = lora, adapter.lora.alpha, blk.N.<target>.weight.lora_a
 *  ne = [n_in, r] and .lora_b ne = [r, n_out]) for every layer of the base
 *  and each chosen target, F32, from a seeded generator: the same base,
 *  rank, targets and seed always give the same file. Used by tests, the
 *  demo and the nightly example; a real adapter comes from training.
 */
#include "shardq_model.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_gguf_writer.h"

static const char *const s_targets[] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                        "ffn_gate", "ffn_up", "ffn_down"};
#define S_N_TARGETS 7

int sq_model_lora_target_mask(const char *list, unsigned *mask)
{
    *mask = 0;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = 0;
        for (int t = 0; t < S_N_TARGETS; t++)
            if (strlen(s_targets[t]) == n && strncmp(p, s_targets[t], n) == 0) {
                *mask |= 1u << t;
                found = 1;
            }
        if (!found)
            return SQ_FAIL(SQ_EINVAL, "unknown LoRA target '%.*s' (attn_q, attn_k, attn_v, "
                           "attn_output, ffn_gate, ffn_up, ffn_down)", (int)n, p);
        p += n + (p[n] == ',');
    }
    return *mask ? 0 : SQ_FAIL(SQ_EINVAL, "no LoRA targets given");
}

/* After a failure once OUT was opened: the writer closed and the
 * half-written file removed (a file OUT was before is not touched:
 * opening it is what truncated it). */
static void s_drop_on_failure(sq_gguf_writer_t **w, int rc, bool opened, const char *path)
{
    if (rc != 0 && opened) {
        sq_gguf_writer_destroy(w);
        remove(path);
    }
}

static float s_uniform(uint64_t *s)
{
    return (float)((double)(sq_model_rand_u64(s) >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static int s_write_random(sq_gguf_writer_t *w, uint64_t *rng, int64_t n, float amp)
{
    float buf[256];
    for (int64_t done = 0; done < n;) {
        int64_t k = n - done < 256 ? n - done : 256;
        for (int64_t i = 0; i < k; i++)
            buf[i] = s_uniform(rng) * amp;
        int rc = sq_gguf_writer_write(w, buf, (size_t)k * sizeof(float));
        if (rc)
            return rc;
        done += k;
    }
    return 0;
}

int sq_model_lora_random(const sq_model_lora_opts_t *o, const char *path, FILE *out)
{
    sq_gguf_t *base = sq_gguf_open(o->base_path);
    if (!base)
        return sq_error_code();
    sq_gguf_writer_t *w = sq_gguf_writer_new(32);
    int rc = w ? 0 : SQ_FAIL(SQ_ENOMEM, "writer");
    uint32_t n_layers = 0;
    if (rc == 0)
        rc = sq_gguf_get_u32(base, "llama.block_count", &n_layers);
    if (rc == 0 && (rc = sq_gguf_writer_add_str(w, "general.architecture", "llama", 5)) == 0 &&
        (rc = sq_gguf_writer_add_str(w, "general.type", "adapter", 7)) == 0 &&
        (rc = sq_gguf_writer_add_str(w, "adapter.type", "lora", 4)) == 0)
        rc = sq_gguf_writer_add_f32(w, "adapter.lora.alpha", o->alpha > 0 ? o->alpha : (float)o->rank);
    if (rc == 0 && o->name)
        rc = sq_gguf_writer_add_str(w, "general.name", o->name, strlen(o->name));
    /* shapes come from the base tensors, so any llama shape works */
    int64_t n_written = 0;
    for (uint32_t l = 0; rc == 0 && l < n_layers; l++)
        for (int t = 0; rc == 0 && t < S_N_TARGETS; t++) {
            if (!(o->targets & (1u << t)))
                continue;
            char name[96];
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, s_targets[t]);
            const sq_gguf_tensor_t *bt = sq_gguf_find_tensor(base, name);
            if (!bt || bt->n_dims != 2) {
                rc = SQ_FAIL(SQ_EFORMAT, "base %s: tensor %s missing or not 2-D", o->base_path,
                             name);
                break;
            }
            char na[112], nb[112];
            snprintf(na, sizeof na, "%s.lora_a", name);
            snprintf(nb, sizeof nb, "%s.lora_b", name);
            int64_t ne_a[2] = {bt->ne[0], o->rank}, ne_b[2] = {o->rank, bt->ne[1]};
            if ((rc = sq_gguf_writer_add_tensor(w, na, SQ_DTYPE_F32, 2, ne_a)) == 0)
                rc = sq_gguf_writer_add_tensor(w, nb, SQ_DTYPE_F32, 2, ne_b);
            n_written += 2;
        }
    if (rc == 0 && n_written == 0)
        rc = SQ_FAIL(SQ_EINVAL, "no LoRA tensors to write");
    bool opened = rc == 0 && (rc = sq_gguf_writer_open(w, path)) == 0;
    /* data in the order the tensors were added: A then B per target */
    uint64_t rng = o->seed;
    for (int64_t i = 0; rc == 0 && i < sq_gguf_writer_n_tensors(w); i++) {
        int dtype;
        int64_t n_in, n_rows;
        if ((rc = sq_gguf_writer_tensor_shape(w, i, &dtype, &n_in, &n_rows)))
            break;
        /* A spreads x over r directions; B maps them back with a small
         * gain, so the adapter moves the logits without swamping them */
        float amp = i % 2 == 0 ? 1.0f / sqrtf((float)n_in) : o->gain;
        rc = s_write_random(w, &rng, n_in * n_rows, amp);
    }
    if (rc == 0)
        rc = sq_gguf_writer_close(w);
    s_drop_on_failure(&w, rc, opened, path);
    if (rc == 0 && out)
        fprintf(out, "wrote %s: LoRA rank %d over %u layers, %lld tensors\n", path, o->rank,
                n_layers, (long long)n_written);
    sq_gguf_writer_destroy(&w);
    sq_gguf_destroy(&base);
    return rc;
}

/* ---- lora-merge ---- */

/* The (A, B) pair of base tensor name in the adapter, or NULL/NULL. */
static void s_pair(const sq_gguf_t *ad, const char *name, const sq_gguf_tensor_t **a,
                   const sq_gguf_tensor_t **b)
{
    char na[160], nb[160];
    snprintf(na, sizeof na, "%s.lora_a", name);
    snprintf(nb, sizeof nb, "%s.lora_b", name);
    *a = sq_gguf_find_tensor(ad, na);
    *b = sq_gguf_find_tensor(ad, nb);
}

/* Rows of t as F32 (n_rows x n_in), malloc'd. */
static float *s_f32(const sq_gguf_tensor_t *t)
{
    int64_t n_in = t->ne[0], n_rows = t->n_elements / t->ne[0];
    float *m = malloc((size_t)t->n_elements * sizeof(float));
    size_t rb = sq_cpu_row_bytes(t->dtype, n_in);
    for (int64_t r = 0; m && r < n_rows; r++)
        sq_cpu_dequantize_row(t->dtype, (const char *)t->data + rb * (size_t)r, m + r * n_in, n_in);
    return m;
}

/* W (n_out x n_in) + scale * B (n_out x r) A (r x n_in), streamed by row. */
static int s_write_merged(sq_gguf_writer_t *w, const sq_gguf_tensor_t *wt,
                          const sq_gguf_tensor_t *at, const sq_gguf_tensor_t *bt, float scale)
{
    int64_t n_in = wt->ne[0], n_out = wt->ne[1], r = at->ne[1];
    float *W = s_f32(wt), *A = s_f32(at), *B = s_f32(bt);
    int rc = W && A && B ? 0 : SQ_FAIL(SQ_ENOMEM, "merge %s", wt->name);
    for (int64_t o = 0; rc == 0 && o < n_out; o++) {
        float *row = W + o * n_in;
        for (int64_t k = 0; k < r; k++) {
            float bk = scale * B[o * r + k];
            for (int64_t i = 0; i < n_in; i++)
                row[i] += bk * A[k * n_in + i];
        }
        rc = sq_gguf_writer_write(w, row, (size_t)n_in * sizeof(float));
    }
    free(W);
    free(A);
    free(B);
    return rc;
}

int sq_model_lora_merge(const char *base_path, const char *adapter_path, const char *path,
                        FILE *out)
{
    sq_gguf_t *g = sq_gguf_open(base_path), *ad = g ? sq_gguf_open(adapter_path) : NULL;
    sq_gguf_writer_t *w = ad ? sq_gguf_writer_new(sq_gguf_alignment(g)) : NULL;
    int rc = w ? sq_model_copy_kvs(w, g) : sq_error_code() ? sq_error_code() : SQ_ENOMEM;
    float alpha = 0;
    if (rc == 0)
        rc = sq_gguf_get_f32_or(ad, "adapter.lora.alpha", 0.0f, &alpha);
    int64_t n_merged = 0;
    for (int64_t i = 0; rc == 0 && i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i), *a, *b;
        s_pair(ad, t->name, &a, &b);
        if (a && b && (a->ne[0] != t->ne[0] || b->ne[1] != t->ne[1] || a->ne[1] != b->ne[0]))
            rc = SQ_FAIL(SQ_EFORMAT, "adapter %s: LoRA pair of %s does not fit its shape",
                         adapter_path, t->name);
        else
            rc = sq_gguf_writer_add_tensor(w, t->name, a && b ? SQ_DTYPE_F32 : t->dtype,
                                           t->n_dims, t->ne);
        n_merged += a && b;
    }
    if (rc == 0 && n_merged * 2 != sq_gguf_n_tensors(ad))
        rc = SQ_FAIL(SQ_EFORMAT, "adapter %s: %lld tensors, %lld of them match base matrices",
                     adapter_path, (long long)sq_gguf_n_tensors(ad), (long long)n_merged * 2);
    bool opened = rc == 0 && (rc = sq_gguf_writer_open(w, path)) == 0;
    for (int64_t i = 0; rc == 0 && i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i), *a, *b;
        s_pair(ad, t->name, &a, &b);
        if (a && b)
            rc = s_write_merged(w, t, a, b, alpha > 0 ? alpha / (float)a->ne[1] : 1.0f);
        else
            rc = sq_gguf_writer_write(w, t->data, t->size_bytes);
    }
    if (rc == 0)
        rc = sq_gguf_writer_close(w);
    s_drop_on_failure(&w, rc, opened, path);
    if (rc == 0 && out)
        fprintf(out, "wrote %s: %lld matrices merged with %s\n", path, (long long)n_merged,
                adapter_path);
    sq_gguf_writer_destroy(&w);
    sq_gguf_destroy(&ad);
    sq_gguf_destroy(&g);
    return rc;
}

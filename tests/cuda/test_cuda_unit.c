/*  test_cuda_unit: the CUDA backend's host side, with or without a device.
 *
 *    test_cuda_unit
 *
 *  Device choice from the launcher's local rank, the all-reduce plan for a
 *  group (NCCL, host path when ranks share a device or SHARDQ_NCCL=0), and
 *  device selection by name: without a usable device "cuda" fails with
 *  SQ_EDEVICE and the CUDA error text and "auto" gives the CPU backend;
 *  with one, both give the CUDA backend. And the graph bookkeeping: op
 *  list keys (values in the arena never change a key), the capture on a
 *  repeat, LRU eviction, clearing. The fusion plan of a layer's ops (what
 *  runs as one kernel, and what must not). And the device layout of
 *  weights: sizes, and Q8_0 blocks split into quants and scales.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_backend.h"
#include "sq_backend_cuda.h"
#include "sq_cuda_fuse.h"
#include "sq_cuda_graph.h"
#include "sq_cuda_kernels.h"
#include "sq_cuda_layout.h"
#include "sq_cuda_prof.h"
#include "sq_error.h"
#include "sq_test.h"

static void test_pick_device(void)
{
    SQ_CHECK(sq_cuda_pick_device(0, 4) == 0);
    SQ_CHECK(sq_cuda_pick_device(3, 4) == 3);
    /* more ranks than devices: they wrap round and share */
    SQ_CHECK(sq_cuda_pick_device(5, 4) == 1);
    SQ_CHECK(sq_cuda_pick_device(1, 1) == 0);
    SQ_CHECK(sq_cuda_pick_device(-3, 2) == 0);
    SQ_CHECK(sq_cuda_pick_device(0, 0) == -1);
}

static void test_local_rank(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (int i = 0; i < 3; i++)
        unsetenv(vars[i]);
    SQ_CHECK(sq_cuda_local_rank() == 0);
    setenv("SLURM_LOCALID", "2", 1);
    SQ_CHECK(sq_cuda_local_rank() == 2);
    /* Open MPI's variable wins over Slurm's */
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1);
    SQ_CHECK(sq_cuda_local_rank() == 5);
    /* garbage is ignored, not read as 0 of the wrong launcher */
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "x7", 1);
    SQ_CHECK(sq_cuda_local_rank() == 2);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "-1", 1);
    SQ_CHECK(sq_cuda_local_rank() == 2);
    for (int i = 0; i < 3; i++)
        unsetenv(vars[i]);
}

static void test_plan_comm(void)
{
    unsigned long long distinct[4] = {sq_cuda_key("h1/0000:18:00.0"), sq_cuda_key("h1/0000:2a:00.0"),
                                      sq_cuda_key("h2/0000:18:00.0"), sq_cuda_key("h2/0000:2a:00.0")};
    unsigned long long shared[2] = {sq_cuda_key("h1/0000:18:00.0"), sq_cuda_key("h1/0000:18:00.0")};
    SQ_CHECK(distinct[0] != distinct[2]);   /* same bus id, other host */
    SQ_CHECK(sq_cuda_plan_comm(distinct, 1, true, NULL) == SQ_CUDA_COMM_LOCAL);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, true, NULL) == SQ_CUDA_COMM_NCCL);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, true, "1") == SQ_CUDA_COMM_NCCL);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, true, "0") == SQ_CUDA_COMM_HOST);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, false, NULL) == SQ_CUDA_COMM_HOST);
    SQ_CHECK(sq_cuda_plan_comm(shared, 2, true, NULL) == SQ_CUDA_COMM_HOST);
    SQ_CHECK(sq_cuda_key("a") != sq_cuda_key("b"));
    SQ_CHECK(sq_cuda_key("") == sq_cuda_key(""));
}

static void test_device_by_name(void)
{
    char why[256] = "";
    const int usable = sq_cuda_usable(why, sizeof why);
    sq_backend_t *cuda = sq_backend_new("cuda", 1);
    sq_backend_t *aut = sq_backend_new("auto", 2);
    SQ_REQUIRE(aut != NULL);
    if (usable) {
        SQ_CHECK(cuda && sq_backend_is_cuda(cuda) && !strcmp(cuda->ops->name, "cuda"));
        SQ_CHECK(sq_backend_is_cuda(aut));
        fprintf(stderr, "   a CUDA device is usable: cuda and auto give the CUDA backend\n");
    } else {
        SQ_CHECK(cuda == NULL);
        SQ_CHECK(sq_error_code() == SQ_EDEVICE);
        SQ_CHECK(strstr(sq_error_detail(), "no usable CUDA device: ") != NULL);
        SQ_CHECK(strstr(why, "no usable CUDA device: ") == why);
        SQ_CHECK(!strcmp(aut->ops->name, "cpu") && !sq_backend_is_cuda(aut));
        SQ_CHECK(sq_backend_cuda_new(0) == NULL && sq_error_code() == SQ_EDEVICE);
        fprintf(stderr, "   %s: cuda refused, auto gives the cpu backend\n", why);
    }
    /* a device communicator needs a CUDA backend */
    sq_tp_comm_t *local = sq_tp_comm_local_new();
    SQ_CHECK(sq_tp_comm_cuda_new(usable ? NULL : aut, local) == NULL);
    SQ_CHECK(sq_error_code() == SQ_EINVAL);
    sq_tp_comm_destroy(&local);
    sq_backend_destroy(&cuda);
    sq_backend_destroy(&aut);
    SQ_CHECK(sq_backend_new("tpu", 1) == NULL && sq_error_code() == SQ_EUNSUPPORTED);
    SQ_CHECK(strstr(sq_error_detail(), "device 'tpu': not cpu, cuda or auto") != NULL);
}

/* A decode-like step: embed, rmsnorm, matmul, rope, attention over fixed
 * buffers, with this step's ids and positions in the arena. */
static void s_record_step(sq_cuda_rec_t *rec, int n_tok, int32_t pos0, const void *x)
{
    int32_t ids[8], pos[8];
    for (int t = 0; t < n_tok; t++) {
        ids[t] = 100 + pos0 + t;
        pos[t] = pos0 + t;
    }
    sq_cuda_op_t op = {.kind = 1, .p = {(void *)0x1000, x}, .i = {0, 64, n_tok}};
    SQ_CHECK(sq_cuda_rec_args(rec, ids, n_tok, &op.arg[0]) == 0);
    SQ_CHECK(sq_cuda_rec_push(rec, &op, n_tok) == 0);
    for (int k = 2; k <= 4; k++) {
        sq_cuda_op_t o = {.kind = k, .p = {x, (void *)0x3000}, .i = {n_tok, 64}, .f = {1e-5f}};
        if (k == 4)
            SQ_CHECK(sq_cuda_rec_args(rec, pos, n_tok, &o.arg[0]) == 0);
        SQ_CHECK(sq_cuda_rec_push(rec, &o, n_tok) == 0);
    }
}

static void test_graph_keys(void)
{
    int32_t arena[64];
    sq_cuda_rec_t rec = {.arena = arena, .arena_cap = 64};
    s_record_step(&rec, 1, 10, (void *)0x2000);
    const uint64_t k1 = sq_cuda_rec_key(&rec);
    SQ_CHECK(rec.n_ops == 4 && rec.arena_n == 2 && rec.max_tok == 1);
    SQ_CHECK(arena[0] == 110 && arena[1] == 10);
    sq_cuda_rec_reset(&rec);
    /* next decode step: new ids and positions, same ops: same key */
    s_record_step(&rec, 1, 11, (void *)0x2000);
    SQ_CHECK(sq_cuda_rec_key(&rec) == k1);
    SQ_CHECK(arena[0] == 111 && arena[1] == 11);
    sq_cuda_rec_reset(&rec);
    /* another batch size or another buffer: another graph */
    s_record_step(&rec, 2, 11, (void *)0x2000);
    const uint64_t k2 = sq_cuda_rec_key(&rec);
    SQ_CHECK(k2 != k1 && rec.max_tok == 2);
    sq_cuda_rec_reset(&rec);
    s_record_step(&rec, 1, 11, (void *)0x2100);
    SQ_CHECK(sq_cuda_rec_key(&rec) != k1);
    /* the arena is bounded: a full one says so, the caller makes room */
    int32_t big[64] = {0};
    int64_t off = -1;
    SQ_CHECK(sq_cuda_rec_args(&rec, big, 63, &off) == SQ_ETOOBIG && off == -1);
    SQ_CHECK(sq_cuda_rec_args(&rec, big, 62, &off) == 0 && off == 2);
    sq_cuda_rec_free(&rec);
}

static int s_dropped;
static void s_drop(void *exec)
{
    s_dropped += exec != NULL;
}

static void test_graph_policy(void)
{
    static sq_cuda_graph_cache_t c;
    memset(&c, 0, sizeof c);
    c.drop = s_drop;
    void *exec = NULL;
    /* seen once: op by op; seen again: capture; then replay */
    SQ_CHECK(sq_cuda_graph_decide(&c, 42, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);
    SQ_CHECK(sq_cuda_graph_decide(&c, 42, 300, 1, &exec) == SQ_CUDA_RUN_CAPTURE);
    sq_cuda_graph_store(&c, 42, (void *)0x42);
    SQ_CHECK(sq_cuda_graph_decide(&c, 42, 300, 1, &exec) == SQ_CUDA_RUN_REPLAY && exec == (void *)0x42);
    /* a prompt chunk beyond the graph size and tiny lists never become graphs */
    for (int i = 0; i < 3; i++) {
        SQ_CHECK(sq_cuda_graph_decide(&c, 7, 300, SQ_CUDA_GRAPH_MAX_TOK + 1, &exec) == SQ_CUDA_RUN_EAGER);
        SQ_CHECK(sq_cuda_graph_decide(&c, 8, SQ_CUDA_GRAPH_MIN_OPS - 1, 1, &exec) == SQ_CUDA_RUN_EAGER);
    }
    /* full cache: the least recently used graph goes (100: 42 was used
     * after it) */
    s_dropped = 0;
    for (uint64_t k = 100; k < 100 + SQ_CUDA_GRAPH_SLOTS; k++) {
        sq_cuda_graph_store(&c, k, (void *)(uintptr_t)k);
        if (k == 100)
            SQ_CHECK(sq_cuda_graph_decide(&c, 42, 300, 1, &exec) == SQ_CUDA_RUN_REPLAY);
    }
    SQ_CHECK(s_dropped == 1 && c.n == SQ_CUDA_GRAPH_SLOTS);
    SQ_CHECK(sq_cuda_graph_decide(&c, 42, 300, 1, &exec) == SQ_CUDA_RUN_REPLAY);
    SQ_CHECK(sq_cuda_graph_decide(&c, 101, 300, 1, &exec) == SQ_CUDA_RUN_REPLAY);
    SQ_CHECK(sq_cuda_graph_decide(&c, 100, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);   /* evicted */
    /* buffers reallocated: every graph dropped, keys start over */
    s_dropped = 0;
    sq_cuda_graph_clear(&c);
    SQ_CHECK(s_dropped == SQ_CUDA_GRAPH_SLOTS && c.n == 0);
    SQ_CHECK(sq_cuda_graph_decide(&c, 42, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);
    /* the seen list is bounded and keeps the newest keys */
    for (uint64_t k = 1000; k < 1000 + 3 * SQ_CUDA_GRAPH_SEEN; k++)
        sq_cuda_graph_decide(&c, k, 300, 1, &exec);
    SQ_CHECK(c.n_seen == SQ_CUDA_GRAPH_SEEN);
    SQ_CHECK(sq_cuda_graph_decide(&c, 1000 + 3 * SQ_CUDA_GRAPH_SEEN - 1, 300, 1, &exec) ==
             SQ_CUDA_RUN_CAPTURE);
    /* a TP = 2 step of a 22-layer model: 44 lists (one per all-reduce) on
     * alternating arenas, 88 keys a step; step 1 runs op by op, step 2
     * captures, every later step replays */
    sq_cuda_graph_clear(&c);
    int counts[3][3] = {{0}};
    for (int step = 0; step < 3; step++)
        for (uint64_t k = 5000; k < 5000 + 88; k++) {
            sq_cuda_run_t how = sq_cuda_graph_decide(&c, k, 300, 1, &exec);
            counts[step][how]++;
            if (how == SQ_CUDA_RUN_CAPTURE)
                sq_cuda_graph_store(&c, k, (void *)(uintptr_t)k);
        }
    SQ_CHECK(counts[0][SQ_CUDA_RUN_EAGER] == 88);
    SQ_CHECK(counts[1][SQ_CUDA_RUN_CAPTURE] == 88);
    SQ_CHECK(counts[2][SQ_CUDA_RUN_REPLAY] == 88);
    SQ_CHECK(c.captures == 88 + SQ_CUDA_GRAPH_SLOTS + 1);   /* graphs stored */
    /* a list the device will not capture runs op by op from then on,
     * while the others still become graphs */
    sq_cuda_graph_clear(&c);
    for (uint64_t k = 7000; k < 7000 + SQ_CUDA_GRAPH_REFUSED; k++) {
        SQ_CHECK(sq_cuda_graph_decide(&c, k, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);
        SQ_CHECK(sq_cuda_graph_decide(&c, k, 300, 1, &exec) == SQ_CUDA_RUN_CAPTURE);
        SQ_CHECK(sq_cuda_graph_refuse(&c, k));
    }
    for (uint64_t k = 7000; k < 7000 + SQ_CUDA_GRAPH_REFUSED; k++)
        SQ_CHECK(sq_cuda_graph_decide(&c, k, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);
    SQ_CHECK(sq_cuda_graph_decide(&c, 9, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);
    SQ_CHECK(sq_cuda_graph_decide(&c, 9, 300, 1, &exec) == SQ_CUDA_RUN_CAPTURE);
    sq_cuda_graph_store(&c, 9, (void *)9);
    SQ_CHECK(sq_cuda_graph_decide(&c, 9, 300, 1, &exec) == SQ_CUDA_RUN_REPLAY && exec == (void *)9);
    /* one refusal past the bound: the device refuses graphs, not a list */
    SQ_CHECK(sq_cuda_graph_decide(&c, 10, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);
    SQ_CHECK(sq_cuda_graph_decide(&c, 10, 300, 1, &exec) == SQ_CUDA_RUN_CAPTURE);
    SQ_CHECK(!sq_cuda_graph_refuse(&c, 10));
    SQ_CHECK(c.refusals == SQ_CUDA_GRAPH_REFUSED + 1);
    /* new buffers, new keys: the refused ones are forgotten with the rest */
    sq_cuda_graph_clear(&c);
    SQ_CHECK(sq_cuda_graph_decide(&c, 7000, 300, 1, &exec) == SQ_CUDA_RUN_EAGER);
    SQ_CHECK(sq_cuda_graph_decide(&c, 7000, 300, 1, &exec) == SQ_CUDA_RUN_CAPTURE);
}

static void test_weight_layout(void)
{
    SQ_CHECK(sq_cu_weight_bytes(SQ_CU_F32, 3, 5) == 60);
    SQ_CHECK(sq_cu_weight_bytes(SQ_CU_F16, 3, 5) == 30);
    SQ_CHECK(sq_cu_weight_bytes(SQ_CU_Q8_0, 3, 48) == 0);   /* partial block */
    SQ_CHECK(sq_cu_weight_bytes(7, 3, 64) == 0);            /* unknown dtype */
    SQ_CHECK(sq_cu_weight_bytes(SQ_CU_F32, 0, 64) == 0);
    /* 3 rows of 3 blocks: 288 quant bytes, scales from 512 (256-aligned) */
    enum { R = 3, NB = 3, N_IN = NB * SQ_CU_QK };
    SQ_CHECK(sq_cu_q8_scales_offset(R, N_IN) == 512);
    SQ_CHECK(sq_cu_q8_scales_offset(8, 32) == 256);
    SQ_CHECK(sq_cu_weight_bytes(SQ_CU_Q8_0, R, N_IN) == 512 + R * NB * 2);
    unsigned char gguf[R * NB * SQ_CU_Q8_BYTES];
    for (size_t i = 0; i < sizeof gguf; i++)
        gguf[i] = (unsigned char)(i * 7 + 3);
    unsigned char *out = malloc(sq_cu_weight_bytes(SQ_CU_Q8_0, R, N_IN));
    SQ_REQUIRE(out);
    sq_cu_q8_split(gguf, R, N_IN, out);
    int quants_ok = 1, scales_ok = 1;
    for (int r = 0; r < R; r++)
        for (int b = 0; b < NB; b++) {
            const unsigned char *blk = gguf + (r * NB + b) * SQ_CU_Q8_BYTES;
            /* quant i of block b of row r at (r, 32 b + i) */
            quants_ok &= memcmp(out + r * N_IN + b * SQ_CU_QK, blk + 2, SQ_CU_QK) == 0;
            /* its scale at (r, b) of the scale matrix */
            scales_ok &= memcmp(out + 512 + (r * NB + b) * 2, blk, 2) == 0;
        }
    SQ_CHECK(quants_ok);
    SQ_CHECK(scales_ok);
    free(out);
}

/* fake device buffers, 1 MiB apart */
static const void *s_buf(int i)
{
    return (const void *)(uintptr_t)(0x10000000u + (uintptr_t)i * 0x100000u);
}

enum { B_X = 1, B_O, B_XB, B_Q, B_K, B_V, B_ATT, B_GATE, B_UP, B_KC, B_VC, B_W = 20 };

/* a MATMUL op as the backend records it: y (n, n_out) = x W^T, with the
 * path it takes (mma: the int8 tensor-core path allowed) */
static sq_cuda_op_t s_mm(int w, int x, int y, int dtype, int n_out, int n_in, int n, bool mma)
{
    return (sq_cuda_op_t){.kind = SQ_CUDA_OP_MATMUL, .p = {s_buf(w), s_buf(x), s_buf(y)},
                          .i = {dtype, n_out, n_in, n,
                                sq_cuda_matmul_path(dtype, n_in, n, s_buf(x), mma)}};
}

/* one layer as sq_model records it for n tokens of dim 64, weights of
 * dtype; ops[0] is the previous layer's residual add */
static int s_layer(sq_cuda_op_t *ops, int n, int dtype, bool mma)
{
    const int dim = 64, ffn = 128, hd = 32, nh = 2, nkv = 1;
    int k = 0;
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_ADD, .p = {s_buf(B_X), s_buf(B_O)}, .i = {n * dim}};
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_RMSNORM, .p = {s_buf(B_X), s_buf(B_W), s_buf(B_XB)},
                              .i = {n, dim}, .f = {1e-5f}};
    const int outs[3] = {B_Q, B_K, B_V}, n_outs[3] = {nh * hd, nkv * hd, nkv * hd};
    for (int m = 0; m < 3; m++)
        ops[k++] = s_mm(B_W + 1 + m, B_XB, outs[m], dtype, n_outs[m], dim, n, mma);
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_ROPE, .p = {s_buf(B_Q)}, .i = {n, nh, hd, hd},
                              .f = {10000.0f}, .arg = {0}};
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_ROPE, .p = {s_buf(B_K)}, .i = {n, nkv, hd, hd},
                              .f = {10000.0f}, .arg = {0}};
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_ATTN,
                              .p = {s_buf(B_KC), s_buf(B_VC), s_buf(B_Q), s_buf(B_K), s_buf(B_V),
                                    s_buf(B_ATT)},
                              .i = {4, 128, nh, nkv, hd, 0, 0, 2, n}, .arg = {n, 0}};
    ops[k++] = s_mm(B_W + 4, B_ATT, B_O, dtype, dim, nh * hd, n, mma);
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_ADD, .p = {s_buf(B_X), s_buf(B_O)}, .i = {n * dim}};
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_RMSNORM, .p = {s_buf(B_X), s_buf(B_W + 5), s_buf(B_XB)},
                              .i = {n, dim}, .f = {1e-5f}};
    ops[k++] = s_mm(B_W + 6, B_XB, B_GATE, dtype, ffn, dim, n, mma);
    ops[k++] = s_mm(B_W + 7, B_XB, B_UP, dtype, ffn, dim, n, mma);
    ops[k++] = (sq_cuda_op_t){.kind = SQ_CUDA_OP_SWIGLU, .p = {s_buf(B_GATE), s_buf(B_UP)},
                              .i = {n * ffn}};
    ops[k++] = s_mm(B_W + 8, B_GATE, B_O, dtype, dim, ffn, n, mma);
    return k;
}

/* steps as "kind:first+n[a][q]" joined by spaces, for one comparison */
static const char *s_plan(const sq_cuda_op_t *ops, int n, bool fuse)
{
    static char out[512];
    static const char *const names[] = {"op", "norm", "gemv", "gemv_swiglu", "rope_attn"};
    sq_cuda_step_t *steps = NULL;
    int cap = 0, n_steps = sq_cuda_fuse(ops, n, fuse, &steps, &cap);
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n_steps && len < sizeof out - 40; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%s:%d+%d%s%s", i ? " " : "",
                                names[steps[i].kind], steps[i].first, steps[i].n_ops,
                                steps[i].add ? "a" : "", steps[i].quantize ? "q" : "");
    free(steps);
    return out;
}

static void test_fuse_layer(void)
{
    sq_cuda_op_t ops[32];
    int n = s_layer(ops, 1, SQ_CU_Q8_0, true);
    /* Q8_0, one token: add+norm+quantise, qkv, rope+store+attention
     * (quantising its output), o, add+norm+quantise, gate/up+swiglu, down */
    SQ_CHECK(!strcmp(s_plan(ops, n, true),
                     "norm:0+2aq gemv:2+3 rope_attn:5+3q gemv:8+1 norm:9+2aq gemv_swiglu:11+3 gemv:14+1"));
    /* fusion off: every op alone, norms plain */
    SQ_CHECK(!strcmp(s_plan(ops, n, false),
                     "op:0+1 norm:1+1 op:2+1 op:3+1 op:4+1 op:5+1 op:6+1 op:7+1 op:8+1 op:9+1 "
                     "norm:10+1 op:11+1 op:12+1 op:13+1 op:14+1"));
    /* F16 weights: GEMVs fuse, nothing to quantise */
    n = s_layer(ops, 2, SQ_CU_F16, true);
    SQ_CHECK(!strcmp(s_plan(ops, n, true),
                     "norm:0+2a gemv:2+3 rope_attn:5+3 gemv:8+1 norm:9+2a gemv_swiglu:11+3 gemv:14+1"));
    /* more than SQ_CUDA_GEMV_MAX tokens of Q8_0 on the int8 mma kernel:
     * fused and quantised as on the GEMV */
    n = s_layer(ops, SQ_CUDA_GEMV_MAX + 1, SQ_CU_Q8_0, true);
    SQ_CHECK(ops[2].i[SQ_CUDA_MM_PATH] == SQ_CUDA_PATH_MMA_Q8);
    SQ_CHECK(!strcmp(s_plan(ops, n, true),
                     "norm:0+2aq gemv:2+3 rope_attn:5+3q gemv:8+1 norm:9+2aq gemv_swiglu:11+3 "
                     "gemv:14+1"));
    /* with mma off (SHARDQ_CUDA_MMA=0), and F16 weights: cuBLAS, no
     * product steps, nothing to quantise */
    const char *blas_plan = "norm:0+2a op:2+1 op:3+1 op:4+1 rope_attn:5+3 op:8+1 norm:9+2a op:11+1 "
                            "op:12+1 op:13+1 op:14+1";
    n = s_layer(ops, SQ_CUDA_GEMV_MAX + 1, SQ_CU_Q8_0, false);
    SQ_CHECK(!strcmp(s_plan(ops, n, true), blas_plan));
    n = s_layer(ops, SQ_CUDA_GEMV_MAX + 1, SQ_CU_F16, true);
    SQ_CHECK(!strcmp(s_plan(ops, n, true), blas_plan));
    /* one token takes the GEMV either way */
    n = s_layer(ops, 1, SQ_CU_Q8_0, false);
    SQ_CHECK(ops[2].i[SQ_CUDA_MM_PATH] == SQ_CUDA_PATH_GEMV_Q8);
    /* a head size that is not whole Q8_0 blocks: the attention leaves
     * the quantisation to the product */
    n = s_layer(ops, 1, SQ_CU_Q8_0, true);
    for (int k = 5; k <= 7; k++)
        ops[k].i[k == 7 ? 4 : 2] = 8;
    ops[8].i[2] = ops[7].i[2] * 8;   /* n_heads * head_dim */
    SQ_CHECK(strstr(s_plan(ops, n, true), "rope_attn:5+3 gemv:8+1") != NULL);
    /* F32 weights always take cuBLAS */
    n = s_layer(ops, 1, SQ_CU_F32, true);
    SQ_CHECK(!strncmp(s_plan(ops, n, true), "norm:0+2a op:2+1 op:3+1", 23));
}

/* the profile's labels and bytes for a fused Q8_0 layer of 2 tokens (at
 * positions 3 and 9: 4 + 10 keys of one KV head of 32 F32 values, K and
 * V), the unfused ops' names and the batch buckets (the table itself:
 * unit.core) */
static void test_profile_labels(void)
{
    sq_cuda_op_t ops[32];
    const int n = s_layer(ops, 2, SQ_CU_Q8_0, true);
    const int32_t arena[2] = {3, 9};
    sq_cuda_step_t *steps = NULL;
    int cap = 0;
    const int n_steps = sq_cuda_fuse(ops, n, true, &steps, &cap);
    SQ_REQUIRE(n_steps == 7);
    const char *const want[7] = {"add+rmsnorm+q8_0 [2-16]", "gemv q8_0 x3 128x64 [2-16]",
                                 "rope+store+attention kv f32 [2-16]", "gemv q8_0 64x64 [2-16]",
                                 "add+rmsnorm+q8_0 [2-16]", "gemv q8_0 gate+up+silu 256x64 [2-16]",
                                 "gemv q8_0 64x128 [2-16]"};
    const double w = (double)sq_cu_weight_bytes(SQ_CU_Q8_0, 32, 64);
    const double bytes[7] = {0, 4 * w, 14.0 * 128 * 2, 2 * w, 0, 8 * w, 4 * w};
    char label[64];
    for (int k = 0; k < n_steps; k++) {
        const double b = sq_cuda_prof_describe(&steps[k], &ops[steps[k].first], arena, 2, label,
                                               sizeof label);
        SQ_CHECK(!strcmp(label, want[k]));
        SQ_CHECK(b == bytes[k]);
    }
    /* unfused, the batch bucket of a prefill list */
    const int n_plain = sq_cuda_fuse(ops, n, false, &steps, &cap);
    sq_cuda_prof_describe(&steps[0], &ops[steps[0].first], arena, 300, label, sizeof label);
    SQ_CHECK(!strcmp(label, "add [257+]"));
    sq_cuda_prof_describe(&steps[5], &ops[steps[5].first], arena, 1, label, sizeof label);
    SQ_CHECK(!strcmp(label, "rope [1]"));
    SQ_CHECK(n_plain == n);
    free(steps);
    SQ_CHECK(sq_cuda_prof_describe_tokens(true, 64, 1000, label, sizeof label) == 64 * 1000 * 4.0);
    SQ_CHECK(!strcmp(label, "sample 1000 logits [17-64]"));

}

static void test_fuse_refusals(void)
{
    sq_cuda_op_t ops[32];
    const int n = s_layer(ops, 1, SQ_CU_Q8_0, true);
    /* v written over the normed input: q, k fuse, v runs alone */
    sq_cuda_op_t o[32];
    memcpy(o, ops, sizeof ops);
    o[4].p[2] = s_buf(B_XB);
    SQ_CHECK(!strncmp(s_plan(o, n, true), "norm:0+2aq gemv:2+2 op:4+1 ", 27));
    /* k's RoPE at other positions: no fused rotation */
    memcpy(o, ops, sizeof ops);
    o[6].arg[0] = 7;
    SQ_CHECK(strstr(s_plan(o, n, true), "op:5+1 op:6+1 op:7+1") != NULL);
    /* the add's y overlapping the norm's output: add and norm apart */
    memcpy(o, ops, sizeof ops);
    o[0].p[1] = (const char *)s_buf(B_XB) + 64;
    SQ_CHECK(!strncmp(s_plan(o, n, true), "op:0+1 norm:1+1q ", 17));
    /* SwiGLU of other buffers: gate and up still share a launch */
    memcpy(o, ops, sizeof ops);
    o[13].p[1] = s_buf(B_V);
    SQ_CHECK(strstr(s_plan(o, n, true), "gemv:11+2 op:13+1") != NULL);
    /* products on different paths never share a launch */
    memcpy(o, ops, sizeof ops);
    o[3].i[SQ_CUDA_MM_PATH] = SQ_CUDA_PATH_MMA_Q8;
    SQ_CHECK(strstr(s_plan(o, n, true), "gemv:2+1 gemv:3+1 gemv:4+1") != NULL);
    /* products of different inputs never share a launch */
    memcpy(o, ops, sizeof ops);
    o[3].p[1] = s_buf(B_ATT);
    SQ_CHECK(strstr(s_plan(o, n, true), "gemv:2+1 gemv:3+1 gemv:4+1") != NULL);
}

static void test_attention_splits(void)
{
    /* batch 1 of 32 heads on 132 SMs: as many blocks as 2 an SM needs
     * (9), but no more than 512 positions each allow (2048: 4) */
    SQ_CHECK(sq_cu_att_splits(1, 32, 2048, 132) == 4);
    SQ_CHECK(sq_cu_att_splits(1, 32, 8192, 132) == 9);
    /* a short context or enough heads already: one block */
    SQ_CHECK(sq_cu_att_splits(1, 32, 511, 132) == 1);
    SQ_CHECK(sq_cu_att_splits(64, 32, 8192, 132) == 1);
    SQ_CHECK(sq_cu_att_splits(9, 32, 8192, 132) == 1);   /* 288 blocks >= 264 */
    /* few heads, long context: at most SQ_CU_ATT_MAX_SPLIT */
    SQ_CHECK(sq_cu_att_splits(1, 2, 1 << 20, 132) == SQ_CU_ATT_MAX_SPLIT);
    SQ_CHECK(sq_cu_att_splits(1, 32, 8192, 0) == 1);     /* SM count unknown */
    SQ_CHECK(sq_cu_att_part_floats(2, 4, 64, 3) == (size_t)2 * 4 * 3 * 66);
    SQ_CHECK(sq_cu_att_part_floats(2, 4, 64, 1) == 0);
}

static void test_arena_dedupe(void)
{
    int32_t arena[64];
    sq_cuda_rec_t rec = {.arena = arena, .arena_cap = 64};
    const int32_t pos[3] = {5, 6, 7}, slot[3] = {0, 1, 2}, other[2] = {5, 6};
    int64_t a, b, c, d, e;
    SQ_CHECK(sq_cuda_rec_args(&rec, pos, 3, &a) == 0);
    SQ_CHECK(sq_cuda_rec_args(&rec, slot, 3, &b) == 0);
    SQ_CHECK(sq_cuda_rec_args(&rec, pos, 3, &c) == 0);    /* equal: shared */
    SQ_CHECK(sq_cuda_rec_args(&rec, other, 2, &d) == 0);  /* a prefix is not equal */
    SQ_CHECK(a == 0 && b == 3 && c == 0 && d == 6 && rec.arena_n == 8);
    /* after a reset nothing is shared */
    sq_cuda_rec_reset(&rec);
    SQ_CHECK(sq_cuda_rec_args(&rec, slot, 3, &e) == 0 && e == 0 && rec.arena_n == 3);
}

/* The KV page table: a step stages the rows of its own slots, in the
 * order they first appear; every layer's attention passes the same table
 * and slots, staged once per list; a new epoch (the table changed),
 * other slots or a new list stage them again; rows that do not fit say so. */
static void test_page_table_staging(void)
{
    int32_t arena[64];
    sq_cuda_rec_t rec = {.arena = arena, .arena_cap = 64};
    /* 4 slots of 3 pages */
    int32_t table[12] = {3, 1, -1, /**/ 7, -1, -1, /**/ 0, 2, 4, /**/ 5, 6, -1};
    const int32_t two[2] = {2, 0}, one[1] = {3};
    int64_t a, b, c, d, e;
    SQ_CHECK(sq_cuda_rec_table(&rec, table, 3, two, 2, 1, &a) == 0 && a == 0 && rec.arena_n == 6);
    SQ_CHECK(arena[0] == 0 && arena[1] == 2 && arena[2] == 4 && arena[3] == 3 && arena[4] == 1);
    SQ_CHECK(sq_cuda_rec_table(&rec, table, 3, two, 2, 1, &b) == 0 && b == 0 && rec.arena_n == 6);
    table[2] = 8;   /* the model grew slot 0: its epoch moves */
    SQ_CHECK(sq_cuda_rec_table(&rec, table, 3, two, 2, 2, &c) == 0 && c == 6 && rec.arena_n == 12);
    SQ_CHECK(arena[6 + 5] == 8 && arena[5] == -1);
    /* batch-1 decode of slot 3: one row */
    SQ_CHECK(sq_cuda_rec_table(&rec, table, 3, one, 1, 2, &d) == 0 && d == 12 && rec.arena_n == 15);
    SQ_CHECK(arena[12] == 5 && arena[13] == 6 && arena[14] == -1);
    sq_cuda_rec_reset(&rec);
    SQ_CHECK(sq_cuda_rec_table(&rec, table, 3, one, 1, 2, &e) == 0 && e == 0 && rec.arena_n == 3);
    int32_t slots[21] = {0};   /* 63 values, 61 free */
    SQ_CHECK(sq_cuda_rec_table(&rec, table, 3, slots, 21, 1, &e) == SQ_ETOOBIG && rec.arena_n == 3);
    sq_cuda_rec_free(&rec);
}

int main(void)
{
    SQ_RUN(test_pick_device);
    SQ_RUN(test_local_rank);
    SQ_RUN(test_plan_comm);
    SQ_RUN(test_device_by_name);
    SQ_RUN(test_graph_keys);
    SQ_RUN(test_graph_policy);
    SQ_RUN(test_weight_layout);
    SQ_RUN(test_fuse_layer);
    SQ_RUN(test_fuse_refusals);
    SQ_RUN(test_profile_labels);
    SQ_RUN(test_attention_splits);
    SQ_RUN(test_arena_dedupe);
    SQ_RUN(test_page_table_staging);
    return sq_test_summary("cuda_unit");
}

/*  sq_cpu_pack: the packed Q8_0 layout (SQ_DTYPE_Q8_0X16, described in
 *  sq_cpu_kernels.h) and its portable kernels.
 *
 *  Packing is a one-off copy made when the backend loads a weight; the
 *  packed buffer is the caller's. The portable kernels do the reference's
 *  arithmetic (sq_cpu_matmul_ref on the unpacked rows) and the SIMD kernel
 *  must give the same bits, which test_cpu_kernels checks: a token's
 *  logits do not depend on which rows of a matrix fell in the tail, on the
 *  SIMD level, or on whether the weights were packed.
 */
#include "sq_cpu_internal.h"

#include <stdlib.h>
#include <string.h>

/* Bytes of a group's interleaved values per block: 16 rows x 32 values. */
#define S_QS_BYTES (SQ_CPU_PACK_ROWS * SQ_QK8_0)

/* Where value i of row r's block b sits among a group's qs: block b's
 * 512 bytes, then the 64-byte vector of values 4k .. 4k + 3 (k = i / 4),
 * then row r's 4 bytes. The layout of sq_cpu_kernels.h, in one place. */
static inline size_t
s_qs_at(int64_t b, int r, int i)
{
    return (size_t) b * S_QS_BYTES + (size_t) (i / 4) * (SQ_CPU_PACK_ROWS * 4) + (size_t) r * 4 +
           (size_t) (i % 4);
}

size_t
sq_cpu_q8_0x16_group_bytes(int64_t n_in)
{
    if (n_in <= 0 || n_in % SQ_QK8_0)
        return 0;
    size_t nb = (size_t) (n_in / SQ_QK8_0);
    size_t bytes = nb * (S_QS_BYTES + SQ_CPU_PACK_ROWS * sizeof(uint16_t));
    return (bytes + 63) & ~(size_t) 63;
}

size_t
sq_cpu_q8_0x16_bytes(int64_t n_out, int64_t n_in)
{
    size_t group = sq_cpu_q8_0x16_group_bytes(n_in);
    if (group == 0 || n_out <= 0)
        return 0;
    return (size_t) (n_out / SQ_CPU_PACK_ROWS) * group +
           (size_t) (n_out % SQ_CPU_PACK_ROWS) * sq_cpu_row_bytes(SQ_DTYPE_Q8_0, n_in);
}

typedef struct {
    const char *w;
    int64_t n_out, n_in;
    uint8_t *out;
} s_pack_job_t;

/* Groups ith, ith + nth, ... of the job; thread 0 also copies the tail. */
static void
s_pack_run(void *arg, int ith, int nth)
{
    const s_pack_job_t *job = arg;
    const int64_t nb = job->n_in / SQ_QK8_0, n_groups = job->n_out / SQ_CPU_PACK_ROWS;
    const size_t row_bytes = sq_cpu_row_bytes(SQ_DTYPE_Q8_0, job->n_in);
    const size_t group_bytes = sq_cpu_q8_0x16_group_bytes(job->n_in);
    for (int64_t g = ith; g < n_groups; g += nth) {
        uint8_t *qs = job->out + (size_t) g * group_bytes;
        uint16_t *d = (uint16_t *) (qs + (size_t) nb * S_QS_BYTES);
        size_t used = (size_t) nb * (S_QS_BYTES + SQ_CPU_PACK_ROWS * sizeof(uint16_t));
        memset(qs + used, 0, group_bytes - used);   /* the padding: no stale bytes */
        for (int r = 0; r < SQ_CPU_PACK_ROWS; r++) {
            const sq_block_q8_0_t *row =
                (const sq_block_q8_0_t *) (job->w +
                                           (size_t) (g * SQ_CPU_PACK_ROWS + r) * row_bytes);
            for (int64_t b = 0; b < nb; b++) {
                d[b * SQ_CPU_PACK_ROWS + r] = row[b].d;
                for (int k = 0; k < SQ_QK8_0 / 4; k++) {
                    uint32_t four;   /* values 4k .. 4k + 3; ^ 0x80 is + 128 mod 256 */
                    memcpy(&four, row[b].qs + 4 * k, sizeof four);
                    four ^= 0x80808080u;
                    memcpy(qs + s_qs_at(b, r, 4 * k), &four, sizeof four);
                }
            }
        }
    }
    if (ith == 0)
        memcpy(job->out + (size_t) n_groups * group_bytes,
               job->w + (size_t) (n_groups * SQ_CPU_PACK_ROWS) * row_bytes,
               (size_t) (job->n_out % SQ_CPU_PACK_ROWS) * row_bytes);
}

void
sq_cpu_pack_q8_0x16(sq_threadpool_t *pool, const void *w, int64_t n_out, int64_t n_in, void *out)
{
    s_pack_job_t job = {.w = w, .n_out = n_out, .n_in = n_in, .out = out};
    sq_threadpool_run(pool, s_pack_run, &job);
}

void
sq_cpu_q8_0x16_row(const void *packed, int64_t n_out, int64_t n_in, int64_t row, float *y)
{
    const int64_t nb = n_in / SQ_QK8_0, n_groups = n_out / SQ_CPU_PACK_ROWS;
    const size_t group_bytes = sq_cpu_q8_0x16_group_bytes(n_in);
    const int64_t g = row / SQ_CPU_PACK_ROWS;
    if (g >= n_groups) {
        const char *tail = (const char *) packed + (size_t) n_groups * group_bytes;
        sq_cpu_dequantize_row(SQ_DTYPE_Q8_0,
                              tail + (size_t) (row - n_groups * SQ_CPU_PACK_ROWS) *
                                         sq_cpu_row_bytes(SQ_DTYPE_Q8_0, n_in),
                              y, n_in);
        return;
    }
    const int r = (int) (row % SQ_CPU_PACK_ROWS);
    const uint8_t *qs = (const uint8_t *) packed + (size_t) g * group_bytes;
    const uint16_t *d = (const uint16_t *) (qs + (size_t) nb * S_QS_BYTES);
    for (int64_t b = 0; b < nb; b++) {
        float scale = sq_fp16_to_fp32(d[b * SQ_CPU_PACK_ROWS + r]);
        for (int i = 0; i < SQ_QK8_0; i++) {
            int q = qs[s_qs_at(b, r, i)] - 128;
            y[b * SQ_QK8_0 + i] = scale * (float) q;
        }
    }
}

void
sq_cpu_quantize_xq8(void (*quantize)(const float *, sq_block_q8_0_t *, int64_t), const float *x,
                    sq_cpu_xq8_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / SQ_QK8_0; b++) {
        sq_block_q8_0_t q;
        quantize(x + b * SQ_QK8_0, &q, SQ_QK8_0);
        int32_t sum = 0;
        for (int i = 0; i < SQ_QK8_0; i++)
            sum += q.qs[i];
        y[b].d = sq_fp16_to_fp32(q.d);
        y[b].neg_bias = -128 * sum;
        memcpy(y[b].qs, q.qs, sizeof q.qs);
    }
}

/* The packed path's sum for one row and token: blocks in order, a product
 * and a sum each, as sq_cpu_matmul_ref's (so the packed path gives the
 * reference's bits; a fused multiply-add would not, and would give TP
 * ranks that split a row at a block boundary other partial sums). */
#define S_ACCUMULATE(acc, dw, xb, isum) acc += (float) (isum) * ((dw) * (xb)->d)

void
sq_cpu_gemm_q8_0x16_portable(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x,
                             size_t x_stride, int n_x, float *y, int64_t ldy)
{
    const uint16_t *d = (const uint16_t *) (group + (size_t) nb * S_QS_BYTES);
    for (int j = 0; j < n_x; j++) {
        for (int r = 0; r < SQ_CPU_PACK_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const sq_cpu_xq8_t *xb = x + (size_t) j * x_stride + b;
                int32_t isum = xb->neg_bias;
                for (int i = 0; i < SQ_QK8_0; i++)
                    isum += (int32_t) group[s_qs_at(b, r, i)] * xb->qs[i];
                S_ACCUMULATE(acc, sq_fp16_to_fp32(d[b * SQ_CPU_PACK_ROWS + r]), xb, isum);
            }
            y[(size_t) j * ldy + r] = acc;
        }
    }
}

void
sq_cpu_gemm_q8_0_rows_xq8(const sq_block_q8_0_t *w, int n_rows, int64_t nb, const sq_cpu_xq8_t *x,
                          size_t x_stride, int n_x, float *y, int64_t ldy)
{
    for (int j = 0; j < n_x; j++) {
        for (int r = 0; r < n_rows; r++) {
            const sq_block_q8_0_t *row = w + (size_t) r * (size_t) nb;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const sq_cpu_xq8_t *xb = x + (size_t) j * x_stride + b;
                int32_t isum = 0;
                for (int i = 0; i < SQ_QK8_0; i++)
                    isum += (int32_t) row[b].qs[i] * xb->qs[i];
                S_ACCUMULATE(acc, sq_fp16_to_fp32(row[b].d), xb, isum);
            }
            y[(size_t) j * ldy + r] = acc;
        }
    }
}

/*  sq_cpu_matmul: the driver every SIMD level shares.
 *
 *  Y (n_tok, n_out) = X (n_tok, n_in) W^T, W (n_out, n_in) row-major.
 *  Threads take chunks of output rows from a shared counter rather than a
 *  fixed share each: on a shared machine one descheduled thread would
 *  otherwise hold up every matmul until it runs again. Within a chunk a
 *  thread walks token tiles small enough for the tile's activations to stay
 *  in L2, and for each group of SQ_CPU_NW weight rows runs the level's dot
 *  kernel over the tile SQ_CPU_NX tokens at a time: the rows come from
 *  memory once per tile and from L1 for the rest of it. A decode step
 *  (n_tok = 1) is one tile.
 *
 *  For Q8_0 weights the activations are quantized to Q8_0 once per call,
 *  by the calling thread, into a per-thread scratch buffer that only grows
 *  (so the hot path allocates only when a larger shape first appears).
 *  Packed Q8_0 weights (SQ_DTYPE_Q8_0X16) take the same walk with groups
 *  of 16 rows for SQ_CPU_PACK_NX tokens at a time, their activations in
 *  the packed kernels' form; the last n_out % 16 rows go through the
 *  portable row kernel, which gives the packed kernels' bits.
 */
#include "sq_cpu_internal.h"
#include "sq_error.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Activation bytes one token tile may occupy (half a typical L2). */
#define S_TILE_BYTES (256 * 1024)
/* Chunks per thread: enough to even out a slow thread, few enough that
 * the counter is not contended. Rows per chunk stay a multiple of NW. */
#define S_CHUNKS_PER_THREAD 8
#define S_MIN_CHUNK_ROWS 16

/* One weight of a job: its rows, output and first chunk number. */
typedef struct {
    const char *w;          /* n_out rows of row_bytes */
    int64_t n_out;
    float *y;
    int64_t ldy;
    int64_t chunk0;         /* chunks before this weight's */
} s_seg_t;

typedef struct {
    sq_cpu_dot_fn dot;
    sq_cpu_gemm_x16_fn gemm;  /* packed weights: the group kernel (dot unused) */
    size_t row_bytes;
    int64_t n_in;
    const char *x;          /* n_tok rows of x_stride bytes (F32 or Q8_0) */
    size_t x_stride;
    int64_t n_tok, tile;
    int64_t chunk_rows, n_chunks;
    int n_segs;
    s_seg_t segs[SQ_CPU_MATMUL_MAX];
    atomic_llong next_chunk;
} s_job_t;

static _Thread_local void *s_scratch;
static _Thread_local size_t s_scratch_bytes;

static void *
s_scratch_get(size_t bytes)
{
    if (bytes > s_scratch_bytes) {
        void *p = realloc(s_scratch, bytes);
        if (!p)
            return NULL;
        s_scratch = p;
        s_scratch_bytes = bytes;
    }
    return s_scratch;
}

/* Rows [r0, r1) of seg for every token, tile by tile. */
static void
s_rows_run(const s_job_t *job, const s_seg_t *seg, int64_t r0, int64_t r1)
{
    float out[SQ_CPU_NW * SQ_CPU_NX];
    for (int64_t t0 = 0; t0 < job->n_tok; t0 += job->tile) {
        int64_t t1 = t0 + job->tile < job->n_tok ? t0 + job->tile : job->n_tok;
        for (int64_t o = r0; o < r1; o += SQ_CPU_NW) {
            int n_w = r1 - o < SQ_CPU_NW ? (int) (r1 - o) : SQ_CPU_NW;
            const char *wo = seg->w + (size_t) o * job->row_bytes;
            for (int64_t t = t0; t < t1; t += SQ_CPU_NX) {
                int n_x = t1 - t < SQ_CPU_NX ? (int) (t1 - t) : SQ_CPU_NX;
                job->dot(wo, job->row_bytes, n_w, job->x + (size_t) t * job->x_stride,
                         job->x_stride, n_x, job->n_in, out);
                for (int r = 0; r < n_w; r++)
                    for (int j = 0; j < n_x; j++)
                        seg->y[(t + j) * seg->ldy + o + r] = out[r * SQ_CPU_NX + j];
            }
        }
    }
}

/* The same for packed weights: rows [r0, r1), r0 a multiple of 16; whole
 * groups first, then the tail rows if the chunk reaches them. */
static void
s_packed_rows_run(const s_job_t *job, const s_seg_t *seg, int64_t r0, int64_t r1)
{
    const int64_t nb = job->n_in / SQ_QK8_0;
    const int64_t grouped = seg->n_out / SQ_CPU_PACK_ROWS * SQ_CPU_PACK_ROWS;
    const sq_cpu_xq8_t *x = (const sq_cpu_xq8_t *) job->x;
    const size_t xs = (size_t) nb;
    for (int64_t t0 = 0; t0 < job->n_tok; t0 += job->tile) {
        int64_t t1 = t0 + job->tile < job->n_tok ? t0 + job->tile : job->n_tok;
        for (int64_t o = r0; o < r1 && o < grouped; o += SQ_CPU_PACK_ROWS) {
            const uint8_t *g =
                (const uint8_t *) seg->w + (size_t) (o / SQ_CPU_PACK_ROWS) * job->row_bytes;
            for (int64_t t = t0; t < t1; t += SQ_CPU_PACK_NX) {
                int n_x = t1 - t < SQ_CPU_PACK_NX ? (int) (t1 - t) : SQ_CPU_PACK_NX;
                job->gemm(g, nb, x + (size_t) t * xs, xs, n_x, seg->y + t * seg->ldy + o,
                          seg->ldy);
            }
        }
        if (r1 > grouped) {
            int64_t first = r0 > grouped ? r0 : grouped;
            const sq_block_q8_0_t *tail =
                (const sq_block_q8_0_t *) (seg->w + (size_t) (grouped / SQ_CPU_PACK_ROWS) *
                                                        job->row_bytes) +
                (size_t) (first - grouped) * (size_t) nb;
            for (int64_t t = t0; t < t1; t += SQ_CPU_PACK_NX) {
                int n_x = t1 - t < SQ_CPU_PACK_NX ? (int) (t1 - t) : SQ_CPU_PACK_NX;
                sq_cpu_gemm_q8_0_rows_xq8(tail, (int) (r1 - first), nb, x + (size_t) t * xs, xs,
                                          n_x, seg->y + t * seg->ldy + first, seg->ldy);
            }
        }
    }
}

/* Chunks are numbered through the weights in turn; a chunk never spans
 * two weights. */
static void
s_job_run(void *arg, int ith, int nth)
{
    s_job_t *job = arg;
    int i = 0;
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&job->next_chunk, 1, memory_order_relaxed);
        if (c >= job->n_chunks)
            return;
        while (i + 1 < job->n_segs && c >= job->segs[i + 1].chunk0)
            i++;
        const s_seg_t *seg = &job->segs[i];
        int64_t r0 = (c - seg->chunk0) * job->chunk_rows;
        int64_t r1 = r0 + job->chunk_rows < seg->n_out ? r0 + job->chunk_rows : seg->n_out;
        if (job->gemm)
            s_packed_rows_run(job, seg, r0, r1);
        else
            s_rows_run(job, seg, r0, r1);
    }
}

/* Per-thread room for n_tok rows of n_in / 32 activation blocks of
 * block_bytes each; NULL with the error set when there is no memory. */
static void *
s_x_scratch(int64_t n_tok, int64_t n_in, size_t block_bytes)
{
    size_t bytes = (size_t) (n_in / SQ_QK8_0) * (size_t) n_tok * block_bytes;
    void *p = s_scratch_get(bytes);
    if (!p && bytes > 0)
        SQ_FAIL(SQ_ENOMEM, "matmul: no memory to quantize %lld x %lld activations",
                (long long) n_tok, (long long) n_in);
    return p;
}

/* Rows per chunk for nth threads: a multiple of `multiple`. */
static int64_t
s_chunk_rows(int64_t n_out, int nth, int multiple)
{
    if (nth == 1)
        return n_out;
    int64_t rows = n_out / ((int64_t) nth * S_CHUNKS_PER_THREAD);
    rows = rows < S_MIN_CHUNK_ROWS ? S_MIN_CHUNK_ROWS : rows;
    return (rows + multiple - 1) / multiple * multiple;
}

int
sq_cpu_matmul_with(const sq_cpu_kernels_t *k, sq_threadpool_t *pool, int dtype, const void *w,
                   int64_t n_out, int64_t n_in, const float *x, int64_t n_tok, float *y,
                   int64_t ldy)
{
    const sq_cpu_mat_t mat = {.w = w, .n_out = n_out, .y = y, .ldy = ldy};
    return sq_cpu_matmul_n_with(k, pool, dtype, &mat, 1, n_in, x, n_tok);
}

int
sq_cpu_matmul_n_with(const sq_cpu_kernels_t *k, sq_threadpool_t *pool, int dtype,
                     const sq_cpu_mat_t *mats, int n_mats, int64_t n_in, const float *x,
                     int64_t n_tok)
{
    if (n_mats < 1 || n_mats > SQ_CPU_MATMUL_MAX)
        return SQ_FAIL(SQ_EINVAL, "matmul: %d weights in one call (1 to %d)", n_mats,
                       SQ_CPU_MATMUL_MAX);
    int64_t total_out = 0;
    for (int i = 0; i < n_mats; i++) {
        int rc = sq_cpu_matmul_check(dtype, mats[i].n_out, n_in, n_tok, mats[i].ldy);
        if (rc)
            return rc;
        total_out += mats[i].n_out;
    }
    if (total_out == 0 || n_tok == 0)
        return 0;
    s_job_t job = {
        .row_bytes = sq_cpu_row_bytes(dtype, n_in), .n_in = n_in,
        .x = (const char *) x, .x_stride = (size_t) n_in * sizeof(float), .n_tok = n_tok,
    };
    int multiple = SQ_CPU_NW;
    size_t blocks_per_row = (size_t) (n_in / SQ_QK8_0);
    if (dtype == SQ_DTYPE_Q8_0X16) {
        sq_cpu_xq8_t *xq = s_x_scratch(n_tok, n_in, sizeof *xq);
        if (!xq && blocks_per_row > 0)
            return SQ_ENOMEM;
        for (int64_t t = 0; t < n_tok; t++)
            sq_cpu_quantize_xq8(k->quantize_q8_0, x + t * n_in, xq + (size_t) t * blocks_per_row,
                                n_in);
        job.x = (const char *) xq;
        job.x_stride = blocks_per_row * sizeof *xq;
        job.row_bytes = sq_cpu_q8_0x16_group_bytes(n_in);   /* a group's, here */
        job.gemm = k->gemm_q8_0x16 ? k->gemm_q8_0x16 : sq_cpu_gemm_q8_0x16_portable;
        multiple = SQ_CPU_PACK_ROWS;
    } else if (dtype == SQ_DTYPE_Q8_0) {
        sq_block_q8_0_t *xq = s_x_scratch(n_tok, n_in, sizeof *xq);
        if (!xq && blocks_per_row > 0)
            return SQ_ENOMEM;
        for (int64_t t = 0; t < n_tok; t++)
            k->quantize_q8_0(x + t * n_in, xq + (size_t) t * blocks_per_row, n_in);
        job.x = (const char *) xq;
        job.x_stride = blocks_per_row * sizeof *xq;
        job.dot = k->dot_q8_0;
    } else {
        job.dot = dtype == SQ_DTYPE_F32 ? k->dot_f32 : k->dot_f16;
    }
    /* whole kernel calls' worth of tokens per tile */
    const int64_t nx = job.gemm ? SQ_CPU_PACK_NX : SQ_CPU_NX;
    int64_t tile = job.x_stride ? (int64_t) (S_TILE_BYTES / job.x_stride) : n_tok;
    tile -= tile % nx;
    job.tile = tile < nx ? nx : tile;
    /* chunks sized for all the rows together */
    job.chunk_rows = s_chunk_rows(total_out, sq_threadpool_size(pool), multiple);
    for (int i = 0; i < n_mats; i++) {
        job.segs[job.n_segs++] = (s_seg_t){.w = mats[i].w, .n_out = mats[i].n_out,
                                           .y = mats[i].y, .ldy = mats[i].ldy,
                                           .chunk0 = job.n_chunks};
        job.n_chunks += (mats[i].n_out + job.chunk_rows - 1) / job.chunk_rows;
    }
    atomic_init(&job.next_chunk, 0);
    sq_threadpool_run(pool, s_job_run, &job);
    return 0;
}

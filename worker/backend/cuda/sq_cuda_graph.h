/*  sq_cuda_graph: the host-side bookkeeping behind the CUDA backend's
 *  graphs (no CUDA calls here, so CPU-only CI tests it).
 *
 *  The backend does not launch an op when it is called: it records it (a
 *  few words: kind, device pointers, sizes) and copies the op's host
 *  arrays (ids, positions, slots) into a staging arena. At a sync point
 *  (reading logits back, an all-reduce, freeing memory) the recorded ops
 *  run. A decode step repeats the same ops on the same buffers with new
 *  arena values, so the op list (not the arena values) is the key of a
 *  CUDA graph: seen once, the list runs op by op; seen again, it is
 *  captured into a graph; after that the step is one arena copy and one
 *  graph launch instead of hundreds of kernel launches.
 */
#ifndef SQ_CUDA_GRAPH_H
#define SQ_CUDA_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Recorded op kinds and their fields (p: device pointers, i: sizes, f:
 * floats, arg: arena offsets of host arrays):
 *   EMBED    p emb, out;            i dtype, n_in, n, n_out;  arg ids
 *   RMSNORM  p x, w, out;           i n, dim;  f eps
 *   MATMUL   p W, x, y;             i dtype, n_out, n_in, n_tok
 *   ROPE     p x;                   i n_tok, n_heads, head_dim, n_rot;  f base;  arg pos
 *   ATTN     p k_cache, v_cache, q, k, v, out;
 *            i n_slots, n_ctx, n_heads, n_kv, head_dim, q_head0, kv_head0, group,
 *              n_tok, kv_dtype;  arg rows, pos, pages: the page-table rows of
 *              the slots the tokens use (sq_cuda_rec_table), and each
 *              token's row among them in place of its slot
 *   SWIGLU   p gate, up;            i n
 *   ADD      p x, y;                i n
 *   COPY     p dst, src;            i bytes
 *   INDEX_ROWS p dst, src;          i row_len, n, add;  arg idx */
enum {
    SQ_CUDA_OP_EMBED = 1,
    SQ_CUDA_OP_RMSNORM,
    SQ_CUDA_OP_MATMUL,
    SQ_CUDA_OP_ROPE,
    SQ_CUDA_OP_ATTN,
    SQ_CUDA_OP_SWIGLU,
    SQ_CUDA_OP_ADD,
    SQ_CUDA_OP_COPY,
    SQ_CUDA_OP_INDEX_ROWS
};

/* One recorded op. Unused fields stay 0; all of them are part of the key. */
typedef struct {
    int kind;
    const void *p[6];           /* device pointers */
    int64_t i[11];              /* sizes, dtypes, head counts */
    float f[2];                 /* eps, rope base */
    int64_t arg[3];             /* arena offsets of host arrays (0 when unused) */
} sq_cuda_op_t;

typedef struct {
    sq_cuda_op_t *ops;
    int n_ops, cap_ops;
    int32_t *arena;             /* the backend's (pinned) staging buffer */
    size_t arena_n, arena_cap;  /* int32s used / available */
    int max_tok;                /* largest token count of the ops */
    /* the last arrays staged (offset, length), so an equal array (the same
     * positions for both RoPEs and the attention) is staged once and the
     * ops share its offset */
    int64_t staged_off[4];
    int staged_n[4], n_staged;
    /* the page-table rows staged last in this list: every layer's
     * attention passes the same table (recognised by its address and
     * epoch, not by comparing thousands of entries) and slots */
    const int32_t *table_src;
    uint64_t table_epoch;
    int32_t *table_slots;       /* whose rows (table_k of them; 0: none staged) */
    int table_k, table_slots_cap, table_width;
    int64_t table_off;
} sq_cuda_rec_t;

/* append op (copied); 0 or SQ_ENOMEM */
int sq_cuda_rec_push(sq_cuda_rec_t *rec, const sq_cuda_op_t *op, int n_tok);
/* copy n values into the arena; *off their offset (that of one of the
 * last arrays staged, when they are equal to it). SQ_ETOOBIG when they do
 * not fit (the backend then runs what is recorded or grows it). */
int sq_cuda_rec_args(sq_cuda_rec_t *rec, const int32_t *v, int n, int64_t *off);
/* Copy rows slots[0..k) (width values each) of the page table at src,
 * whose contents change only with epoch, into the arena, one after the
 * other, unless this list's last copy has the same rows (then *off is
 * that copy's). A step reads only its own slots' rows: batch-1 decode
 * stages one row, not the table of every slot. SQ_ETOOBIG as
 * sq_cuda_rec_args; SQ_ENOMEM. */
int sq_cuda_rec_table(sq_cuda_rec_t *rec, const int32_t *src, int width, const int32_t *slots,
                      int k, uint64_t epoch, int64_t *off);
/* the recorded list's key: every op field and the arena length, never
 * the arena values */
uint64_t sq_cuda_rec_key(const sq_cuda_rec_t *rec);
/* forget the recorded ops and arena values (keeps the storage) */
void sq_cuda_rec_reset(sq_cuda_rec_t *rec);
void sq_cuda_rec_free(sq_cuda_rec_t *rec);

/* A tensor-parallel step flushes at every all-reduce, so a 22-layer model
 * runs 44 lists per step, 88 keys over the two arenas: the cache holds a
 * step of models up to ~60 layers (more cycle through LRU and run op by
 * op). */
enum {
    SQ_CUDA_GRAPH_SLOTS = 256,  /* instantiated graphs kept (LRU) */
    SQ_CUDA_GRAPH_SEEN = 256,   /* keys seen once, waiting for a repeat */
    SQ_CUDA_GRAPH_MAX_TOK = 256,/* bigger steps (prefill) always run op by op */
    SQ_CUDA_GRAPH_MIN_OPS = 4,  /* shorter lists are not worth a graph */
    SQ_CUDA_GRAPH_REFUSED = 16  /* lists the device would not capture, kept
                                 * to run op by op; one more and graphs go */
};

typedef enum {
    SQ_CUDA_RUN_EAGER = 0,      /* launch op by op */
    SQ_CUDA_RUN_CAPTURE,        /* capture, store, launch */
    SQ_CUDA_RUN_REPLAY          /* launch the stored graph */
} sq_cuda_run_t;

typedef struct {
    uint64_t key;
    void *exec;                 /* cudaGraphExec_t */
    uint64_t used;
} sq_cuda_graph_entry_t;

typedef struct {
    sq_cuda_graph_entry_t e[SQ_CUDA_GRAPH_SLOTS];
    int n;
    uint64_t seen[SQ_CUDA_GRAPH_SEEN];
    int n_seen, seen_next;
    uint64_t clock;
    uint64_t refused[SQ_CUDA_GRAPH_REFUSED];
    int n_refused;
    void (*drop)(void *exec);   /* destroys an evicted graph */
    /* counters for tests and logs: graphs stored, replayed, lists run op
     * by op, captures the device refused */
    long captures, replays, eagers, refusals;
} sq_cuda_graph_cache_t;

/* What to do with a recorded list (key, n_ops, max_tok); *exec set for
 * REPLAY. */
sq_cuda_run_t sq_cuda_graph_decide(sq_cuda_graph_cache_t *c, uint64_t key, int n_ops, int max_tok,
                                   void **exec);
/* keep exec for key, evicting (drop) the least recently used when full */
void sq_cuda_graph_store(sq_cuda_graph_cache_t *c, uint64_t key, void *exec);
/* The device would not capture key's list (decide said CAPTURE): the list
 * runs op by op from now on, and the others still become graphs. False
 * when SQ_CUDA_GRAPH_REFUSED lists were refused already: then it is the
 * device that refuses graphs, not a list, and the caller turns them off. */
bool sq_cuda_graph_refuse(sq_cuda_graph_cache_t *c, uint64_t key);
/* drop every graph (buffers they name were reallocated), the seen keys
 * and the refused ones (keys name the buffers) */
void sq_cuda_graph_clear(sq_cuda_graph_cache_t *c);

#ifdef __cplusplus
}
#endif
#endif

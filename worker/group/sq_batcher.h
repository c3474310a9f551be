/*  sq_batcher: continuous batching over a (possibly tensor-parallel) model.
 *
 *  Rank 0 holds up to max_batch sequences, one per KV-cache slot. Each
 *  step it plans one batch — one token for every decoding sequence, then
 *  chunks of waiting prompts up to a prefill budget, so a long prompt never
 *  stalls running sequences for more than one chunk — broadcasts the plan
 *  to the other ranks, runs the forward pass with them, samples, and hands
 *  finished sequences to a callback. Sequences join and leave between any
 *  two steps. The other ranks run sq_batcher_follow(), which executes plans
 *  until rank 0 says stop.
 *
 *  Idle followers wait for the next plan with a non-blocking broadcast and
 *  a backoff sleep, so an idle group does not spin its cores.
 *
 *  Ownership: the batcher owns admitted sequences until their finish
 *  callback (which takes them) or sq_batcher_remove(); the model is
 *  borrowed.
 */
#ifndef SQ_BATCHER_H
#define SQ_BATCHER_H

#include <mpi.h>
#include <stdint.h>

#include "sq_model.h"
#include "sq_seq.h"

typedef struct sq_batcher sq_batcher_t;

typedef struct {
    int64_t admitted_ns;        /* CLOCK_MONOTONIC at admit */
    int64_t prefilled_ns;       /* when the last prompt chunk ran */
    int64_t finished_ns;
} sq_seq_times_t;

/* Called on rank 0 for each finished sequence; takes ownership of seq. */
typedef void (sq_batcher_done_fn)(void *arg, sq_seq_t *seq, void *user,
                                  const sq_seq_times_t *times);

/* comm: the group's MPI communicator (duplicated inside). max_batch <=
 * the model's KV slots. prefill_budget: prompt tokens per step (>= 1). */
sq_batcher_t *sq_batcher_new(sq_model_t *model, MPI_Comm comm, int max_batch,
                             int prefill_budget);
void sq_batcher_destroy(sq_batcher_t **self_p);
/* Rank 0: choose the sampled rows' tokens on n_threads threads (default
 * 1; the rows' samplers are independent). 0 or SQ_ENOMEM. */
int sq_batcher_set_sampling_threads(sq_batcher_t *self, int n_threads);

int sq_batcher_capacity(const sq_batcher_t *self);
int sq_batcher_n_active(const sq_batcher_t *self);

/* Rank 0: add a sequence (taking it) with an opaque user pointer.
 * Returns its slot, or SQ_EAGAIN when every slot is busy, when preempted
 * sequences wait to resume (they go first), or when the KV cache cannot
 * hold its prompt beside a watermark of free pages for the running ones
 * (idle slots' cached rows are evicted for it, least recently used
 * first, on every rank). Sequences take pages as they grow; a step that
 * finds too few preempts the latest admitted sequences (their pages go
 * back, and they later run their context again and go on: vLLM's
 * recomputation, after sharing what another slot stores of their
 * prompt), so with nothing else running every page is free.
 * Prefix reuse: a slot's KV cache still holds what its last sequence put
 * there after it finishes, so a newcomer takes the free slot whose cached
 * tokens share the longest prefix with its prompt (same LoRA adapter)
 * and starts its prefill after that prefix (never past the prompt's last
 * token, whose logits it needs, nor inside a page another slot shares).
 * When another slot, running or not, stores a longer prefix, the
 * newcomer shares its whole pages of it instead (no copy; every rank
 * alike). When a running sequence's prompt will store at least a page
 * more of it than any slot holds now (tasks of one job admitted together),
 * the newcomer takes a slot and waits, prefilling nothing, until those
 * pages are stored, then shares them (if that sequence leaves or is
 * preempted first, it takes what is stored and prefills the rest). Batch
 * jobs whose prompts share an instruction block skip prefilling it. The rows reused are the ones a
 * fresh prefill would compute (on the CPU backend the same bits: the
 * output does not change). */
int sq_batcher_admit(sq_batcher_t *self, sq_seq_t *seq, void *user);
/* Rank 0: turn prefix reuse off (on by default) or on; and how many
 * prompt tokens it has saved so far. */
void sq_batcher_set_prefix_reuse(sq_batcher_t *self, bool on);
long sq_batcher_reused_tokens(const sq_batcher_t *self);
/* Rank 0: the KV cache's use. Pages neither free nor in use hold the
 * rows of finished sequences, kept for prefix reuse and evicted when
 * needed (vLLM counts them free). */
typedef struct {
    int pages;                  /* in all */
    int free;                   /* in the pool */
    int in_use;                 /* held by the admitted sequences (a shared page once) */
    long preemptions;           /* so far */
} sq_batcher_kv_t;
void sq_batcher_kv_stats(sq_batcher_t *self, sq_batcher_kv_t *out);
/* Rank 0: drop the sequence whose user pointer is user (cancel). Returns
 * 0 or SQ_ENOTFOUND. The sequence is destroyed. */
int sq_batcher_remove(sq_batcher_t *self, void *user);
/* Rank 0: run one step if any sequence is active; finished sequences go
 * to done(arg, ...). Returns 0 or the model's/communicator's error (the
 * group cannot go on after one). */
int sq_batcher_step(sq_batcher_t *self, sq_batcher_done_fn *done, void *arg);
/* Rank 0: tell the followers to return from sq_batcher_follow. */
int sq_batcher_stop_followers(sq_batcher_t *self);
/* Rank 0: load the LoRA adapter at path on every rank (each keeps its
 * shard). OUT *id for sq_seq_set_adapter. All ranks agree: when any rank
 * fails, none keeps it and the error (rank 0's detail) is returned. */
int sq_batcher_adapter_load(sq_batcher_t *self, const char *path, int *id);
/* Rank 0: unload adapter id on every rank (no running sequence may use it). */
int sq_batcher_adapter_unload(sq_batcher_t *self, int id);
/* Ranks > 0: execute plans until rank 0 stops. 0 or an error. */
int sq_batcher_follow(sq_batcher_t *self);

#endif

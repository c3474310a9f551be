/*  sq_client_results: the RESULTS pager (docs/protocol.md §4.3).
 *
 *  Holds one page (the reply message) at a time and walks its array; each
 *  result is copied out so it is NUL-terminated and owned until the next
 *  call. The cursor `next` from the broker makes the walk resumable: a
 *  caller may read what is finished, wait, and read on.
 *
 *  A page holds the tasks finished when it was read, so while the job
 *  runs the cursor passes tasks that finish later. The pager remembers
 *  the indexes it returned; once the broker says the job is done, a walk
 *  that saw the job running goes once more over the indexes from the
 *  first it has not returned, returning only the ones it has not: every
 *  result exactly once.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_client_internal.h"

#include <stdlib.h>
#include <string.h>

struct sq_client_results_t {
    sq_client_t *client;    /* borrowed */
    uint64_t job_id;
    uint32_t page_size;
    uint64_t after;         /* cursor for the next page */
    bool broker_done;       /* the last page said done */
    bool saw_running;       /* a page came while the job ran (not "finished"):
                               tasks the cursor passed may have finished since */
    bool swept;             /* the pass over what the cursor passed is under way */
    uint8_t *seen;          /* bit per index returned (indexes from 1) */
    uint64_t seen_bits;
    sq_wire_msg_t *page;
    sq_wire_iter_t it;
    uint32_t left;          /* entries of the page not yet read */
    sq_client_result_t cur;
};

typedef struct {
    uint64_t job_id, after;
    uint32_t limit;
} s_page_args_t;

static int
s_build_page(sq_wire_enc_t *e, uint64_t rid, const void *arg)
{
    const s_page_args_t *a = arg;
    sq_wire_map(e, 4);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "job_id", a->job_id);
    sq_wire_kv_u64(e, "after", a->after);
    sq_wire_kv_u64(e, "limit", a->limit);
    return 0;
}

sq_client_results_t *
sq_client_results_new(sq_client_t *client, uint64_t job_id, uint32_t page_size)
{
    sq_client_results_t *self = calloc(1, sizeof *self);
    if (!self) {
        SQ_FAIL(SQ_ENOMEM, "out of memory");
        return NULL;
    }
    self->client = client;
    self->job_id = job_id;
    self->page_size = page_size && page_size <= SQ_WIRE_MAX_PAGE ? page_size : 1000;
    return self;
}

static void
s_clear_current(sq_client_result_t *r)
{
    free(r->custom_id);
    free(r->text);
    free(r->error);
    memset(r, 0, sizeof *r);
}

void
sq_client_results_destroy(sq_client_results_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_client_results_t *self = *self_p;
    s_clear_current(&self->cur);
    sq_wire_msg_destroy(&self->page);
    free(self->seen);
    free(self);
    *self_p = NULL;
}

bool
sq_client_results_done(const sq_client_results_t *self)
{
    return self->broker_done && self->left == 0 && (!self->saw_running || self->swept);
}

/* Mark index returned; false when it was already (or out of memory: the
 * index cannot be remembered, so it is returned again rather than lost) */
static bool
s_first_time(sq_client_results_t *self, uint64_t index)
{
    if (index >= self->seen_bits) {
        uint64_t bits = self->seen_bits ? self->seen_bits : 1024;
        while (bits <= index && bits < ((uint64_t)1 << 40))
            bits *= 2;
        uint8_t *p = index < bits ? realloc(self->seen, bits / 8) : NULL;
        if (!p)
            return true;
        memset(p + self->seen_bits / 8, 0, (bits - self->seen_bits) / 8);
        self->seen = p;
        self->seen_bits = bits;
    }
    const uint8_t bit = (uint8_t)(1u << (index % 8));
    if (self->seen[index / 8] & bit)
        return false;
    self->seen[index / 8] |= bit;
    return true;
}

/* The first index (from 1) not returned yet */
static uint64_t
s_first_unseen(const sq_client_results_t *self)
{
    uint64_t i = 1;
    while (i < self->seen_bits && (self->seen[i / 8] & (1u << (i % 8))))
        i++;
    return i;
}

static int
s_fetch_page(sq_client_results_t *self)
{
    sq_wire_msg_destroy(&self->page);
    self->left = 0;
    int rc;
    for (;;) {
        s_page_args_t args = {self->job_id, self->after, self->page_size};
        rc = sq_client_request(self->client, SQ_WIRE_RESULTS, s_build_page, &args, &self->page);
        /* long texts can make a full page too big for one message */
        if (rc != SQ_ETOOBIG || self->page_size == 1)
            break;
        self->page_size /= 2;
    }
    if (rc)
        return rc;
    sq_wire_val_t arr;
    if (sq_wire_get_array(self->page->body, "results", true, SQ_WIRE_MAX_PAGE, &arr))
        return SQ_FAIL(SQ_EPROTO, "RESULTS reply: %s", sq_error_detail());
    uint64_t next = sq_client_get_u64(self->page->body, "next");
    self->after = next > self->after ? next : self->after;
    self->broker_done = false;
    sq_wire_get_bool(self->page->body, "done", false, &self->broker_done);
    /* (a broker that does not say: as if the job ran) */
    bool finished = false;
    sq_wire_get_bool(self->page->body, "finished", false, &finished);
    self->saw_running |= !finished && !self->swept;
    sq_wire_iter_init(&self->it, arr);
    self->left = sq_wire_count(arr);
    return 0;
}

/* An optional string field copied with its length (NULL when absent). */
static int
s_get_owned(sq_wire_val_t m, const char *key, size_t cap, char **out, size_t *len_out)
{
    const char *s = NULL;
    size_t len = 0;
    int rc = sq_wire_get_str(m, key, false, cap, &s, &len);
    if (rc || !s)
        return rc;
    if (!(*out = malloc(len + 1)))
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    *len_out = len;
    return 0;
}

/* An optional count; -1 when absent (the worker did not report it). */
static int64_t
s_opt_count(sq_wire_val_t m, const char *key)
{
    uint64_t v = UINT64_MAX;
    if (sq_wire_get_u64(m, key, false, INT64_MAX, &v) != 0 || v == UINT64_MAX)
        return -1;
    return (int64_t)v;
}

static int
s_decode(sq_wire_val_t m, sq_client_result_t *r)
{
    s_clear_current(r);
    int rc = sq_wire_type(m) == SQ_WIRE_T_MAP ? 0 : SQ_FAIL(SQ_EPROTO, "result is not a map");
    if (rc == 0)
        rc = s_get_owned(m, "custom_id", SQ_WIRE_MAX_ID, &r->custom_id, &r->custom_id_len);
    if (rc == 0)
        rc = s_get_owned(m, "text", SQ_WIRE_MAX_TEXT, &r->text, &r->text_len);
    if (rc == 0)
        rc = s_get_owned(m, "error", SQ_WIRE_MAX_TEXT, &r->error, &r->error_len);
    if (rc == 0 && !r->custom_id)
        rc = SQ_FAIL(SQ_EPROTO, "result without custom_id");
    if (rc)
        return SQ_FAIL(SQ_EPROTO, "RESULTS reply: %s", sq_error_detail());
    r->index = sq_client_get_u64(m, "index");
    r->attempts = sq_client_get_u64(m, "attempts");
    sq_client_get_fixed(m, "state", r->state, sizeof r->state);
    sq_client_get_fixed(m, "finish_reason", r->finish_reason, sizeof r->finish_reason);
    r->prompt_tokens = s_opt_count(m, "prompt_tokens");
    r->completion_tokens = s_opt_count(m, "completion_tokens");
    r->cached_tokens = s_opt_count(m, "cached_tokens");
    r->finished_at_ms = s_opt_count(m, "finished_at_ms");
    if (r->finished_at_ms < 0)
        r->finished_at_ms = 0;
    return 0;
}

int
sq_client_results_next(sq_client_results_t *self, const sq_client_result_t **out)
{
    *out = NULL;
    for (;;) {
        if (self->left == 0) {
            if (self->broker_done) {
                if (!self->saw_running || self->swept)
                    return 0;
                /* every task is terminal now: once more over what the
                 * cursor passed while the job ran */
                self->swept = true;
                self->after = s_first_unseen(self) - 1;
            }
            int rc = s_fetch_page(self);
            if (rc)
                return rc;
            if (self->left == 0 && !self->broker_done)
                return 0; /* nothing more finished yet */
            continue;
        }
        sq_wire_val_t m;
        if (!sq_wire_iter_next(&self->it, &m))
            return SQ_FAIL(SQ_EPROTO, "RESULTS reply: array shorter than its count");
        self->left--;
        int rc = s_decode(m, &self->cur);
        if (rc)
            return rc;
        if (!s_first_time(self, self->cur.index))
            continue;   /* returned before the sweep */
        *out = &self->cur;
        return 1;
    }
}

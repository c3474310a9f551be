/*  The KV cache's page table (sq_kv_pages): pages taken as slots grow,
 *  given back when a slot restarts or is trimmed, never two slots on one
 *  page, a short pool refused with nothing changed, and a slot that
 *  starts past what it stored refused; then random passes against the
 *  invariants.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sq_error.h"
#include "sq_kv_pages.h"
#include "sq_test.h"

enum { S_SLOTS = 4, S_MAX = 8, S_POOL = 12 };

/* every page is held by slots (several when shared: then at the same
 * place of each row, as sharing gives it) or in the pool, not both; the
 * rest of each row is -1 */
static bool s_consistent(const sq_kv_pages_t *kv)
{
    const int32_t *t = sq_kv_pages_table(kv);
    int seen[S_POOL] = {0}, at[S_POOL], distinct = 0;
    for (int s = 0; s < S_SLOTS; s++)
        for (int i = 0; i < S_MAX; i++) {
            const int32_t p = t[s * S_MAX + i];
            if (i < sq_kv_pages_held(kv, s)) {
                if (p < 0 || p >= S_POOL || (seen[p] && at[p] != i))
                    return false;
                distinct += seen[p]++ == 0;
                at[p] = i;
                if (seen[p] > 1 && !sq_kv_pages_shared(kv, s, i))
                    return false;
            } else if (p != -1) {
                return false;
            }
        }
    return distinct + sq_kv_pages_free(kv) == S_POOL;
}

static int s_fit1(sq_kv_pages_t *kv, int slot, int first, int last)
{
    const int32_t s[1] = {slot}, f[1] = {first}, l[1] = {last};
    return sq_kv_pages_fit(kv, s, f, l, 1);
}

static void test_grow_restart_trim(void)
{
    sq_kv_pages_t *kv = sq_kv_pages_new(S_SLOTS, S_MAX, S_POOL);
    SQ_REQUIRE(kv);
    SQ_CHECK(sq_kv_pages_total(kv) == S_POOL && sq_kv_pages_free(kv) == S_POOL);
    /* a 40-token prompt in slot 1: positions 0..39, two pages */
    SQ_CHECK(s_fit1(kv, 1, 0, 39) == 0);
    SQ_CHECK(sq_kv_pages_held(kv, 1) == 2 && sq_kv_pages_free(kv) == S_POOL - 2);
    /* decode steps inside the second page change nothing, not even the epoch */
    uint64_t e = sq_kv_pages_epoch(kv);
    SQ_CHECK(s_fit1(kv, 1, 40, 40) == 0 && s_fit1(kv, 1, 41, 63) == 0);
    SQ_CHECK(sq_kv_pages_epoch(kv) == e && sq_kv_pages_held(kv, 1) == 2);
    /* position 64 takes a third page, and the epoch moves */
    SQ_CHECK(s_fit1(kv, 1, 64, 64) == 0);
    SQ_CHECK(sq_kv_pages_held(kv, 1) == 3 && sq_kv_pages_epoch(kv) != e);
    SQ_CHECK(s_consistent(kv));
    /* a newcomer reusing 10 positions of slot 1's prefix: pages past its
     * last position go back */
    SQ_CHECK(s_fit1(kv, 1, 10, 20) == 0);
    SQ_CHECK(sq_kv_pages_held(kv, 1) == 1 && sq_kv_pages_free(kv) == S_POOL - 1);
    /* slot 1 now stores 0..20: starting at 22 skips 21 */
    SQ_CHECK(s_fit1(kv, 1, 22, 22) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "slot 1 starts at position 22, but only its positions "
                                       "0..20 are in the KV cache") != NULL);
    SQ_CHECK(s_fit1(kv, 2, 5, 5) == SQ_EINVAL);   /* slot 2 stored nothing */
    SQ_CHECK(s_fit1(kv, 1, 21, 21) == 0);
    /* trim keeps the pages of the positions kept */
    SQ_CHECK(s_fit1(kv, 1, 22, 100) == 0 && sq_kv_pages_held(kv, 1) == 4);
    sq_kv_pages_trim(kv, 1, 33);
    SQ_CHECK(sq_kv_pages_held(kv, 1) == 2);
    SQ_CHECK(s_fit1(kv, 1, 34, 34) == SQ_EINVAL && s_fit1(kv, 1, 33, 33) == 0);
    sq_kv_pages_trim(kv, 1, 0);
    SQ_CHECK(sq_kv_pages_held(kv, 1) == 0 && sq_kv_pages_free(kv) == S_POOL);
    SQ_CHECK(s_consistent(kv));
    /* out of range */
    SQ_CHECK(s_fit1(kv, S_SLOTS, 0, 0) == SQ_EINVAL);
    SQ_CHECK(s_fit1(kv, 0, 0, S_MAX * SQ_KV_PAGE) == SQ_EINVAL);
    sq_kv_pages_destroy(&kv);
    SQ_CHECK(kv == NULL);
    SQ_CHECK(sq_kv_pages_new(0, S_MAX, S_POOL) == NULL && sq_error_code() == SQ_EINVAL);
}

/* A pass that needs more than the pool has is refused whole: the slots
 * it would have grown, and those it would have given back, stay as they
 * were. Pages one slot gives back in the same pass count. */
static void test_short_pool(void)
{
    sq_kv_pages_t *kv = sq_kv_pages_new(S_SLOTS, S_MAX, S_POOL);
    SQ_REQUIRE(kv);
    SQ_CHECK(s_fit1(kv, 0, 0, 5 * SQ_KV_PAGE - 1) == 0);    /* 5 pages */
    SQ_CHECK(s_fit1(kv, 1, 0, 4 * SQ_KV_PAGE - 1) == 0);    /* 4 */
    int32_t table[S_SLOTS * S_MAX];
    memcpy(table, sq_kv_pages_table(kv), sizeof table);
    const uint64_t e = sq_kv_pages_epoch(kv);
    /* slot 0 restarts short (gives back 4), slot 2 wants 8: 3 + 4 < 8 */
    const int32_t s[2] = {0, 2}, f[2] = {3, 0}, l[2] = {20, 8 * SQ_KV_PAGE - 1};
    SQ_CHECK(sq_kv_pages_fit(kv, s, f, l, 2) == SQ_ENOMEM);
    SQ_CHECK(strstr(sq_error_detail(), "KV cache full: this pass needs 8 more pages of 32 "
                                       "positions, 7 are free of 12") != NULL);
    SQ_CHECK(memcmp(table, sq_kv_pages_table(kv), sizeof table) == 0);
    SQ_CHECK(sq_kv_pages_epoch(kv) == e && sq_kv_pages_free(kv) == 3);
    /* 7 fits: slot 0's 4 pages go to slot 2 */
    const int32_t l7[2] = {20, 7 * SQ_KV_PAGE - 1};
    SQ_CHECK(sq_kv_pages_fit(kv, s, f, l7, 2) == 0);
    SQ_CHECK(sq_kv_pages_free(kv) == 0 && sq_kv_pages_held(kv, 2) == 7);
    SQ_CHECK(s_consistent(kv));
    sq_kv_pages_destroy(&kv);
}

/* Sharing: slot 1 takes slot 0's first two pages (a prompt prefix slot 0
 * stored) without new pages; neither may write into them while both hold
 * them; they go back to the pool only when both let go. */
static void test_share(void)
{
    sq_kv_pages_t *kv = sq_kv_pages_new(S_SLOTS, S_MAX, S_POOL);
    SQ_REQUIRE(kv);
    SQ_CHECK(s_fit1(kv, 0, 0, 79) == 0 && sq_kv_pages_held(kv, 0) == 3);
    const int free0 = sq_kv_pages_free(kv);
    SQ_CHECK(sq_kv_pages_share(kv, 1, 0, 2) == 0);
    SQ_CHECK(sq_kv_pages_held(kv, 1) == 2 && sq_kv_pages_free(kv) == free0);
    SQ_CHECK(sq_kv_pages_shared(kv, 0, 0) && sq_kv_pages_shared(kv, 1, 1) &&
             !sq_kv_pages_shared(kv, 0, 2));
    SQ_CHECK(s_consistent(kv));
    /* slot 1 goes on after the shared prefix: a page of its own */
    SQ_CHECK(s_fit1(kv, 1, 64, 70) == 0 && sq_kv_pages_free(kv) == free0 - 1);
    /* the two hold 6 pages, 4 distinct; each alone its own count */
    bool in[S_SLOTS] = {true, true};
    SQ_CHECK(sq_kv_pages_held_by(kv, in) == 4);
    in[0] = false;
    SQ_CHECK(sq_kv_pages_held_by(kv, in) == 3);
    in[1] = false;
    SQ_CHECK(sq_kv_pages_held_by(kv, in) == 0);
    /* restarting inside a shared page would write into it: refused whole */
    const uint64_t e = sq_kv_pages_epoch(kv);
    SQ_CHECK(s_fit1(kv, 1, 40, 41) == SQ_ESTATE);
    SQ_CHECK(strstr(sq_error_detail(), "slot 1 would write position 40 into page") != NULL);
    SQ_CHECK(s_fit1(kv, 0, 10, 10) == SQ_ESTATE && sq_kv_pages_epoch(kv) == e);
    SQ_CHECK(sq_kv_pages_held(kv, 1) == 3 && sq_kv_pages_free(kv) == free0 - 1);
    /* slot 0 lets go: only its own third page comes back */
    sq_kv_pages_trim(kv, 0, 0);
    SQ_CHECK(sq_kv_pages_free(kv) == free0 && !sq_kv_pages_shared(kv, 1, 0));
    SQ_CHECK(s_fit1(kv, 1, 40, 41) == 0);   /* its own now */
    SQ_CHECK(s_consistent(kv));
    /* refused: a slot that holds pages, more than src holds, positions src
     * has not stored, a slot with itself */
    SQ_CHECK(sq_kv_pages_share(kv, 1, 0, 1) == SQ_EINVAL);
    SQ_CHECK(sq_kv_pages_share(kv, 2, 1, 3) == SQ_EINVAL);
    SQ_CHECK(sq_kv_pages_share(kv, 2, 1, 2) == SQ_EINVAL);   /* slot 1 stores 0..41 */
    SQ_CHECK(sq_kv_pages_share(kv, 2, 2, 1) == SQ_EINVAL);
    SQ_CHECK(sq_kv_pages_share(kv, 2, 1, 1) == 0 && s_consistent(kv));
    sq_kv_pages_destroy(&kv);
}

/* Random passes: every outcome leaves the table consistent, a refused
 * pass changes nothing, an accepted one leaves each slot exactly the
 * pages its last position needs. */
static void test_random_passes(void)
{
    sq_kv_pages_t *kv = sq_kv_pages_new(S_SLOTS, S_MAX, S_POOL);
    SQ_REQUIRE(kv);
    int stored[S_SLOTS] = {0}, refused = 0, ok = 0, shared = 0, collided = 0;
    srand(7);
    for (int round = 0; round < 5000; round++) {
        if (rand() % 10 == 1) {
            const int dst = rand() % S_SLOTS, src = rand() % S_SLOTS;
            if (dst == src || stored[src] < SQ_KV_PAGE ||
                stored[src] / SQ_KV_PAGE > sq_kv_pages_held(kv, src))
                continue;
            sq_kv_pages_trim(kv, dst, 0);
            const int n = 1 + rand() % (stored[src] / SQ_KV_PAGE);
            SQ_CHECK(sq_kv_pages_share(kv, dst, src, n) == 0);
            stored[dst] = n * SQ_KV_PAGE;
            shared++;
            SQ_CHECK(s_consistent(kv));
            continue;
        }
        if (rand() % 10 == 0) {
            const int slot = rand() % S_SLOTS, keep = rand() % (stored[slot] + 1);
            sq_kv_pages_trim(kv, slot, keep);
            stored[slot] = keep < stored[slot] ? keep : stored[slot];
            SQ_CHECK(sq_kv_pages_held(kv, slot) == sq_kv_pages_for(stored[slot]));
            continue;
        }
        int32_t s[S_SLOTS], f[S_SLOTS], l[S_SLOTS];
        int n = 0;
        for (int slot = 0; slot < S_SLOTS; slot++) {
            if (rand() % 2)
                continue;
            s[n] = slot;
            f[n] = rand() % 4 == 0 ? rand() % (stored[slot] + 1) : stored[slot];
            l[n] = f[n] + rand() % 40;
            if (l[n] >= S_MAX * SQ_KV_PAGE)
                l[n] = S_MAX * SQ_KV_PAGE - 1;
            if (f[n] > l[n])
                continue;
            n++;
        }
        const int free0 = sq_kv_pages_free(kv);
        const int rc = sq_kv_pages_fit(kv, s, f, l, n);
        SQ_CHECK(rc == 0 || rc == SQ_ENOMEM || rc == SQ_ESTATE);
        collided += rc == SQ_ESTATE;
        if (rc == 0) {
            ok++;
            for (int i = 0; i < n; i++) {
                stored[s[i]] = l[i] + 1;
                SQ_CHECK(sq_kv_pages_held(kv, s[i]) == sq_kv_pages_for(l[i] + 1));
            }
        } else {
            refused++;
            SQ_CHECK(sq_kv_pages_free(kv) == free0);
        }
        SQ_CHECK(s_consistent(kv));
        if (!s_consistent(kv))
            break;
    }
    printf("random passes: %d accepted, %d refused for want of pages or for writing into a "
           "shared page (%d); %d shares\n", ok, refused, collided, shared);
    SQ_CHECK(ok > 1000 && refused > 100 && shared > 100 && collided > 10);
    sq_kv_pages_destroy(&kv);
}

int main(void)
{
    SQ_RUN(test_grow_restart_trim);
    SQ_RUN(test_short_pool);
    SQ_RUN(test_share);
    SQ_RUN(test_random_passes);
    return sq_test_summary("kv_pages");
}

/*  test_queue: priorities, tenant fairness (DRR), FIFO order, removal,
 *  the retry heap and the backoff formula of the broker's ready queue.
 */
#include "sq_queue.h"
#include "sq_test.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    sq_qitem_t q; /* first member: (item *) casts back to the task */
    int id;
    const char *tenant;
} s_task_t;

static s_task_t *s_tasks(int n, const char *tenant, int first_id)
{
    s_task_t *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        t[i].id = first_id + i;
        t[i].tenant = tenant;
    }
    return t;
}

static void test_fifo_and_priority(void)
{
    sq_queue_t *q = sq_queue_new(1024);
    s_task_t *t = s_tasks(6, "a", 0);
    for (int i = 0; i < 6; i++)
        SQ_REQUIRE(sq_queue_push(q, &t[i].q, "m", i >= 4 ? 9 : 0, "a", 1, 100 + i) == 0);
    SQ_CHECK(sq_queue_ready(q, "m") == 6);
    SQ_CHECK(sq_queue_oldest_ms(q, "m") == 100);
    /* priority 9 first (ids 4, 5), then FIFO 0..3 */
    int want[] = {4, 5, 0, 1, 2, 3};
    for (int i = 0; i < 6; i++) {
        s_task_t *got = (s_task_t *)sq_queue_pop(q, "m");
        SQ_REQUIRE(got != NULL);
        SQ_CHECK(got->id == want[i]);
    }
    SQ_CHECK(sq_queue_pop(q, "m") == NULL);
    SQ_CHECK(sq_queue_pop(q, "other") == NULL);
    SQ_CHECK(sq_queue_ready_total(q) == 0);
    free(t);
    sq_queue_destroy(&q);
    SQ_CHECK(q == NULL);
    sq_queue_destroy(&q);
}

/* 90/10 flood: tenant b submits after tenant a queued 900 tasks; with DRR
 * b's 100 tasks are all served within the first 200 pops. */
static void test_fairness(void)
{
    sq_queue_t *q = sq_queue_new(1024);
    s_task_t *a = s_tasks(900, "a", 0), *b = s_tasks(100, "b", 1000);
    for (int i = 0; i < 900; i++)
        SQ_REQUIRE(sq_queue_push(q, &a[i].q, "m", 0, "a", 128, 0) == 0);
    for (int i = 0; i < 100; i++)
        SQ_REQUIRE(sq_queue_push(q, &b[i].q, "m", 0, "b", 128, 0) == 0);
    SQ_CHECK(sq_queue_ready_tenant(q, "a") == 900 && sq_queue_ready_tenant(q, "b") == 100);
    int b_served = 0, last_b = -1;
    for (int i = 0; i < 1000; i++) {
        s_task_t *got = (s_task_t *)sq_queue_pop(q, "m");
        SQ_REQUIRE(got);
        if (strcmp(got->tenant, "b") == 0) {
            b_served++;
            last_b = i;
        }
    }
    SQ_CHECK(b_served == 100);
    SQ_CHECK(last_b < 200 + 16); /* fair within one DRR quantum of tasks */
    /* costs: a's tasks cost 4x b's, so b gets ~4x as many per round */
    for (int i = 0; i < 400; i++)
        sq_queue_push(q, &a[i].q, "m", 0, "a", 1024, 0);
    for (int i = 0; i < 100; i++)
        sq_queue_push(q, &b[i].q, "m", 0, "b", 256, 0);
    int n_a = 0;
    for (int i = 0; i < 100; i++)
        n_a += strcmp(((s_task_t *)sq_queue_pop(q, "m"))->tenant, "a") == 0;
    SQ_CHECK(n_a >= 15 && n_a <= 25);
    free(a);
    free(b);
    sq_queue_destroy(&q);
}

static void test_remove(void)
{
    sq_queue_t *q = sq_queue_new(1);
    s_task_t *t = s_tasks(5, "a", 0);
    for (int i = 0; i < 5; i++)
        sq_queue_push(q, &t[i].q, "m", 0, i % 2 ? "b" : "a", 1, 0);
    sq_queue_remove(q, &t[0].q); /* head */
    sq_queue_remove(q, &t[4].q); /* tail of a */
    sq_queue_remove(q, &t[2].q); /* a empties: leaves the ring */
    sq_queue_remove(q, &t[2].q); /* no-op */
    SQ_CHECK(sq_queue_ready(q, "m") == 2);
    SQ_CHECK(((s_task_t *)sq_queue_pop(q, "m"))->id == 1);
    SQ_CHECK(((s_task_t *)sq_queue_pop(q, "m"))->id == 3);
    SQ_CHECK(sq_queue_pop(q, "m") == NULL);
    free(t);
    sq_queue_destroy(&q);
}

static void test_retry_heap(void)
{
    sq_queue_t *q = sq_queue_new(1);
    enum { N = 2000 };
    s_task_t *t = s_tasks(N, "a", 0);
    srand(7);
    for (int i = 0; i < N; i++)
        SQ_REQUIRE(sq_queue_defer(q, &t[i].q, rand() % 100000) == 0);
    for (int i = 0; i < N; i += 3)
        sq_queue_undefer(q, &t[i].q);
    SQ_CHECK(sq_queue_deferred(q) == N - (N + 2) / 3);
    SQ_CHECK(sq_queue_take_due(q, -1) == NULL);
    int64_t prev = -1;
    size_t n = 0;
    sq_qitem_t *it;
    while ((it = sq_queue_take_due(q, 100000))) {
        SQ_CHECK(it->due_ms >= prev);
        SQ_CHECK(it->heap_pos == 0);
        prev = it->due_ms;
        n++;
    }
    SQ_CHECK(n == (size_t)(N - (N + 2) / 3));
    SQ_CHECK(sq_queue_next_due(q) == INT64_MAX);
    SQ_CHECK(sq_queue_backoff_ms(100, 1, 60000) == 100);
    SQ_CHECK(sq_queue_backoff_ms(100, 3, 60000) == 400);
    SQ_CHECK(sq_queue_backoff_ms(100, 40, 60000) == 60000);
    free(t);
    sq_queue_destroy(&q);
}

int main(void)
{
    SQ_RUN(test_fifo_and_priority);
    SQ_RUN(test_fairness);
    SQ_RUN(test_remove);
    SQ_RUN(test_retry_heap);
    return sq_test_summary("queue");
}

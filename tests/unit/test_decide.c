/*  Unit tests of sq_decide: HPA semantics (immediate, step-bounded
 *  scale-up; stabilised scale-down; cooldowns; tolerance; scale to and
 *  from zero) and schedule windows with fixed and measured lead times. */
#define _POSIX_C_SOURCE 200809L
#include "sq_decide.h"
#include "sq_error.h"
#include "sq_test.h"

#include <stdio.h>
#include <string.h>

static sq_policy_t *
s_policy(const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "pools:\n  - name: p\n    worker: {model: m.gguf}\n    max_groups: 8\n"
             "    target_queued_per_group: 32\n%s",
             extra);
    sq_policy_t *p = sq_policy_parse(text, strlen(text), "t.yaml");
    if (!p)
        fprintf(stderr, "policy: %s\n", sq_error_detail());
    return p;
}

/* A pool with `groups` ready groups and `outstanding` queued tasks. */
static sq_pool_metrics_t
s_load(int groups, int64_t outstanding)
{
    sq_pool_metrics_t m = {0};
    m.queued = outstanding;
    m.idle = groups;
    return m;
}

/* One tick: decide, pretend the actuator obeyed, return desired. */
static int
s_tick(sq_decider_t *d, const sq_pool_policy_t *p, int groups, int64_t outstanding,
       int64_t now_s, sq_decision_t *out)
{
    sq_pool_metrics_t m = s_load(groups, outstanding);
    sq_decision_t local;
    sq_decision_t *dec = out ? out : &local;
    if (sq_decide(d, p, &m, now_s * 1000, dec) != 0)
        return -1;
    if (dec->desired != groups)
        sq_decider_applied(d, groups, dec->desired, now_s * 1000);
    return dec->desired;
}

static void
test_scale_up_immediate(void)
{
    sq_policy_t *pol = s_policy("");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    sq_decision_t dec;
    SQ_CHECK(s_tick(d, &pol->pools[0], 1, 10, 1000, &dec) == 1);
    SQ_CHECK(s_tick(d, &pol->pools[0], 1, 100, 1001, &dec) == 4);
    SQ_CHECK(strncmp(dec.reason, "up:", 3) == 0);
    SQ_CHECK(strstr(dec.reason, "100 outstanding/32 per group=4") != NULL);
    SQ_CHECK(s_tick(d, &pol->pools[0], 4, 5000, 1002, &dec) == 8); /* capped by max */
    SQ_CHECK(dec.recommendation == 8);
    sq_decider_destroy(&d);
    sq_decider_destroy(&d);
    SQ_CHECK(d == NULL);
    sq_policy_destroy(&pol);
}

/* While the broker's commits are behind (it grants no lease), the load
 * asks for more groups in vain: the scale-up is held, but not the floor
 * of min_groups, and it goes ahead once commits catch up. */
static void
test_hold_while_commit_bound(void)
{
    sq_policy_t *pol = s_policy("    min_groups: 3\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    sq_pool_metrics_t m = s_load(1, 200);   /* 200 outstanding: 7 groups */
    m.commit_bound = 1;
    sq_decision_t dec;
    SQ_REQUIRE(sq_decide(d, p, &m, 1000 * 1000, &dec) == 0);
    SQ_CHECK(dec.desired == 3 && dec.recommendation == 7);    /* up to the floor only */
    SQ_CHECK(strncmp(dec.reason, "up (floor; broker commits behind)", 33) == 0);
    sq_decider_applied(d, 1, 3, 1000 * 1000);
    m.idle = 3;
    SQ_REQUIRE(sq_decide(d, p, &m, 1001 * 1000, &dec) == 0);
    SQ_CHECK(dec.desired == 3);
    SQ_CHECK(strncmp(dec.reason, "hold (broker commits behind)", 28) == 0);
    m.commit_bound = 0;
    SQ_REQUIRE(sq_decide(d, p, &m, 1002 * 1000, &dec) == 0);
    SQ_CHECK(dec.desired == 7 && strncmp(dec.reason, "up:", 3) == 0);
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

static void
test_step_and_cooldown(void)
{
    sq_policy_t *pol = s_policy("    max_step_up: 2\n    max_step_down: 1\n"
                                "    scale_up_cooldown_s: 5\n    scale_down_stabilization_s: 0\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    sq_decision_t dec;
    SQ_CHECK(s_tick(d, p, 1, 1000, 100, &dec) == 3);
    SQ_CHECK(strstr(dec.reason, "step-limited") != NULL);
    SQ_CHECK(s_tick(d, p, 3, 1000, 101, &dec) == 3); /* up cooldown */
    SQ_CHECK(strstr(dec.reason, "up cooldown") != NULL);
    SQ_CHECK(s_tick(d, p, 3, 1000, 105, &dec) == 5);
    SQ_CHECK(s_tick(d, p, 5, 0, 106, &dec) == 4);   /* down by one per tick */
    SQ_CHECK(s_tick(d, p, 4, 0, 107, &dec) == 3);
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

/* HPA-style: the larger of a fixed step and a percentage of current. */
static void
test_step_percent(void)
{
    sq_policy_t *pol = s_policy("    max_step_up: 2\n    max_step_up_percent: 100\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    SQ_CHECK(s_tick(d, p, 1, 10000, 0, NULL) == 3);   /* +max(2, 1) */
    SQ_CHECK(s_tick(d, p, 3, 10000, 1, NULL) == 6);   /* +max(2, 3) */
    SQ_CHECK(s_tick(d, p, 6, 10000, 2, NULL) == 8);   /* capped by max_groups */
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

/* A percentage of zero groups is zero: from 0 the step is at least one
 * group, and the floors are not steps (as HPA applies minReplicas), so a
 * pool below min_groups or a window's floor goes to it at once. */
static void
test_step_from_zero_and_floors(void)
{
    sq_policy_t *pol = s_policy("    min_groups: 0\n    max_step_up_percent: 100\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    sq_decision_t dec;
    SQ_CHECK(s_tick(d, p, 0, 200, 0, &dec) == 1);   /* +max(1, 0 %) */
    SQ_CHECK(strncmp(dec.reason, "up (step-limited)", 17) == 0);
    SQ_CHECK(s_tick(d, p, 1, 200, 1, NULL) == 2);   /* +100 % */
    SQ_CHECK(s_tick(d, p, 2, 200, 2, NULL) == 4);
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);

    pol = s_policy("    min_groups: 2\n    max_step_up_percent: 100\n");
    d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    SQ_CHECK(s_tick(d, &pol->pools[0], 0, 0, 0, &dec) == 2);   /* no load: min_groups */
    SQ_CHECK(strncmp(dec.reason, "up (min_groups)", 15) == 0);
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);

    pol = s_policy("    min_groups: 3\n    max_step_up: 1\n    scale_up_cooldown_s: 60\n");
    d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    SQ_CHECK(s_tick(d, &pol->pools[0], 0, 1000, 0, &dec) == 3); /* floor past the step */
    SQ_CHECK(strncmp(dec.reason, "up (min_groups)", 15) == 0);
    SQ_CHECK(s_tick(d, &pol->pools[0], 3, 1000, 1, &dec) == 3); /* then steps, cooldown */
    SQ_CHECK(strstr(dec.reason, "up cooldown") != NULL);
    SQ_CHECK(s_tick(d, &pol->pools[0], 3, 1000, 61, &dec) == 4);
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);

    pol = s_policy("    max_step_up_percent: 50\n    windows:\n"
                   "      - {name: open, cron: \"0 9 * * *\", duration: 1h, min_groups: 6,"
                   " lead_time: 0}\n");
    d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    int64_t nine = 1795942800; /* 2026-11-29T09:00:00Z */
    SQ_CHECK(s_tick(d, &pol->pools[0], 1, 0, nine - 60, NULL) == 1);
    SQ_CHECK(s_tick(d, &pol->pools[0], 1, 0, nine, &dec) == 6);   /* not 1 + 50 % */
    SQ_CHECK(strstr(dec.reason, "up (window floor)") && strstr(dec.reason, "by open"));
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

static void
test_stabilisation(void)
{
    sq_policy_t *pol = s_policy("");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    sq_decision_t dec;
    SQ_CHECK(s_tick(d, p, 1, 200, 0, NULL) == 7);
    SQ_CHECK(s_tick(d, p, 7, 90, 100, NULL) == 7); /* rec 3: held */
    SQ_CHECK(s_tick(d, p, 7, 0, 200, &dec) == 7);
    SQ_CHECK(strstr(dec.reason, "stabilising") != NULL);
    SQ_CHECK(s_tick(d, p, 7, 0, 300, NULL) == 7);  /* the 7 at t=0 is still in the window */
    SQ_CHECK(s_tick(d, p, 7, 0, 301, &dec) == 3);  /* highest left in the window: 3 (t=100) */
    SQ_CHECK(dec.current == 7 && strncmp(dec.reason, "down", 4) == 0);
    SQ_CHECK(s_tick(d, p, 3, 0, 400, NULL) == 3);
    SQ_CHECK(s_tick(d, p, 3, 0, 401, NULL) == 1);  /* back to min_groups */
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

static void
test_scale_to_zero_and_back(void)
{
    sq_policy_t *pol = s_policy("    min_groups: 0\n    scale_down_stabilization_s: 60\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    SQ_CHECK(s_tick(d, p, 1, 0, 0, NULL) == 1);
    SQ_CHECK(s_tick(d, p, 1, 0, 59, NULL) == 1);
    SQ_CHECK(s_tick(d, p, 1, 0, 61, NULL) == 0);
    SQ_CHECK(s_tick(d, p, 0, 1, 62, NULL) == 1);   /* one task wakes the pool */
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

static void
test_tolerance_and_utilisation(void)
{
    sq_policy_t *pol = s_policy("    tolerance: 0.2\n    target_utilization: 0.5\n"
                                "    scale_down_stabilization_s: 0\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    sq_decision_t dec;
    sq_pool_metrics_t m = {0};
    m.busy = 4;
    m.idle = 0;
    m.leased = 40; /* queue wants 2, utilisation 1.0/0.5 wants 8 */
    SQ_CHECK(sq_decide(d, p, &m, 1000, &dec) == 0);
    SQ_CHECK(dec.desired == 8 && strstr(dec.reason, "util 1.00/0.50=8") != NULL);
    m.busy = 3;
    m.idle = 2;
    m.leased = 150; /* 5 now; queue wants 5, util 0.6/0.5 wants 6: +20 % within tolerance */
    SQ_CHECK(sq_decide(d, p, &m, 2000, &dec) == 0);
    SQ_CHECK(dec.desired == 5);
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

static void
test_lower_max_on_reload(void)
{
    sq_policy_t *big = s_policy("");
    sq_policy_t *small = s_policy("    max_step_down: 2\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(big && small && d);
    SQ_CHECK(s_tick(d, &big->pools[0], 1, 10000, 0, NULL) == 8);
    small->pools[0].max_groups = 4;
    SQ_CHECK(s_tick(d, &small->pools[0], 8, 10000, 1, NULL) == 6);
    SQ_CHECK(s_tick(d, &small->pools[0], 6, 10000, 2, NULL) == 4);
    SQ_CHECK(s_tick(d, &small->pools[0], 4, 10000, 3, NULL) == 4);
    sq_decider_destroy(&d);
    sq_policy_destroy(&big);
    sq_policy_destroy(&small);
}

static int64_t
s_at(const char *iso)
{
    int64_t t = 0;
    sq_time_parse_iso(iso, &t);
    return t;
}

static void
test_window_fixed_lead(void)
{
    sq_policy_t *pol = s_policy("    windows:\n"
                                "      - {name: pre-open, cron: \"30 9 * * 1-5\", timezone: "
                                "Asia/Shanghai, duration: 45m, min_groups: 6, lead_time: 2m}\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    const char *w = NULL;
    /* Monday 2026-11-30, open 09:30 +08 = 01:30Z; ready 2 min before. */
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T01:27:59Z"), &w) == 1 && w == NULL);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T01:28:00Z"), &w) == 6);
    SQ_CHECK(w && strcmp(w, "pre-open") == 0);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T02:14:59Z"), NULL) == 6);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T02:15:00Z"), NULL) == 1);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-29T01:30:00Z"), NULL) == 1); /* Sunday */
    sq_decision_t dec;
    SQ_CHECK(s_tick(d, p, 1, 0, s_at("2026-11-30T01:28:00Z"), &dec) == 6);
    SQ_CHECK(strstr(dec.reason, "window floor") && strstr(dec.reason, "by pre-open"));
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

static void
test_window_auto_lead(void)
{
    sq_policy_t *pol = s_policy("    startup_estimate_s: 30\n    windows:\n"
                                "      - {name: nyse, cron: \"30 9 * * 1-5\", timezone: "
                                "America/New_York, duration: 1h, min_groups: 4}\n");
    sq_decider_t *d = sq_decider_new();
    SQ_REQUIRE(pol && d);
    const sq_pool_policy_t *p = &pol->pools[0];
    /* Monday 2026-11-30 09:30 EST = 14:30Z. Before any measurement: 30 s. */
    SQ_CHECK(sq_decider_startup_p95(d, 30) == 30);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T14:29:29Z"), NULL) == 1);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T14:29:30Z"), NULL) == 4);
    for (int i = 1; i <= 20; i++)
        sq_decider_note_startup(d, i * 10.0); /* 10..200 s: p95 = 190 s */
    SQ_CHECK(sq_decider_startup_p95(d, 30) == 190);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T14:26:49Z"), NULL) == 1);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-11-30T14:26:50Z"), NULL) == 4);
    /* Summer time: 09:30 EDT = 13:30Z. */
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-07-01T13:27:10Z"), NULL) == 4);
    SQ_CHECK(sq_decider_floor(d, p, s_at("2026-07-01T14:30:00Z"), NULL) == 1);
    sq_decider_destroy(&d);
    sq_policy_destroy(&pol);
}

int
main(void)
{
    SQ_RUN(test_scale_up_immediate);
    SQ_RUN(test_hold_while_commit_bound);
    SQ_RUN(test_step_and_cooldown);
    SQ_RUN(test_step_percent);
    SQ_RUN(test_step_from_zero_and_floors);
    SQ_RUN(test_stabilisation);
    SQ_RUN(test_scale_to_zero_and_back);
    SQ_RUN(test_tolerance_and_utilisation);
    SQ_RUN(test_lower_max_on_reload);
    SQ_RUN(test_window_fixed_lead);
    SQ_RUN(test_window_auto_lead);
    return sq_test_summary("decide");
}

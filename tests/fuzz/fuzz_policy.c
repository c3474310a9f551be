/*  fuzz_policy: libFuzzer target for the scheduler's policy files
 *  (sq_policy_parse, and through it sq_duration_parse, sq_cron_parse and
 *  sq_tz_load).
 *
 *  The input is a policy file, parsed as sq_policy_load parses what it
 *  read (text and length, origin "fuzz.yaml"). Zones come from the
 *  system's tzdata ($TZDIR or /usr/share/zoneinfo), as in production.
 *  What sq_policy.h promises is checked, and a broken promise calls
 *  abort() so that libFuzzer reports it:
 *    - failure: SQ_EINVAL (or SQ_ENOMEM), no object, and the detail
 *      "fuzz.yaml:LINE: key.path: problem" with LINE a line of the file
 *      (0 only for a file with no document);
 *    - success: at least one pool, names non-empty, of letters, digits,
 *      '-', '_', '.', and unique; every number in its documented range;
 *      min_groups <= max_groups and every window's min_groups too; a
 *      target set; device cpu or cuda; every window with a zone and a
 *      cron expression that parses again to the same sets; the stored
 *      text is the input and the digest its FNV-1a;
 *    - what the decider does with each window (sq_cron_next from a fixed
 *      "now" minus its duration) gives an instant after that start, and
 *      the HPA baseline copies bounds and targets but no windows.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "sq_error.h"
#include "sq_hash.h"
#include "sq_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_NOW 1796031000LL     /* 2026-11-30T09:30:00Z */

static int s_str_ok(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    return n >= 1 && n < cap;
}

static int s_name_ok(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
            return 0;
    return 1;
}

static void s_check_window(const sq_window_t *w, int max_groups)
{
    SQ_FUZZ_CHECK(s_str_ok(w->name, sizeof w->name) && s_str_ok(w->cron_text, sizeof w->cron_text));
    SQ_FUZZ_CHECK(w->tz != NULL);
    SQ_FUZZ_CHECK(w->duration_s >= 1 && w->duration_s <= 7 * 86400);
    SQ_FUZZ_CHECK(w->min_groups >= 0 && w->min_groups <= max_groups);
    SQ_FUZZ_CHECK(w->lead_auto || (w->lead_time_s >= 0 && w->lead_time_s <= 86400));
    sq_cron_t again;
    SQ_FUZZ_CHECK(sq_cron_parse(w->cron_text, &again) == 0);
    SQ_FUZZ_CHECK(memcmp(&again, &w->cron, sizeof again) == 0);
    /* as sq_decider_floor asks */
    int64_t start = 0, after = S_NOW - w->duration_s;
    int rc = sq_cron_next(&w->cron, w->tz, after, &start);
    SQ_FUZZ_CHECK(rc == 0 || rc == SQ_ENOTFOUND);
    if (rc == 0)
        SQ_FUZZ_CHECK(start > after && start - after <= 8 * 366 * 86400LL + 2 * 86400);
}

static void s_check_pool(const sq_pool_policy_t *p)
{
    SQ_FUZZ_CHECK(s_str_ok(p->name, sizeof p->name) && s_name_ok(p->name));
    SQ_FUZZ_CHECK(s_str_ok(p->worker.model, sizeof p->worker.model));
    SQ_FUZZ_CHECK(strcmp(p->worker.device, "cpu") == 0 || strcmp(p->worker.device, "cuda") == 0);
    SQ_FUZZ_CHECK(p->worker.tp >= 1 && p->worker.tp <= 1024);
    SQ_FUZZ_CHECK(p->worker.max_batch >= 1 && p->worker.max_batch <= 65536);
    SQ_FUZZ_CHECK(strnlen(p->worker.flags, sizeof p->worker.flags) < sizeof p->worker.flags);
    SQ_FUZZ_CHECK(p->min_groups >= 0 && p->min_groups <= p->max_groups);
    SQ_FUZZ_CHECK(p->max_groups >= 1 && p->max_groups <= 100000);
    SQ_FUZZ_CHECK(p->target_queued_per_group > 0 || p->target_utilization > 0);
    SQ_FUZZ_CHECK(p->target_queued_per_group >= 0 && p->target_queued_per_group <= 1e9);
    SQ_FUZZ_CHECK(p->target_utilization >= 0 && p->target_utilization <= 1);
    SQ_FUZZ_CHECK(p->tolerance >= 0 && p->tolerance <= 0.99);
    SQ_FUZZ_CHECK(p->max_step_up >= 0 && p->max_step_down >= 0);
    SQ_FUZZ_CHECK(p->max_step_up_percent >= 0 && p->max_step_up_percent <= 10000);
    SQ_FUZZ_CHECK(p->scale_down_stabilization_s >= 0 && p->scale_down_stabilization_s <= 86400);
    SQ_FUZZ_CHECK(p->scale_up_cooldown_s >= 0 && p->scale_up_cooldown_s <= 86400);
    SQ_FUZZ_CHECK(p->scale_down_cooldown_s >= 0 && p->scale_down_cooldown_s <= 86400);
    SQ_FUZZ_CHECK(p->startup_estimate_s >= 0 && p->startup_estimate_s <= 86400);
    SQ_FUZZ_CHECK(s_str_ok(p->statefulset, sizeof p->statefulset));
    SQ_FUZZ_CHECK(p->n_windows == 0 || p->windows != NULL);
    for (size_t i = 0; i < p->n_windows; i++)
        s_check_window(&p->windows[i], p->max_groups);
    sq_pool_policy_t hpa;
    sq_policy_hpa_baseline(p, &hpa);
    SQ_FUZZ_CHECK(hpa.windows == NULL && hpa.n_windows == 0);
    SQ_FUZZ_CHECK(hpa.min_groups == p->min_groups && hpa.max_groups == p->max_groups);
    SQ_FUZZ_CHECK(hpa.target_queued_per_group == p->target_queued_per_group &&
            hpa.target_utilization == p->target_utilization);
}

static void s_check_parsed(const sq_policy_t *pol, const char *text, size_t size)
{
    SQ_FUZZ_CHECK(pol->n_pools >= 1 && pol->pools);
    for (size_t i = 0; i < pol->n_pools; i++) {
        s_check_pool(&pol->pools[i]);
        for (size_t j = 0; j < i; j++)
            SQ_FUZZ_CHECK(strcmp(pol->pools[i].name, pol->pools[j].name) != 0);
        SQ_FUZZ_CHECK(sq_policy_pool(pol, pol->pools[i].name) == &pol->pools[i]);
    }
    SQ_FUZZ_CHECK(pol->text && memcmp(pol->text, text, size) == 0 && pol->text[size] == '\0');
    char digest[17];
    snprintf(digest, sizeof digest, "%016llx",
             (unsigned long long)sq_fnv1a(SQ_FNV1A_INIT, text, size));
    SQ_FUZZ_CHECK(strcmp(digest, pol->digest) == 0);
}

/* "fuzz.yaml:LINE: PATH: problem" */
static void s_check_failed(size_t size)
{
    const char *d = sq_error_detail();
    int rc = sq_error_code();
    SQ_FUZZ_CHECK(rc == SQ_EINVAL || rc == SQ_ENOMEM);
    if (rc == SQ_ENOMEM)
        return;
    unsigned long line = 0;
    int n = 0;
    SQ_FUZZ_CHECK(sscanf(d, "fuzz.yaml:%lu: %n", &line, &n) == 1 && n > 0);
    SQ_FUZZ_CHECK(line <= size + 1);
    SQ_FUZZ_CHECK(line > 0 || strcmp(d + n, "pools: empty policy file") == 0);
    const char *colon = strstr(d + n, ": ");
    SQ_FUZZ_CHECK(colon && colon > d + n && colon[2] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    sq_error_clear();
    sq_policy_t *pol = sq_policy_parse(text, size, "fuzz.yaml");
    if (pol)
        s_check_parsed(pol, text, size);
    else
        s_check_failed(size);
    sq_policy_destroy(&pol);
    SQ_FUZZ_CHECK(pol == NULL);
    return 0;
}

/*  Unit tests of sq_policy: the example from issue 5, defaults, and one
 *  rejected file per rule, each naming the line and the key (worker
 *  settings included: shardq-worker's own bounds), exact refusal text. */
#define _POSIX_C_SOURCE 200809L
#include "sq_error.h"
#include "sq_policy.h"
#include "sq_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_example =
    "pools:\n"
    "  - name: fin-research\n"
    "    worker: {model: models/stories260K.gguf, tp: 2, device: cpu, max_batch: 16}\n"
    "    min_groups: 1\n"
    "    max_groups: 8\n"
    "    target_queued_per_group: 32\n"
    "    scale_down_stabilization_s: 300\n"
    "    windows:\n"
    "      - {name: pre-open, cron: \"30 9 * * 1-5\", timezone: Asia/Shanghai, duration: 45m, "
    "min_groups: 6, lead_time: auto}\n"
    "  - name: compliance\n"
    "    worker:\n"
    "      model: models/m.gguf\n"
    "      flags: --ctx 512\n"
    "    min_groups: 0\n"
    "    max_groups: 3\n"
    "    target_utilization: 0.7\n"
    "    max_step_up: 2\n"
    "    max_step_down: 1\n"
    "    scale_down_stabilization_s: 2m\n"
    "    scale_up_cooldown_s: 10s\n"
    "    kubernetes: {statefulset: rel-shardq-worker-compliance}\n"
    "    windows:\n"
    "      - name: nyse\n"
    "        cron: \"0 9 * * MON-FRI\"\n"
    "        timezone: America/New_York\n"
    "        duration: 1h30m\n"
    "        min_groups: 2\n"
    "        lead_time: 90s\n";

static sq_policy_t *
s_parse(const char *text)
{
    return sq_policy_parse(text, strlen(text), "p.yaml");
}

static void
test_example(void)
{
    sq_policy_t *p = s_parse(s_example);
    SQ_REQUIRE(p);
    SQ_REQUIRE(p->n_pools == 2);
    const sq_pool_policy_t *a = sq_policy_pool(p, "fin-research");
    SQ_REQUIRE(a);
    SQ_CHECK(strcmp(a->worker.model, "models/stories260K.gguf") == 0);
    SQ_CHECK(a->worker.tp == 2 && a->worker.max_batch == 16);
    SQ_CHECK(strcmp(a->worker.device, "cpu") == 0);
    SQ_CHECK(a->min_groups == 1 && a->max_groups == 8);
    SQ_CHECK(a->target_queued_per_group == 32 && a->target_utilization == 0);
    SQ_CHECK(a->scale_down_stabilization_s == 300);
    SQ_REQUIRE(a->n_windows == 1);
    SQ_CHECK(strcmp(a->windows[0].name, "pre-open") == 0);
    SQ_CHECK(a->windows[0].duration_s == 45 * 60 && a->windows[0].min_groups == 6);
    SQ_CHECK(a->windows[0].lead_auto == 1);
    SQ_CHECK(strcmp(sq_tz_name(a->windows[0].tz), "Asia/Shanghai") == 0);
    SQ_CHECK(a->windows[0].cron.hours == 1u << 9);
    const sq_pool_policy_t *b = sq_policy_pool(p, "compliance");
    SQ_REQUIRE(b);
    SQ_CHECK(b->min_groups == 0 && b->target_utilization == 0.7);
    SQ_CHECK(b->worker.tp == 1 && b->worker.max_batch == 16); /* defaults */
    SQ_CHECK(strcmp(b->worker.flags, "--ctx 512") == 0);
    SQ_CHECK(b->max_step_up == 2 && b->max_step_down == 1);
    SQ_CHECK(b->scale_down_stabilization_s == 120 && b->scale_up_cooldown_s == 10);
    SQ_CHECK(b->windows[0].lead_auto == 0 && b->windows[0].lead_time_s == 90);
    SQ_CHECK(b->windows[0].duration_s == 5400);
    SQ_CHECK(strcmp(a->statefulset, "fin-research") == 0);
    SQ_CHECK(strcmp(b->statefulset, "rel-shardq-worker-compliance") == 0);
    SQ_CHECK(sq_policy_pool(p, "nope") == NULL);
    SQ_CHECK(strlen(p->digest) == 16);
    SQ_CHECK(strcmp(p->text, s_example) == 0);

    sq_pool_policy_t hpa;
    sq_policy_hpa_baseline(a, &hpa);
    SQ_CHECK(hpa.n_windows == 0 && hpa.windows == NULL && hpa.tolerance == 0.1);
    SQ_CHECK(hpa.max_step_up == 4 && hpa.max_step_up_percent == 100 && hpa.max_step_down == 0);
    SQ_CHECK(hpa.target_queued_per_group == 32 && hpa.max_groups == 8);
    sq_policy_destroy(&p);
    sq_policy_destroy(&p);
    SQ_CHECK(p == NULL);
}

/* Replace the first occurrence of `from` in the example by `to`, parse,
 * and expect a refusal whose detail contains `want`. */
static int
s_refused(const char *from, const char *to, const char *want)
{
    char text[4096];
    const char *at = strstr(s_example, from);
    if (!at) {
        fprintf(stderr, "test bug: %s not in example\n", from);
        return 0;
    }
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - s_example), s_example, to,
             at + strlen(from));
    sq_policy_t *p = s_parse(text);
    int ok = p == NULL && sq_error_code() == SQ_EINVAL && strstr(sq_error_detail(), want);
    if (!ok)
        fprintf(stderr, "  wanted \"%s\", got \"%s\"\n", want, p ? "(accepted)" : sq_error_detail());
    sq_policy_destroy(&p);
    return ok;
}

static void
test_rejections(void)
{
    SQ_CHECK(s_refused("max_groups: 8", "max_groups: 0", "p.yaml:5: pools[0].max_groups"));
    SQ_CHECK(s_refused("min_groups: 1", "min_groups: 9",
                       "p.yaml:5: pools[0].max_groups: must be >= min_groups"));
    SQ_CHECK(s_refused("max_groups: 8", "max_group: 8", "p.yaml:5: pools[0].max_group: unknown key"));
    SQ_CHECK(s_refused("tp: 2", "tp: two", "p.yaml:3: pools[0].worker.tp: must be an integer"));
    SQ_CHECK(s_refused("tp: 2", "tp: 2.5", "pools[0].worker.tp"));
    SQ_CHECK(s_refused("device: cpu", "device: tpu",
                       "p.yaml:3: pools[0].worker.device: must be cpu or cuda"));
    SQ_CHECK(s_refused("\"30 9 * * 1-5\"", "\"30 25 * * 1-5\"", "p.yaml:9: pools[0].windows[0].cron"));
    SQ_CHECK(s_refused("Asia/Shanghai", "Asia/Atlantis", "p.yaml:9: pools[0].windows[0].timezone"));
    SQ_CHECK(s_refused("duration: 45m", "duration: soon", "p.yaml:9: pools[0].windows[0].duration: must be a duration"));
    SQ_CHECK(s_refused("min_groups: 6", "min_groups: 60",
                       "p.yaml:9: pools[0].windows[0].min_groups: must be <= max_groups"));
    SQ_CHECK(s_refused("lead_time: auto", "lead_time: later", "pools[0].windows[0].lead_time"));
    SQ_CHECK(s_refused("target_queued_per_group: 32", "target_queued_per_group: -1", "pools[0].target_queued_per_group"));
    SQ_CHECK(s_refused("    target_queued_per_group: 32\n", "", "pools[0]: set target_queued_per_group"));
    SQ_CHECK(s_refused("target_utilization: 0.7", "target_utilization: 1.5", "p.yaml:16: pools[1].target_utilization"));
    SQ_CHECK(s_refused("statefulset: rel", "sts: rel", "p.yaml:21: pools[1].kubernetes.sts: unknown key"));
    SQ_CHECK(s_refused("name: compliance", "name: fin-research",
                       "p.yaml:10: pools[1].name: duplicate pool name (pools[0] has it)"));
    SQ_CHECK(s_refused("name: compliance", "name: bad name!",
                       "p.yaml:10: pools[1].name: use letters"));
    SQ_CHECK(s_refused("    max_groups: 8\n", "", "pools[0].max_groups: required key missing"));
    SQ_CHECK(s_refused("    min_groups: 1\n", "    min_groups: 1\n    min_groups: 2\n", "p.yaml:5: pools[0].min_groups: duplicate key"));
    SQ_CHECK(s_refused("worker: {", "worker: [", "YAML syntax"));
    SQ_CHECK(s_refused("pools:", "pool:", "p.yaml:1: pool: unknown key"));
    SQ_CHECK(s_refused("pools:", "\"\":", "p.yaml:1: \"\": unknown key"));   /* not ": unknown" */
    SQ_CHECK(s_refused("scale_up_cooldown_s: 10s", "scale_up_cooldown_s: [1]", "pools[1].scale_up_cooldown_s: must be a scalar"));
}

/* A rule across keys names the line of the key it names, not the pool's
 * (a window's min_groups on line 7 was reported at line 2), in block and
 * in flow style over several lines. */
static void
test_cross_field_lines(void)
{
    SQ_CHECK(s_refused("        min_groups: 2\n", "        min_groups: 5\n",
                       "p.yaml:27: pools[1].windows[0].min_groups: must be <= max_groups (3)"));
    SQ_CHECK(s_refused("      flags: --ctx 512\n", "      flags: --ctx 512\n      device: rocm\n",
                       "p.yaml:14: pools[1].worker.device: must be cpu or cuda"));
    SQ_CHECK(s_refused("device: cpu, max_batch: 16}", "\n             device: rocm, max_batch: 16}",
                       "p.yaml:4: pools[0].worker.device: must be cpu or cuda"));
    SQ_CHECK(s_refused("    min_groups: 0\n    max_groups: 3\n",
                       "    min_groups: 4\n    max_groups: 3\n",
                       "p.yaml:15: pools[1].max_groups: must be >= min_groups"));
    SQ_CHECK(s_refused("\"0 9 * * MON-FRI\"", "\"0 9 * * MON-FRY\"",
                       "p.yaml:24: pools[1].windows[0].cron"));
    SQ_CHECK(s_refused("max_batch: 16}", "max_batch: 4000,\n             flags: --prefetch 97}",
                       "p.yaml:4: pools[0].worker.flags: max_batch 4000 + --prefetch 97"));
    /* the reviewer's file: the window a few lines below its pool */
    const char *text = "pools:\n  - name: q\n    worker: {model: m.gguf}\n    max_groups: 4\n"
                       "    target_queued_per_group: 32\n    windows:\n"
                       "      - {name: a, cron: \"0 9 * * *\", duration: 1h, min_groups: 5}\n";
    SQ_CHECK(sq_policy_parse(text, strlen(text), "w.yaml") == NULL);
    SQ_CHECK(strcmp(sq_error_detail(), "w.yaml:7: pools[0].windows[0].min_groups: must be <= "
                                       "max_groups (4)") == 0);
}

/* A bad zone is refused with the parser's reason after the key, once:
 * the detail used to be passed as an argument to the SQ_FAIL writing the
 * same buffer (overlapping copy), and came out garbled. */
static void
test_bad_zone_message(void)
{
    const char *text = "pools:\n  - name: p\n    worker: {model: m.gguf}\n    max_groups: 8\n"
                       "    target_queued_per_group: 10\n    windows:\n"
                       "      - {name: w, cron: \"0 9 * * *\", timezone: bad..zone, duration: 1h,"
                       " min_groups: 2}\n";
    SQ_CHECK(sq_policy_parse(text, strlen(text), "badtz.yaml") == NULL);
    int exact = strcmp(sq_error_detail(), "badtz.yaml:7: pools[0].windows[0].timezone: time zone "
                                          "\"bad..zone\": not an IANA zone name") == 0;
    if (!exact)
        fprintf(stderr, "  got \"%s\"\n", sq_error_detail());
    SQ_CHECK(exact);
    SQ_CHECK(s_refused("Asia/Shanghai", "Mars/Olympus",
                       "p.yaml:9: pools[0].windows[0].timezone: time zone \"Mars/Olympus\": no "
                       "such zone ("));
}

/* Worker settings shardq-worker refuses would start groups that exit at
 * once, again at every decision: refused at load, with the line. */
static void
test_worker_limits(void)
{
    SQ_CHECK(s_refused("max_batch: 16", "max_batch: 5000",
                       "p.yaml:3: pools[0].worker.max_batch: must be an integer in 1..4096"));
    SQ_CHECK(s_refused("max_batch: 16", "max_batch: 4000, flags: --prefetch 97",
                       "p.yaml:3: pools[0].worker.flags: max_batch 4000 + --prefetch 97 is more "
                       "than the 4096 leases"));
    SQ_CHECK(s_refused("flags: --ctx 512", "flags: --prefetch=4097",
                       "p.yaml:13: pools[1].worker.flags: --prefetch: '4097' is not an integer"));
    SQ_CHECK(s_refused("flags: --ctx 512", "flags: --ctx 512 --prefetch",
                       "pools[1].worker.flags: --prefetch: '' is not an integer"));
    SQ_CHECK(s_refused("flags: --ctx 512", "flags: --group-id g1",
                       "p.yaml:13: pools[1].worker.flags: --group-id is set by the scheduler"));
    SQ_CHECK(s_refused("flags: --ctx 512", "flags: --max-batch=8",
                       "pools[1].worker.flags: --max-batch is set by the scheduler"));
    /* 49 words used to overflow the spawn argv: every spawn failed */
    char many[300] = "flags: \"";
    for (int i = 0; i < 49; i++)
        strcat(many, i ? " -x" : "-x");
    strcat(many, "\"");
    SQ_CHECK(s_refused("flags: --ctx 512", many,
                       "p.yaml:13: pools[1].worker.flags: 49 flags (at most 32)"));
    /* within the bounds: accepted */
    char text[4096];
    const char *at = strstr(s_example, "max_batch: 16");
    SQ_REQUIRE(at);
    snprintf(text, sizeof text, "%.*smax_batch: 4000, flags: --prefetch 96 --ctx 256%s",
             (int)(at - s_example), s_example, at + strlen("max_batch: 16"));
    sq_policy_t *p = s_parse(text);
    SQ_CHECK(p && p->pools[0].worker.max_batch == 4000);
    if (!p)
        fprintf(stderr, "  refused: %s\n", sq_error_detail());
    sq_policy_destroy(&p);
    /* a group given it would only check its flags and exit */
    SQ_CHECK(s_refused("flags: --ctx 512", "flags: --check-flags",
                       "p.yaml:13: pools[1].worker.flags: --check-flags is set by the scheduler"));
    char buf[SQ_POLICY_FLAGS_BYTES], *argv[4];
    SQ_CHECK(sq_worker_flags_split(" --a 1\t--b ", buf, sizeof buf, argv, 4) == 3);
    SQ_CHECK(strcmp(argv[0], "--a") == 0 && strcmp(argv[2], "--b") == 0);
    SQ_CHECK(sq_worker_flags_split("a b c d e", buf, sizeof buf, argv, 4) == 5);
}

/* A check standing in for shardq-worker's: refuses flags holding "--no". */
static int
s_no_check(void *arg, const sq_pool_policy_t *pool)
{
    ++*(int *)arg;
    return strstr(pool->worker.flags, "--no") ? SQ_FAIL(SQ_EINVAL, "unknown option --no") : 0;
}

/* The worker's word on worker.flags comes back as a refusal of the policy
 * with the file, the line of flags and the key; pools without flags are
 * not asked about. */
static void
test_check_flags(void)
{
    sq_policy_t *p = s_parse(s_example);
    SQ_REQUIRE(p);
    int asked = 0;
    SQ_CHECK(sq_policy_check_flags(p, s_no_check, &asked) == 0 && asked == 1);
    sq_policy_destroy(&p);
    const char *at = strstr(s_example, "flags: --ctx 512");
    char text[4096];
    SQ_REQUIRE(at);
    snprintf(text, sizeof text, "%.*sflags: --ctx 512 --no%s", (int)(at - s_example), s_example,
             at + strlen("flags: --ctx 512"));
    SQ_REQUIRE((p = s_parse(text)) != NULL);
    SQ_CHECK(sq_policy_check_flags(p, s_no_check, &asked) == SQ_EINVAL);
    SQ_CHECK(strcmp(sq_error_detail(), "p.yaml:13: pools[1].worker.flags: unknown option --no")
             == 0);
    sq_policy_destroy(&p);
}

/* A policy of n_pools pools (p0, p1, ...), the first with n_windows
 * windows: one written out, the rest YAML aliases of it. malloc'd. */
static char *
s_many(int n_pools, int n_windows)
{
    size_t cap = 256 + (size_t)n_pools * 128 + (size_t)n_windows * 8;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    size_t k = (size_t)snprintf(t, cap, "pools:\n");
    for (int i = 0; i < n_pools; i++) {
        k += (size_t)snprintf(t + k, cap - k, "  - {name: p%d, worker: {model: m.gguf}, "
                              "max_groups: 2, target_queued_per_group: 4", i);
        if (i == 0 && n_windows > 0) {
            k += (size_t)snprintf(t + k, cap - k, ", windows: [&w {name: a, cron: \"0 9 * * *\", "
                                  "duration: 1h, min_groups: 1}");
            for (int w = 1; w < n_windows; w++)
                k += (size_t)snprintf(t + k, cap - k, ", *w");
            k += (size_t)snprintf(t + k, cap - k, "]");
        }
        k += (size_t)snprintf(t + k, cap - k, "}\n");
    }
    return t;
}

/* Pools and windows per pool are capped (SQ_POLICY_MAX_*): aliases let a
 * few bytes ask for any number of windows. */
static void
test_limits(void)
{
    char *t = s_many(1, SQ_POLICY_MAX_WINDOWS);
    sq_policy_t *p = t ? s_parse(t) : NULL;
    SQ_CHECK(p && p->pools[0].n_windows == SQ_POLICY_MAX_WINDOWS);
    sq_policy_destroy(&p);
    free(t);
    t = s_many(1, SQ_POLICY_MAX_WINDOWS + 1);
    SQ_CHECK(t && s_parse(t) == NULL &&
             strstr(sq_error_detail(), "p.yaml:2: pools[0].windows: 257 windows (at most 256)"));
    free(t);
    t = s_many(SQ_POLICY_MAX_POOLS, 0);
    p = t ? s_parse(t) : NULL;
    SQ_CHECK(p && p->n_pools == SQ_POLICY_MAX_POOLS);
    sq_policy_destroy(&p);
    free(t);
    t = s_many(SQ_POLICY_MAX_POOLS + 1, 0);
    SQ_CHECK(t && s_parse(t) == NULL &&
             strstr(sq_error_detail(), "p.yaml:2: pools: 257 pools (at most 256)"));
    free(t);
}

static void
test_empty_and_files(void)
{
    SQ_CHECK(s_parse("") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "empty policy file") != NULL);
    SQ_CHECK(s_parse("pools: []\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "non-empty list") != NULL);
    SQ_CHECK(s_parse("- 1\n") == NULL);
    SQ_CHECK(sq_policy_load("/nonexistent/policy.yaml") == NULL);
    SQ_CHECK(sq_error_code() == -ENOENT);
    SQ_CHECK(strcmp(sq_error_detail(), "/nonexistent/policy.yaml: No such file or directory")
             == 0);
    /* a directory opens and then cannot be read: said so, not "empty" */
    SQ_CHECK(sq_policy_load("/tmp") == NULL);
    SQ_CHECK(sq_error_code() == SQ_EINVAL);
    SQ_CHECK(strcmp(sq_error_detail(), "/tmp: is a directory, not a file") == 0);
    char path[] = "/tmp/sq-policy-XXXXXX";
    int fd = mkstemp(path);
    SQ_REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(s_example, f);
    fclose(f);
    sq_policy_t *p = sq_policy_load(path);
    SQ_CHECK(p && p->n_pools == 2);
    sq_policy_destroy(&p);
    remove(path);
}

static void
test_durations(void)
{
    int64_t s;
    SQ_CHECK(sq_duration_parse("90", &s) == 0 && s == 90);
    SQ_CHECK(sq_duration_parse("1h30m", &s) == 0 && s == 5400);
    SQ_CHECK(sq_duration_parse("45s", &s) == 0 && s == 45);
    SQ_CHECK(sq_duration_parse("2d", &s) == 0 && s == 172800);
    SQ_CHECK(sq_duration_parse("5x", &s) == SQ_EINVAL);
    SQ_CHECK(sq_duration_parse("1h30", &s) == SQ_EINVAL);
    SQ_CHECK(sq_duration_parse("", &s) == SQ_EINVAL);
    SQ_CHECK(sq_duration_parse("-5", &s) == SQ_EINVAL);
    /* a key's range is in its refusal: "duration out of range" alone left
     * the reader to guess it (and the page promised 100 years) */
    SQ_CHECK(s_refused("scale_up_cooldown_s: 10s", "scale_up_cooldown_s: 2d",
                       "p.yaml:20: pools[1].scale_up_cooldown_s: duration out of range: 2d is "
                       "over the cap of 1d (86400 s)"));
    SQ_CHECK(s_refused("scale_down_stabilization_s: 300", "scale_down_stabilization_s: 86401",
                       "p.yaml:7: pools[0].scale_down_stabilization_s: duration out of range: "
                       "86401 is over the cap of 1d (86400 s)"));
    SQ_CHECK(s_refused("duration: 45m", "duration: 7d1s",
                       "pools[0].windows[0].duration: duration out of range: 7d1s is over the cap "
                       "of 7d (604800 s)"));
    SQ_CHECK(s_refused("duration: 45m", "duration: 0s",
                       "pools[0].windows[0].duration: duration out of range: 0s is under the "
                       "minimum of 1s"));
    SQ_CHECK(s_refused("lead_time: 90s", "lead_time: 25h",
                       "pools[1].windows[0].lead_time: duration out of range: 25h is over the cap "
                       "of 1d (86400 s)"));
    /* the cap itself is accepted */
    const char *at = strstr(s_example, "scale_up_cooldown_s: 10s");
    char text[4096];
    SQ_REQUIRE(at);
    snprintf(text, sizeof text, "%.*sscale_up_cooldown_s: 1d%s", (int)(at - s_example),
             s_example, at + strlen("scale_up_cooldown_s: 10s"));
    sq_policy_t *p = s_parse(text);
    SQ_CHECK(p && p->pools[1].scale_up_cooldown_s == 86400);
    sq_policy_destroy(&p);
    /* each term is capped at 100 years, and so is the sum: many terms used
     * to overflow it (and could wrap back into range) */
    SQ_CHECK(sq_duration_parse("36500d", &s) == 0 && s == 36500LL * 86400);
    char many[400] = "";
    for (int i = 0; i < 20; i++)
        strcat(many, "3153600000s");
    SQ_CHECK(sq_duration_parse(many, &s) == SQ_EINVAL);
}

/* Hostile input: thousands of random byte edits of the example. Each
 * parse either yields a policy or refuses with a detail naming the file;
 * none crashes (this test also runs under ASan/UBSan). */
static void
test_mutations(void)
{
    size_t len = strlen(s_example);
    char *buf = malloc(len + 1);
    SQ_REQUIRE(buf);
    unsigned seed = 20261129, accepted = 0, bad_detail = 0;
    const char alphabet[] = " :-[]{}\",\n#&*!|>'%@`0123456789abcxyz\t\x01\xff";
    for (int i = 0; i < 4000; i++) {
        memcpy(buf, s_example, len + 1);
        int edits = 1 + (int)(rand_r(&seed) % 4);
        for (int e = 0; e < edits; e++)
            buf[rand_r(&seed) % len] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
        size_t n = rand_r(&seed) % 8 == 0 ? rand_r(&seed) % len : len; /* sometimes truncate */
        sq_policy_t *p = sq_policy_parse(buf, n, "m.yaml");
        if (p)
            accepted++;
        else if (!strstr(sq_error_detail(), "m.yaml"))
            bad_detail++;
        sq_policy_destroy(&p);
    }
    free(buf);
    SQ_CHECK(bad_detail == 0);
    SQ_CHECK(accepted > 0 && accepted < 4000);
}

int
main(void)
{
    SQ_RUN(test_mutations);
    SQ_RUN(test_example);
    SQ_RUN(test_rejections);
    SQ_RUN(test_limits);
    SQ_RUN(test_empty_and_files);
    SQ_RUN(test_durations);
    SQ_RUN(test_bad_zone_message);
    SQ_RUN(test_cross_field_lines);
    SQ_RUN(test_worker_limits);
    SQ_RUN(test_check_flags);
    return sq_test_summary("policy");
}

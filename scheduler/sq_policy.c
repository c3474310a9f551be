/*  sq_policy: YAML policy files into sq_policy_t.
 *
 *  libyaml's document API gives every node its start line, so each check
 *  can name where the offending value sits. Keys are table-driven: one
 *  table per mapping (pool, worker, window) says the key, its kind, its
 *  range and where it lands in the struct; a key not in the table is an
 *  error, so a typo ("max_group") never silently falls back to a default.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_policy.h"

#include "sq_error.h"
#include "sq_file.h"
#include "sq_hash.h"
#include "sq_parse.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef enum { S_STR, S_INT, S_NUM, S_DUR, S_LEAD, S_MAP, S_SEQ } s_kind_t;

typedef struct {
    const char *key;
    s_kind_t kind;
    size_t off, size;       /* destination (size: for strings) */
    double lo, hi;          /* range for numbers */
    int required;
} s_key_t;

typedef struct {
    yaml_document_t *doc;
    const char *origin;
} s_ctx_t;

#define SQ_KEY(T, key, kind, lo, hi, req) \
    {#key, kind, offsetof(T, key), sizeof(((T *)0)->key), lo, hi, req}

/* Durations are a day at most, a window's length a week: a stabilisation
 * window or a cooldown longer than a day leaves a pool unscaled for days
 * (HPA caps its stabilisation window at an hour), and neither a start-up
 * estimate nor a lead time of more than a day is one to plan by. */
#define S_DAY_S 86400

static const s_key_t s_worker_keys[] = {
    SQ_KEY(sq_worker_spec_t, model, S_STR, 0, 0, 1),
    SQ_KEY(sq_worker_spec_t, tp, S_INT, 1, 1024, 0),
    SQ_KEY(sq_worker_spec_t, device, S_STR, 0, 0, 0),
    SQ_KEY(sq_worker_spec_t, max_batch, S_INT, 1, SQ_POLICY_MAX_LEASES, 0),
    SQ_KEY(sq_worker_spec_t, flags, S_STR, 0, 0, 0),
    {NULL, 0, 0, 0, 0, 0, 0}};

static const s_key_t s_window_keys[] = {
    SQ_KEY(sq_window_t, name, S_STR, 0, 0, 1),
    {"cron", S_STR, offsetof(sq_window_t, cron_text), sizeof(((sq_window_t *)0)->cron_text), 0,
     0, 1},
    {"timezone", S_STR, 0, 0, 0, 0, 0}, /* handled by s_window */
    {"duration", S_DUR, offsetof(sq_window_t, duration_s), 0, 1, 7 * S_DAY_S, 1},
    SQ_KEY(sq_window_t, min_groups, S_INT, 0, 100000, 1),
    {"lead_time", S_LEAD, offsetof(sq_window_t, lead_time_s), 0, 0, S_DAY_S, 0},
    {NULL, 0, 0, 0, 0, 0, 0}};

static const s_key_t s_pool_keys[] = {
    SQ_KEY(sq_pool_policy_t, name, S_STR, 0, 0, 1),
    {"worker", S_MAP, offsetof(sq_pool_policy_t, worker), 0, 0, 0, 1},
    SQ_KEY(sq_pool_policy_t, min_groups, S_INT, 0, 100000, 0),
    SQ_KEY(sq_pool_policy_t, max_groups, S_INT, 1, 100000, 1),
    SQ_KEY(sq_pool_policy_t, target_queued_per_group, S_NUM, 1e-9, 1e9, 0),
    SQ_KEY(sq_pool_policy_t, target_utilization, S_NUM, 1e-9, 1, 0),
    SQ_KEY(sq_pool_policy_t, tolerance, S_NUM, 0, 0.99, 0),
    SQ_KEY(sq_pool_policy_t, max_step_up, S_INT, 0, 100000, 0),
    SQ_KEY(sq_pool_policy_t, max_step_down, S_INT, 0, 100000, 0),
    SQ_KEY(sq_pool_policy_t, max_step_up_percent, S_NUM, 0, 10000, 0),
    SQ_KEY(sq_pool_policy_t, scale_down_stabilization_s, S_DUR, 0, S_DAY_S, 0),
    SQ_KEY(sq_pool_policy_t, scale_up_cooldown_s, S_DUR, 0, S_DAY_S, 0),
    SQ_KEY(sq_pool_policy_t, scale_down_cooldown_s, S_DUR, 0, S_DAY_S, 0),
    SQ_KEY(sq_pool_policy_t, startup_estimate_s, S_DUR, 0, S_DAY_S, 0),
    {"windows", S_SEQ, 0, 0, 0, 0, 0},
    {"kubernetes", S_MAP, 0, 0, 0, 0, 0},
    {NULL, 0, 0, 0, 0, 0, 0}};

/* kubernetes: {statefulset: NAME} -- what the kubernetes actuator scales. */
static const s_key_t s_kube_keys[] = {
    SQ_KEY(sq_pool_policy_t, statefulset, S_STR, 0, 0, 0),
    {NULL, 0, 0, 0, 0, 0, 0}};

static int
s_err(const s_ctx_t *cx, const yaml_node_t *node, const char *path, const char *what)
{
    return SQ_FAIL(SQ_EINVAL, "%s:%lu: %s: %s", cx->origin,
                   node ? (unsigned long)node->start_mark.line + 1 : 0UL, path, what);
}

/* The value of key in mapping m, to name its line in a refusal found
 * after the mapping was read (a rule across keys); m itself when the key
 * is not there (its default is what is refused) or m is not a mapping. */
static const yaml_node_t *
s_value_of(const s_ctx_t *cx, const yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return m;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top;
         pr++) {
        const yaml_node_t *kn = yaml_document_get_node(cx->doc, pr->key);
        if (kn && kn->type == YAML_SCALAR_NODE &&
            strcmp((const char *)kn->data.scalar.value, key) == 0)
            return yaml_document_get_node(cx->doc, pr->value);
    }
    return m;
}

/* Item i of sequence `seq` (seq itself when there is none). */
static const yaml_node_t *
s_item_of(const s_ctx_t *cx, const yaml_node_t *seq, size_t i)
{
    if (!seq || seq->type != YAML_SEQUENCE_NODE ||
        i >= (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start))
        return seq;
    return yaml_document_get_node(cx->doc, seq->data.sequence.items.start[i]);
}

int
sq_duration_parse(const char *text, int64_t *seconds)
{
    const char *p = text;
    int64_t total = 0;
    if (!p || !*p)
        return SQ_FAIL(SQ_EINVAL, "duration: empty");
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return SQ_FAIL(SQ_EINVAL, "duration \"%s\": expected a number", text);
        char *end;
        long long v = strtoll(p, &end, 10);
        int64_t unit = 1;
        switch (*end) {
        case 'h': unit = 3600; end++; break;
        case 'm': unit = 60; end++; break;
        case 's': end++; break;
        case 'd': unit = 86400; end++; break;
        case '\0': if (p != text) goto bad; break;
        default: goto bad;
        }
        if (v > 100LL * 365 * 86400)
            goto bad;
        total += v * unit;
        if (total > 100LL * 365 * 86400)   /* else many terms overflow the sum */
            goto bad;
        p = end;
    }
    *seconds = total;
    return 0;
bad:
    return SQ_FAIL(SQ_EINVAL, "duration \"%s\": use e.g. 300, 45s, 45m, 1h30m", text);
}

/* seconds as a duration ("1d", "7d", "1h30m", "45s") into buf */
static void
s_duration_text(int64_t seconds, char *buf, size_t size)
{
    static const struct { int64_t s; char unit; } units[] = {
        {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof units / sizeof units[0] && n < size; i++)
        if (seconds / units[i].s > 0 || (n == 0 && units[i].unit == 's')) {
            n += (size_t)snprintf(buf + n, size - n, "%lld%c",
                                  (long long)(seconds / units[i].s), units[i].unit);
            seconds %= units[i].s;
        }
}

/* A duration outside key k's range, with the range: "duration out of
 * range: 2d is over the cap of 1d (86400 s)". */
static int
s_duration_range(const s_ctx_t *cx, const yaml_node_t *v, const s_key_t *k, const char *path,
                 const char *text, int64_t seconds)
{
    const int over = seconds > k->hi;
    const int64_t limit = (int64_t)(over ? k->hi : k->lo);
    char lim[32], secs[32] = "", what[200];
    s_duration_text(limit, lim, sizeof lim);
    if (limit >= 60)
        snprintf(secs, sizeof secs, " (%lld s)", (long long)limit);
    snprintf(what, sizeof what, "duration out of range: %.40s is %s %s%s", text,
             over ? "over the cap of" : "under the minimum of", lim, secs);
    return s_err(cx, v, path, what);
}

static const char *
s_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int
s_number(const s_ctx_t *cx, const yaml_node_t *v, const s_key_t *k, const char *path,
         double *out)
{
    const char *s = s_scalar(v);
    char *end = NULL;
    char what[160];
    double d = s ? strtod(s, &end) : NAN;
    if (!s || end == s || *end || !isfinite(d) || (k->kind == S_INT && d != floor(d)) ||
        d < k->lo || d > k->hi) {
        snprintf(what, sizeof what, "must be %s in %g..%g (got \"%s\")",
                 k->kind == S_INT ? "an integer" : "a number", k->lo, k->hi, s ? s : "?");
        return s_err(cx, v, path, what);
    }
    *out = d;
    return 0;
}

/* Store scalar v for key k into base. */
static int
s_store(const s_ctx_t *cx, const yaml_node_t *v, const s_key_t *k, const char *path,
        void *base)
{
    char *dst = (char *)base + k->off;
    const char *s = s_scalar(v);
    if (!s)
        return s_err(cx, v, path, "must be a scalar");
    double d = 0;
    int64_t secs;
    switch (k->kind) {
    case S_STR:
        if (strlen(s) >= k->size || !*s)
            return s_err(cx, v, path, "must be a non-empty string of reasonable length");
        memcpy(dst, s, strlen(s) + 1);
        return 0;
    case S_INT:
    case S_NUM:
        if (s_number(cx, v, k, path, &d))
            return SQ_EINVAL;
        if (k->kind == S_INT)
            *(int *)dst = (int)d;
        else
            *(double *)dst = d;
        return 0;
    case S_LEAD:
        if (strcmp(s, "auto") == 0) {
            ((sq_window_t *)base)->lead_auto = 1;
            return 0;
        }
        ((sq_window_t *)base)->lead_auto = 0;
        /* fall through */
    case S_DUR:
        if (sq_duration_parse(s, &secs) != 0)
            return s_err(cx, v, path, "must be a duration such as 300, 45s, 45m, 1h30m");
        if (secs < k->lo || secs > k->hi)
            return s_duration_range(cx, v, k, path, s, secs);
        *(int64_t *)dst = secs;
        return 0;
    default:
        return s_err(cx, v, path, "internal: not a scalar key");
    }
}

typedef int (*s_child_fn)(const s_ctx_t *cx, const char *key, const yaml_node_t *v,
                          const char *path, void *base);

/* Walk mapping m with key table keys: scalars are stored, other kinds go to
 * child(). Unknown keys, duplicates and missing required keys are errors. */
static int
s_mapping(const s_ctx_t *cx, const yaml_node_t *m, const s_key_t *keys, const char *path,
          void *base, s_child_fn child)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return s_err(cx, m, path, "must be a mapping");
    unsigned seen = 0;
    char sub[256];
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top;
         pr++) {
        const yaml_node_t *kn = yaml_document_get_node(cx->doc, pr->key);
        const yaml_node_t *vn = yaml_document_get_node(cx->doc, pr->value);
        const char *key = s_scalar(kn);
        unsigned i = 0;
        while (keys[i].key && (!key || strcmp(keys[i].key, key) != 0))
            i++;
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key ? key : "?");
        if (!keys[i].key)
            return s_err(cx, kn, sub, "unknown key");
        if (seen >> i & 1)
            return s_err(cx, kn, sub, "duplicate key");
        seen |= 1u << i;
        s_kind_t kind = keys[i].kind;
        int to_child = kind == S_MAP || kind == S_SEQ || (kind == S_STR && keys[i].size == 0);
        int rc = to_child ? child(cx, key, vn, sub, base) : s_store(cx, vn, &keys[i], sub, base);
        if (rc)
            return rc;
    }
    for (unsigned i = 0; keys[i].key; i++)
        if (keys[i].required && !(seen >> i & 1)) {
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", keys[i].key);
            return s_err(cx, m, sub, "required key missing");
        }
    return 0;
}

static int
s_window_child(const s_ctx_t *cx, const char *key, const yaml_node_t *v, const char *path,
               void *base)
{
    sq_window_t *w = base;
    const char *s = s_scalar(v);
    if (!s || strcmp(key, "timezone") != 0)
        return s_err(cx, v, path, "must be a scalar");
    sq_tz_destroy(&w->tz);
    if (!(w->tz = sq_tz_load(s)))
        return s_err(cx, v, path, sq_error_detail());
    return 0;
}

static int
s_window(const s_ctx_t *cx, const yaml_node_t *n, const char *path, sq_window_t *w)
{
    w->lead_auto = 1;
    int rc = s_mapping(cx, n, s_window_keys, path, w, s_window_child);
    if (rc)
        return rc;
    if (sq_cron_parse(w->cron_text, &w->cron) != 0) {
        char detail[300], sub[256];
        snprintf(detail, sizeof detail, "%s", sq_error_detail());
        snprintf(sub, sizeof sub, "%.200s.cron", path);
        return s_err(cx, s_value_of(cx, n, "cron"), sub, detail);
    }
    if (!w->tz && !(w->tz = sq_tz_load("UTC")))
        return s_err(cx, n, path, "time zone UTC not found; install tzdata");
    return 0;
}

int
sq_worker_flags_split(const char *flags, char *buf, size_t size, char **argv, int max)
{
    int n = 0;
    snprintf(buf, size, "%s", flags);
    for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save)) {
        if (n < max)
            argv[n] = tok;
        n++;
    }
    return n;
}

/* What worker.flags must not hold for the scheduler's sake: a flag it sets
 * itself, a --prefetch over the leases a group may hold; each would make
 * every group it starts exit at once. The worker's own parse judges the
 * rest (sq_policy_check_flags). `m` is the worker mapping. */
static int
s_worker_check(const s_ctx_t *cx, const yaml_node_t *m, const char *path,
               const sq_worker_spec_t *w)
{
    const yaml_node_t *v = s_value_of(cx, m, "flags");
    static const char *const own[] = {"--broker", "--model", "--device", "--max-batch",
                                      "--group-id", "--check-flags", NULL};
    char buf[SQ_POLICY_FLAGS_BYTES], *argv[SQ_POLICY_MAX_WORKER_FLAGS], sub[256], what[200];
    snprintf(sub, sizeof sub, "%s.flags", path);
    int n = sq_worker_flags_split(w->flags, buf, sizeof buf, argv, SQ_POLICY_MAX_WORKER_FLAGS);
    if (n > SQ_POLICY_MAX_WORKER_FLAGS) {
        snprintf(what, sizeof what, "%d flags (at most %d)", n, SQ_POLICY_MAX_WORKER_FLAGS);
        return s_err(cx, v, sub, what);
    }
    long prefetch = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strcspn(argv[i], "=");
        for (int k = 0; own[k]; k++)
            if (strlen(own[k]) == len && strncmp(argv[i], own[k], len) == 0) {
                snprintf(what, sizeof what, "%s is set by the scheduler (%s)", own[k],
                         strcmp(own[k], "--check-flags") != 0
                             ? "use the worker keys"
                             : "when it asks shardq-worker about these flags");
                return s_err(cx, v, sub, what);
            }
        if (len != strlen("--prefetch") || strncmp(argv[i], "--prefetch", len) != 0)
            continue;
        const char *val = argv[i][len] == '=' ? argv[i] + len + 1 : i + 1 < n ? argv[++i] : "";
        long long pf = -1;
        if (sq_parse_int(val, 0, SQ_POLICY_MAX_LEASES, &pf) != 0) {
            snprintf(what, sizeof what, "--prefetch: '%.40s' is not an integer in [0, %d]", val,
                     SQ_POLICY_MAX_LEASES);
            return s_err(cx, v, sub, what);
        }
        prefetch = (long)pf;
    }
    if (w->max_batch + prefetch > SQ_POLICY_MAX_LEASES) {
        snprintf(what, sizeof what,
                 "max_batch %d + --prefetch %ld is more than the %d leases a worker group may hold",
                 w->max_batch, prefetch, SQ_POLICY_MAX_LEASES);
        return s_err(cx, v, sub, what);
    }
    return 0;
}

static int
s_pool_child(const s_ctx_t *cx, const char *key, const yaml_node_t *v, const char *path,
             void *base)
{
    sq_pool_policy_t *p = base;
    if (strcmp(key, "worker") == 0) {
        int rc = s_mapping(cx, v, s_worker_keys, path, &p->worker, NULL);
        if (rc)
            return rc;
        p->worker.flags_line = (int)s_value_of(cx, v, "flags")->start_mark.line + 1;
        return s_worker_check(cx, v, path, &p->worker);
    }
    if (strcmp(key, "kubernetes") == 0)
        return s_mapping(cx, v, s_kube_keys, path, p, NULL);
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return s_err(cx, v, path, "must be a list");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > SQ_POLICY_MAX_WINDOWS) {
        char what[96];
        snprintf(what, sizeof what, "%zu windows (at most %d)", n, SQ_POLICY_MAX_WINDOWS);
        return s_err(cx, v, path, what);
    }
    if (!(p->windows = calloc(n ? n : 1, sizeof *p->windows)))
        return SQ_FAIL(SQ_ENOMEM, "policy windows");
    for (size_t i = 0; i < n; i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        p->n_windows = i + 1;
        int rc = s_window(cx, yaml_document_get_node(cx->doc, v->data.sequence.items.start[i]),
                          sub, &p->windows[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static void
s_pool_defaults(sq_pool_policy_t *p)
{
    p->worker.tp = 1;
    p->worker.max_batch = 16;
    snprintf(p->worker.device, sizeof p->worker.device, "cpu");
    p->min_groups = 1;
    p->scale_down_stabilization_s = 300;
    p->startup_estimate_s = 60;
    p->tolerance = 0.1;
}

/* Cross-field rules that a key table cannot say. Each refusal names a
 * key and carries its line (n is the pool's mapping). */
static int
s_pool_check(const s_ctx_t *cx, const yaml_node_t *n, const char *path,
             const sq_pool_policy_t *p)
{
    char sub[256], what[200];
    if (p->min_groups > p->max_groups) {
        snprintf(sub, sizeof sub, "%s.max_groups", path);
        return s_err(cx, s_value_of(cx, n, "max_groups"), sub, "must be >= min_groups");
    }
    if (p->target_queued_per_group == 0 && p->target_utilization == 0)
        return s_err(cx, n, path, "set target_queued_per_group and/or target_utilization");
    if (strcmp(p->worker.device, "cpu") != 0 && strcmp(p->worker.device, "cuda") != 0) {
        snprintf(sub, sizeof sub, "%s.worker.device", path);
        return s_err(cx, s_value_of(cx, s_value_of(cx, n, "worker"), "device"), sub,
                     "must be cpu or cuda");
    }
    for (const char *c = p->name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_.", *c)) {
            snprintf(sub, sizeof sub, "%s.name", path);
            return s_err(cx, s_value_of(cx, n, "name"), sub,
                         "use letters, digits, '-', '_' and '.' only");
        }
    const yaml_node_t *windows = s_value_of(cx, n, "windows");
    for (size_t i = 0; i < p->n_windows; i++)
        if (p->windows[i].min_groups > p->max_groups) {
            snprintf(sub, sizeof sub, "%s.windows[%zu].min_groups", path, i);
            snprintf(what, sizeof what, "must be <= max_groups (%d)", p->max_groups);
            return s_err(cx, s_value_of(cx, s_item_of(cx, windows, i), "min_groups"), sub, what);
        }
    return 0;
}

static int
s_document(const s_ctx_t *cx, sq_policy_t *self)
{
    const yaml_node_t *root = yaml_document_get_root_node(cx->doc);
    if (!root)
        return s_err(cx, NULL, "pools", "empty policy file");
    if (root->type != YAML_MAPPING_NODE)
        return s_err(cx, root, "(top)", "must be a mapping with key pools");
    const yaml_node_t *pools = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         pr < root->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = yaml_document_get_node(cx->doc, pr->key);
        const char *key = s_scalar(kn);
        if (!key || strcmp(key, "pools") != 0)   /* an empty key still names a path */
            return s_err(cx, kn, !key ? "?" : *key ? key : "\"\"",
                         "unknown key (expected pools)");
        pools = yaml_document_get_node(cx->doc, pr->value);
    }
    if (!pools || pools->type != YAML_SEQUENCE_NODE ||
        pools->data.sequence.items.top == pools->data.sequence.items.start)
        return s_err(cx, pools ? pools : root, "pools", "must be a non-empty list");
    size_t n = (size_t)(pools->data.sequence.items.top - pools->data.sequence.items.start);
    if (n > SQ_POLICY_MAX_POOLS) {
        char what[96];
        snprintf(what, sizeof what, "%zu pools (at most %d)", n, SQ_POLICY_MAX_POOLS);
        return s_err(cx, pools, "pools", what);
    }
    if (!(self->pools = calloc(n, sizeof *self->pools)))
        return SQ_FAIL(SQ_ENOMEM, "policy pools");
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *pn =
            yaml_document_get_node(cx->doc, pools->data.sequence.items.start[i]);
        sq_pool_policy_t *p = &self->pools[i];
        char path[64];
        snprintf(path, sizeof path, "pools[%zu]", i);
        s_pool_defaults(p);
        self->n_pools = i + 1;
        int rc = s_mapping(cx, pn, s_pool_keys, path, p, s_pool_child);
        if (rc || (rc = s_pool_check(cx, pn, path, p)))
            return rc;
        if (!p->statefulset[0])
            snprintf(p->statefulset, sizeof p->statefulset, "%s", p->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(self->pools[j].name, p->name) == 0) {
                char sub[80], what[64];
                snprintf(sub, sizeof sub, "%s.name", path);
                snprintf(what, sizeof what, "duplicate pool name (pools[%zu] has it)", j);
                return s_err(cx, s_value_of(cx, pn, "name"), sub, what);
            }
    }
    return 0;
}

sq_policy_t *
sq_policy_parse(const char *text, size_t len, const char *origin)
{
    sq_policy_t *self = calloc(1, sizeof *self);
    yaml_parser_t parser;
    yaml_document_t doc;
    int have_doc = 0, rc = SQ_ENOMEM;
    if (!self || !yaml_parser_initialize(&parser)) {
        free(self);
        SQ_FAIL(SQ_ENOMEM, "policy parser");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = SQ_FAIL(SQ_EINVAL, "%s:%lu: YAML syntax: %s", origin,
                     (unsigned long)parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "unreadable");
        goto done;
    }
    have_doc = 1;
    s_ctx_t cx = {&doc, origin};
    if ((rc = s_document(&cx, self)) != 0)
        goto done;
    if (!(self->text = malloc(len + 1))) {
        rc = SQ_FAIL(SQ_ENOMEM, "policy text");
        goto done;
    }
    memcpy(self->text, text, len);
    self->text[len] = '\0';
    if (!(self->origin = strdup(origin))) {
        rc = SQ_FAIL(SQ_ENOMEM, "policy origin");
        goto done;
    }
    const uint64_t h = sq_fnv1a(SQ_FNV1A_INIT, text, len);
    snprintf(self->digest, sizeof self->digest, "%016llx", (unsigned long long)h);
done:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc)
        sq_policy_destroy(&self);
    return self;
}

sq_policy_t *
sq_policy_load(const char *path)
{
    char *buf = NULL;
    size_t n = 0;
    sq_policy_t *self = NULL;
    if (sq_file_read(path, 1 << 20, &buf, &n) == 0)
        self = sq_policy_parse(buf, n, path);
    free(buf);
    return self;
}

void
sq_policy_destroy(sq_policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_policy_t *self = *self_p;
    for (size_t i = 0; i < self->n_pools; i++) {
        for (size_t j = 0; j < self->pools[i].n_windows; j++)
            sq_tz_destroy(&self->pools[i].windows[j].tz);
        free(self->pools[i].windows);
    }
    free(self->pools);
    free(self->text);
    free(self->origin);
    free(self);
    *self_p = NULL;
}

int
sq_policy_check_flags(const sq_policy_t *self, sq_policy_flags_fn check, void *arg)
{
    for (size_t i = 0; i < self->n_pools; i++) {
        const sq_pool_policy_t *p = &self->pools[i];
        int rc = p->worker.flags[0] ? check(arg, p) : 0;
        if (rc)
            return SQ_FAIL(rc, "%s:%d: pools[%zu].worker.flags: %s", self->origin,
                           p->worker.flags_line, i, sq_error_detail());
    }
    return 0;
}

const sq_pool_policy_t *
sq_policy_pool(const sq_policy_t *self, const char *name)
{
    for (size_t i = 0; i < self->n_pools; i++)
        if (strcmp(self->pools[i].name, name) == 0)
            return &self->pools[i];
    return NULL;
}

void
sq_policy_hpa_baseline(const sq_pool_policy_t *src, sq_pool_policy_t *out)
{
    *out = *src;
    out->windows = NULL;
    out->n_windows = 0;
    out->max_step_up = 4;
    out->max_step_up_percent = 100;
    out->max_step_down = 0;
    out->scale_up_cooldown_s = 0;
    out->scale_down_cooldown_s = 0;
    out->tolerance = 0.1;
}

/*  shardq_list: the listings — jobs, workers, stats — as tables on a
 *  terminal or JSON arrays with --json.
 */
#define _POSIX_C_SOURCE 200809L
#include "shardq_cli.h"
#include "sq_error.h"
#include "sq_jsonl.h"
#include "sq_wire.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int
sq_cli_jobs(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    const char *state = NULL, *tenant = NULL, *limit_s = NULL;
    bool json = false, done;
    sq_cli_opt_t opts[] = {{"--state", NULL, &state, NULL}, {"--tenant", NULL, &tenant, NULL},
                      {"--limit", NULL, &limit_s, NULL}, {"--json", NULL, NULL, &json},
                      {NULL, NULL, NULL, NULL}};
    uint64_t limit = 50;
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, NULL, 0, 0, &done);
    if (rc || done ||
        (limit_s && (rc = sq_cli_parse_uint("jobs", "--limit", limit_s, 1, 10000, &limit))))
        return rc;
    if (state && !sq_wire_job_state_known(state)) {
        fprintf(stderr, "shardq jobs: --state must be one of " SQ_WIRE_JOB_STATES ", not \"%s\"\n",
                state);
        return 2;
    }
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    sq_client_job_t *jobs = NULL;
    size_t n = 0;
    uint64_t next = 0;
    rc = sq_client_list(c, state, tenant, 0, (uint32_t)limit, &jobs, &n, &next);
    sq_client_destroy(&c);
    if (rc)
        return sq_cli_fail(rc);
    json_t *arr = json ? json_array() : NULL;
    if (!json)
        printf("%-10s %-10s %8s %-16s %-24s %5s %s\n", "JOB", "STATE", "TASKS", "TENANT", "MODEL",
               "PRIO", "CREATED");
    for (size_t i = 0; i < n; i++) {
        char created[32];
        sq_cli_iso_time(jobs[i].created_at_ms, created, sizeof created);
        if (json)
            json_array_append_new(arr, sq_cli_job_json(&jobs[i]));
        else
            printf("%-10llu %-10s %8llu %-16s %-24s %5llu %s\n",
                   (unsigned long long)jobs[i].job_id, jobs[i].state,
                   (unsigned long long)jobs[i].n_tasks, jobs[i].tenant, jobs[i].model,
                   (unsigned long long)jobs[i].priority, created);
    }
    if (json)
        sq_cli_print_json(arr);
    else if (next)
        fprintf(stderr, "(more jobs: raise --limit)\n");
    free(jobs);
    return SQ_EXIT_OK;
}

int
sq_cli_workers(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    bool json = false, done;
    sq_cli_opt_t opts[] = {{"--json", NULL, NULL, &json}, {NULL, NULL, NULL, NULL}};
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, NULL, 0, 0, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    sq_client_worker_t *w = NULL;
    size_t n = 0;
    rc = sq_client_workers(c, &w, &n);
    sq_client_destroy(&c);
    if (rc)
        return sq_cli_fail(rc);
    json_t *arr = json ? json_array() : NULL;
    if (!json)
        printf("%-24s %-20s %-8s %-3s %3s %6s %8s %8s %7s %6s %-9s %9s %9s\n", "GROUP", "MODEL",
               "DEVICE", "KV", "TP", "BATCH", "KV_PAGES", "KV_INUSE", "PREEMPT", "LEASES",
               "STATE", "SEEN_MS", "COMPLETED");
    for (size_t i = 0; i < n; i++) {
        char pages[24] = "-", in_use[24] = "-", preempt[24] = "-";
        if (w[i].kv_pages)
            snprintf(pages, sizeof pages, "%llu", (unsigned long long)w[i].kv_pages);
        if (w[i].kv_reported) {
            snprintf(in_use, sizeof in_use, "%llu", (unsigned long long)w[i].kv_pages_in_use);
            snprintf(preempt, sizeof preempt, "%llu", (unsigned long long)w[i].preemptions);
        }
        json_t *o = !json ? NULL
                          : json_pack("{s:s,s:s,s:s,s:s*,s:s,s:I,s:I,s:I,s:I,s:I}", "group_id",
                                      w[i].group_id, "model", w[i].model, "device", w[i].device,
                                      "kv_type", w[i].kv_type[0] ? w[i].kv_type : NULL, "state",
                                      w[i].state, "tp_size", (json_int_t)w[i].tp_size,
                                      "max_batch", (json_int_t)w[i].max_batch, "leases",
                                      (json_int_t)w[i].leases, "last_seen_ms_ago",
                                      (json_int_t)w[i].last_seen_ms_ago, "completed",
                                      (json_int_t)w[i].completed);
        if (o && w[i].kv_pages)
            json_object_set_new(o, "kv_pages", json_integer((json_int_t)w[i].kv_pages));
        if (o && w[i].kv_reported) {
            json_object_set_new(o, "kv_pages_in_use",
                                json_integer((json_int_t)w[i].kv_pages_in_use));
            json_object_set_new(o, "preemptions", json_integer((json_int_t)w[i].preemptions));
        }
        if (json)
            json_array_append_new(arr, o);
        else
            printf("%-24s %-20s %-8s %-3s %3llu %6llu %8s %8s %7s %6llu %-9s %9llu %9llu\n",
                   w[i].group_id, w[i].model, w[i].device, w[i].kv_type[0] ? w[i].kv_type : "-",
                   (unsigned long long)w[i].tp_size, (unsigned long long)w[i].max_batch, pages,
                   in_use, preempt, (unsigned long long)w[i].leases,
                   w[i].state, (unsigned long long)w[i].last_seen_ms_ago,
                   (unsigned long long)w[i].completed);
    }
    if (json)
        sq_cli_print_json(arr);
    free(w);
    return SQ_EXIT_OK;
}

int
sq_cli_stats(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    bool done;
    int rc = sq_cli_cmd_parse(cmd, argc, argv, NULL, NULL, 0, 0, &done);
    if (rc || done)
        return rc;
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    sq_client_stats_t st;
    rc = sq_client_stats(c, &st);
    sq_client_destroy(&c);
    if (rc)
        return sq_cli_fail(rc);
    printf("%-24s %8s %8s %8s %10s %5s %5s %8s %10s %14s %7s\n", "POOL", "QUEUED", "RETRYING",
           "LEASED", "OLDEST_MS", "BUSY", "IDLE", "DRAINING", "TASKS/S", "PROMPT_TOKENS",
           "CACHED");
    for (size_t i = 0; i < st.n_pools; i++) {
        const sq_client_pool_t *p = &st.pools[i];
        char cached[16] = "-";   /* the prefix-cache hit rate */
        if (p->prompt_tokens)
            snprintf(cached, sizeof cached, "%.1f%%",
                     100.0 * (double)p->cached_tokens / (double)p->prompt_tokens);
        printf("%-24s %8llu %8llu %8llu %10llu %5llu %5llu %8llu %10.1f %14llu %7s\n", p->model,
               (unsigned long long)p->queued, (unsigned long long)p->retrying,
               (unsigned long long)p->leased, (unsigned long long)p->oldest_queued_age_ms,
               (unsigned long long)p->busy, (unsigned long long)p->idle,
               (unsigned long long)p->draining, p->throughput_per_s,
               (unsigned long long)p->prompt_tokens, cached);
    }
    printf("\n%llu finished tasks wait for their commit%s\n",
           (unsigned long long)st.uncommitted,
           st.dispatch_paused ? "; no lease is granted until commits catch up" : "");
    printf("\n%-24s %8s %8s\n", "TENANT", "QUEUED", "LEASED");
    for (size_t i = 0; i < st.n_tenants; i++)
        printf("%-24s %8llu %8llu\n", st.tenants[i].tenant,
               (unsigned long long)st.tenants[i].queued, (unsigned long long)st.tenants[i].leased);
    sq_client_stats_clear(&st);
    return SQ_EXIT_OK;
}

/*  shardq-broker: the durable job queue server (docs/broker.md).
 *
 *  Exit codes: 0 clean stop (SIGTERM/SIGINT) or --migrate done, 1 runtime
 *  failure, 2 usage error, 3 database unreachable or schema not migrated.
 */
#include "sq_error.h"
#include "sq_log.h"
#include "sq_migrate.h"
#include "sq_parse.h"
#include "sq_server.h"
#include "sq_version.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: shardq-broker [options]\n"
            "  --db CONNINFO          PostgreSQL conninfo or URL (default: $SHARDQ_DB)\n"
            "  --migrate              apply pending schema migrations and exit\n"
            "  --listen ENDPOINT      client socket (default tcp://*:5555)\n"
            "  --workers ENDPOINT     worker socket (default tcp://*:5556)\n"
            "  --metrics-port PORT    serve Prometheus metrics on PORT (default off)\n"
            "  --adapters DIR         LoRA adapter directory shared with the workers\n"
            "                         (shardq lora publish writes DIR/NAME/VERSION.gguf)\n"
            "  --heartbeat-ms N       a group silent for 3 x N ms is lost, 500-3600000 (default\n"
            "                         1000); the broker beats every min(N, 1000) ms, as workers\n"
            "                         take a broker silent for 3 s for gone\n"
            "  --lease-timeout-ms N   take back leases older than N ms (default 0 = never)\n"
            "  --retry-base-ms N      first retry delay, doubled per attempt (default 1000)\n"
            "  --retry-cap-ms N       longest retry delay (default 60000)\n"
            "  --max-uncommitted N    grant no lease while N finished tasks wait for their\n"
            "                         commit (default 20000; 0 = no limit)\n"
            "  --log-level L          debug|info|warn|error (default info)\n"
            "  --help, --version\n");
}

static int s_num(const char *s, long long min, long long *out)
{
    return sq_parse_int(s, min, LLONG_MAX, out);
}

static int s_migrate(const char *db_url)
{
    sq_db_t *db = NULL;
    int applied = 0;
    int rc = sq_db_connect(db_url, 10000, &db);
    if (rc == 0)
        rc = sq_migrate_apply(db, &applied);
    sq_db_destroy(&db);
    if (rc) {
        SQ_ERROR("migration failed", "err=%s at=%s", sq_q(sq_error_detail()), sq_error_where());
        return rc == SQ_EDBDOWN ? 3 : 1;
    }
    SQ_INFO("migrations applied", "applied=%d total=%d", applied, sq_n_migrations);
    return 0;
}

int main(int argc, char **argv)
{
    sq_log_init("broker");
    sq_server_opts_t o = {.db = getenv("SHARDQ_DB"), .listen = "tcp://*:5555",
                          .workers = "tcp://*:5556", .heartbeat_ms = SQ_WIRE_HEARTBEAT_MS,
                          .liveness = SQ_WIRE_HEARTBEAT_LIVENESS, .retry_base_ms = 1000,
                          .retry_cap_ms = 60000, .drr_quantum = 1024,
                          .max_uncommitted = 20000};
    bool migrate = false;
    enum { O_HB = 256, O_LEASE, O_RETRY, O_RCAP, O_LOG, O_VERSION, O_ADAPTERS, O_METRICS,
           O_UNCOMMITTED };
    static const struct option longs[] = {
        {"db", required_argument, 0, 'd'},        {"migrate", no_argument, 0, 'm'},
        {"listen", required_argument, 0, 'l'},    {"workers", required_argument, 0, 'w'},
        {"heartbeat-ms", required_argument, 0, O_HB},
        {"lease-timeout-ms", required_argument, 0, O_LEASE},
        {"retry-base-ms", required_argument, 0, O_RETRY},
        {"retry-cap-ms", required_argument, 0, O_RCAP},
        {"log-level", required_argument, 0, O_LOG}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},
        {"adapters", required_argument, 0, O_ADAPTERS},
        {"metrics-port", required_argument, 0, O_METRICS},
        {"max-uncommitted", required_argument, 0, O_UNCOMMITTED}, {0, 0, 0, 0}};
    int c;
    long long n;
    sq_log_level_t level;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'd': o.db = optarg; break;
        case 'm': migrate = true; break;
        case 'l': o.listen = optarg; break;
        case 'w': o.workers = optarg; break;
        /* at least half the workers' own beat (SQ_WIRE_HEARTBEAT_MS): a
         * group is lost after 3 intervals without a word, and under 1/3 of
         * the beat every healthy group would be, again and again */
        case O_HB:
            ok = s_num(optarg, SQ_WIRE_HEARTBEAT_MS / 2, &n) == 0 && n <= 3600000 &&
                 (o.heartbeat_ms = (int)n);
            break;
        case O_LEASE: ok = s_num(optarg, 0, &n) == 0 && ((o.lease_timeout_ms = n), 1); break;
        case O_RETRY: ok = s_num(optarg, 0, &n) == 0 && ((o.retry_base_ms = n), 1); break;
        case O_RCAP: ok = s_num(optarg, 0, &n) == 0 && ((o.retry_cap_ms = n), 1); break;
        case O_UNCOMMITTED:
            ok = s_num(optarg, 0, &n) == 0 && n <= UINT32_MAX &&
                 ((o.max_uncommitted = (uint32_t)n), 1);
            break;
        case O_LOG: ok = sq_log_level_parse(optarg, &level) == 0; if (ok) sq_log_set_level(level); break;
        case 'h': s_usage(stdout); return 0;
        case O_VERSION: printf("shardq-broker %s\n", SQ_VERSION); return 0;
        case O_ADAPTERS: o.adapters_dir = optarg; break;
        case O_METRICS:
            ok = s_num(optarg, 1, &n) == 0 && n <= 65535 && ((o.metrics_port = (int)n), 1);
            break;
        default: s_usage(stderr); return 2;
        }
        if (!ok) {
            const struct option *l = longs;
            while (l->name && l->val != c)
                l++;
            fprintf(stderr, "shardq-broker: bad value for --%s: '%s'\n", l->name, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "shardq-broker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o.db || !o.db[0]) {
        fprintf(stderr, "shardq-broker: no database: pass --db or set SHARDQ_DB\n");
        return 2;
    }
    if (migrate)
        return s_migrate(o.db);
    zsys_init();
    zsys_handler_reset();
    zsys_catch_interrupts(); /* SIGINT and SIGTERM end the loop */
    sq_server_t *server = sq_server_new(&o);
    if (!server) {
        SQ_ERROR("out of memory", NULL);
        return 1;
    }
    int rc = sq_server_run(server);
    if (rc)
        SQ_ERROR("broker failed", "err=%s at=%s", sq_q(sq_error_detail()), sq_error_where());
    if (server->writer_busy) {
        /* (after the drain) its thread waits on a database that does not
         * answer: it cannot be joined, and what it holds is logged lost */
        fflush(NULL);
        _exit(3);
    }
    sq_server_destroy(&server);
    if (rc == SQ_EDBDOWN || rc == SQ_ESTATE || rc == SQ_EDB)
        return 3;
    return rc ? 1 : 0;
}

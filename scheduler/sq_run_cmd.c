/*  The shardq-scheduler control loop.
 *
 *  Every tick (default 1 s): read broker STATS (and WORKERS, for the local
 *  actuator's readiness and start-up times) through libshardq, decide per
 *  pool with sq_decide, apply changes through the actuator, and record
 *  each change in scaling_events + audit_log. Between ticks the loop
 *  answers Prometheus scrapes. SIGHUP reloads the policy (an invalid file
 *  is refused and the running policy kept); SIGTERM/SIGINT stop the loop,
 *  and the local actuator drains the groups it started.
 *
 *  Ownership: this file owns the process-wide state (signals, the loop
 *  struct); everything it calls is a library that returns errors.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_actuator.h"
#include "sq_client.h"
#include "sq_error.h"
#include "sq_log.h"
#include "sq_metrics_http.h"
#include "sq_sched_cmd.h"
#include "sq_sched_db.h"
#include "sq_sched_loop.h"
#include "sq_clock.h"

#include <czmq.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* s_stop_signal: the signal that asked the loop to stop (0: none), so
 * that the log says which. */
static volatile sig_atomic_t s_reload_flag, s_stop_signal;

static void
s_on_signal(int sig)
{
    if (sig == SIGHUP)
        s_reload_flag = 1;
    else
        s_stop_signal = sig;
}

/* The signals s_install_signals stops on, by name. */
static const char *
s_signal_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "?";
}

static void
s_usage(FILE *out)
{
    fprintf(out,
        "usage: shardq-scheduler --policy FILE [options]\n"
        "       shardq-scheduler simulate --policy FILE --trace FILE [options]\n"
        "  --db CONNINFO          PostgreSQL (default $SHARDQ_DB)\n"
        "  --broker EP            broker client endpoint (default $SHARDQ_BROKER)\n"
        "  --worker-endpoint EP   endpoint given to workers (default $SHARDQ_WORKER_ENDPOINT)\n"
        "  --actuator KIND        local (default) | kubernetes\n"
        "  --tick-ms MS           control period (default 1000)\n"
        "  --metrics-port PORT    Prometheus text metrics (default: off)\n"
        "  --metrics-bind ADDR    address to listen on (default 0.0.0.0)\n"
        "  --log-level LEVEL      debug | info | warn | error\n"
        "  --clock TIME           start the loop's clock at this ISO time (tests, drills)\n"
        "  --once                 run one tick and exit\n"
        " local actuator:\n"
        "  --mpirun PATH          (default mpirun)   --worker-bin PATH (default shardq-worker)\n"
        "  --mpirun-arg ARG       extra mpirun flag, repeatable (e.g. --oversubscribe)\n"
        "  --grace-s S            SIGTERM -> SIGKILL grace (default 60; 0: at once)\n"
        " kubernetes actuator:\n"
        "  --k8s-api URL  --k8s-token FILE  --k8s-ca FILE  --k8s-namespace NS\n"
        "exit codes: 0 stopped by signal (or --once done), 1 startup failure, 2 usage\n");
}

enum { O_DB = 256, O_BROKER, O_WEP, O_ACT, O_TICK, O_MPORT, O_MBIND, O_LOG, O_CLOCK, O_ONCE,
       O_MPIRUN, O_WBIN, O_MARG, O_GRACE, O_KAPI, O_KTOK, O_KCA, O_KNS, O_POLICY, O_HELP };

static int
s_parse_args(int argc, char **argv, sq_loop_opts_t *o)
{
    static const struct option opts[] = {
        {"db", 1, 0, O_DB}, {"broker", 1, 0, O_BROKER}, {"worker-endpoint", 1, 0, O_WEP},
        {"actuator", 1, 0, O_ACT}, {"tick-ms", 1, 0, O_TICK}, {"metrics-port", 1, 0, O_MPORT},
        {"metrics-bind", 1, 0, O_MBIND}, {"log-level", 1, 0, O_LOG}, {"clock", 1, 0, O_CLOCK},
        {"once", 0, 0, O_ONCE}, {"mpirun", 1, 0, O_MPIRUN}, {"worker-bin", 1, 0, O_WBIN},
        {"mpirun-arg", 1, 0, O_MARG}, {"grace-s", 1, 0, O_GRACE}, {"k8s-api", 1, 0, O_KAPI},
        {"k8s-token", 1, 0, O_KTOK}, {"k8s-ca", 1, 0, O_KCA}, {"k8s-namespace", 1, 0, O_KNS},
        {"policy", 1, 0, O_POLICY}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    int c, n_margs = 0, rc = 0;
    sq_log_level_t level;
    long long n;
    double x;
    while (rc == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DB: o->db = optarg; break;
        case O_BROKER: o->broker = optarg; break;
        case O_WEP: o->local.worker_endpoint = optarg; break;
        case O_ACT: o->actuator = optarg; break;
        case O_TICK:
            if ((rc = sq_cmd_int("--tick-ms", optarg, 1, 3600000, &n)) == 0)
                o->tick_ms = n;
            break;
        case O_MPORT:   /* 0: off */
            if ((rc = sq_cmd_int("--metrics-port", optarg, 0, 65535, &n)) == 0)
                o->metrics_port = (int)n;
            break;
        case O_MBIND: o->metrics_bind = optarg; break;
        case O_LOG:
            if (sq_log_level_parse(optarg, &level) != 0)
                return sq_cmd_usage_error("--log-level: '%s' is not debug, info, warn or error",
                                          optarg);
            sq_log_set_level(level);
            break;
        case O_CLOCK:
            if (sq_time_parse_iso(optarg, &o->clock_start_s) != 0) {
                fprintf(stderr, "--clock: %s\n", sq_error_detail());
                return 2;
            }
            break;
        case O_ONCE: o->once = 1; break;
        case O_MPIRUN: o->local.mpirun = optarg; break;
        case O_WBIN: o->local.worker = optarg; break;
        case O_MARG:
            if (n_margs == SQ_LOOP_MAX_MPIRUN_ARGS)
                return sq_cmd_usage_error("--mpirun-arg: at most %d of them",
                                          SQ_LOOP_MAX_MPIRUN_ARGS);
            o->mpirun_args[n_margs++] = optarg;
            break;
        case O_GRACE:
            if ((rc = sq_cmd_num("--grace-s", optarg, 0.0, 86400.0, &x)) == 0)
                o->local.grace_ms = (int64_t)(x * 1000);
            break;
        case O_KAPI: o->kube.api_url = optarg; break;
        case O_KTOK: o->kube.token_path = optarg; break;
        case O_KCA: o->kube.ca_path = optarg; break;
        case O_KNS: o->kube.namespace_ = optarg; break;
        case O_POLICY: o->policy_path = optarg; break;
        case O_HELP: s_usage(stdout); exit(0);
        default: s_usage(stderr); return 2;
        }
    }
    if (rc)
        return rc;
    o->local.mpirun_args = o->mpirun_args;
    if (!o->db)
        o->db = getenv("SHARDQ_DB");
    if (optind < argc)
        return sq_cmd_usage_error("unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->policy_path)
        return sq_cmd_usage_error("--policy FILE is required (see --help)");
    if (strcmp(o->actuator, "local") != 0 && strcmp(o->actuator, "kubernetes") != 0)
        return sq_cmd_usage_error("--actuator: '%s' is not local or kubernetes", o->actuator);
    if (!o->db || !*o->db) {
        fprintf(stderr, "shardq-scheduler: no database: pass --db or set SHARDQ_DB\n");
        return 2;
    }
    return 0;
}

static void
s_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Sleep until deadline_ms (monotonic) while answering scrapes; returns
 * early on a signal. Pending scrapes are answered even when the deadline
 * has already passed: ticks slower than the period (a broker that does
 * not answer) must not starve the metrics that would show it. */
static void
s_wait(sq_loop_t *loop, sq_metrics_http_t *http, int64_t deadline_ms)
{
    int64_t now = sq_mono_ms();
    do {
        int64_t left = deadline_ms > now ? deadline_ms - now : 0;
        struct pollfd pfd = {http ? sq_metrics_http_fd(http) : -1, POLLIN, 0};
        if (poll(&pfd, 1, (int)left) > 0 && http)
            sq_metrics_http_serve(http, sq_loop_render_metrics, loop);
        now = sq_mono_ms();
    } while (now < deadline_ms && !s_stop_signal && !s_reload_flag);
}

int
sq_cmd_run(int argc, char **argv)
{
    sq_log_init("scheduler");
    sq_loop_opts_t o;
    sq_loop_opts_default(&o);
    int rc = s_parse_args(argc, argv, &o);
    if (rc)
        return rc;
    zsys_handler_set(NULL); /* our handlers, not czmq's */
    sq_loop_t *loop = sq_loop_new(&o);
    char q[1024];
    if (!loop) {
        SQ_ERROR("startup failed", "error=%s", sq_log_quote(sq_error_detail(), q, sizeof q));
        return 1;
    }
    sq_metrics_http_t *http = NULL;
    if (o.metrics_port > 0 && !(http = sq_metrics_http_new(o.metrics_bind, o.metrics_port))) {
        SQ_ERROR("startup failed", "error=%s", sq_log_quote(sq_error_detail(), q, sizeof q));
        sq_loop_destroy(&loop);
        return 1;
    }
    s_install_signals();
    SQ_INFO("started", "actuator=%s tick_ms=%lld metrics_port=%d", o.actuator,
            (long long)o.tick_ms, o.metrics_port);
    for (int64_t next = sq_mono_ms(); !s_stop_signal;) {
        if (s_reload_flag) {
            s_reload_flag = 0;
            sq_loop_reload(loop);
        }
        sq_loop_tick(loop);
        if (o.once)
            break;
        next += o.tick_ms;
        if (next < sq_mono_ms())
            next = sq_mono_ms(); /* a slow tick: do not try to catch up */
        s_wait(loop, http, next);
    }
    const int sig = s_stop_signal;
    if (sig)
        SQ_INFO("stopping", "reason=signal signal=%s signo=%d", s_signal_name(sig), sig);
    else
        SQ_INFO("stopping", "reason=once");
    sq_metrics_http_destroy(&http);
    sq_loop_destroy(&loop);
    return 0;
}

/*  End-to-end tests of the broker's Prometheus endpoint (docs/broker.md,
 *  --metrics-port).
 *
 *    metrics_models  160 jobs, each naming its own 124-byte model: more
 *                    text than the metrics server's first 256 KiB buffer
 *                    (it used to be cut there mid-line, losing the last
 *                    metrics and making the scrape unparsable); the
 *                    scrape comes whole, every line parses, the broker's
 *                    own gauges are there; once the jobs are cancelled
 *                    their models leave STATS, with no scrape (STATS
 *                    used to list them until one), and /metrics (they
 *                    used to stay for as long as the broker ran)
 *    metrics_group   a group whose model no task names is on /metrics at
 *                    once (it used to wait for a client's STATS) and
 *                    leaves with the group; /healthz is answered by the
 *                    broker's loop, another path is 404
 *
 *  Usage: test_e2e_metrics CASE.
 */
#define _GNU_SOURCE
#include "sq_e2e_case.h"
#include "sq_harness.h"
#include "sq_proc.h"
#include "sq_test.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static sq_harness_t *h;
static sq_e2e_client_t *client;
static int s_mport;

#define S_PAGE_SIZE (4 * 1024 * 1024)
static char s_page[S_PAGE_SIZE];

static bool
s_up(const char *name)
{
    char mflag[32];
    s_mport = sq_e2e_free_port();
    if (s_mport <= 0)
        return false;
    snprintf(mflag, sizeof mflag, "--metrics-port=%d", s_mport);
    const char *flags[] = {mflag, NULL};
    return sq_e2e_up(name, flags, &h, &client);
}

/* Send req to the metrics port; the whole answer in s_page. */
static bool
s_http(const char *req)
{
    s_page[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s_mport)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {20, 0};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req)) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof s_page && (r = recv(fd, s_page + n, sizeof s_page - 1 - n, 0)) > 0)
        n += (size_t)r;
    s_page[n] = '\0';
    close(fd);
    return n > 0;
}

/* GET /metrics: the text (after the head), NULL unless a 200 whose
 * Content-Length is what came. */
static const char *
s_scrape(void)
{
    if (!s_http("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") ||
        strncmp(s_page, "HTTP/1.0 200 ", 13) != 0)
        return NULL;
    const char *cl = strstr(s_page, "Content-Length: ");
    const char *text = strstr(s_page, "\r\n\r\n");
    if (!cl || !text || strtoul(cl + 16, NULL, 10) != strlen(text + 4))
        return NULL;
    return text + 4;
}

/* One line of the text exposition format: a comment, or
 * name[{label="value",...}] number (label values escape \ " and newline). */
static bool
s_line_ok(const char *p, const char *end)
{
    if (*p == '#')
        return strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0;
    if (!(isalpha((unsigned char)*p) || *p == '_' || *p == ':'))
        return false;
    while (p < end && (isalnum((unsigned char)*p) || *p == '_' || *p == ':'))
        p++;
    if (p < end && *p == '{') {
        for (p++; p < end && *p != '}';) {
            while (p < end && (isalnum((unsigned char)*p) || *p == '_'))
                p++;
            if (end - p < 2 || p[0] != '=' || p[1] != '"')
                return false;
            for (p += 2; p < end && *p != '"'; p++)
                if (*p == '\\' && ++p == end)
                    return false;
            if (p == end)
                return false;
            if (*++p == ',')
                p++;
        }
        if (p == end)
            return false;
        p++;
    }
    if (p == end || *p != ' ')
        return false;
    char *num_end;
    strtod(p + 1, &num_end);
    return num_end == end && num_end > p + 1;
}

/* Every line of text is whole and well formed; returns how many lines,
 * or -1. */
static long
s_lines_ok(const char *text)
{
    long n = 0;
    for (const char *p = text; *p; n++) {
        const char *nl = strchr(p, '\n');
        if (!nl || !s_line_ok(p, nl)) {
            fprintf(stderr, "bad line: %.80s\n", p);
            return -1;
        }
        p = nl + 1;
    }
    return n;
}

static long
s_count(const char *text, const char *needle)
{
    long n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Scrape until needle is in the text (want) or is not (!want), up to
 * 10 s; the last text, or NULL. */
static const char *
s_wait_for(const char *needle, bool want)
{
    const char *text = NULL;
    for (int64_t end = sq_test_now_ms() + 10000; sq_test_now_ms() < end;
         sq_harness_poll_pause()) {
        text = s_scrape();
        if (text && (strstr(text, needle) != NULL) == want)
            return text;
    }
    fprintf(stderr, "%s %s on /metrics\n", needle, want ? "never seen" : "still");
    return NULL;
}

/* How many pools a STATS reply lists; -1 when STATS failed. */
static long
s_stats_pools(void)
{
    sq_e2e_begin(client, 0);
    sq_wire_msg_t *reply = NULL;
    sq_wire_val_t pools;
    long n = -1;
    if (sq_e2e_call(client, SQ_WIRE_STATS, 5000, &reply, NULL) == 0 &&
        sq_wire_get_array(reply->body, "pools", true, UINT32_MAX, &pools) == 0)
        n = sq_wire_count(pools);
    sq_wire_msg_destroy(&reply);
    return n;
}

/* --- metrics_models -------------------------------------------------- */

#define S_N_MODELS 160

static void
metrics_models(void)
{
    SQ_REQUIRE(s_up("metrics_models"));
    uint64_t jobs[S_N_MODELS];
    for (int i = 0; i < S_N_MODELS; i++) {
        char model[125];
        snprintf(model, sizeof model, "m%03d", i);
        memset(model + 4, 'x', sizeof model - 5);
        model[sizeof model - 1] = '\0';
        SQ_REQUIRE(sq_e2e_submit_n(client, "acme", model, 1, "p", 0, &jobs[i], NULL) == 0);
    }
    const char *text = s_wait_for("shardq_broker_open_jobs 160\n", true);
    SQ_REQUIRE(text);
    fprintf(stderr, "%d models: %zu bytes of metrics\n", S_N_MODELS, strlen(text));
    SQ_CHECK(strlen(text) > 256 * 1024);
    SQ_CHECK(s_lines_ok(text) > 10 * S_N_MODELS);
    SQ_CHECK(strstr(text, "shardq_broker_database_up 1\n") != NULL);
    SQ_CHECK(strstr(text, "shardq_broker_uncommitted_tasks 0\n") != NULL);
    SQ_CHECK(strstr(text, "shardq_broker_dispatch_paused 0\n") != NULL);
    SQ_CHECK(s_count(text, "\nshardq_broker_queued_tasks{model=\"m") == S_N_MODELS);
    SQ_CHECK(s_count(text, "\nshardq_broker_completion_tokens_total{model=\"m") == S_N_MODELS);
    SQ_CHECK(strstr(text, "shardq_broker_queued_tasks{model=\"m159xxxx") != NULL);

    SQ_CHECK(s_stats_pools() == S_N_MODELS);

    /* no group serves them and no job names them any more: they go, from
     * STATS before any scrape */
    for (int i = 0; i < S_N_MODELS; i++)
        SQ_CHECK(sq_e2e_cancel(client, jobs[i], NULL) == 0);
    long pools = -1;
    for (int64_t end = sq_test_now_ms() + 10000; sq_test_now_ms() < end && pools != 0;
         sq_harness_poll_pause())
        pools = s_stats_pools();
    SQ_CHECK(pools == 0);
    text = s_wait_for("shardq_broker_open_jobs 0\n", true);
    SQ_REQUIRE(text);
    SQ_CHECK(s_lines_ok(text) > 0);
    SQ_CHECK(strstr(text, "{model=\"m") == NULL);
    SQ_CHECK(strstr(text, "shardq_broker_database_up 1\n") != NULL);
    fprintf(stderr, "cancelled: %zu bytes of metrics\n", strlen(text));
}

/* --- metrics_group --------------------------------------------------- */

static void
metrics_group(void)
{
    SQ_REQUIRE(s_up("metrics_group"));
    const char *flags[] = {"--model", "solo", NULL};
    sq_proc_t *w = sq_harness_worker_start(h, "solo", flags);
    SQ_REQUIRE(w);
    /* no client has asked for STATS: the scrape alone shows the group */
    const char *text = s_wait_for("shardq_broker_groups{model=\"solo\",state=\"idle\"} 1\n", true);
    SQ_REQUIRE(text);
    SQ_CHECK(s_lines_ok(text) > 0);
    SQ_CHECK(strstr(text, "shardq_broker_queued_tasks{model=\"solo\"} 0\n") != NULL);

    SQ_CHECK(s_http("GET /healthz HTTP/1.0\r\n\r\n") &&
             strncmp(s_page, "HTTP/1.0 200 ", 13) == 0 && strstr(s_page, "\r\n\r\nok\n"));
    SQ_CHECK(s_http("GET / HTTP/1.0\r\n\r\n") && strncmp(s_page, "HTTP/1.0 404 ", 13) == 0);
    SQ_CHECK(s_http("POST /metrics HTTP/1.0\r\n\r\n") &&
             strncmp(s_page, "HTTP/1.0 405 ", 13) == 0);

    /* the group leaves (SIGTERM: it says DISCONNECT), and so does its model */
    SQ_CHECK(sq_proc_signal(w, SIGTERM) == 0);
    SQ_CHECK(sq_proc_wait(w, 10000) == 0);
    text = s_wait_for("model=\"solo\"", false);
    SQ_CHECK(text != NULL);
}

int
main(int argc, char **argv)
{
    static const sq_e2e_case_t cases[] = {
        {"metrics_models", metrics_models},
        {"metrics_group", metrics_group},
        {NULL, NULL},
    };
    return sq_e2e_main(argc, argv, cases, &h, &client);
}

/*  sq_metrics_http over real loopback sockets: a scrape is answered with
 *  what the owner renders; a client that sends its request one byte at a
 *  time, or never, does not stop the owner's loop (it used to read the
 *  request on that loop, so one slow client held the broker's heartbeats);
 *  idle connections do not delay a scrape (they used to be served one at
 *  a time, 2 s each), and beyond the cap the oldest is closed; only
 *  /metrics and /healthz are served, GET and HEAD only, and an over-long
 *  head is refused with 431; a text larger than the first buffer comes
 *  whole, and one larger than the cap is cut after a whole line; an owner
 *  that does not render in time gets its client a 503 (/healthz too);
 *  destroy returns with a slow client still connected.
 */
#define _GNU_SOURCE
#include "sq_metrics_http.h"
#include "sq_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum { S_SMALL, S_BIG, S_HUGE };   /* what the owner renders */

static sq_metrics_http_t *s_http;
static int s_port;
static atomic_long s_turns;      /* iterations of the owner's loop */
static atomic_bool s_rendering;  /* the owner serves scrapes */
static atomic_bool s_stop;
static atomic_int s_mode = S_SMALL;

/* One line of the big texts: 32 bytes with its newline. */
#define S_LINE "shardq_test_line{i=\"%07zu\"} 1\n"
#define S_LINE_LEN 32

/* Like the renders of the broker and the scheduler: whole lines while
 * they fit, and the length the whole text needs. */
static size_t
s_render(void *arg, char *buf, size_t size)
{
    (void)arg;
    int mode = atomic_load(&s_mode);
    if (mode == S_SMALL)
        return (size_t)snprintf(buf, size, "shardq_test_metric 42\n");
    size_t n_lines = mode == S_BIG ? 32768 : SQ_METRICS_HTTP_BODY_MAX / S_LINE_LEN + 1000;
    size_t n = 0;
    for (size_t i = 0; i < n_lines; i++) {
        if (n + S_LINE_LEN < size)
            snprintf(buf + n, size - n, S_LINE, i);
        n += S_LINE_LEN;
    }
    return n;
}

/* The owner: a loop that polls the fd every 10 ms, as the broker's does. */
static void *
s_owner(void *arg)
{
    (void)arg;
    while (!atomic_load(&s_stop)) {
        struct pollfd p = {sq_metrics_http_fd(s_http), POLLIN, 0};
        if (poll(&p, 1, 10) > 0 && atomic_load(&s_rendering))
            sq_metrics_http_serve(s_http, s_render, NULL);
        atomic_fetch_add(&s_turns, 1);
    }
    return NULL;
}

static int
s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A connection whose reads give up after 20 s (longer than any wait the
 * server may make a client do). */
static int
s_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {20, 0};
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
                    connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Send req and read the whole answer into buf (NUL-terminated); its
 * length, or -1. */
static long
s_ask(const char *req, size_t n_req, char *buf, size_t size)
{
    int fd = s_connect();
    if (fd < 0)
        return -1;
    size_t n = 0;
    if (send(fd, req, n_req, MSG_NOSIGNAL) != (ssize_t)n_req) {
        close(fd);
        return -1;
    }
    ssize_t r;
    while (n < size - 1 && (r = recv(fd, buf + n, size - 1 - n, 0)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    return (long)n;
}

static long
s_get(const char *req, char *buf, size_t size)
{
    return s_ask(req, strlen(req), buf, size);
}

static int
s_scrape(char *buf, size_t size)
{
    return s_get("GET /metrics HTTP/1.0\r\n\r\n", buf, size) > 0 ? 0 : -1;
}

/* A client that sends "GET " one byte every 100 ms, n_bytes in all; the
 * connection is returned open. */
static int
s_slow_client(int n_bytes)
{
    int fd = s_connect();
    for (int i = 0; fd >= 0 && i < n_bytes; i++) {
        if (send(fd, &"GET "[i % 4], 1, MSG_NOSIGNAL) != 1)
            break;
        usleep(100 * 1000);
    }
    return fd;
}

/* Owner turns during ms milliseconds of the caller's. */
static long
s_turns_during(int ms)
{
    long before = atomic_load(&s_turns);
    usleep((useconds_t)ms * 1000);
    return atomic_load(&s_turns) - before;
}

typedef struct {
    int n_bytes;
    long turns;     /* owner turns while the slow client sent */
} s_slow_t;

static void *
s_slow_thread(void *arg)
{
    s_slow_t *s = arg;
    long before = atomic_load(&s_turns);
    int fd = s_slow_client(s->n_bytes);
    s->turns = atomic_load(&s_turns) - before;
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void
test_scrape(void)
{
    char page[4096];
    SQ_REQUIRE(s_scrape(page, sizeof page) == 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    SQ_CHECK(strstr(page, "Content-Length: 22\r\n") != NULL);
    SQ_CHECK(strstr(page, "\r\n\r\nshardq_test_metric 42\n") != NULL);
}

/* 15 bytes at 100 ms: 1.5 s during which the owner's loop, polling every
 * 10 ms, must keep turning; and a scrape sent meanwhile is answered. */
static void
test_slow_client(void)
{
    s_slow_t slow = {15, 0};
    pthread_t t;
    SQ_REQUIRE(pthread_create(&t, NULL, s_slow_thread, &slow) == 0);
    usleep(200 * 1000);
    SQ_CHECK(s_turns_during(300) >= 5);
    char page[4096];
    SQ_CHECK(s_scrape(page, sizeof page) == 0 && strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    pthread_join(t, NULL);
    fprintf(stderr, "owner turns while a client sent 15 bytes in 1.5 s: %ld\n", slow.turns);
    SQ_CHECK(slow.turns >= 20);
}

/* A silent client, then one that never reads: the same. */
static void
test_silent_client(void)
{
    int fd = s_connect();
    SQ_REQUIRE(fd >= 0);
    SQ_CHECK(s_turns_during(500) >= 5);
    close(fd);
    test_scrape();
}

/* Five connections that never send a byte, each of which the server gives
 * 2 s: a scrape made after them is answered at once, not after their 10 s
 * (Prometheus's scrape timeout). */
static void
test_idle_connections(void)
{
    int idle[5];
    for (int i = 0; i < 5; i++)
        SQ_REQUIRE((idle[i] = s_connect()) >= 0);
    int64_t t0 = sq_test_now_ms();
    char page[4096];
    SQ_CHECK(s_scrape(page, sizeof page) == 0 && strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    int64_t took = sq_test_now_ms() - t0;
    fprintf(stderr, "scrape behind 5 idle connections: %lld ms\n", (long long)took);
    SQ_CHECK(took < 5000);
    for (int i = 0; i < 5; i++)
        close(idle[i]);
}

/* More idle connections than the server keeps: the oldest is closed for
 * the newest, and a scrape is still answered. */
static void
test_connection_cap(void)
{
    enum { N = SQ_METRICS_HTTP_MAX_CONNS + 4 };
    int idle[N];
    for (int i = 0; i < N; i++) {
        SQ_REQUIRE((idle[i] = s_connect()) >= 0);
        usleep(1000);   /* in order of age */
    }
    char page[4096];
    int64_t t0 = sq_test_now_ms();
    SQ_CHECK(s_scrape(page, sizeof page) == 0 && strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    SQ_CHECK(sq_test_now_ms() - t0 < 5000);
    /* the oldest was closed by the server (before its 2 s were up) */
    struct timeval tv = {1, 0};
    char c;
    setsockopt(idle[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SQ_CHECK(recv(idle[0], &c, 1, 0) == 0);
    for (int i = 0; i < N; i++)
        close(idle[i]);
}

/* What is not a GET or HEAD of /metrics or /healthz. */
static void
test_requests(void)
{
    char page[4096];
    SQ_CHECK(s_get("GET /metrics?name[]=x HTTP/1.1\r\nHost: a\r\n\r\n", page, sizeof page) > 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    SQ_CHECK(s_get("GET /healthz HTTP/1.1\r\n\r\n", page, sizeof page) > 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0 && strstr(page, "\r\n\r\nok\n"));
    /* HEAD: the length of the text, and no text */
    SQ_CHECK(s_get("HEAD /metrics HTTP/1.0\r\n\r\n", page, sizeof page) > 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0 &&
             strstr(page, "Content-Length: 22\r\n") != NULL);
    size_t n = strlen(page);
    SQ_CHECK(n > 4 && strcmp(page + n - 4, "\r\n\r\n") == 0);
    static const struct { const char *req, *status; } cases[] = {
        {"GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 404 "},
        {"GET /metricsx HTTP/1.0\r\n\r\n", "HTTP/1.0 404 "},
        {"GET /favicon.ico HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.0 404 "},
        {"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "HTTP/1.0 405 "},
        {"DELETE /healthz HTTP/1.0\r\n\r\n", "HTTP/1.0 405 "},
        {"hello\r\n\r\n", "HTTP/1.0 400 "},
        {"GET /metrics\r\n\r\n", "HTTP/1.0 400 "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        SQ_CHECK(s_get(cases[i].req, page, sizeof page) > 0);
        if (strncmp(page, cases[i].status, strlen(cases[i].status)) != 0)
            fprintf(stderr, "%s -> %.40s\n", cases[i].req, page);
        SQ_CHECK(strncmp(page, cases[i].status, strlen(cases[i].status)) == 0);
    }
    SQ_CHECK(s_get("POST /metrics HTTP/1.0\r\n\r\n", page, sizeof page) > 0 &&
             strstr(page, "\r\nAllow: GET, HEAD\r\n") != NULL);
    /* a head that does not end within 4 KiB: 431, not a silent close */
    static char big[16384];
    int k = snprintf(big, sizeof big, "GET /metrics HTTP/1.0\r\nX-Pad: ");
    memset(big + k, 'a', sizeof big - (size_t)k - 5);
    memcpy(big + sizeof big - 5, "\r\n\r\n", 5);
    SQ_CHECK(s_ask(big, sizeof big - 1, page, sizeof page) > 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 431 ", 13) == 0);
    test_scrape();
}

/* The length Content-Length gives, and where the text starts. */
static size_t
s_body(const char *page, const char **text)
{
    const char *cl = strstr(page, "Content-Length: ");
    const char *end = strstr(page, "\r\n\r\n");
    *text = end ? end + 4 : page;
    return cl ? strtoul(cl + 16, NULL, 10) : 0;
}

/* A text larger than the first buffer (256 KiB) comes whole; one larger
 * than SQ_METRICS_HTTP_BODY_MAX is cut after its last whole line. */
static void
test_large_texts(void)
{
    size_t size = SQ_METRICS_HTTP_BODY_MAX + 65536;
    char *page = malloc(size);
    SQ_REQUIRE(page);
    const char *text;
    atomic_store(&s_mode, S_BIG);
    long n = s_get("GET /metrics HTTP/1.0\r\n\r\n", page, size);
    SQ_CHECK(n > 0 && strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    SQ_CHECK(s_body(page, &text) == 32768 * S_LINE_LEN);
    SQ_CHECK((size_t)(n - (text - page)) == 32768 * S_LINE_LEN);
    char last[S_LINE_LEN + 1];
    snprintf(last, sizeof last, S_LINE, (size_t)32767);
    SQ_CHECK(n > S_LINE_LEN && strcmp(page + n - S_LINE_LEN, last) == 0);

    atomic_store(&s_mode, S_HUGE);
    n = s_get("GET /metrics HTTP/1.0\r\n\r\n", page, size);
    SQ_CHECK(n > 0 && strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    size_t len = s_body(page, &text);
    fprintf(stderr, "a text of %zu bytes sent as %zu\n",
            (size_t)(SQ_METRICS_HTTP_BODY_MAX / S_LINE_LEN + 1000) * S_LINE_LEN, len);
    SQ_CHECK(len <= SQ_METRICS_HTTP_BODY_MAX && len >= SQ_METRICS_HTTP_BODY_MAX - S_LINE_LEN);
    SQ_CHECK(len % S_LINE_LEN == 0 && (size_t)(n - (text - page)) == len);
    snprintf(last, sizeof last, S_LINE, len / S_LINE_LEN - 1);
    SQ_CHECK(n > S_LINE_LEN && strcmp(page + n - S_LINE_LEN, last) == 0);
    atomic_store(&s_mode, S_SMALL);
    free(page);
    test_scrape();
}

static void *
s_health_thread(void *arg)
{
    char *page = arg;
    if (s_get("GET /healthz HTTP/1.0\r\n\r\n", page, 4096) <= 0)
        page[0] = '\0';
    return NULL;
}

/* An owner that does not render: its clients get a 503 (after
 * SQ_METRICS_HTTP_RENDER_MS), /healthz as /metrics, and both work again
 * after. */
static void
test_owner_stuck(void)
{
    atomic_store(&s_rendering, false);
    static char health[4096];
    pthread_t t;
    SQ_REQUIRE(pthread_create(&t, NULL, s_health_thread, health) == 0);
    char page[4096];
    SQ_CHECK(s_scrape(page, sizeof page) == 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 503 ", 13) == 0);
    pthread_join(t, NULL);
    SQ_CHECK(strncmp(health, "HTTP/1.0 503 ", 13) == 0);
    atomic_store(&s_rendering, true);
    test_scrape();
    SQ_CHECK(s_get("GET /healthz HTTP/1.0\r\n\r\n", page, sizeof page) > 0 &&
             strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
}

/* destroy with a slow client connected: the server thread leaves its wait
 * at once */
static void
test_destroy(void)
{
    int fd = s_slow_client(1);
    int64_t t0 = sq_test_now_ms();
    sq_metrics_http_destroy(&s_http);
    fprintf(stderr, "destroy with a client mid-request took %lld ms\n",
            (long long)(sq_test_now_ms() - t0));
    SQ_CHECK(s_http == NULL);
    SQ_CHECK(sq_test_now_ms() - t0 < 1000);   /* not the 2 s of a request's read */
    sq_metrics_http_destroy(&s_http);   /* safe twice */
    if (fd >= 0)
        close(fd);
}

int
main(void)
{
    s_port = s_free_port();
    if (s_port <= 0 || !(s_http = sq_metrics_http_new("127.0.0.1", s_port))) {
        fprintf(stderr, "cannot listen\n");
        return 1;
    }
    atomic_store(&s_rendering, true);
    pthread_t owner;
    if (pthread_create(&owner, NULL, s_owner, NULL) != 0)
        return 1;
    SQ_RUN(test_scrape);
    SQ_RUN(test_slow_client);
    SQ_RUN(test_silent_client);
    SQ_RUN(test_idle_connections);
    SQ_RUN(test_connection_cap);
    SQ_RUN(test_requests);
    SQ_RUN(test_large_texts);
    SQ_RUN(test_owner_stuck);
    atomic_store(&s_stop, true);
    pthread_join(owner, NULL);
    SQ_RUN(test_destroy);
    return sq_test_summary("metrics_http");
}

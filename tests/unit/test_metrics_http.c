/*  sq_metrics_http over real loopback sockets: a scrape is answered with
 *  what the owner renders; a client that sends its request one byte at a
 *  time, or never, does not stop the owner's loop (it used to read the
 *  request on that loop, so one slow client held the broker's heartbeats);
 *  an owner that does not render in time gets its client a 503; destroy
 *  returns with a slow client still connected.
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
#include <unistd.h>

static sq_metrics_http_t *s_http;
static atomic_long s_turns;      /* iterations of the owner's loop */
static atomic_bool s_rendering;  /* the owner serves scrapes */
static atomic_bool s_stop;

static size_t
s_render(void *arg, char *buf, size_t size)
{
    (void)arg;
    return (size_t)snprintf(buf, size, "shardq_test_metric 42\n");
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

static int
s_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* GET and read the whole answer into buf (NUL-terminated). */
static int
s_scrape(int port, char *buf, size_t size)
{
    int fd = s_connect(port);
    if (fd < 0)
        return -1;
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    size_t n = 0;
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
        close(fd);
        return -1;
    }
    ssize_t r;
    while (n < size - 1 && (r = recv(fd, buf + n, size - 1 - n, 0)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    return 0;
}

/* A client that sends "GET " one byte every 100 ms, n_bytes in all; the
 * connection is returned open. */
static int
s_slow_client(int port, int n_bytes)
{
    int fd = s_connect(port);
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
    int port, n_bytes;
    long turns;     /* owner turns while the slow client sent */
} s_slow_t;

static void *
s_slow_thread(void *arg)
{
    s_slow_t *s = arg;
    long before = atomic_load(&s_turns);
    int fd = s_slow_client(s->port, s->n_bytes);
    s->turns = atomic_load(&s_turns) - before;
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void
test_scrape(int port)
{
    char page[4096];
    SQ_REQUIRE(s_scrape(port, page, sizeof page) == 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    SQ_CHECK(strstr(page, "Content-Length: 22\r\n") != NULL);
    SQ_CHECK(strstr(page, "\r\n\r\nshardq_test_metric 42\n") != NULL);
}

/* 15 bytes at 100 ms: 1.5 s during which the owner's loop, polling every
 * 10 ms, must keep turning; and a scrape sent meanwhile is answered once
 * the slow client's time is up. */
static void
test_slow_client(int port)
{
    s_slow_t slow = {port, 15, 0};
    pthread_t t;
    SQ_REQUIRE(pthread_create(&t, NULL, s_slow_thread, &slow) == 0);
    usleep(200 * 1000);
    SQ_CHECK(s_turns_during(300) >= 5);
    char page[4096];
    SQ_CHECK(s_scrape(port, page, sizeof page) == 0 &&
             strncmp(page, "HTTP/1.0 200 OK\r\n", 17) == 0);
    pthread_join(t, NULL);
    fprintf(stderr, "owner turns while a client sent 15 bytes in 1.5 s: %ld\n", slow.turns);
    SQ_CHECK(slow.turns >= 20);
}

/* A silent client, then one that never reads: the same. */
static void
test_silent_client(int port)
{
    int fd = s_connect(port);
    SQ_REQUIRE(fd >= 0);
    SQ_CHECK(s_turns_during(500) >= 5);
    close(fd);
    test_scrape(port);
}

/* An owner that does not render: its client gets a 503 (after
 * SQ_METRICS_HTTP_RENDER_MS), and scrapes work again after. */
static void
test_owner_stuck(int port)
{
    atomic_store(&s_rendering, false);
    char page[4096];
    SQ_CHECK(s_scrape(port, page, sizeof page) == 0);
    SQ_CHECK(strncmp(page, "HTTP/1.0 503 ", 13) == 0);
    atomic_store(&s_rendering, true);
    test_scrape(port);
}

static void
test_all(void)
{
    int port = s_free_port();
    SQ_REQUIRE(port > 0);
    s_http = sq_metrics_http_new("127.0.0.1", port);
    SQ_REQUIRE(s_http);
    atomic_store(&s_rendering, true);
    pthread_t owner;
    SQ_REQUIRE(pthread_create(&owner, NULL, s_owner, NULL) == 0);
    test_scrape(port);
    test_slow_client(port);
    test_silent_client(port);
    test_owner_stuck(port);
    /* destroy with a slow client connected: the server thread leaves its
     * wait at once */
    atomic_store(&s_stop, true);
    pthread_join(owner, NULL);
    int fd = s_slow_client(port, 1);
    int64_t t0 = sq_test_now_ms();
    sq_metrics_http_destroy(&s_http);
    fprintf(stderr, "destroy with a client mid-request took %lld ms\n",
            (long long)(sq_test_now_ms() - t0));
    SQ_CHECK(s_http == NULL);
    SQ_CHECK(sq_test_now_ms() - t0 < 1000);   /* not the 2 s of a request's read */
    if (fd >= 0)
        close(fd);
}

int
main(void)
{
    SQ_RUN(test_all);
    return sq_test_summary("metrics_http");
}

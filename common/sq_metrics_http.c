/*  sq_metrics_http: the socket side runs on a thread of its own; only the
 *  rendering runs on the owner's thread, when it is asked (a pipe). */
#define _GNU_SOURCE /* accept4, pipe2 */
#include "sq_metrics_http.h"

#include "sq_clock.h"
#include "sq_error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_BODY_MAX (256 * 1024)
#define S_HEAD_MAX 4096

struct sq_metrics_http_t {
    int fd;                  /* listening socket */
    int ask[2];              /* server thread -> owner: "render now" */
    int stop[2];             /* destroy -> server thread */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool asked, rendered, stopping;
    char *body;
    size_t len;
};

/* Wait for fd to be ready for events until deadline_ms, or for a stop.
 * True when fd is ready. */
static bool
s_wait_fd(sq_metrics_http_t *self, int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - sq_mono_ms();
        if (left <= 0)
            return false;
        struct pollfd p[2] = {{fd, events, 0}, {self->stop[0], POLLIN, 0}};
        int n = poll(p, 2, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || p[1].revents)
            return false;
        return p[0].revents != 0;
    }
}

/* Read the request head (we need no part of it, but answering before it is
 * read would reset the client), within the connection's deadline however
 * slowly it comes. */
static bool
s_read_head(sq_metrics_http_t *self, int c, int64_t deadline_ms)
{
    char buf[S_HEAD_MAX];
    size_t n = 0;
    while (n < sizeof buf - 1 && s_wait_fd(self, c, POLLIN, deadline_ms)) {
        ssize_t r = recv(c, buf + n, sizeof buf - 1 - n, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return true;
    }
    return false;
}

static void
s_send_all(sq_metrics_http_t *self, int c, const char *p, size_t n, int64_t deadline_ms)
{
    while (n && s_wait_fd(self, c, POLLOUT, deadline_ms)) {
        ssize_t w = send(c, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Ask the owner to render and wait for it (until deadline_ms). The body
 * stays the server thread's until the next ask. */
static bool
s_render(sq_metrics_http_t *self, int64_t deadline_ms)
{
    pthread_mutex_lock(&self->mu);
    self->asked = true;
    self->rendered = false;
    pthread_mutex_unlock(&self->mu);
    char one = 1;
    if (write(self->ask[1], &one, 1) != 1)
        return false;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t left = deadline_ms - sq_mono_ms();
    until.tv_sec += left / 1000;
    until.tv_nsec += (left % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&self->mu);
    while (!self->rendered && !self->stopping &&
           pthread_cond_timedwait(&self->cv, &self->mu, &until) == 0)
        ;
    bool ok = self->rendered;
    self->asked = false;   /* a late render is not waited for */
    pthread_mutex_unlock(&self->mu);
    return ok;
}

static void
s_answer(sq_metrics_http_t *self, int c)
{
    if (!s_read_head(self, c, sq_mono_ms() + SQ_METRICS_HTTP_TIMEOUT_MS))
        return;
    char head[160];
    int hn;
    if (s_render(self, sq_mono_ms() + SQ_METRICS_HTTP_RENDER_MS))
        hn = snprintf(head, sizeof head,
                      "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n", self->len);
    else
        hn = snprintf(head, sizeof head, "HTTP/1.0 503 Service Unavailable\r\n"
                      "Content-Length: 0\r\nConnection: close\r\n\r\n");
    int64_t deadline = sq_mono_ms() + SQ_METRICS_HTTP_TIMEOUT_MS;
    s_send_all(self, c, head, (size_t)hn, deadline);
    if (hn > 0 && head[9] == '2')
        s_send_all(self, c, self->body, self->len, deadline);
}

/* One connection at a time: a slow client delays other scrapes (by twice
 * SQ_METRICS_HTTP_TIMEOUT_MS at most), never the owner's loop. */
static void *
s_serve(void *arg)
{
    sq_metrics_http_t *self = arg;
    while (s_wait_fd(self, self->fd, POLLIN, INT64_MAX)) {
        int c = accept4(self->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0)
            continue;
        s_answer(self, c);
        close(c);
    }
    return NULL;
}

sq_metrics_http_t *
sq_metrics_http_new(const char *bind_addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind_addr ? bind_addr : "0.0.0.0", &sa.sin_addr) != 1) {
        SQ_FAIL(SQ_EINVAL, "metrics: bad bind address %s", bind_addr);
        return NULL;
    }
    sq_metrics_http_t *self = calloc(1, sizeof *self);
    if (!self || !(self->body = malloc(S_BODY_MAX))) {
        free(self);
        SQ_FAIL(SQ_ENOMEM, "metrics");
        return NULL;
    }
    self->ask[0] = self->ask[1] = self->stop[0] = self->stop[1] = -1;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    int one = 1;
    self->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (self->fd < 0 || setsockopt(self->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(self->fd, (struct sockaddr *)&sa, sizeof sa) || listen(self->fd, 16)) {
        SQ_FAIL(-errno, "metrics: listen on port %d: %s", port, strerror(errno));
        sq_metrics_http_destroy(&self);
        return NULL;
    }
    if (pipe2(self->ask, O_CLOEXEC | O_NONBLOCK) || pipe2(self->stop, O_CLOEXEC)) {
        SQ_FAIL(-errno, "metrics: pipe: %s", strerror(errno));
        sq_metrics_http_destroy(&self);
        return NULL;
    }
    if ((errno = pthread_create(&self->thread, NULL, s_serve, self)) != 0) {
        SQ_FAIL(SQ_ENOMEM, "metrics: thread: %s", strerror(errno));
        sq_metrics_http_destroy(&self);
        return NULL;
    }
    self->started = true;
    return self;
}

void
sq_metrics_http_destroy(sq_metrics_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_metrics_http_t *self = *self_p;
    if (self->started) {
        pthread_mutex_lock(&self->mu);
        self->stopping = true;
        pthread_cond_broadcast(&self->cv);
        pthread_mutex_unlock(&self->mu);
        char one = 1;
        if (write(self->stop[1], &one, 1) != 1)
            SQ_FAIL(SQ_EIO, "metrics: cannot stop the server thread");
        pthread_join(self->thread, NULL);
    }
    int fds[] = {self->fd, self->ask[0], self->ask[1], self->stop[0], self->stop[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    free(self->body);
    free(self);
    *self_p = NULL;
}

int
sq_metrics_http_fd(const sq_metrics_http_t *self)
{
    return self->ask[0];
}

void
sq_metrics_http_serve(sq_metrics_http_t *self, sq_metrics_render_fn render, void *arg)
{
    char drain[64];
    while (read(self->ask[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&self->mu);
    bool asked = self->asked && !self->rendered;
    pthread_mutex_unlock(&self->mu);
    if (!asked)
        return;
    /* the server thread waits (mutex and condition) while this writes */
    size_t len = render(arg, self->body, S_BODY_MAX);
    pthread_mutex_lock(&self->mu);
    if (self->asked) {
        self->len = len;
        self->rendered = true;
        pthread_cond_signal(&self->cv);
    }
    pthread_mutex_unlock(&self->mu);
}

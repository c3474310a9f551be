/*  sq_metrics_http: plain sockets; one request per connection. */
#define _GNU_SOURCE /* accept4 */
#include "sq_metrics_http.h"

#include "sq_error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define S_BODY_MAX (256 * 1024)

struct sq_metrics_http_t {
    int fd;
    char *body;
};

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
    int one = 1;
    self->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (self->fd < 0 || setsockopt(self->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(self->fd, (struct sockaddr *)&sa, sizeof sa) || listen(self->fd, 16)) {
        SQ_FAIL(-errno, "metrics: listen on port %d: %s", port, strerror(errno));
        sq_metrics_http_destroy(&self);
    }
    return self;
}

void
sq_metrics_http_destroy(sq_metrics_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    if ((*self_p)->fd >= 0)
        close((*self_p)->fd);
    free((*self_p)->body);
    free(*self_p);
    *self_p = NULL;
}

int
sq_metrics_http_fd(const sq_metrics_http_t *self)
{
    return self->fd;
}

/* Read until the end of the request head (or timeout/size); we need no
 * part of it, but answering before reading it would reset the client. */
static void
s_read_head(int fd)
{
    char buf[4096];
    size_t n = 0;
    while (n < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0)
            return;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return;
    }
}

static void
s_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void
sq_metrics_http_serve(sq_metrics_http_t *self, sq_metrics_render_fn render, void *arg)
{
    for (;;) {
        int c = accept4(self->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            return; /* EAGAIN: nothing pending */
        struct timeval tv = {0, 200000};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        s_read_head(c);
        size_t len = render(arg, self->body, S_BODY_MAX);
        char head[160];
        int hn = snprintf(head, sizeof head,
                          "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          len);
        s_send_all(c, head, (size_t)hn);
        s_send_all(c, self->body, len);
        close(c);
    }
}

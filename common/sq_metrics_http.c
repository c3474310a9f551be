/*  sq_metrics_http: one server thread multiplexes the listening socket and
 *  every connection; only the rendering runs on the owner's thread. The
 *  two meet through two pipes and a mutex: the server thread raises
 *  `asked` and writes to ask[]; the owner renders, leaves the text in
 *  `ready` and writes to done[]. A connection, and any text it sends, is
 *  the server thread's alone; `render_size` is the owner's.
 */
#define _GNU_SOURCE /* accept4, pipe2, memmem, memrchr */
#include "sq_metrics_http.h"

#include "sq_clock.h"
#include "sq_error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_HEAD_MAX 4096               /* a request's line and headers */
#define S_BODY_FIRST (256 * 1024)     /* the render buffer's first size */

/* A rendered text; the connections that send it hold references. */
typedef struct {
    int refs;
    size_t len;
    char text[];
} s_body_t;

typedef enum {
    S_FREE,    /* no connection in this slot */
    S_READ,    /* reading the request head */
    S_WAIT,    /* waiting for the owner to answer */
    S_WRITE,   /* sending the answer */
    S_LINGER,  /* answer sent and our side shut: reading until the client
                * closes, so that unread request bytes do not reset the
                * connection before the client has read the answer */
} s_state_t;

typedef struct {
    int fd;
    s_state_t state;
    int64_t accepted_ms;
    int64_t deadline_ms;   /* of the current state */
    bool head_only;        /* HEAD: the answer's head without its body */
    bool want_body;        /* /metrics (else /healthz) */
    char in[S_HEAD_MAX];
    size_t n_in;
    char out[320];         /* status line, headers, and a short text */
    size_t n_out, out_off;
    s_body_t *body;        /* /metrics: the text after out, or NULL */
    size_t body_off;
} s_conn_t;

struct sq_metrics_http_t {
    int fd;                /* listening socket */
    int ask[2];            /* server thread -> owner: "answer now" */
    int done[2];           /* owner -> server thread: "answered" */
    int stop[2];           /* destroy -> server thread */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;    /* guards the four below */
    bool asked, want_body; /* a scrape (want_body) or a health check waits */
    bool answered;
    s_body_t *ready;       /* the owner's latest text, not yet taken */
    size_t render_size;    /* owner: the buffer size the next render starts with */
    s_conn_t conns[SQ_METRICS_HTTP_MAX_CONNS];   /* server thread */
};

static void
s_body_release(s_body_t **body_p)
{
    if (*body_p && --(*body_p)->refs <= 0)
        free(*body_p);
    *body_p = NULL;
}

static void
s_close(s_conn_t *c)
{
    close(c->fd);
    s_body_release(&c->body);
    c->fd = -1;
    c->state = S_FREE;
}

/* One recv (out false) or send on c's socket, again when interrupted: the
 * bytes moved, 0 when the socket would block, -1 once c is closed (the
 * client went, or an error). */
static ssize_t
s_io(s_conn_t *c, char *p, size_t n, bool out)
{
    for (;;) {
        ssize_t r = out ? send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : recv(c->fd, p, n, MSG_DONTWAIT);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        s_close(c);
        return -1;
    }
}

/* ---- answers ---- */

/* Queue an answer: status line, headers (extra: CRLF-ended lines), then a
 * short text (copied) or, when body is not NULL, a rendered body (shared;
 * text is then ""), neither of them after a HEAD request. */
static void
s_answer(s_conn_t *c, const char *status, const char *type, const char *extra, const char *text,
         s_body_t *body)
{
    bool send_text = !body && !c->head_only;
    int k = snprintf(c->out, sizeof c->out,
                     "HTTP/1.0 %s\r\nContent-Type: %s; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n%s",
                     status, type, body ? body->len : strlen(text), extra,
                     send_text ? text : "");
    c->n_out = k > 0 && (size_t)k < sizeof c->out ? (size_t)k : 0;
    c->out_off = c->body_off = 0;
    if (body && !c->head_only) {
        c->body = body;
        body->refs++;
    }
    c->state = S_WRITE;
    c->deadline_ms = sq_mono_ms() + SQ_METRICS_HTTP_TIMEOUT_MS;
}

static void
s_reply(s_conn_t *c, const char *status, const char *extra, const char *text)
{
    s_answer(c, status, "text/plain", extra, text, NULL);
}

/* Send what the socket takes; each step that makes progress earns the
 * connection another SQ_METRICS_HTTP_TIMEOUT_MS. */
static void
s_send(s_conn_t *c)
{
    for (;;) {
        char *p;
        size_t n;
        if (c->out_off < c->n_out) {
            p = c->out + c->out_off;
            n = c->n_out - c->out_off;
        } else if (c->body && c->body_off < c->body->len) {
            p = c->body->text + c->body_off;
            n = c->body->len - c->body_off;
        } else {
            shutdown(c->fd, SHUT_WR);
            s_body_release(&c->body);
            c->state = S_LINGER;
            c->deadline_ms = sq_mono_ms() + SQ_METRICS_HTTP_TIMEOUT_MS;
            return;
        }
        ssize_t w = s_io(c, p, n, true);
        if (w <= 0)
            return;
        if (c->out_off < c->n_out)
            c->out_off += (size_t)w;
        else
            c->body_off += (size_t)w;
        c->deadline_ms = sq_mono_ms() + SQ_METRICS_HTTP_TIMEOUT_MS;
    }
}

/* ---- requests ---- */

static void
s_ask(sq_metrics_http_t *self, bool want_body)
{
    pthread_mutex_lock(&self->mu);
    self->asked = true;
    self->want_body |= want_body;
    pthread_mutex_unlock(&self->mu);
    char one = 1;
    ssize_t w = write(self->ask[1], &one, 1);   /* full: the owner has bytes to read anyway */
    (void)w;
}

/* A whole head is in c->in: its request line is "METHOD SP TARGET SP
 * HTTP/x.y" (RFC 9112 §3); the headers do not matter here. */
static void
s_request(sq_metrics_http_t *self, s_conn_t *c)
{
    char *line = c->in;
    line[strcspn(line, "\r\n")] = '\0';
    char *target = strchr(line, ' ');
    char *version = target ? strchr(target + 1, ' ') : NULL;
    if (!target || !version || target == line || strncmp(version + 1, "HTTP/", 5) != 0) {
        s_reply(c, "400 Bad Request", "", "bad request\n");
        return;
    }
    size_t n_method = (size_t)(target - line);
    target++;
    size_t n_path = strcspn(target, "? ");
    c->head_only = n_method == 4 && memcmp(line, "HEAD", 4) == 0;
    bool metrics = n_path == 8 && memcmp(target, "/metrics", 8) == 0;
    bool health = n_path == 8 && memcmp(target, "/healthz", 8) == 0;
    if (!metrics && !health)
        s_reply(c, "404 Not Found", "", "not found: try /metrics or /healthz\n");
    else if (!c->head_only && !(n_method == 3 && memcmp(line, "GET", 3) == 0))
        s_reply(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", "method not allowed\n");
    else {
        c->want_body = metrics;
        c->state = S_WAIT;
        c->deadline_ms = sq_mono_ms() + SQ_METRICS_HTTP_RENDER_MS;
        s_ask(self, metrics);
    }
}

static void
s_read(sq_metrics_http_t *self, s_conn_t *c)
{
    for (;;) {
        ssize_t r = s_io(c, c->in + c->n_in, sizeof c->in - 1 - c->n_in, false);
        if (r <= 0)
            return;
        c->n_in += (size_t)r;
        c->in[c->n_in] = '\0';
        if (memmem(c->in, c->n_in, "\r\n\r\n", 4) || memmem(c->in, c->n_in, "\n\n", 2)) {
            s_request(self, c);
            return;
        }
        if (c->n_in == sizeof c->in - 1) {
            s_reply(c, "431 Request Header Fields Too Large", "", "request head too large\n");
            return;
        }
    }
}

/* Read and drop what the client still sends, until it closes. */
static void
s_linger(s_conn_t *c)
{
    char drop[4096];
    while (s_io(c, drop, sizeof drop, false) > 0)
        ;
}

static void
s_step(sq_metrics_http_t *self, s_conn_t *c, short revents)
{
    switch (c->state) {
    case S_READ:
        s_read(self, c);
        break;
    case S_WAIT:   /* polled for nothing: only an error or hangup wakes it */
        if (revents & (POLLERR | POLLHUP | POLLNVAL))
            s_close(c);
        break;
    case S_WRITE:
        s_send(c);
        break;
    case S_LINGER:
        s_linger(c);
        break;
    case S_FREE:
        break;
    }
}

/* The owner answered: every waiting connection that this answer serves
 * (a health check any answer, a scrape one with a text) gets it. */
static void
s_take_answer(sq_metrics_http_t *self)
{
    char drain[64];
    while (read(self->done[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&self->mu);
    bool answered = self->answered;
    s_body_t *body = self->ready;
    self->answered = false;
    self->ready = NULL;
    pthread_mutex_unlock(&self->mu);
    if (!answered) {
        free(body);
        return;
    }
    if (body)
        body->refs = 1;   /* this walk's, as connections may send it all at once */
    for (size_t i = 0; i < SQ_METRICS_HTTP_MAX_CONNS; i++) {
        s_conn_t *c = &self->conns[i];
        if (c->state != S_WAIT)
            continue;
        if (!c->want_body)
            s_reply(c, "200 OK", "", "ok\n");
        else if (body)
            s_answer(c, "200 OK", "text/plain; version=0.0.4", "", "", body);
        /* else a scrape asked after the owner had looked: its own ask
         * brings the next answer */
        if (c->state == S_WRITE)
            s_send(c);
    }
    s_body_release(&body);
}

/* The slot for a new connection: a free one, else the oldest that has not
 * sent its whole request (or is lingering), else the oldest of all. */
static s_conn_t *
s_slot(sq_metrics_http_t *self)
{
    s_conn_t *idle = NULL, *any = NULL;
    for (size_t i = 0; i < SQ_METRICS_HTTP_MAX_CONNS; i++) {
        s_conn_t *c = &self->conns[i];
        if (c->state == S_FREE)
            return c;
        if ((c->state == S_READ || c->state == S_LINGER) &&
            (!idle || c->accepted_ms < idle->accepted_ms))
            idle = c;
        if (!any || c->accepted_ms < any->accepted_ms)
            any = c;
    }
    s_conn_t *c = idle ? idle : any;
    s_close(c);
    return c;
}

static void
s_accept(sq_metrics_http_t *self)
{
    int fd;
    while ((fd = accept4(self->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
        s_conn_t *c = s_slot(self);
        int64_t now = sq_mono_ms();
        *c = (s_conn_t){.fd = fd, .state = S_READ, .accepted_ms = now,
                        .deadline_ms = now + SQ_METRICS_HTTP_TIMEOUT_MS};
        c->in[0] = '\0';
    }
    /* out of descriptors (the owner holds them): the listening socket stays
     * readable, so pause rather than spin */
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        poll(NULL, 0, 10);
}

/* A connection past its deadline: a scrape the owner did not answer gets
 * a 503; any other is closed (a silent client gets no answer). */
static void
s_expire(s_conn_t *c, int64_t now)
{
    if (c->state == S_FREE || c->deadline_ms > now)
        return;
    if (c->state == S_WAIT) {
        s_reply(c, "503 Service Unavailable", "", "the loop did not answer in time\n");
        s_send(c);
    } else {
        s_close(c);
    }
}

static void *
s_serve(void *arg)
{
    sq_metrics_http_t *self = arg;
    static const short events[] = {[S_FREE] = 0, [S_READ] = POLLIN, [S_WAIT] = 0,
                                   [S_WRITE] = POLLOUT, [S_LINGER] = POLLIN};
    struct pollfd p[3 + SQ_METRICS_HTTP_MAX_CONNS];
    s_conn_t *of[SQ_METRICS_HTTP_MAX_CONNS];   /* p[3 + k] is of[k]'s socket */
    for (;;) {
        int64_t now = sq_mono_ms(), wake = INT64_MAX;
        p[0] = (struct pollfd){self->stop[0], POLLIN, 0};
        p[1] = (struct pollfd){self->done[0], POLLIN, 0};
        p[2] = (struct pollfd){self->fd, POLLIN, 0};
        nfds_t n = 3;
        for (size_t i = 0; i < SQ_METRICS_HTTP_MAX_CONNS; i++) {
            s_conn_t *c = &self->conns[i];
            if (c->state == S_FREE)
                continue;
            wake = c->deadline_ms < wake ? c->deadline_ms : wake;
            of[n - 3] = c;
            p[n++] = (struct pollfd){c->fd, events[c->state], 0};
        }
        int64_t left = wake == INT64_MAX ? -1 : wake > now ? wake - now : 0;
        int r = poll(p, n, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno != EINTR) {
            poll(NULL, 0, 10);   /* ENOMEM: try again shortly */
            continue;
        }
        if (r > 0 && p[0].revents)
            break;
        if (r > 0 && p[1].revents)
            s_take_answer(self);
        for (nfds_t k = 3; r > 0 && k < n; k++)
            if (p[k].revents && of[k - 3]->fd == p[k].fd)
                s_step(self, of[k - 3], p[k].revents);
        /* new connections last: one may take a slot polled above */
        if (r > 0 && p[2].revents)
            s_accept(self);
        now = sq_mono_ms();
        for (size_t i = 0; i < SQ_METRICS_HTTP_MAX_CONNS; i++)
            s_expire(&self->conns[i], now);
    }
    return NULL;
}

/* ---- the owner's side ---- */

/* Render into a new text, growing the buffer while the text does not fit;
 * at SQ_METRICS_HTTP_BODY_MAX it is cut after its last whole line. NULL
 * when out of memory. */
static s_body_t *
s_render(sq_metrics_http_t *self, sq_metrics_render_fn render, void *arg)
{
    size_t size = self->render_size;
    s_body_t *b = NULL;
    for (;;) {
        s_body_t *grown = realloc(b, sizeof *b + size);
        if (!grown) {
            free(b);
            return NULL;
        }
        b = grown;
        if (size == SQ_METRICS_HTTP_BODY_MAX)   /* the cut looks for the last newline written */
            memset(b->text, 0, size);
        size_t len = render(arg, b->text, size);
        if (len < size) {
            b->len = len;
            break;
        }
        if (size == SQ_METRICS_HTTP_BODY_MAX) {
            const char *nl = memrchr(b->text, '\n', size);
            b->len = nl ? (size_t)(nl - b->text) + 1 : 0;
            break;
        }
        size = len < SQ_METRICS_HTTP_BODY_MAX && len + 1 > 2 * size ? len + 1 : 2 * size;
        size = size < SQ_METRICS_HTTP_BODY_MAX ? size : SQ_METRICS_HTTP_BODY_MAX;
    }
    /* start the next render where this text would fit with room to grow */
    size_t next = b->len + b->len / 4 + 1;
    self->render_size = next < S_BODY_FIRST ? S_BODY_FIRST
                        : next > SQ_METRICS_HTTP_BODY_MAX ? SQ_METRICS_HTTP_BODY_MAX : next;
    return b;
}

void
sq_metrics_http_serve(sq_metrics_http_t *self, sq_metrics_render_fn render, void *arg)
{
    char drain[64];
    while (read(self->ask[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&self->mu);
    bool asked = self->asked, want_body = self->want_body;
    self->asked = self->want_body = false;
    pthread_mutex_unlock(&self->mu);
    if (!asked)
        return;
    /* the server thread keeps serving meanwhile */
    s_body_t *body = want_body ? s_render(self, render, arg) : NULL;
    pthread_mutex_lock(&self->mu);
    if (body) {   /* a text not taken yet is replaced, never by none */
        free(self->ready);
        self->ready = body;
    }
    self->answered = true;
    pthread_mutex_unlock(&self->mu);
    char one = 1;
    ssize_t w = write(self->done[1], &one, 1);   /* full: the thread has bytes to read anyway */
    (void)w;
}

int
sq_metrics_http_fd(const sq_metrics_http_t *self)
{
    return self->ask[0];
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
    if (!self) {
        SQ_FAIL(SQ_ENOMEM, "metrics");
        return NULL;
    }
    self->ask[0] = self->ask[1] = self->done[0] = self->done[1] = -1;
    self->stop[0] = self->stop[1] = -1;
    self->render_size = S_BODY_FIRST;
    for (size_t i = 0; i < SQ_METRICS_HTTP_MAX_CONNS; i++)
        self->conns[i].fd = -1;
    pthread_mutex_init(&self->mu, NULL);
    int one = 1;
    self->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (self->fd < 0 || setsockopt(self->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(self->fd, (struct sockaddr *)&sa, sizeof sa) ||
        listen(self->fd, SQ_METRICS_HTTP_MAX_CONNS)) {
        SQ_FAIL(-errno, "metrics: listen on port %d: %s", port, strerror(errno));
        sq_metrics_http_destroy(&self);
        return NULL;
    }
    if (pipe2(self->ask, O_CLOEXEC | O_NONBLOCK) || pipe2(self->done, O_CLOEXEC | O_NONBLOCK) ||
        pipe2(self->stop, O_CLOEXEC)) {
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
        char one = 1;
        if (write(self->stop[1], &one, 1) != 1)
            SQ_FAIL(SQ_EIO, "metrics: cannot stop the server thread");
        pthread_join(self->thread, NULL);
    }
    for (size_t i = 0; i < SQ_METRICS_HTTP_MAX_CONNS; i++)
        if (self->conns[i].state != S_FREE)
            s_close(&self->conns[i]);
    int fds[] = {self->fd, self->ask[0], self->ask[1], self->done[0], self->done[1],
                 self->stop[0], self->stop[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_mutex_destroy(&self->mu);
    free(self->ready);
    free(self);
    *self_p = NULL;
}

void sq_metrics_text_put(sq_metrics_text_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool room = o->len < o->size;
    int k = vsnprintf(room ? o->buf + o->len : NULL, room ? o->size - o->len : 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->len += (size_t)k;
}

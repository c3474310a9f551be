/*  sq_metrics_http: a tiny HTTP/1.0 responder for Prometheus scrapes.
 *
 *  A thread of its own serves every connection at once (one poll over all
 *  of them), each under its own deadlines: SQ_METRICS_HTTP_TIMEOUT_MS to
 *  send its whole request head, and as long again for each step of the
 *  answer. At most SQ_METRICS_HTTP_MAX_CONNS are open; a new one beyond
 *  that closes the oldest that has not finished its request. So idle,
 *  slow or hostile clients delay neither a scrape nor the owner.
 *
 *  The text is rendered on the owner's thread, which owns the state it
 *  shows: the owner polls sq_metrics_http_fd() in its loop and calls
 *  sq_metrics_http_serve() when it is readable; serve calls the render
 *  callback when a scrape waits for it. A client whose owner does not
 *  answer within SQ_METRICS_HTTP_RENDER_MS (busy with a slow step) gets a
 *  503.
 *
 *  Paths: GET or HEAD /metrics gets the text exposition format; /healthz
 *  gets "ok" once the owner's loop has answered (so it says the loop is
 *  alive, not only this thread); any other path is 404, any other method
 *  405, a head over 4 KiB 431, a request line that is not HTTP 400.
 */
#ifndef SQ_METRICS_HTTP_H
#define SQ_METRICS_HTTP_H

#include <stddef.h>

#define SQ_METRICS_HTTP_TIMEOUT_MS 2000
#define SQ_METRICS_HTTP_RENDER_MS 8000   /* Prometheus's scrape timeout is 10 s */
#define SQ_METRICS_HTTP_MAX_CONNS 64
/* The longest text sent: a render that needs more is cut after its last
 * whole line within it (so a render puts what must be seen first). */
#define SQ_METRICS_HTTP_BODY_MAX (16 * 1024 * 1024)

typedef struct sq_metrics_http_t sq_metrics_http_t;

/* Writes the exposition text into buf (size bytes, whole lines) and
 * returns its length, as snprintf does: a return of size or more says the
 * text did not fit, and serve calls it again with a larger buffer. */
typedef size_t (*sq_metrics_render_fn)(void *arg, char *buf, size_t size);

/* The text a render builds: len counts what the whole text needs, past
 * size once it does not fit (then it is only counted), as snprintf does,
 * so the render returns len as it is. */
typedef struct {
    char *buf;
    size_t size, len;
} sq_metrics_text_t;

void sq_metrics_text_put(sq_metrics_text_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Listen on bind_addr:port (bind_addr NULL: 0.0.0.0). NULL on error. */
sq_metrics_http_t *sq_metrics_http_new(const char *bind_addr, int port);
void sq_metrics_http_destroy(sq_metrics_http_t **self_p);
/* Readable when a scrape waits for the owner to render (for poll()). */
int sq_metrics_http_fd(const sq_metrics_http_t *self);
/* Render for the waiting scrapes, if any (never blocks on a client). */
void sq_metrics_http_serve(sq_metrics_http_t *self, sq_metrics_render_fn render, void *arg);

#endif

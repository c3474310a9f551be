/*  sq_metrics_http: a tiny HTTP/1.0 responder for Prometheus scrapes.
 *
 *  A thread of its own accepts, reads and answers, one connection at a
 *  time, reading the request and sending the answer each within
 *  SQ_METRICS_HTTP_TIMEOUT_MS however slowly its client sends or reads: a
 *  slow or hostile client delays other scrapes, never the owner. The text
 *  is rendered on the owner's thread, which owns the state it shows: the
 *  owner polls sq_metrics_http_fd() in its loop and calls
 *  sq_metrics_http_serve() when it is readable; serve calls the render
 *  callback when a scrape waits for it. An owner that does not render
 *  within SQ_METRICS_HTTP_RENDER_MS (busy with a slow step) gets its
 *  client a 503. Every request (whatever the path; GET /metrics is what
 *  Prometheus sends) gets the text exposition format.
 */
#ifndef SQ_METRICS_HTTP_H
#define SQ_METRICS_HTTP_H

#include <stddef.h>

#define SQ_METRICS_HTTP_TIMEOUT_MS 2000
#define SQ_METRICS_HTTP_RENDER_MS 8000   /* Prometheus's scrape timeout is 10 s */

typedef struct sq_metrics_http_t sq_metrics_http_t;

/* Writes the exposition text into buf (size bytes); returns its length. */
typedef size_t (*sq_metrics_render_fn)(void *arg, char *buf, size_t size);

/* Listen on bind_addr:port (bind_addr NULL: 0.0.0.0). NULL on error. */
sq_metrics_http_t *sq_metrics_http_new(const char *bind_addr, int port);
void sq_metrics_http_destroy(sq_metrics_http_t **self_p);
/* Readable when a scrape waits for the owner to render (for poll()). */
int sq_metrics_http_fd(const sq_metrics_http_t *self);
/* Render for the waiting scrape, if any (never blocks on a client). */
void sq_metrics_http_serve(sq_metrics_http_t *self, sq_metrics_render_fn render, void *arg);

#endif

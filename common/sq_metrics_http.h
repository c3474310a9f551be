/*  sq_metrics_http: a tiny HTTP/1.0 responder for Prometheus scrapes.
 *
 *  Owned by the control loop's thread: the loop polls the listening
 *  socket with its own timeout and calls sq_metrics_http_serve() when it
 *  is readable. Every request (whatever the path; GET /metrics is what
 *  Prometheus sends) gets the text exposition format produced by the
 *  render callback. Requests are read with a short timeout, so a slow or
 *  silent client cannot stall the loop for more than ~200 ms.
 */
#ifndef SQ_METRICS_HTTP_H
#define SQ_METRICS_HTTP_H

#include <stddef.h>

typedef struct sq_metrics_http_t sq_metrics_http_t;

/* Writes the exposition text into buf (size bytes); returns its length. */
typedef size_t (*sq_metrics_render_fn)(void *arg, char *buf, size_t size);

/* Listen on bind_addr:port (bind_addr NULL: 0.0.0.0). NULL on error. */
sq_metrics_http_t *sq_metrics_http_new(const char *bind_addr, int port);
void sq_metrics_http_destroy(sq_metrics_http_t **self_p);
/* The listening socket, for poll(). */
int sq_metrics_http_fd(const sq_metrics_http_t *self);
/* Accept and answer pending connections (non-blocking accept). */
void sq_metrics_http_serve(sq_metrics_http_t *self, sq_metrics_render_fn render, void *arg);

#endif

/*  Helpers shared by the scheduler's process-level tests. */
#ifndef SCHED_TESTUTIL_H
#define SCHED_TESTUTIL_H

#include <stddef.h>

/* GET /metrics from 127.0.0.1:port into buf (NUL-terminated; "" when the
 * scrape failed). Returns buf. */
const char *sched_scrape(int port, char *buf, size_t size);
/* Poll the metrics until a line containing `needle` appears or
 * timeout_ms passes. 1 when seen (else prints what was awaited). */
int sched_wait_metric(int port, const char *needle, int timeout_ms);

#endif

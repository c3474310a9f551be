/*  sq_e2e_case: what every broker e2e test binary shares — bringing up a
 *  broker on a fresh database with a client, the exactly-once audit check,
 *  and a main() that runs the one case CTest names on the command line
 *  (each case is its own CTest entry, so each gets its own database and
 *  processes, and a failure names the case).
 */
#ifndef SQ_E2E_CASE_H
#define SQ_E2E_CASE_H

#include "sq_e2e_client.h"
#include "sq_harness.h"

#include <stdbool.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} sq_e2e_case_t;

/* Broker flags most cases use: a short retry backoff (200 ms) so that
 * retries fit in a test. */
extern const char *const sq_e2e_quick_retry[];

/* sq_harness_start(name, broker_flags) and a client on its endpoint. */
bool sq_e2e_up(const char *name, const char *const broker_flags[], sq_harness_t **h_out,
               sq_e2e_client_t **client_out);
/* The canned audit query sql/queries/duplicate_results.sql returns no
 * rows: no task has its result recorded more than once. */
void sq_e2e_check_no_duplicates(sq_harness_t *h);
/* A free loopback port in 19000-19099 (outside the harness's broker
 * range, so the broker's own ports cannot take it), or -1 */
int sq_e2e_free_port(void);
/* GET /metrics from 127.0.0.1:port into buf (NUL-terminated). 0 or -1. */
int sq_e2e_scrape(int port, char *buf, size_t size);
/* Run the case named argv[1] from the {NULL}-terminated table, then
 * destroy *client and *h. Returns the exit code (2 on a usage error). */
int sq_e2e_main(int argc, char **argv, const sq_e2e_case_t cases[], sq_harness_t **h,
                sq_e2e_client_t **client);

#endif

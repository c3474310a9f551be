/*  sq_e2e_case: shared set-up, checks and main() of the e2e test binaries. */
#define _GNU_SOURCE
#include "sq_e2e_case.h"

#include "sq_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *const sq_e2e_quick_retry[] = {"--retry-base-ms", "200", NULL};

bool
sq_e2e_up(const char *name, const char *const broker_flags[], sq_harness_t **h_out,
          sq_e2e_client_t **client_out)
{
    *h_out = sq_harness_start(name, broker_flags);
    if (*h_out)
        *client_out = sq_e2e_client_new(sq_harness_client_endpoint(*h_out));
    return *h_out && *client_out;
}

int
sq_e2e_free_port(void)
{
    for (int port = 19000 + getpid() % 100, tries = 0; tries < 100; tries++, port++) {
        int p = 19000 + (port - 19000) % 100;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return p;
    }
    return -1;
}

int
sq_e2e_scrape(int port, char *buf, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
    ssize_t w = write(fd, req, strlen(req));
    size_t n = 0;
    ssize_t r;
    while (w > 0 && n + 1 < size && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    return n > 0 ? 0 : -1;
}

void
sq_e2e_check_no_duplicates(sq_harness_t *h)
{
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_file_rows(h, "queries/duplicate_results.sql", &n) == 0);
    SQ_CHECK(n == 0);
    SQ_CHECK(sq_harness_sql_i64(h,
                                "select count(*) from (select job_id, idx from task_attempts "
                                "where outcome = 'succeeded' group by 1, 2 having count(*) > 1) d",
                                &n) == 0);
    SQ_CHECK(n == 0);
}

int
sq_e2e_main(int argc, char **argv, const sq_e2e_case_t cases[], sq_harness_t **h,
            sq_e2e_client_t **client)
{
    const char *which = argc > 1 ? argv[1] : "";
    const sq_e2e_case_t *c = cases;
    while (c->name && strcmp(c->name, which) != 0)
        c++;
    if (!c->name) {
        fprintf(stderr, "usage: %s CASE, one of:", argv[0]);
        for (c = cases; c->name; c++)
            fprintf(stderr, " %s", c->name);
        fprintf(stderr, "\n");
        return 2;
    }
    void (*fn)(void) = c->fn;
    fprintf(stderr, "== case %s\n", c->name);
    SQ_RUN(fn);
    sq_e2e_client_destroy(client);
    sq_harness_destroy(h);
    return sq_test_summary(c->name);
}

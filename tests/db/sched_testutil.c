/*  Helpers shared by the scheduler's process-level tests. */
#define _DEFAULT_SOURCE /* usleep */
#define _POSIX_C_SOURCE 200809L
#include "sched_testutil.h"

#include "sq_test.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

const char *
sched_scrape(int port, char *buf, size_t size)
{
    buf[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {2, 0}; /* a stuck scheduler must not stall the test */
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
        if (write(fd, req, strlen(req)) > 0) {
            size_t n = 0;
            ssize_t r;
            while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
                n += (size_t)r;
            buf[n] = '\0';
        }
    }
    if (fd >= 0)
        close(fd);
    return buf;
}

int
sched_wait_metric(int port, const char *needle, int timeout_ms)
{
    static char buf[65536];
    for (int64_t end = sq_test_now_ms() + timeout_ms; sq_test_now_ms() < end; usleep(50000))
        if (strstr(sched_scrape(port, buf, sizeof buf), needle))
            return 1;
    fprintf(stderr, "metric not seen: %s\n", needle);
    return 0;
}

/*  sq_bench_broker: run shardq-broker as a child of the benchmark.
 *
 *  The broker's output goes to a log file the benchmark names in its
 *  errors, so a broker that fails to start is diagnosable. Readiness is
 *  "both TCP ports accept a connection", polled with a deadline.
 */
#define _GNU_SOURCE
#include "sq_bench.h"
#include "sq_error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_START_MS 30000
#define S_STOP_MS 10000
#define S_POLL_US 20000

/* fork + exec argv with stdout/stderr appended to log_path. */
static int
s_spawn(const char *const argv[], const char *log_path, pid_t *pid_out)
{
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return SQ_FAIL(-errno, "cannot open log %s: %s", log_path, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(fd);
        return SQ_FAIL(-err, "fork: %s", strerror(err));
    }
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        dprintf(fd, "shardq-bench-queue: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    *pid_out = pid;
    return 0;
}

/* Wait for pid up to timeout_ms; 0 with *status, or SQ_ETIMEDOUT. */
static int
s_wait(pid_t pid, int timeout_ms, int *status)
{
    double deadline = sq_bench_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0)
            return SQ_FAIL(-errno, "waitpid %d: %s", (int)pid, strerror(errno));
        if (sq_bench_now_ms() > deadline)
            return SQ_ETIMEDOUT;
        usleep(S_POLL_US);
    }
}

int
sq_bench_broker_migrate(const char *bin, const char *conninfo, const char *log_path)
{
    const char *argv[] = {bin, "--migrate", "--db", conninfo, NULL};
    pid_t pid;
    int status = 0;
    int rc = s_spawn(argv, log_path, &pid);
    if (rc == 0)
        rc = s_wait(pid, S_START_MS, &status);
    if (rc == SQ_ETIMEDOUT) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return SQ_FAIL(rc, "%s --migrate still running after %d ms (see %s)", bin, S_START_MS,
                       log_path);
    }
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rc = SQ_FAIL(SQ_EIO, "%s --migrate failed (status 0x%x, see %s)", bin, status, log_path);
    return rc;
}

/* The port of "tcp://host:port". */
static int
s_port(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    return colon ? atoi(colon + 1) : 0;
}

static bool
s_listening(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

int
sq_bench_broker_start(const char *bin, const char *conninfo, const char *client_ep,
                      const char *worker_ep, const char *log_path, pid_t *pid_out)
{
    int client_port = s_port(client_ep), worker_port = s_port(worker_ep);
    if (client_port <= 0 || worker_port <= 0)
        return SQ_FAIL(SQ_EINVAL, "endpoints must be tcp://HOST:PORT (got %s, %s)", client_ep,
                       worker_ep);
    if (s_listening(client_port) || s_listening(worker_port))
        return SQ_FAIL(SQ_ESTATE, "port %d or %d already in use: another broker running?",
                       client_port, worker_port);
    const char *argv[] = {bin, "--db", conninfo, "--listen", client_ep, "--workers", worker_ep,
                          NULL};
    pid_t pid;
    int rc = s_spawn(argv, log_path, &pid);
    if (rc != 0)
        return rc;
    double deadline = sq_bench_now_ms() + S_START_MS;
    while (!(s_listening(client_port) && s_listening(worker_port))) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return SQ_FAIL(SQ_EIO, "%s exited (status 0x%x) before listening (see %s)", bin,
                           status, log_path);
        if (sq_bench_now_ms() > deadline) {
            sq_bench_broker_stop(pid);
            return SQ_FAIL(SQ_ETIMEDOUT, "%s not listening on %s and %s after %d ms (see %s)",
                           bin, client_ep, worker_ep, S_START_MS, log_path);
        }
        usleep(S_POLL_US);
    }
    *pid_out = pid;
    return 0;
}

int
sq_bench_broker_stop(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    int rc = s_wait(pid, S_STOP_MS, &status);
    if (rc == SQ_ETIMEDOUT) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return SQ_FAIL(rc, "broker did not exit within %d ms of SIGTERM; killed", S_STOP_MS);
    }
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        rc = SQ_FAIL(SQ_EIO, "broker exited with status 0x%x after SIGTERM", status);
    return rc;
}

/*  sq_proc: child processes for end-to-end tests (see sq_proc.h).
 *
 *  fork + exec rather than posix_spawn because the child must ask for
 *  PR_SET_PDEATHSIG between the two: a test killed by CTest's timeout then
 *  takes its brokers and workers with it.
 */
#define _GNU_SOURCE
#include "sq_proc.h"

#include "sq_error.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct sq_proc_t {
    char *name;
    char *log_path;
    pid_t pid;
    bool exited;
    int status;     /* wait status once exited */
};

/* Runs in the child between fork and exec: only async-signal-safe calls. */
static void
s_child_exec(const char *const argv[], const char *log_path, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);     /* the test died before we armed the signal */
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0)
        dup2(null_fd, STDIN_FILENO);
    /* Children start with default signal dispositions and an empty mask
     * whatever the test did. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

sq_proc_t *
sq_proc_new(const char *name, const char *const argv[], const char *log_path)
{
    if (access(argv[0], X_OK) != 0) {
        SQ_FAIL(-errno, "%s: cannot execute %s: %s", name, argv[0], strerror(errno));
        return NULL;
    }
    sq_proc_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->name = strdup(name);
    self->log_path = strdup(log_path);
    if (!self->name || !self->log_path) {
        sq_proc_destroy(&self);
        return NULL;
    }
    fflush(NULL);   /* the child must not flush our buffers twice */
    pid_t parent = getpid();
    self->pid = fork();
    if (self->pid < 0) {
        SQ_FAIL(-errno, "%s: fork: %s", name, strerror(errno));
        self->exited = true;
        sq_proc_destroy(&self);
        return NULL;
    }
    if (self->pid == 0)
        s_child_exec(argv, log_path, parent);
    return self;
}

void
sq_proc_destroy(sq_proc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_proc_t *self = *self_p;
    if (!self->exited && self->pid > 0) {
        kill(self->pid, SIGKILL);
        sq_proc_wait(self, 10000);
    }
    free(self->name);
    free(self->log_path);
    free(self);
    *self_p = NULL;
}

pid_t
sq_proc_pid(const sq_proc_t *self)
{
    return self->pid;
}

const char *
sq_proc_name(const sq_proc_t *self)
{
    return self->name;
}

const char *
sq_proc_log(const sq_proc_t *self)
{
    return self->log_path;
}

int
sq_proc_log_count(const sq_proc_t *self, const char *needle)
{
    FILE *f = fopen(self->log_path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) >= 0)
        n += strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return n;
}

int
sq_proc_signal(sq_proc_t *self, int sig)
{
    if (!sq_proc_running(self))
        return 0;
    return kill(self->pid, sig) == 0 ? 0 : -errno;
}

/* One non-blocking reap. True once the child has exited. */
static bool
s_reap(sq_proc_t *self)
{
    if (self->exited)
        return true;
    int status = 0;
    pid_t r = waitpid(self->pid, &status, WNOHANG);
    if (r == self->pid || (r < 0 && errno == ECHILD)) {
        self->exited = true;
        self->status = r == self->pid ? status : 0;
    }
    return self->exited;
}

static int64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
sq_proc_wait(sq_proc_t *self, int timeout_ms)
{
    int64_t deadline = s_now_ms() + timeout_ms;
    struct timespec pause = {0, 2 * 1000 * 1000};
    while (!s_reap(self)) {
        if (s_now_ms() >= deadline)
            return SQ_FAIL(SQ_ETIMEDOUT, "%s (pid %d) still running after %d ms",
                           self->name, (int)self->pid, timeout_ms);
        nanosleep(&pause, NULL);
    }
    return 0;
}

bool
sq_proc_running(sq_proc_t *self)
{
    return !s_reap(self);
}

int
sq_proc_status(const sq_proc_t *self)
{
    return self->exited ? self->status : -1;
}

int
sq_proc_exit_code(const sq_proc_t *self)
{
    if (!self->exited)
        return -1;
    if (WIFEXITED(self->status))
        return WEXITSTATUS(self->status);
    if (WIFSIGNALED(self->status))
        return 128 + WTERMSIG(self->status);
    return -1;
}

int
sq_proc_stop(sq_proc_t *self, int timeout_ms)
{
    sq_proc_signal(self, SIGTERM);
    if (sq_proc_wait(self, timeout_ms) != 0) {
        sq_proc_signal(self, SIGKILL);
        sq_proc_wait(self, 10000);
    }
    return sq_proc_exit_code(self);
}

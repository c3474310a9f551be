/*  sq_actuator_local: worker groups as mpirun process groups on this host.
 *
 *  Ownership: the actuator is the parent of every mpirun it spawns and the
 *  only one who reaps them. Each group runs in its own process group
 *  (POSIX_SPAWN_SETPGROUP), so SIGKILL to -pgid reaches mpirun and every
 *  rank it started. A drained group gets SIGUSR1 on mpirun, which forwards
 *  it to every rank (mpirun would end the job at once on SIGTERM): the
 *  worker stops taking tasks, finishes or hands back its leases and exits;
 *  SIGKILL follows once grace_ms has passed (0: at once). A group that exits on its
 *  own is reported (opts.on_exit) and forgotten: the next decision sees one
 *  group fewer and replaces it.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_actuator.h"

#include "sq_clock.h"

#include "sq_error.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef enum { S_STARTING = 0, S_READY, S_DRAINING } s_state_t;

typedef struct {
    char id[96];            /* "<pool>-<n>" */
    char pool[64];
    pid_t pid;              /* mpirun, also the process group id */
    s_state_t state;
    int idle;               /* broker says: no leases */
    int64_t spawned_ms, term_ms;
} s_group_t;

typedef struct {
    sq_actuator_t base;
    sq_actuator_local_opts_t o;
    char endpoint[256];
    s_group_t *groups;
    size_t n, cap;
    unsigned seq;
} s_local_t;

/* mpirun -np N, its flags, the worker, --check-flags (when checking) and
 * its 10 fixed arguments, the policy's worker flags, NULL. */
#define S_ARGV_MAX (3 + SQ_ACTUATOR_MAX_MPIRUN_ARGS + 12 + SQ_POLICY_MAX_WORKER_FLAGS + 1)

/* How long `shardq-worker --check-flags` may take to answer: it parses
 * its arguments and exits, so this only bounds a worker that hangs. */
#define S_CHECK_MS 10000

/* The worker's argv in a group, into argv from the worker binary on, with
 * --check-flags first when `check`; strings point into pool, id, mb and
 * flags (the buffer for the split worker flags, SQ_POLICY_FLAGS_BYTES). */
static int
s_worker_argv(const s_local_t *self, const sq_pool_policy_t *p, const char *id, char *mb,
              char *flags, int check, char **argv)
{
    int n = 0;
    argv[n++] = (char *)self->o.worker;
    if (check)   /* first: a flag lacking its value must not take it as one */
        argv[n++] = "--check-flags";
    argv[n++] = "--broker";
    argv[n++] = (char *)self->endpoint;
    argv[n++] = "--model";
    argv[n++] = (char *)p->worker.model;
    argv[n++] = "--device";
    argv[n++] = (char *)p->worker.device;
    argv[n++] = "--max-batch";
    argv[n++] = mb;
    argv[n++] = "--group-id";
    argv[n++] = (char *)id;
    /* the policy refused more at load; this guards a policy built in code */
    int n_flags = sq_worker_flags_split(p->worker.flags, flags, SQ_POLICY_FLAGS_BYTES, argv + n,
                                        SQ_POLICY_MAX_WORKER_FLAGS);
    if (n_flags > SQ_POLICY_MAX_WORKER_FLAGS)
        return SQ_FAIL(SQ_ETOOBIG, "pool %s: %d worker flags (at most %d)", p->name, n_flags,
                       SQ_POLICY_MAX_WORKER_FLAGS);
    argv[n + n_flags] = NULL;
    return 0;
}

/* argv for one group: mpirun, its flags, then s_worker_argv. */
static int
s_argv(const s_local_t *self, const sq_pool_policy_t *p, const char *id, char *np, char *mb,
       char *flags, char **argv)
{
    int n = 0;
    argv[n++] = (char *)self->o.mpirun;
    argv[n++] = "-np";
    argv[n++] = np;
    for (int i = 0; self->o.mpirun_args && self->o.mpirun_args[i]; i++) {
        if (i == SQ_ACTUATOR_MAX_MPIRUN_ARGS)
            return SQ_FAIL(SQ_ETOOBIG, "more than %d mpirun flags", SQ_ACTUATOR_MAX_MPIRUN_ARGS);
        argv[n++] = (char *)self->o.mpirun_args[i];
    }
    return s_worker_argv(self, p, id, mb, flags, 0, argv + n);
}

static int
s_spawn(s_local_t *self, const sq_pool_policy_t *p, int64_t now_ms)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        s_group_t *grown = realloc(self->groups, cap * sizeof *grown);
        if (!grown)
            return SQ_FAIL(SQ_ENOMEM, "local actuator");
        self->groups = grown;
        self->cap = cap;
    }
    s_group_t *g = &self->groups[self->n];
    memset(g, 0, sizeof *g);
    snprintf(g->id, sizeof g->id, "%s-%u", p->name, ++self->seq);
    snprintf(g->pool, sizeof g->pool, "%s", p->name);
    char np[16], mb[16], flags[SQ_POLICY_FLAGS_BYTES], *argv[S_ARGV_MAX];
    snprintf(np, sizeof np, "%d", p->worker.tp);
    snprintf(mb, sizeof mb, "%d", p->worker.max_batch);
    int rc = s_argv(self, p, g->id, np, mb, flags, argv);
    if (rc)
        return rc;
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    int err = posix_spawnp(&g->pid, self->o.mpirun, NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    if (err)
        return SQ_FAIL(-err, "pool %s: spawn %s: %s", p->name, self->o.mpirun, strerror(err));
    g->spawned_ms = now_ms;
    self->n++;
    return 0;
}

/* Removal preference: idle ready (0), starting (1), busy ready (2). */
static int
s_rank(const s_group_t *g)
{
    return g->state == S_READY ? (g->idle ? 0 : 2) : 1;
}

static void
s_drain(s_group_t *g, int64_t now_ms)
{
    g->state = S_DRAINING;
    g->term_ms = now_ms;
    kill(g->pid, SIGUSR1);
}

static int
s_set(sq_actuator_t *base, const sq_pool_policy_t *p, int desired, int64_t now_ms)
{
    s_local_t *self = (s_local_t *)base;
    int have = 0;
    for (size_t i = 0; i < self->n; i++)
        have += strcmp(self->groups[i].pool, p->name) == 0 &&
                self->groups[i].state != S_DRAINING;
    for (; have < desired; have++) {
        int rc = s_spawn(self, p, now_ms);
        if (rc)
            return rc;
    }
    for (; have > desired; have--) {
        s_group_t *victim = NULL;
        for (size_t i = 0; i < self->n; i++) {
            s_group_t *g = &self->groups[i];
            if (strcmp(g->pool, p->name) != 0 || g->state == S_DRAINING)
                continue;
            /* Among equals take the youngest: the oldest have proven themselves. */
            if (!victim || s_rank(g) < s_rank(victim) ||
                (s_rank(g) == s_rank(victim) && g->spawned_ms >= victim->spawned_ms))
                victim = g;
        }
        s_drain(victim, now_ms);
    }
    return 0;
}

static int
s_poll(sq_actuator_t *base, int64_t now_ms)
{
    s_local_t *self = (s_local_t *)base;
    for (size_t i = 0; i < self->n;) {
        s_group_t *g = &self->groups[i];
        int status = -1;
        pid_t r = waitpid(g->pid, &status, WNOHANG);
        if (r == g->pid || (r < 0 && errno == ECHILD)) {
            if (g->state == S_DRAINING) {
                kill(-g->pid, SIGKILL); /* ranks that outlived mpirun */
            } else if (self->o.on_exit) {
                sq_group_exit_t ex = {g->id, g->pool, r == g->pid ? status : -1,
                                      (double)(now_ms - g->spawned_ms) / 1000.0,
                                      g->state == S_READY};
                self->o.on_exit(self->o.on_exit_arg, &ex);
            }
            self->groups[i] = self->groups[--self->n];
            continue;
        }
        if (g->state == S_DRAINING && now_ms - g->term_ms >= self->o.grace_ms)
            kill(-g->pid, SIGKILL);
        i++;
    }
    return 0;
}

static int
s_counts(sq_actuator_t *base, const sq_pool_policy_t *p, sq_actuator_counts_t *out)
{
    s_local_t *self = (s_local_t *)base;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < self->n; i++) {
        const s_group_t *g = &self->groups[i];
        if (strcmp(g->pool, p->name) != 0)
            continue;
        out->draining += g->state == S_DRAINING;
        out->requested += g->state != S_DRAINING;
        out->starting += g->state == S_STARTING;
    }
    return 0;
}

/* Stop everything: drain all, wait up to grace, SIGKILL the rest. */
static void
s_destroy(sq_actuator_t *base)
{
    s_local_t *self = (s_local_t *)base;
    for (size_t i = 0; i < self->n; i++)
        if (self->groups[i].state != S_DRAINING)
            s_drain(&self->groups[i], 0);
    for (int64_t waited = 0; self->n && waited <= self->o.grace_ms; waited += 50) {
        s_poll(base, waited);
        if (self->n)
            nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
    }
    for (size_t i = 0; i < self->n; i++) {
        kill(-self->groups[i].pid, SIGKILL);
        waitpid(self->groups[i].pid, NULL, 0);
    }
    free(self->groups);
    free(self);
}

static const sq_actuator_ops_t s_ops = {"local", s_set, s_poll, s_counts, s_destroy};

sq_actuator_t *
sq_actuator_local_new(const sq_actuator_local_opts_t *opts)
{
    s_local_t *self = calloc(1, sizeof *self);
    if (!self) {
        SQ_FAIL(SQ_ENOMEM, "local actuator");
        return NULL;
    }
    self->base.ops = &s_ops;
    self->o.grace_ms = -1;
    if (opts)
        self->o = *opts;
    if (!self->o.mpirun)
        self->o.mpirun = "mpirun";
    if (!self->o.worker)
        self->o.worker = "shardq-worker";
    if (self->o.grace_ms < 0)
        self->o.grace_ms = 60000; /* above shardq-worker's own --grace (30 s) */
    const char *ep = self->o.worker_endpoint ? self->o.worker_endpoint
                                             : getenv("SHARDQ_WORKER_ENDPOINT");
    snprintf(self->endpoint, sizeof self->endpoint, "%s",
             ep && *ep ? ep : "tcp://127.0.0.1:5556");
    return &self->base;
}

static s_group_t *
s_find(s_local_t *self, const char *group_id)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->groups[i].id, group_id) == 0)
            return &self->groups[i];
    return NULL;
}

int
sq_actuator_local_mark(sq_actuator_t *base, const char *group_id, int ready, int idle,
                       int64_t now_ms, double *startup_s)
{
    s_group_t *g = s_find((s_local_t *)base, group_id);
    if (startup_s)
        *startup_s = -1;
    if (!g)
        return SQ_FAIL(SQ_ENOTFOUND, "group %s: not spawned by this scheduler", group_id);
    if (ready && g->state == S_STARTING) {
        g->state = S_READY;
        if (startup_s)
            *startup_s = (double)(now_ms - g->spawned_ms) / 1000.0;
    }
    g->idle = idle;
    return 0;
}

int
sq_actuator_local_pid(sq_actuator_t *base, const char *group_id)
{
    s_group_t *g = s_find((s_local_t *)base, group_id);
    return g ? (int)g->pid : -1;
}


/* Read fd into buf (size bytes, NUL-terminated, the rest dropped) until
 * EOF or deadline_ms. */
static void
s_read_until(int fd, char *buf, size_t size, int64_t deadline_ms)
{
    size_t n = 0;
    char sink[256];
    for (int64_t now = sq_mono_ms(); now < deadline_ms; now = sq_mono_ms()) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(deadline_ms - now)) <= 0)
            continue;   /* EINTR, or the deadline: the loop decides */
        ssize_t r = n + 1 < size ? read(fd, buf + n, size - 1 - n) : read(fd, sink, sizeof sink);
        if (r <= 0 && !(r < 0 && errno == EINTR))
            break;
        if (r > 0 && n + 1 < size)
            n += (size_t)r;
    }
    buf[n] = '\0';
}

/* Reap pid, killing it at deadline_ms: 0 with *status (OUT), or a
 * negative SQ_E* (SQ_ETIMEDOUT when it had to be killed). */
static int
s_reap_until(pid_t pid, int64_t deadline_ms, int *status)
{
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return SQ_FAIL(-errno, "waitpid: %s", strerror(errno));
        if (sq_mono_ms() >= deadline_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return SQ_ETIMEDOUT;
        }
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    }
}

/* The worker's answer from its exit status: 0 when it exited 0; its first
 * stderr line `err` (why it refuses the flags) otherwise. */
static int
s_check_answer(const char *worker, int status, char *err)
{
    err[strcspn(err, "\n")] = '\0';
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2 && *err)
        return SQ_FAIL(SQ_EINVAL, "%s", err);
    if (WIFEXITED(status))
        return SQ_FAIL(SQ_EINVAL, "%s --check-flags exited %d%s%s", worker,
                       WEXITSTATUS(status), *err ? ": " : "", err);
    return SQ_FAIL(SQ_EINVAL, "%s --check-flags ended by signal %d", worker,
                   WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

int
sq_actuator_local_check_flags(sq_actuator_t *base, const sq_pool_policy_t *p)
{
    assert(base->ops == &s_ops);
    s_local_t *self = (s_local_t *)base;
    char id[96], mb[16], flags[SQ_POLICY_FLAGS_BYTES], *argv[S_ARGV_MAX], err[512];
    snprintf(id, sizeof id, "%s-check", p->name);
    snprintf(mb, sizeof mb, "%d", p->worker.max_batch);
    int rc = s_worker_argv(self, p, id, mb, flags, 1, argv);
    int fds[2];
    if (rc || pipe(fds) != 0)
        return rc ? rc : SQ_FAIL(-errno, "check worker flags: pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid = -1;
    int err_no = posix_spawnp(&pid, self->o.worker, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err_no) {
        close(fds[0]);
        return SQ_FAIL(-err_no, "cannot ask %s to check them: %s", self->o.worker,
                       strerror(err_no));
    }
    const int64_t deadline = sq_mono_ms() + S_CHECK_MS;
    s_read_until(fds[0], err, sizeof err, deadline);
    close(fds[0]);
    int status = 0;
    rc = s_reap_until(pid, deadline, &status);
    if (rc == SQ_ETIMEDOUT)
        return SQ_FAIL(rc, "%s --check-flags did not answer within %d s", self->o.worker,
                       S_CHECK_MS / 1000);
    return rc ? SQ_FAIL(rc, "cannot ask %s to check them: %s", self->o.worker,
                        sq_error_detail())
              : s_check_answer(self->o.worker, status, err);
}

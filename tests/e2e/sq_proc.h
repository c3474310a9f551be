/*  sq_proc: one child process of an end-to-end test (broker, worker, script).
 *
 *  The child's stdout and stderr go to a log file, so that a failing test can
 *  show what each process said. The child is killed with SIGKILL when the test
 *  process dies for any reason (PR_SET_PDEATHSIG), so a crashed or timed-out
 *  test never leaves a broker behind; sq_proc_destroy() kills and reaps a
 *  child still running. Waiting is polling waitpid(WNOHANG) against a
 *  deadline, never an unbounded wait.
 */
#ifndef SQ_PROC_H
#define SQ_PROC_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct sq_proc_t sq_proc_t;

/* Start argv[0] (a path; argv NULL-terminated) with stdout+stderr appended
 * to log_path. name labels the process in reports. NULL with a recorded
 * error when the program cannot be started. */
sq_proc_t *sq_proc_new(const char *name, const char *const argv[], const char *log_path);
/* Kill (SIGKILL) if still running, reap, free. Safe twice. */
void sq_proc_destroy(sq_proc_t **self_p);

pid_t sq_proc_pid(const sq_proc_t *self);
const char *sq_proc_name(const sq_proc_t *self);
const char *sq_proc_log(const sq_proc_t *self);

/* Lines of the child's log containing needle (0 when none or no log). */
int sq_proc_log_count(const sq_proc_t *self, const char *needle);

/* Send a signal; 0, or -errno. Sending to an exited child is a no-op. */
int sq_proc_signal(sq_proc_t *self, int sig);
/* Wait up to timeout_ms for the child to exit. 0 when it has exited (then
 * sq_proc_status gives the wait status), SQ_ETIMEDOUT otherwise. */
int sq_proc_wait(sq_proc_t *self, int timeout_ms);
/* True while the child has not exited (reaps it if it has). */
bool sq_proc_running(sq_proc_t *self);
/* Raw wait status of an exited child (see WIFEXITED etc.); -1 if running. */
int sq_proc_status(const sq_proc_t *self);
/* Exit code of a child that exited normally, 128+signal when killed,
 * -1 while running. */
int sq_proc_exit_code(const sq_proc_t *self);
/* SIGTERM, wait up to timeout_ms, then SIGKILL. Returns sq_proc_exit_code. */
int sq_proc_stop(sq_proc_t *self, int timeout_ms);

#endif

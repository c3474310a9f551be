/*  sq_error: error codes and the per-thread error detail.
 *
 *  Functions return 0 or a negative code: -errno for system errors, or one of
 *  the SQ_E* codes below (all below -1000 so they never collide with errno).
 *  A failing function may also record a human-readable detail ("tensor
 *  blk.3.attn_q.weight: offset 123 past end of file") with SQ_FAIL(); the
 *  caller that finally reports the error reads it with sq_error_detail().
 *  The detail lives in thread-local storage and is overwritten by the next
 *  failure on the same thread; it is borrowed, never freed by the caller.
 */
#ifndef SQ_ERROR_H
#define SQ_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SQ_OK = 0,
    SQ_EBASE = -1000,
    SQ_EINVAL = -1001,      /* invalid argument or input */
    SQ_ENOMEM = -1002,      /* allocation failed */
    SQ_EIO = -1003,         /* read/write failure */
    SQ_EFORMAT = -1004,     /* malformed file or message */
    SQ_ETRUNC = -1005,      /* input ends before its declared size */
    SQ_ETOOBIG = -1006,     /* size over a configured cap */
    SQ_EPROTO = -1007,      /* protocol violation */
    SQ_EDB = -1008,         /* database error */
    SQ_EDBDOWN = -1009,     /* database unreachable (retryable) */
    SQ_ETIMEDOUT = -1010,   /* deadline passed */
    SQ_ENOTFOUND = -1011,   /* no such object */
    SQ_ESTATE = -1012,      /* operation not valid in the current state */
    SQ_EUNSUPPORTED = -1013,/* valid but not supported (type, version) */
    SQ_EMPI = -1014,        /* MPI call failed */
    SQ_EDEVICE = -1015,     /* accelerator (CUDA/NCCL) failure or absence */
    SQ_ESTALE = -1016,      /* fencing token no longer valid */
    SQ_EAGAIN = -1017,      /* temporarily unavailable, retry later */
    SQ_ECANCELLED = -1018,  /* cancelled by request */
    SQ_ENOTFINITE = -1019,  /* arithmetic gave no finite result (NaN or infinite logits) */
    SQ_ELAST = -1020
};

/* Text for any return code (SQ_E* or -errno). Never NULL. */
const char *sq_strerror(int rc);

/* Record a detail message for the current thread and return rc.
 * file/line say where the failure was detected. */
int sq_error_set(int rc, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int sq_error_vset(int rc, const char *file, int line, const char *fmt, va_list ap);

/* The detail of the last failure on this thread ("" if none). Borrowed. */
const char *sq_error_detail(void);
/* "file:line" of the last recorded failure ("" if none). Borrowed. */
const char *sq_error_where(void);
/* The code passed to the last sq_error_set on this thread (0 if none). */
int sq_error_code(void);
void sq_error_clear(void);

/* Record a failure with its source location and return the code:
 *     return SQ_FAIL(SQ_EFORMAT, "key %s: bad type %u", key, type);
 */
#define SQ_FAIL(rc, ...) sq_error_set((rc), __FILE__, __LINE__, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif

/*  sq_cuda_check: CUDA runtime errors converted at the boundary, once for
 *  every host file of the CUDA backend. who names the part ("cuda",
 *  "cuda all-reduce") so a message says where it came from. */
#ifndef SQ_CUDA_CHECK_H
#define SQ_CUDA_CHECK_H

#include <cuda_runtime_api.h>

#include "sq_error.h"

/* out of device memory is SQ_ENOMEM (what the caller can act on: fewer
 * slots, a smaller batch, more ranks); anything else SQ_EDEVICE */
static inline int sq_cuda_fail(cudaError_t err, const char *who, const char *what)
{
    (void)cudaGetLastError();   /* a failed call is reported here, not again later */
    return SQ_FAIL(err == cudaErrorMemoryAllocation ? SQ_ENOMEM : SQ_EDEVICE, "%s: %s: %s", who,
                   what, cudaGetErrorString(err));
}

/* Return the converted error from the enclosing function when call fails. */
#define SQ_CUDA_CHECK(call, who, what)                                    \
    do {                                                                  \
        cudaError_t err_ = (call);                                        \
        if (err_ != cudaSuccess)                                          \
            return sq_cuda_fail(err_, who, what);                         \
    } while (0)

#endif

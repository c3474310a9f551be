/*  sq_cuda_emu_kernels: the real launchers of sq_cuda_kernels.cu built by
 *  the host compiler, their SQ_CU_LAUNCH lines going to the emulator
 *  (sq_cuda_emu.h, the runtime of sq_cuda_emu_rt.cpp). Nothing else here:
 *  the launchers must stay exactly what nvcc builds.
 */
#define SQ_CUDA_EMU 1
#include "sq_cuda_emu.h"

#include "sq_cuda_kernels.cu"

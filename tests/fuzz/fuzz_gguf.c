/*  fuzz_gguf: libFuzzer target for the GGUF reader (sq_gguf_open and
 *  sq_gguf_open_any, the inspector's, and every accessor through
 *  gguf_probe).
 *
 *  The reader maps a path, so each input is written to an anonymous
 *  in-memory file (memfd) and opened through /proc/self/fd: no disk I/O
 *  and nothing left behind. With clang this links against libFuzzer; with
 *  gcc, fuzz_replay.c drives the same entry point.
 */
#define _GNU_SOURCE   /* memfd_create */

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gguf_probe.h"
#include "sq_gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int s_fd = -1;
static char s_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (s_fd < 0) {
        s_fd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
        if (s_fd < 0)
            return 0;
        snprintf(s_path, sizeof s_path, "/proc/self/fd/%d", s_fd);
    }
    if (ftruncate(s_fd, 0) != 0 || pwrite(s_fd, data, size, 0) != (ssize_t) size)
        return 0;
    for (int any = 0; any < 2; any++) {
        sq_gguf_t *g = any ? sq_gguf_open_any(s_path) : sq_gguf_open(s_path);
        if (g) {
            volatile uint64_t sink = gguf_probe(g);
            (void) sink;
            sq_gguf_destroy(&g);
        }
    }
    return 0;
}

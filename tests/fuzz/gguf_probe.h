/*  gguf_probe: read every part of an opened GGUF file that the reader's
 *  accessors expose (keys, string values, string array elements, numeric
 *  array elements, first and last byte of each tensor), so that a sanitizer
 *  sees any read the reader's checks should have prevented. Shared by the
 *  fuzz target and the hostile-file test.
 */
#ifndef GGUF_PROBE_H
#define GGUF_PROBE_H

#include <stdint.h>

#include "sq_gguf.h"

/* A checksum of what was read (returned so the reads are not optimised out). */
uint64_t gguf_probe(const sq_gguf_t *g);

#endif

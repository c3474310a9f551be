/*  sq_utf8: make generated text safe to store and send. A model emits
 *  bytes: byte-fallback tokens can stop in the middle of a character (at
 *  max_tokens) or spell sequences that are not UTF-8 at all, and the
 *  protocol and PostgreSQL's text type take only valid UTF-8 without NUL.
 *  Like OpenAI's API, shardq replaces each invalid sequence (and NUL) with
 *  U+FFFD rather than failing the task. */
#ifndef SQ_UTF8_H
#define SQ_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* A malloc'd, NUL-terminated copy of in[0..n) with every maximal invalid
 * subsequence and every NUL byte replaced by U+FFFD (EF BF BD). *out_n is
 * its length. NULL when out of memory. */
char *sq_utf8_sanitize(const char *in, size_t n, size_t *out_n);

/* Bytes of the character at s[0..n), n > 0: 1 to 4, or 0 when it is
 * invalid (overlong, a surrogate, above U+10FFFF, cut off, a stray byte) or
 * NUL. */
size_t sq_utf8_char_len(const char *s, size_t n);

/* True when s[0..n) is UTF-8 without NUL: what sq_utf8_sanitize keeps
 * as it is. */
bool sq_utf8_ok(const char *s, size_t n);

/* The length of s[0..n) less a character cut off at its end (a valid
 * lead byte whose continuation bytes are missing; invalid bytes are never
 * taken off): where a text cut to fit a buffer should end, or how much of
 * a stream of bytes can go out before the rest of a character comes. */
size_t sq_utf8_cut(const char *s, size_t n);

/* After a formatted write into buf (size bytes) that returned n, as
 * snprintf does: when it was cut to fit, end it on a whole character
 * (sq_utf8_cut). */
void sq_utf8_fit(char *buf, size_t size, int n);

#endif

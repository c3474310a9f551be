/*  sq_utf8: the decoder follows RFC 3629: no overlong forms, no surrogates,
 *  nothing above U+10FFFF; an invalid sequence is replaced byte by byte up
 *  to the first byte that could start a new character. */
#include "sq_utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The length a lead byte c >= 0x80 announces, 0 when it is no lead byte */
static size_t s_lead_len(unsigned c)
{
    return c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
         : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
}

size_t sq_utf8_char_len(const char *in, size_t n)
{
    const unsigned char *s = (const unsigned char *)in;
    unsigned c = s[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t len = s_lead_len(c);
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) ||   /* overlong, surrogate */
        (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))     /* overlong, > U+10FFFF */
        return 0;
    return len;
}

bool sq_utf8_ok(const char *in, size_t n)
{
    for (size_t i = 0, len; i < n; i += len)
        if ((len = sq_utf8_char_len(in + i, n - i)) == 0)
            return false;
    return true;
}

char *sq_utf8_sanitize(const char *in, size_t n, size_t *out_n)
{
    /* worst case: every byte becomes a 3-byte U+FFFD */
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t len = sq_utf8_char_len(in + i, n - i);
        if (len) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            while (i < n && (s[i] & 0xC0) == 0x80)   /* the rest of the bad sequence */
                i++;
        }
    }
    out[o] = '\0';
    *out_n = o;
    return out;
}

size_t sq_utf8_cut(const char *in, size_t n)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = n;
    while (i > 0 && n - i < 3 && (s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return n;
    /* the length the last lead byte announces (an ASCII or stray byte: 0) */
    const size_t len = s[i - 1] < 0x80 ? 0 : s_lead_len(s[i - 1]);
    return n - (i - 1) < len ? i - 1 : n;
}

void sq_utf8_fit(char *buf, size_t size, int n)
{
    if (size > 0 && n >= 0 && (size_t)n >= size)
        buf[sq_utf8_cut(buf, size - 1)] = '\0';
}

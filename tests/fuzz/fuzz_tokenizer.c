/*  fuzz_tokenizer: libFuzzer target for the tokenizer (sq_tokenizer_encode,
 *  sq_tokenizer_decode, sq_tokenizer_token_text, sq_tokenizer_utf8_complete).
 *
 *  The vocabulary is the bundled stories260K model's, built once the way
 *  the engine builds it (sq_gguf_open, sq_tokenizer_from_gguf). The model
 *  is found through $SQ_FUZZ_MODEL, else at models/stories260K.gguf next to
 *  the tests/ folder this file was compiled from (CMake passes absolute
 *  paths). Each input is used twice:
 *    - as a prompt (any bytes: invalid UTF-8, NUL, U+2581, "<s>"), encoded
 *      with and without BOS, as the worker encodes a prompt;
 *    - as a sequence of generated ids, 2 bytes each (little endian, taken
 *      modulo n_vocab + 8 and shifted by -4, so some are out of range), and
 *      every 16th id a raw 32-bit value; decoded whole and token by token,
 *      as the worker streams its text.
 *  What sq_tokenizer.h promises is checked, and a broken promise calls
 *  abort() so that libFuzzer reports it:
 *    - encode succeeds (the vocabulary has all 256 byte pieces), every id
 *      in range, no control or unknown id except the leading BOS, the ids
 *      without BOS are those with BOS minus the BOS;
 *    - the ids equal those of a naive O(n^2) BPE written here from the
 *      header's rules (prompts of up to S_REF_MAX bytes);
 *    - decode(encode(text, BOS)) == text byte for byte, and without BOS
 *      the text with the encoder's one leading space;
 *    - decode refuses an out-of-range id with SQ_EINVAL naming its position
 *      (the first one), else gives the text built here from the pieces
 *      (byte pieces their byte, control nothing, <unk> U+2585, "▁" a
 *      space, the space after BOS dropped) and agrees with token_text;
 *    - utf8_complete holds back only an incomplete trailing character.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_REF_MAX 160        /* prompts checked against the naive BPE */
#define S_SPACE "\xe2\x96\x81"

static sq_tokenizer_t *s_tok;
static int32_t s_n_vocab;
static float *s_scores;      /* (s_n_vocab) read from the file, not the tokenizer */

/* ------------------------------------------------------------ setup */

static void s_model_path(char *out, size_t cap)
{
    const char *env = getenv("SQ_FUZZ_MODEL");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    const char *me = __FILE__, *cut = strstr(me, "tests/fuzz/fuzz_tokenizer.c");
    snprintf(out, cap, "%.*smodels/stories260K.gguf", cut ? (int)(cut - me) : 0, me);
}

static void s_setup(void)
{
    char path[4096];
    s_model_path(path, sizeof path);
    sq_gguf_t *g = sq_gguf_open(path);
    if (!g) {
        fprintf(stderr, "fuzz_tokenizer: cannot open %s (set SQ_FUZZ_MODEL): %s\n", path,
                sq_error_detail());
        abort();
    }
    s_tok = sq_tokenizer_from_gguf(g);
    SQ_FUZZ_CHECK(s_tok);
    s_n_vocab = sq_tokenizer_n_vocab(s_tok);
    int64_t ks = sq_gguf_find_key(g, "tokenizer.ggml.scores");
    s_scores = calloc((size_t)s_n_vocab, sizeof *s_scores);
    SQ_FUZZ_CHECK(s_scores && ks >= 0);
    for (int32_t i = 0; i < s_n_vocab; i++) {
        double d = 0;
        SQ_FUZZ_CHECK(sq_gguf_kv_arr_float(g, ks, (uint64_t)i, &d) == 0);
        s_scores[i] = (float)d;
    }
    sq_gguf_destroy(&g);
    /* what the checks below take for granted about this vocabulary */
    SQ_FUZZ_CHECK(sq_tokenizer_bos(s_tok) >= 0 && sq_tokenizer_find(s_tok, S_SPACE, 3) >= 0);
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = sq_tokenizer_find(s_tok, hex, 6);
        SQ_FUZZ_CHECK(id >= 0 && sq_tokenizer_token_type(s_tok, id) == SQ_TOKEN_BYTE);
    }
    for (int32_t i = 0; i < s_n_vocab; i++) {
        size_t n = 0;
        const char *p = sq_tokenizer_piece(s_tok, i, &n);
        SQ_FUZZ_CHECK(p && n > 0 && sq_tokenizer_find(s_tok, p, n) <= i);
    }
}

/* ------------------------------------------------ the naive reference */

static int s_mergeable(int32_t id)
{
    int t = sq_tokenizer_token_type(s_tok, id);
    return id >= 0 && (t == SQ_TOKEN_NORMAL || t == SQ_TOKEN_USER_DEFINED ||
                       t == SQ_TOKEN_UNDEFINED);
}

/* Bytes of the (strictly valid) UTF-8 character at s, 1 when invalid. */
static size_t s_char_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
    if (len == 1 || len > n)
        return 1;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 1;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) ||
        (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))
        return 1;
    return len;
}

/* Leftmost best-scoring merge until none is left, then pieces or bytes.
 * Returns the ids written to out (room for 3 * (len + 1)). */
static size_t s_reference(const uint8_t *text, size_t len, int32_t *out)
{
    static char norm[3 * (S_REF_MAX + 1)];
    static size_t start[S_REF_MAX + 1], n_of[S_REF_MAX + 1];
    static int raw[S_REF_MAX + 1];
    size_t k = 0, n_sym = 0, n_out = 0;
    /* "▁" in front (of a non-empty text), each space a "▁", one symbol per
     * character; a "▁" of the text itself is raw: never merged */
    for (size_t i = 0; i < len;) {
        size_t n = 3;
        int is_raw = 0;
        if (n_sym == 0 || text[i] == ' ') {
            memcpy(norm + k, S_SPACE, 3);
            i += n_sym > 0;
        } else {
            n = s_char_len(text + i, len - i);
            memcpy(norm + k, text + i, n);
            is_raw = n == 3 && memcmp(norm + k, S_SPACE, 3) == 0;
            i += n;
        }
        start[n_sym] = k, n_of[n_sym] = n, raw[n_sym] = is_raw;
        n_sym++;
        k += n;
    }
    for (;;) {
        size_t best = SIZE_MAX;
        float best_score = 0;
        for (size_t i = 0; i + 1 < n_sym; i++) {
            if (raw[i] || raw[i + 1])
                continue;
            int32_t id = sq_tokenizer_find(s_tok, norm + start[i], n_of[i] + n_of[i + 1]);
            if (s_mergeable(id) && (best == SIZE_MAX || s_scores[id] > best_score)) {
                best = i;
                best_score = s_scores[id];
            }
        }
        if (best == SIZE_MAX)
            break;
        n_of[best] += n_of[best + 1];
        for (size_t i = best + 1; i + 1 < n_sym; i++)
            start[i] = start[i + 1], n_of[i] = n_of[i + 1], raw[i] = raw[i + 1];
        n_sym--;
    }
    for (size_t i = 0; i < n_sym; i++) {
        int32_t id = raw[i] ? -1 : sq_tokenizer_find(s_tok, norm + start[i], n_of[i]);
        if (s_mergeable(id)) {
            out[n_out++] = id;
            continue;
        }
        for (size_t b = 0; b < n_of[i]; b++) {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", (uint8_t)norm[start[i] + b]);
            out[n_out++] = sq_tokenizer_find(s_tok, hex, 6);
        }
    }
    return n_out;
}

/* ------------------------------------------------------------ decode */

/* The text of ids built here from the pieces (see the header comment).
 * OUT *len_p; malloc'd. */
static char *s_expected_text(const int32_t *ids, size_t n, size_t *len_p)
{
    size_t cap = 16, k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        SQ_FUZZ_CHECK(sq_tokenizer_piece(s_tok, ids[i], &len));
        cap += len + 3;
    }
    char *out = malloc(cap);
    SQ_FUZZ_CHECK(out);
    for (size_t i = 0; i < n; i++) {
        size_t len = 0, k0 = k;
        const char *p = sq_tokenizer_piece(s_tok, ids[i], &len);
        int type = sq_tokenizer_token_type(s_tok, ids[i]);
        if (type == SQ_TOKEN_BYTE) {
            unsigned v = 0;
            SQ_FUZZ_CHECK(len == 6 && sscanf(p, "<0x%2X>", &v) == 1);
            out[k++] = (char)v;
            continue;
        }
        if (type == SQ_TOKEN_CONTROL || type == SQ_TOKEN_UNUSED)
            continue;
        if (type == SQ_TOKEN_UNKNOWN) {
            memcpy(out + k, "\xe2\x96\x85", 3);
            k += 3;
            continue;
        }
        for (size_t j = 0; j < len;) {
            if (type != SQ_TOKEN_USER_DEFINED && len - j >= 3 && memcmp(p + j, S_SPACE, 3) == 0) {
                out[k++] = ' ';
                j += 3;
            } else {
                out[k++] = p[j++];
            }
        }
        if (i > 0 && ids[i - 1] == sq_tokenizer_bos(s_tok) && k > k0 && out[k0] == ' ') {
            memmove(out + k0, out + k0 + 1, k - k0 - 1);
            k--;
        }
    }
    *len_p = k;
    return out;
}

/* utf8_complete holds back nothing but an incomplete trailing character. */
static void s_check_complete(const char *buf, size_t len)
{
    const uint8_t *s = (const uint8_t *)buf;
    size_t ready = sq_tokenizer_utf8_complete(buf, len);
    SQ_FUZZ_CHECK(ready <= len && len - ready <= 3);
    if (ready == len)
        return;
    uint8_t lead = s[ready];
    size_t need = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
                : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
    SQ_FUZZ_CHECK(need > len - ready);
    for (size_t i = ready + 1; i < len; i++)
        SQ_FUZZ_CHECK((s[i] & 0xC0) == 0x80);
}

/* Decode whole and token by token, streaming as the worker does. */
static void s_decode(const int32_t *ids, size_t n)
{
    size_t first_bad = SIZE_MAX;
    for (size_t i = 0; i < n && first_bad == SIZE_MAX; i++)
        if (ids[i] < 0 || ids[i] >= s_n_vocab)
            first_bad = i;
    char *text = NULL;
    size_t len = 0;
    sq_error_clear();
    int rc = sq_tokenizer_decode(s_tok, ids, n, &text, &len);
    if (first_bad != SIZE_MAX) {
        char want[64];
        snprintf(want, sizeof want, "id %d at position %zu ", ids[first_bad], first_bad);
        SQ_FUZZ_CHECK(rc == SQ_EINVAL && text == NULL);
        SQ_FUZZ_CHECK(strstr(sq_error_detail(), want) != NULL);
        size_t l = 0;
        SQ_FUZZ_CHECK(sq_tokenizer_token_text(s_tok, -1, ids[first_bad], &l) == NULL);
        SQ_FUZZ_CHECK(sq_tokenizer_token_type(s_tok, ids[first_bad]) == -1);
        return;
    }
    SQ_FUZZ_CHECK(rc == 0 && text && text[len] == '\0');
    size_t want_len = 0;
    char *want = s_expected_text(ids, n, &want_len);
    SQ_FUZZ_CHECK(want_len == len && memcmp(want, text, len) == 0);
    free(want);
    /* streaming: pieces held back until their character is complete */
    char pending[64];
    size_t n_pending = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *t = sq_tokenizer_token_text(s_tok, i ? ids[i - 1] : -1, ids[i], &l);
        SQ_FUZZ_CHECK(t && k + n_pending + l <= len);
        SQ_FUZZ_CHECK(n_pending + l <= sizeof pending);
        memcpy(pending + n_pending, t, l);
        n_pending += l;
        size_t ready = sq_tokenizer_utf8_complete(pending, n_pending);
        s_check_complete(pending, n_pending);
        SQ_FUZZ_CHECK(memcmp(text + k, pending, ready) == 0);
        k += ready;
        memmove(pending, pending + ready, n_pending - ready);
        n_pending -= ready;
    }
    SQ_FUZZ_CHECK(k + n_pending == len && memcmp(text + k, pending, n_pending) == 0);
    free(text);
}

/* ------------------------------------------------------------ encode */

static void s_encode(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    int32_t bos = sq_tokenizer_bos(s_tok);
    int32_t *ids = NULL, *ids_nb = NULL;
    size_t n = 0, n_nb = 0;
    SQ_FUZZ_CHECK(sq_tokenizer_encode(s_tok, text, size, true, &ids, &n) == 0);
    SQ_FUZZ_CHECK(sq_tokenizer_encode(s_tok, text, size, false, &ids_nb, &n_nb) == 0);
    /* "▁" in front and per space, each spelled with at most 3 byte pieces */
    SQ_FUZZ_CHECK(n >= 1 && n <= 1 + 3 * (size + 1) && ids[0] == bos);
    SQ_FUZZ_CHECK(n_nb == n - 1 && (n_nb == 0 || memcmp(ids + 1, ids_nb, n_nb * sizeof *ids) == 0));
    SQ_FUZZ_CHECK((size == 0) == (n_nb == 0));
    for (size_t i = 1; i < n; i++) {
        int t = sq_tokenizer_token_type(s_tok, ids[i]);
        SQ_FUZZ_CHECK(t >= 0 && t != SQ_TOKEN_CONTROL && t != SQ_TOKEN_UNKNOWN &&
                      t != SQ_TOKEN_UNUSED);
    }
    if (size <= S_REF_MAX) {
        static int32_t ref[3 * (S_REF_MAX + 1)];
        size_t n_ref = s_reference(data, size, ref);
        if (n_ref != n_nb || (n_ref && memcmp(ref, ids_nb, n_ref * sizeof *ref) != 0)) {
            fprintf(stderr, "encoder:");
            for (size_t i = 0; i < n_nb; i++)
                fprintf(stderr, " %d", ids_nb[i]);
            fprintf(stderr, "\nreference:");
            for (size_t i = 0; i < n_ref; i++)
                fprintf(stderr, " %d", ref[i]);
            fprintf(stderr, "\n");
            SQ_FUZZ_CHECK(!"the encoder agrees with the naive BPE");
        }
    }
    /* round trips, byte for byte */
    char *back = NULL;
    size_t len = 0;
    SQ_FUZZ_CHECK(sq_tokenizer_decode(s_tok, ids, n, &back, &len) == 0);
    SQ_FUZZ_CHECK(len == size && memcmp(back, text, size) == 0);
    free(back);
    SQ_FUZZ_CHECK(sq_tokenizer_decode(s_tok, ids_nb, n_nb, &back, &len) == 0);
    SQ_FUZZ_CHECK(len == (size ? size + 1 : 0));
    SQ_FUZZ_CHECK(size == 0 || (back[0] == ' ' && memcmp(back + 1, text, size) == 0));
    free(back);
    s_decode(ids, n);
    free(ids);
    free(ids_nb);
}

/* Generated ids from the input: 2 bytes each, a raw 32-bit one every 16th. */
static int32_t *s_ids_of(const uint8_t *data, size_t size, size_t *n_p)
{
    int32_t *ids = malloc((size / 2 + 1) * sizeof *ids);
    size_t n = 0;
    SQ_FUZZ_CHECK(ids);
    for (size_t i = 0; i + 2 <= size;) {
        if (n % 16 == 15 && i + 4 <= size) {
            uint32_t v = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 |
                         (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
            ids[n++] = (int32_t)v;
            i += 4;
        } else {
            unsigned v = (unsigned)data[i] | (unsigned)data[i + 1] << 8;
            ids[n++] = (int32_t)(v % (unsigned)(s_n_vocab + 8)) - 4;
            i += 2;
        }
    }
    *n_p = n;
    return ids;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_tok)
        s_setup();
    s_encode(data, size);
    size_t n = 0;
    int32_t *ids = s_ids_of(data, size, &n);
    s_decode(ids, n);
    /* the same ids with those out of range folded in: a full decode */
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)((uint32_t)ids[i] % (uint32_t)s_n_vocab);
    s_decode(ids, n);
    free(ids);
    s_check_complete((const char *)data, size < 8 ? size : 8);
    return 0;
}

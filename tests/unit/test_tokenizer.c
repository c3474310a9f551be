/*  test_tokenizer: sq_tokenizer against the bundled stories260K vocabulary.
 *
 *  The tokenizer is built by the engine's sq_tokenizer_from_gguf. Expected
 *  ids come from the piece table read here from the GGUF file
 *  (a linear search for the piece text) and from a naive O(n^2) reference
 *  BPE written in this file, never from the encoder's own output.
 *  Usage: test_tokenizer MODEL.gguf
 */
#include <stdlib.h>
#include <string.h>

#include "sq_engine.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_test.h"
#include "sq_tokenizer.h"

static sq_tokenizer_t *tok;
static int32_t n_vocab;
static const char **pieces;      /* (n_vocab) NUL-terminated copies */
static float *scores;            /* (n_vocab) */
static int32_t *types;           /* (n_vocab) */

/* Id of piece text s, found by scanning the table; -1 when absent. */
static int32_t s_piece_id(const char *s)
{
    for (int32_t i = 0; i < n_vocab; i++)
        if (strcmp(pieces[i], s) == 0)
            return i;
    return -1;
}

static int s_load(const char *path)
{
    sq_gguf_t *g = sq_gguf_open(path);
    if (!g)
        return -1;
    int64_t kt = sq_gguf_find_key(g, "tokenizer.ggml.tokens");
    int64_t ks = sq_gguf_find_key(g, "tokenizer.ggml.scores");
    int64_t ky = sq_gguf_find_key(g, "tokenizer.ggml.token_type");
    uint32_t et;
    uint64_t n;
    if (kt < 0 || ks < 0 || ky < 0 || sq_gguf_kv_arr(g, kt, &et, &n) < 0 || n > 100000)
        return -1;
    n_vocab = (int32_t) n;
    pieces = calloc(n, sizeof *pieces);
    scores = calloc(n, sizeof *scores);
    types = calloc(n, sizeof *types);
    uint32_t *lens = calloc(n, sizeof *lens);
    for (uint64_t i = 0; i < n; i++) {
        sq_gguf_str_t s;
        double f;
        int64_t t;
        if (sq_gguf_kv_arr_str(g, kt, i, &s) < 0 || sq_gguf_kv_arr_float(g, ks, i, &f) < 0
            || sq_gguf_kv_arr_int(g, ky, i, &t) < 0)
            return -1;
        char *copy = malloc(s.len + 1);
        memcpy(copy, s.data, s.len);
        copy[s.len] = '\0';
        pieces[i] = copy;
        lens[i] = (uint32_t) s.len;
        scores[i] = (float) f;
        types[i] = (int32_t) t;
    }
    free(lens);
    /* the tokenizer itself comes from the engine's GGUF glue */
    tok = sq_tokenizer_from_gguf(g);
    sq_gguf_destroy(&g);
    return tok ? 0 : -1;
}

/* ---- a naive reference encoder --------------------------------------- */

/* Merge the highest-scoring adjacent pair (leftmost on ties) until none is
 * a normal piece; then spell each symbol as a piece or as its bytes. */
static size_t s_reference_encode(const char *text, int32_t *out)
{
    size_t len = strlen(text), n_sym = 0, n_out = 0;
    char *norm = malloc(3 * len + 4);
    size_t k = 0;
    if (len) { memcpy(norm, "\xe2\x96\x81", 3); k = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(norm + k, "\xe2\x96\x81", 3); k += 3; }
        else norm[k++] = text[i];
    }
    size_t *start = malloc((k + 1) * sizeof *start), *size = malloc((k + 1) * sizeof *size);
    for (size_t i = 0; i < k;) {
        unsigned char c = (unsigned char) norm[i];
        size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        start[n_sym] = i;
        size[n_sym++] = n;
        i += n;
    }
    char buf[512];
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (size_t i = 0; i + 1 < n_sym; i++) {
            size_t n = size[i] + size[i + 1];
            if (n >= sizeof buf)
                continue;
            memcpy(buf, norm + start[i], n);
            buf[n] = '\0';
            int32_t id = s_piece_id(buf);
            if (id >= 0 && types[id] == SQ_TOKEN_NORMAL && (best < 0 || scores[id] > best_score)) {
                best = (int) i;
                best_score = scores[id];
            }
        }
        if (best < 0)
            break;
        size[best] += size[best + 1];
        memmove(start + best + 1, start + best + 2, (n_sym - best - 2) * sizeof *start);
        memmove(size + best + 1, size + best + 2, (n_sym - best - 2) * sizeof *size);
        n_sym--;
    }
    for (size_t i = 0; i < n_sym; i++) {
        memcpy(buf, norm + start[i], size[i]);
        buf[size[i]] = '\0';
        int32_t id = s_piece_id(buf);
        if (id >= 0 && types[id] == SQ_TOKEN_NORMAL) {
            out[n_out++] = id;
            continue;
        }
        for (size_t b = 0; b < size[i]; b++) {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", (unsigned char) buf[b]);
            out[n_out++] = s_piece_id(hex);
        }
    }
    free(norm);
    free(start);
    free(size);
    return n_out;
}

/* ---- helpers ----------------------------------------------------------- */

static bool s_round_trips(const char *text, size_t len)
{
    int32_t *ids = NULL;
    size_t n = 0, out_len = 0;
    char *out = NULL;
    if (sq_tokenizer_encode(tok, text, len, true, &ids, &n) < 0)
        return false;
    bool ok = sq_tokenizer_decode(tok, ids, n, &out, &out_len) == 0 && out_len == len
              && memcmp(out, text, len) == 0;
    if (!ok)
        fprintf(stderr, "round trip failed for \"%.*s\"\n", (int) len, text);
    free(ids);
    free(out);
    return ok;
}

/* encode(text) equals BOS + expected ids (n_expected of them). */
static bool s_encodes_to(const char *text, const int32_t *expected, size_t n_expected)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (sq_tokenizer_encode(tok, text, strlen(text), true, &ids, &n) < 0)
        return false;
    bool ok = n == n_expected + 1 && ids[0] == 1
              && memcmp(ids + 1, expected, n_expected * sizeof *ids) == 0;
    if (!ok) {
        fprintf(stderr, "\"%s\": got", text);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

/* ---- cases ------------------------------------------------------------- */

static void test_vocabulary(void)
{
    SQ_CHECK(sq_tokenizer_n_vocab(tok) == n_vocab);
    SQ_CHECK(sq_tokenizer_bos(tok) == s_piece_id("<s>"));
    SQ_CHECK(sq_tokenizer_eos(tok) == s_piece_id("</s>"));
    SQ_CHECK(sq_tokenizer_unk(tok) == s_piece_id("<unk>"));
    SQ_CHECK(sq_tokenizer_token_type(tok, s_piece_id("<0x0A>")) == SQ_TOKEN_BYTE);
    SQ_CHECK(sq_tokenizer_token_type(tok, n_vocab) == -1);
    SQ_CHECK(sq_tokenizer_find(tok, "\xe2\x96\x81Once", 7) == s_piece_id("\xe2\x96\x81Once"));
    SQ_CHECK(sq_tokenizer_find(tok, "no such piece", 13) == -1);
    size_t len;
    const char *p = sq_tokenizer_piece(tok, s_piece_id("ing"), &len);
    SQ_CHECK(p && len == 3 && memcmp(p, "ing", 3) == 0);
    SQ_CHECK(sq_tokenizer_piece(tok, -1, &len) == NULL);
}

static void test_known_ids(void)
{
    int32_t once[] = { s_piece_id("\xe2\x96\x81Once"), s_piece_id("\xe2\x96\x81upon"),
                       s_piece_id("\xe2\x96\x81""a"), s_piece_id("\xe2\x96\x81time") };
    for (int i = 0; i < 4; i++)
        SQ_REQUIRE(once[i] > 2);
    SQ_CHECK(s_encodes_to("Once upon a time", once, 4));
    int32_t lily[] = { s_piece_id("\xe2\x96\x81Lily"), s_piece_id(".") };
    SQ_CHECK(s_encodes_to("Lily.", lily, 2));
    /* newline has no piece: byte fallback <0x0A> */
    int32_t nl[] = { s_piece_id("\xe2\x96\x81Lily"), s_piece_id("<0x0A>") };
    SQ_CHECK(nl[1] == 13);
    SQ_CHECK(s_encodes_to("Lily\n", nl, 2));
    /* 中 (E4 B8 AD) is not in the vocabulary: "▁" then its three bytes */
    int32_t zh[] = { s_piece_id("\xe2\x96\x81"), s_piece_id("<0xE4>"), s_piece_id("<0xB8>"),
                     s_piece_id("<0xAD>") };
    SQ_CHECK(s_encodes_to("\xe4\xb8\xad", zh, 4));
    /* "<s>" typed in the text is text, never the control token */
    int32_t *ids = NULL;
    size_t n = 0;
    SQ_REQUIRE(sq_tokenizer_encode(tok, "<s></s>", 7, false, &ids, &n) == 0);
    for (size_t i = 0; i < n; i++)
        SQ_CHECK(ids[i] != 1 && ids[i] != 2);
    free(ids);
    /* empty text: BOS only, or nothing */
    SQ_REQUIRE(sq_tokenizer_encode(tok, "", 0, true, &ids, &n) == 0);
    SQ_CHECK(n == 1 && ids[0] == 1);
    free(ids);
    SQ_REQUIRE(sq_tokenizer_encode(tok, "", 0, false, &ids, &n) == 0);
    SQ_CHECK(n == 0);
    free(ids);
}

static void test_against_reference(void)
{
    static const char *texts[] = {
        "Once upon a time, there was a little girl named Lily. She loved to play outside.",
        "The happy dog saw a big red ball and said \"hello\" to his friend Timmy!",
        "  leading and  double  spaces ", "a", " ", "x y z", "...,,,!!!",
        "unbelievably wonderful thingamajigs", "Tim's mom had 3 cats; 12 dogs.",
    };
    int32_t expected[1024];
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
        size_t n_exp = s_reference_encode(texts[t], expected);
        SQ_CHECK(s_encodes_to(texts[t], expected, n_exp));
    }
    /* random strings over a small alphabet that makes many merges compete */
    static const char alphabet[] = "the andwasily .,\"Th";
    srand(7);
    for (int r = 0; r < 300; r++) {
        char text[64];
        int len = 1 + rand() % 60;
        for (int i = 0; i < len; i++)
            text[i] = alphabet[rand() % (sizeof alphabet - 1)];
        text[len] = '\0';
        size_t n_exp = s_reference_encode(text, expected);
        SQ_CHECK(s_encodes_to(text, expected, n_exp));
    }
}

static void test_round_trips(void)
{
    static const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        /* Chinese financial text */
        "\xe8\xb4\xb5\xe5\xb7\x9e\xe8\x8c\x85\xe5\x8f\xb0 2023 \xe5\xb9\xb4\xe8\x90\xa5\xe4\xb8\x9a"
        "\xe6\x94\xb6\xe5\x85\xa5 1505.6 \xe4\xba\xbf\xe5\x85\x83\xef\xbc\x8c\xe5\x90\x8c\xe6\xaf\x94"
        "\xe5\xa2\x9e\xe9\x95\xbf 18.0%\xe3\x80\x82\xe5\x87\x80\xe5\x88\xa9\xe6\xb6\xa6\xe7\x8e\x87 "
        "52.5%\xef\xbc\x9b\xe5\xb8\x82\xe7\x9b\x88\xe7\x8e\x87\xef\xbc\x88PE\xef\xbc\x89\xe7\xba\xa6 28 \xe5\x80\x8d\xe3\x80\x82",
        /* mixed English / Chinese / Japanese / accents */
        "Q3 revenue \xe8\x90\xa5\xe6\x94\xb6 rose 12% to \xc2\xa5""3.4bn; caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e ok",
        /* emoji, including a ZWJ sequence and a flag */
        "Profits \xf0\x9f\x9a\x80\xf0\x9f\x93\x88 family \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 \xf0\x9f\x87\xa8\xf0\x9f\x87\xb3",
        " starts with a space", "ends with a space ", "   ", "tabs\tand\nnewlines\r\n",
        /* a literal U+2581 stays itself and does not turn into a space */
        "a\xe2\x96\x81""b \xe2\x96\x81",
        "<s>not a control token</s> <0x41>",
    };
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++)
        SQ_CHECK(s_round_trips(texts[t], strlen(texts[t])));
    /* NUL bytes in the middle are ordinary bytes */
    SQ_CHECK(s_round_trips("a\0b", 3));
}

static void test_invalid_utf8(void)
{
    static const char *texts[] = {
        "\xff\xfe\xfd", "\x80", "abc\xe4\xb8", "\xe4\xb8 x", "\xc0\xaf", "\xed\xa0\x80",
        "\xf4\x90\x80\x80", "\xf0\x9f\x98", "ok\xc3", "\xe2\x96",
    };
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++)
        SQ_CHECK(s_round_trips(texts[t], strlen(texts[t])));
    /* every single byte value, and random byte strings */
    for (int b = 1; b < 256; b++) {
        char c = (char) b;
        SQ_CHECK(s_round_trips(&c, 1));
    }
    srand(11);
    for (int r = 0; r < 200; r++) {
        char text[40];
        int len = 1 + rand() % 40;
        for (int i = 0; i < len; i++)
            text[i] = (char) (rand() % 256);
        SQ_CHECK(s_round_trips(text, (size_t) len));
    }
}

static void test_decode(void)
{
    char *out = NULL;
    size_t len = 0;
    int32_t ids[] = { 1, s_piece_id("\xe2\x96\x81Once"), s_piece_id("\xe2\x96\x81upon"), 2 };
    SQ_REQUIRE(sq_tokenizer_decode(tok, ids, 4, &out, &len) == 0);
    SQ_CHECK(len == 9 && strcmp(out, "Once upon") == 0);
    free(out);
    /* without BOS the prefix space stays (a continuation mid-text) */
    SQ_REQUIRE(sq_tokenizer_decode(tok, ids + 1, 2, &out, &len) == 0);
    SQ_CHECK(strcmp(out, " Once upon") == 0);
    free(out);
    int32_t bad[] = { 5, n_vocab };
    SQ_CHECK(sq_tokenizer_decode(tok, bad, 2, &out, &len) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "position 1") != NULL);
    /* unknown token prints U+2585 like llama.cpp */
    int32_t unk = 0;
    SQ_REQUIRE(sq_tokenizer_decode(tok, &unk, 1, &out, &len) == 0);
    SQ_CHECK(len == 3 && memcmp(out, "\xe2\x96\x85", 3) == 0);
    free(out);
}

static void test_streaming(void)
{
    /* decoding token by token, emitting only complete UTF-8, equals the text */
    const char *text = "Lily \xe5\x96\x9c\xe6\xac\xa2 \xf0\x9f\x8e\x88 balloons";
    int32_t *ids = NULL;
    size_t n = 0;
    SQ_REQUIRE(sq_tokenizer_encode(tok, text, strlen(text), true, &ids, &n) == 0);
    char pending[16], out[128];
    size_t n_pending = 0, n_out = 0;
    bool split_seen = false;
    for (size_t i = 1; i < n; i++) {
        size_t len;
        const char *t = sq_tokenizer_token_text(tok, ids[i - 1], ids[i], &len);
        SQ_REQUIRE(t && n_pending + len <= sizeof pending);
        memcpy(pending + n_pending, t, len);
        n_pending += len;
        size_t ready = sq_tokenizer_utf8_complete(pending, n_pending);
        split_seen |= ready < n_pending;
        memcpy(out + n_out, pending, ready);
        n_out += ready;
        memmove(pending, pending + ready, n_pending - ready);
        n_pending -= ready;
    }
    SQ_CHECK(split_seen);
    SQ_CHECK(n_pending == 0);
    SQ_CHECK(n_out == strlen(text) && memcmp(out, text, n_out) == 0);
    free(ids);
    SQ_CHECK(sq_tokenizer_utf8_complete("ab\xe4\xb8", 4) == 2);
    SQ_CHECK(sq_tokenizer_utf8_complete("ab\xe4\xb8\xad", 5) == 5);
    SQ_CHECK(sq_tokenizer_utf8_complete("\xf0\x9f\x8e", 3) == 0);
    SQ_CHECK(sq_tokenizer_utf8_complete("\x80\x80\x80\x80", 4) == 4);
    SQ_CHECK(sq_tokenizer_utf8_complete("", 0) == 0);
}

static void test_long_input(void)
{
    /* 1 MiB of text: a quadratic merge would not finish under ctest */
    size_t len = 1 << 20;
    char *text = malloc(len);
    const char *words = "Once upon a time \xe5\xb8\x82\xe5\x9c\xba there was Lily. ";
    size_t wl = strlen(words);
    for (size_t i = 0; i < len; i++)
        text[i] = words[i % wl];
    SQ_CHECK(s_round_trips(text, len - 7));
    free(text);
}

static void test_bad_config(void)
{
    const char *p[] = { "<unk>", "" };
    uint32_t lens[] = { 5, 0 };
    sq_tokenizer_config_t cfg = { 2, p, lens, NULL, NULL, -1, -1, 0, true };
    SQ_CHECK(sq_tokenizer_new(&cfg) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "piece 1 is empty") != NULL);
    lens[1] = 1;
    p[1] = "a";
    cfg.bos_id = 7;
    SQ_CHECK(sq_tokenizer_new(&cfg) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "bos token id 7") != NULL);
    /* a vocabulary with no byte pieces: unknown characters become <unk> */
    cfg.bos_id = -1;
    sq_tokenizer_t *t = sq_tokenizer_new(&cfg);
    SQ_REQUIRE(t);
    int32_t *ids = NULL;
    size_t n = 0;
    SQ_CHECK(sq_tokenizer_encode(t, "ab", 2, true, &ids, &n) == 0);
    /* "▁" has no piece: its three bytes become <unk>; then "a", then <unk> */
    SQ_CHECK(n == 5 && ids[3] == 1 && ids[4] == 0);
    free(ids);
    sq_tokenizer_destroy(&t);
    sq_tokenizer_destroy(&t);
    SQ_CHECK(t == NULL);
}

/* Invalid UTF-8 (overlong, surrogate, above U+10FFFF) is split into single
 * bytes before merging, even where the vocabulary has the whole sequence
 * as a piece; a valid character of the same length is one symbol. */
static void test_invalid_sequence_pieces(void)
{
    const char *p[] = { "<unk>", "\xed\xa0\x80", "\xe0\x80\x80", "\xf4\x90\x80\x80",
                        "\xe2\x82\xac" };
    uint32_t lens[] = { 5, 3, 3, 4, 3 };
    sq_tokenizer_config_t cfg = { 5, p, lens, NULL, NULL, -1, -1, 0, false };
    sq_tokenizer_t *t = sq_tokenizer_new(&cfg);
    SQ_REQUIRE(t);
    int32_t *ids = NULL;
    size_t n = 0;
    for (int i = 1; i <= 3; i++) {
        SQ_CHECK(sq_tokenizer_encode(t, p[i], lens[i], false, &ids, &n) == 0);
        SQ_CHECK(n == lens[i]);   /* one <unk> per byte, never the piece */
        for (size_t k = 0; k < n; k++)
            SQ_CHECK(ids[k] == 0);
        free(ids);
    }
    SQ_CHECK(sq_tokenizer_encode(t, p[4], lens[4], false, &ids, &n) == 0);   /* U+20AC */
    SQ_CHECK(n == 1 && ids[0] == 4);
    free(ids);
    sq_tokenizer_destroy(&t);
}

/* A vocabulary with "▁" inside pieces: merges cross word boundaries, so
 * the tokenizer must not merge word by word. */
static void test_inner_space_pieces(void)
{
    const char *p[] = { "<unk>", "\xe2\x96\x81", "a", "b", "a\xe2\x96\x81", "a\xe2\x96\x81""b",
                        "\xe2\x96\x81""a" };
    uint32_t lens[] = { 5, 3, 1, 1, 4, 5, 4 };
    float sc[] = { 0, -1, -1, -1, -1, -2, -5 };   /* "a▁" beats "▁a" */
    int32_t ty[] = { SQ_TOKEN_UNKNOWN, 1, 1, 1, 1, 1, 1 };
    sq_tokenizer_config_t cfg = { 7, p, lens, sc, ty, -1, -1, 0, true };
    sq_tokenizer_t *t = sq_tokenizer_new(&cfg);
    SQ_REQUIRE(t);
    int32_t *ids = NULL;
    size_t n = 0;
    /* "▁a▁b": a+▁ first (-1), then a▁+b (-2): [▁, a▁b] */
    SQ_CHECK(sq_tokenizer_encode(t, "a b", 3, false, &ids, &n) == 0);
    SQ_CHECK(n == 2 && ids[0] == 1 && ids[1] == 5);
    free(ids);
    sq_tokenizer_destroy(&t);
    /* leading runs of "▁" ("▁▁a") keep word-by-word merging valid: the
     * result equals merging the whole text at once */
    const char *q[] = { "<unk>", "\xe2\x96\x81", "a", "\xe2\x96\x81\xe2\x96\x81",
                        "\xe2\x96\x81\xe2\x96\x81""a", "\xe2\x96\x81""a" };
    uint32_t qlens[] = { 5, 3, 1, 6, 7, 4 };
    float qsc[] = { 0, -1, -1, -1, -2, -3 };
    sq_tokenizer_config_t qcfg = { 6, q, qlens, qsc, NULL, -1, -1, 0, true };
    t = sq_tokenizer_new(&qcfg);
    SQ_REQUIRE(t);
    /* "▁a▁▁a▁▁▁a": ▁a | ▁▁a | ▁▁ then ▁a (▁▁ merges first, leftmost) */
    SQ_CHECK(sq_tokenizer_encode(t, "a  a   a", 8, false, &ids, &n) == 0);
    SQ_CHECK(n == 4 && ids[0] == 5 && ids[1] == 4 && ids[2] == 3 && ids[3] == 5);
    free(ids);
    sq_tokenizer_destroy(&t);
    /* without the space prefix: no leading "▁", and decoding keeps the
     * text's own leading space */
    qcfg.add_space_prefix = false;
    t = sq_tokenizer_new(&qcfg);
    SQ_REQUIRE(t);
    SQ_CHECK(sq_tokenizer_encode(t, "a a", 3, false, &ids, &n) == 0);
    SQ_CHECK(n == 2 && ids[0] == 2 && ids[1] == 5);
    free(ids);
    char *out = NULL;
    size_t len = 0;
    int32_t spaced[] = { 5, 2 };
    SQ_CHECK(sq_tokenizer_decode(t, spaced, 2, &out, &len) == 0 && strcmp(out, " aa") == 0);
    free(out);
    sq_tokenizer_destroy(&t);
}

/* A chat prompt's turns: [BOS] + encode(turn) + [EOS] + encode(turn) ...,
 * each turn encoded alone (its own "▁" prefix, as llama.cpp's SPM
 * tokenization after a special token), a "</s>" inside a turn text */
static void test_turns(void)
{
    SQ_CHECK(sq_tokenizer_special(tok, "</s>", 4) == 2);
    SQ_CHECK(sq_tokenizer_special(tok, "<s>", 3) == 1);
    SQ_CHECK(sq_tokenizer_special(tok, "ing", 3) == -1);     /* a normal piece */
    SQ_CHECK(sq_tokenizer_special(tok, "<|user|>", 8) == -1);
    static const char *const texts[] = {"<|system|>\nBe brief.", "\n<|user|>\nHi a</s>b",
                                        "\n<|assistant|>\n"};
    sq_tokenizer_text_t turns[3];
    int32_t want[256];
    size_t n_want = 0;
    want[n_want++] = 1;
    for (int i = 0; i < 3; i++) {
        turns[i] = (sq_tokenizer_text_t){texts[i], strlen(texts[i])};
        if (i > 0)
            want[n_want++] = 2;
        n_want += s_reference_encode(texts[i], want + n_want);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    SQ_REQUIRE(sq_tokenizer_encode_turns(tok, turns, 3, 2, true, &ids, &n) == 0);
    SQ_CHECK(n == n_want && memcmp(ids, want, n * sizeof *ids) == 0);
    size_t n_eos = 0;
    for (size_t i = 0; i < n; i++)
        n_eos += ids[i] == 2;
    SQ_CHECK(n_eos == 2);   /* the user's "</s>" is text */
    /* the turn after EOS starts with "▁" as text at the start does */
    SQ_CHECK(ids[n - 1 - s_reference_encode(texts[2], want)] == 2);
    SQ_CHECK(strncmp(pieces[ids[n - s_reference_encode(texts[2], want)]], "\xe2\x96\x81", 3) == 0);
    free(ids);
    /* one turn is encode; no BOS asked, none given */
    SQ_REQUIRE(sq_tokenizer_encode_turns(tok, turns, 1, -1, false, &ids, &n) == 0);
    SQ_CHECK(n == s_reference_encode(texts[0], want) && memcmp(ids, want, n * sizeof *ids) == 0);
    free(ids);
    SQ_CHECK(sq_tokenizer_encode_turns(tok, turns, 2, n_vocab, true, &ids, &n) == SQ_EINVAL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_tokenizer MODEL.gguf\n");
        return 2;
    }
    if (s_load(argv[1]) < 0) {
        fprintf(stderr, "cannot load the vocabulary of %s: %s\n", argv[1], sq_error_detail());
        return 1;
    }
    SQ_RUN(test_vocabulary);
    SQ_RUN(test_known_ids);
    SQ_RUN(test_against_reference);
    SQ_RUN(test_round_trips);
    SQ_RUN(test_invalid_utf8);
    SQ_RUN(test_decode);
    SQ_RUN(test_streaming);
    SQ_RUN(test_long_input);
    SQ_RUN(test_bad_config);
    SQ_RUN(test_invalid_sequence_pieces);
    SQ_RUN(test_inner_space_pieces);
    SQ_RUN(test_turns);
    sq_tokenizer_destroy(&tok);
    for (int32_t i = 0; i < n_vocab; i++)
        free((void *) pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    return sq_test_summary("tokenizer");
}

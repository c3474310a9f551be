/*  sq_tokenizer: SentencePiece-style BPE with byte fallback (see the header).
 *
 *  The tokenizer owns one copy of the vocabulary: all piece bytes in one
 *  buffer, plus a second buffer with each token's decoded bytes (▁ turned
 *  into a space, <0xNN> into its byte, control tokens empty) so decoding is
 *  a concatenation. Piece lookup is an open-addressing hash table keyed by
 *  the piece bytes.
 *
 *  Encoding works on a linked list of symbols over the normalized text;
 *  candidate pairs live in a max-heap ordered by (score, leftmost). A pair
 *  popped after one of its sides changed is stale and skipped: its recorded
 *  size no longer equals the sum of the two sides (the llama.cpp check).
 */
#include "sq_tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "sq_error.h"
#include "sq_utf8.h"

#define S_SPACE_MARK "\xe2\x96\x81"   /* U+2581, the SentencePiece space */
#define S_SPACE_MARK_LEN 3
#define S_UNKNOWN_TEXT "\xe2\x96\x85"  /* U+2585, what llama.cpp prints for <unk> */

struct sq_tokenizer {
    int32_t n_vocab;
    int32_t bos_id, eos_id, unk_id;
    bool add_space_prefix;
    bool add_bos;
    bool words_apart;           /* no piece has "▁" after other text: see s_merge */
    char *piece_bytes;          /* all pieces, back to back */
    uint32_t *piece_off;        /* (n_vocab) */
    uint32_t *piece_len;        /* (n_vocab) */
    float *scores;              /* (n_vocab) */
    int8_t *types;              /* (n_vocab) SQ_TOKEN_* */
    char *text_bytes;           /* decoded text of every token, back to back */
    uint32_t *text_off;         /* (n_vocab) */
    uint32_t *text_len;         /* (n_vocab) */
    int32_t byte_id[256];       /* byte piece for each byte, -1 when none */
    int32_t *slots;             /* hash table of ids, -1 empty; (n_slots) */
    uint32_t n_slots;           /* power of two */
};

/* ---- vocabulary ------------------------------------------------------ */

static uint32_t s_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t) s[i]) * 16777619u;
    return h;
}

int32_t sq_tokenizer_find(const sq_tokenizer_t *self, const char *piece, size_t len)
{
    uint32_t mask = self->n_slots - 1;
    for (uint32_t i = s_hash(piece, len) & mask;; i = (i + 1) & mask) {
        int32_t id = self->slots[i];
        if (id < 0)
            return -1;
        if (self->piece_len[id] == len
            && memcmp(self->piece_bytes + self->piece_off[id], piece, len) == 0)
            return id;
    }
}

static void s_insert(sq_tokenizer_t *self, int32_t id)
{
    const char *p = self->piece_bytes + self->piece_off[id];
    if (sq_tokenizer_find(self, p, self->piece_len[id]) >= 0)
        return;   /* a duplicate piece: the first id keeps the text */
    uint32_t mask = self->n_slots - 1;
    uint32_t i = s_hash(p, self->piece_len[id]) & mask;
    while (self->slots[i] >= 0)
        i = (i + 1) & mask;
    self->slots[i] = id;
}

/* Value of a "<0xNN>" piece, or -1. */
static int s_byte_piece_value(const char *p, size_t n)
{
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Writes the decoded text of token id at out (room for piece_len + 2 bytes:
 * "▁" becomes one byte, so the text is never longer than the piece, except
 * <unk>'s 3-byte mark). Returns its length. */
static uint32_t s_decoded_text(const sq_tokenizer_t *self, int32_t id, char *out)
{
    const char *p = self->piece_bytes + self->piece_off[id];
    uint32_t n = self->piece_len[id];
    switch (self->types[id]) {
    case SQ_TOKEN_BYTE:
        out[0] = (char) s_byte_piece_value(p, n);
        return 1;
    case SQ_TOKEN_CONTROL:
    case SQ_TOKEN_UNUSED:
        return 0;
    case SQ_TOKEN_UNKNOWN:
        memcpy(out, S_UNKNOWN_TEXT, 3);
        return 3;
    case SQ_TOKEN_USER_DEFINED:
        memcpy(out, p, n);
        return n;
    default: {
        uint32_t k = 0;
        for (uint32_t i = 0; i < n;) {
            if (n - i >= S_SPACE_MARK_LEN && memcmp(p + i, S_SPACE_MARK, S_SPACE_MARK_LEN) == 0) {
                out[k++] = ' ';
                i += S_SPACE_MARK_LEN;
            } else {
                out[k++] = p[i++];
            }
        }
        return k;
    }
    }
}

static int s_check_config(const sq_tokenizer_config_t *cfg)
{
    if (!cfg || cfg->n_vocab <= 0 || !cfg->pieces || !cfg->piece_lens)
        return SQ_FAIL(SQ_EINVAL, "tokenizer: empty vocabulary");
    int32_t ids[3] = { cfg->bos_id, cfg->eos_id, cfg->unk_id };
    const char *names[3] = { "bos", "eos", "unknown" };
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= cfg->n_vocab)
            return SQ_FAIL(SQ_EINVAL, "tokenizer: %s token id %d outside vocabulary of %d",
                           names[i], ids[i], cfg->n_vocab);
    uint64_t total = 0;
    for (int32_t i = 0; i < cfg->n_vocab; i++) {
        if (cfg->piece_lens[i] == 0 || !cfg->pieces[i])
            return SQ_FAIL(SQ_EINVAL, "tokenizer: piece %d is empty", i);
        total += cfg->piece_lens[i];
    }
    if (total > UINT32_MAX / 2)
        return SQ_FAIL(SQ_ETOOBIG, "tokenizer: pieces take %llu bytes",
                       (unsigned long long) total);
    return 0;
}

static int s_copy_pieces(sq_tokenizer_t *self, const sq_tokenizer_config_t *cfg)
{
    uint32_t total = 0;
    for (int32_t i = 0; i < cfg->n_vocab; i++)
        total += cfg->piece_lens[i];
    self->piece_bytes = malloc(total);
    /* decoded text is at most the piece length, or 3 bytes for <unk> */
    self->text_bytes = malloc((size_t) total + 3u * (size_t) cfg->n_vocab);
    if (!self->piece_bytes || !self->text_bytes)
        return SQ_ENOMEM;
    uint32_t off = 0;
    for (int32_t i = 0; i < cfg->n_vocab; i++) {
        memcpy(self->piece_bytes + off, cfg->pieces[i], cfg->piece_lens[i]);
        self->piece_off[i] = off;
        self->piece_len[i] = cfg->piece_lens[i];
        off += cfg->piece_lens[i];
        self->scores[i] = cfg->scores ? cfg->scores[i] : 0.0f;
        int type = cfg->token_types ? cfg->token_types[i] : SQ_TOKEN_NORMAL;
        int byte = s_byte_piece_value(cfg->pieces[i], cfg->piece_lens[i]);
        if (!cfg->token_types && byte >= 0)
            type = SQ_TOKEN_BYTE;
        if (type == SQ_TOKEN_BYTE && byte < 0)
            return SQ_FAIL(SQ_EINVAL, "tokenizer: byte token %d is not spelled <0xNN>", i);
        if (type < SQ_TOKEN_UNDEFINED || type > SQ_TOKEN_BYTE)
            return SQ_FAIL(SQ_EINVAL, "tokenizer: token %d has unknown type %d", i, type);
        self->types[i] = (int8_t) type;
        if (type == SQ_TOKEN_BYTE && self->byte_id[byte] < 0)
            self->byte_id[byte] = i;
    }
    return 0;
}

/* True when every piece a merge may produce is some "▁"s followed by text
 * without "▁" ("▁▁the" yes, "a▁b" no): then no merge joins a character
 * with a following "▁", and the text splits into words there. */
static bool s_words_apart(const sq_tokenizer_t *self)
{
    for (int32_t i = 0; i < self->n_vocab; i++) {
        const char *p = self->piece_bytes + self->piece_off[i];
        uint32_t n = self->piece_len[i], k = 0;
        int t = self->types[i];
        if (t != SQ_TOKEN_NORMAL && t != SQ_TOKEN_USER_DEFINED && t != SQ_TOKEN_UNDEFINED)
            continue;
        while (k + S_SPACE_MARK_LEN <= n && memcmp(p + k, S_SPACE_MARK, S_SPACE_MARK_LEN) == 0)
            k += S_SPACE_MARK_LEN;
        for (; k + S_SPACE_MARK_LEN <= n; k++)
            if (memcmp(p + k, S_SPACE_MARK, S_SPACE_MARK_LEN) == 0)
                return false;
    }
    return true;
}

sq_tokenizer_t *sq_tokenizer_new(const sq_tokenizer_config_t *cfg)
{
    if (s_check_config(cfg) < 0)
        return NULL;
    sq_tokenizer_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    size_t n = (size_t) cfg->n_vocab;
    self->n_vocab = cfg->n_vocab;
    self->bos_id = cfg->bos_id;
    self->eos_id = cfg->eos_id;
    self->unk_id = cfg->unk_id;
    self->add_space_prefix = cfg->add_space_prefix;
    self->add_bos = cfg->add_bos;
    memset(self->byte_id, -1, sizeof self->byte_id);
    self->n_slots = 16;
    while (self->n_slots < 2 * n)
        self->n_slots *= 2;
    self->piece_off = malloc(n * sizeof *self->piece_off);
    self->piece_len = malloc(n * sizeof *self->piece_len);
    self->text_off = malloc(n * sizeof *self->text_off);
    self->text_len = malloc(n * sizeof *self->text_len);
    self->scores = malloc(n * sizeof *self->scores);
    self->types = malloc(n);
    self->slots = malloc(self->n_slots * sizeof *self->slots);
    if (!self->piece_off || !self->piece_len || !self->text_off || !self->text_len
        || !self->scores || !self->types || !self->slots) {
        SQ_FAIL(SQ_ENOMEM, "tokenizer: no memory for %d pieces", cfg->n_vocab);
        goto fail;
    }
    if (s_copy_pieces(self, cfg) < 0)
        goto fail;
    memset(self->slots, -1, self->n_slots * sizeof *self->slots);
    self->words_apart = s_words_apart(self);
    uint32_t off = 0;
    for (int32_t i = 0; i < self->n_vocab; i++) {
        s_insert(self, i);
        self->text_off[i] = off;
        self->text_len[i] = s_decoded_text(self, i, self->text_bytes + off);
        off += self->text_len[i];
    }
    return self;
fail:
    sq_tokenizer_destroy(&self);
    return NULL;
}

void sq_tokenizer_destroy(sq_tokenizer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_tokenizer_t *self = *self_p;
    free(self->piece_bytes);
    free(self->piece_off);
    free(self->piece_len);
    free(self->scores);
    free(self->types);
    free(self->text_bytes);
    free(self->text_off);
    free(self->text_len);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

int32_t sq_tokenizer_n_vocab(const sq_tokenizer_t *self) { return self->n_vocab; }
int32_t sq_tokenizer_bos(const sq_tokenizer_t *self) { return self->bos_id; }
int32_t sq_tokenizer_eos(const sq_tokenizer_t *self) { return self->eos_id; }
bool sq_tokenizer_add_bos(const sq_tokenizer_t *self) { return self->add_bos; }
int32_t sq_tokenizer_unk(const sq_tokenizer_t *self) { return self->unk_id; }

int sq_tokenizer_token_type(const sq_tokenizer_t *self, int32_t id)
{
    return id >= 0 && id < self->n_vocab ? self->types[id] : -1;
}

const char *sq_tokenizer_piece(const sq_tokenizer_t *self, int32_t id, size_t *len_p)
{
    if (id < 0 || id >= self->n_vocab)
        return NULL;
    *len_p = self->piece_len[id];
    return self->piece_bytes + self->piece_off[id];
}

/* ---- encoding -------------------------------------------------------- */

/* 32-bit fields keep a symbol at 20 bytes: encoding is bound by memory
 * traffic. Inputs are capped at S_MAX_TEXT so every index fits. */
#define S_MAX_TEXT (UINT32_C(1) << 30)

typedef struct {
    uint32_t off;        /* into the normalized text */
    uint32_t n;          /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
    bool raw;            /* never merged, always spelled with bytes */
} s_symbol_t;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size;       /* bytes of the merged piece when pushed */
} s_pair_t;

typedef struct {
    s_pair_t *items;
    size_t n, cap;
} s_heap_t;

/* a goes before b: higher score, then leftmost */
static bool s_before(const s_pair_t *a, const s_pair_t *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int s_heap_push(s_heap_t *h, s_pair_t p)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        s_pair_t *items = realloc(h->items, cap * sizeof *items);
        if (!items)
            return SQ_ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && s_before(&p, &h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = p;
    return 0;
}

static s_pair_t s_heap_pop(s_heap_t *h)
{
    s_pair_t top = h->items[0];
    s_pair_t last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && s_before(&h->items[c + 1], &h->items[c]))
            c++;
        if (!s_before(&h->items[c], &last))
            break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->n > 0)
        h->items[i] = last;
    return top;
}

/* Pieces the merge may produce: never control, byte or unknown tokens, so
 * text that spells "<s>" or "<0x41>" stays text. */
static int32_t s_find_mergeable(const sq_tokenizer_t *self, const char *p, size_t n)
{
    int32_t id = sq_tokenizer_find(self, p, n);
    if (id < 0)
        return -1;
    int t = self->types[id];
    return t == SQ_TOKEN_NORMAL || t == SQ_TOKEN_USER_DEFINED || t == SQ_TOKEN_UNDEFINED
         ? id : -1;
}

/* Queue the pair (left, left->next) when both lie in [lo, hi) and their
 * concatenation is a mergeable piece. */
static int s_try_pair(const sq_tokenizer_t *self, const char *text, const s_symbol_t *sym,
                      int32_t left, int32_t lo, int32_t hi, s_heap_t *heap)
{
    if (left < lo || sym[left].next < 0 || sym[left].next >= hi)
        return 0;
    int32_t right = sym[left].next;
    if (sym[left].raw || sym[right].raw)
        return 0;
    uint32_t size = sym[left].n + sym[right].n;
    int32_t id = s_find_mergeable(self, text + sym[left].off, size);
    if (id < 0)
        return 0;
    s_pair_t p = { self->scores[id], left, right, size };
    return s_heap_push(heap, p);
}

/* Split text into symbols over its normalized form: "▁" in front, spaces
 * as "▁", then one symbol per UTF-8 character (per byte where invalid).
 * A "▁" that was in the input itself is raw: it never merges and is spelled
 * with byte pieces, so decoding gives back U+2581 and not a space.
 * OUT *norm_p, *sym_p (malloc'd), *n_sym_p. */
static int s_split(const sq_tokenizer_t *self, const char *text, size_t len,
                   char **norm_p, s_symbol_t **sym_p, size_t *n_sym_p)
{
    if (len > S_MAX_TEXT)
        return SQ_FAIL(SQ_ETOOBIG, "tokenizer: input of %zu bytes (at most %u)", len,
                       (unsigned) S_MAX_TEXT);
    char *norm = malloc(S_SPACE_MARK_LEN * (len + 1));
    s_symbol_t *sym = malloc((len + 1) * sizeof *sym);
    if (!norm || !sym) {
        free(norm);
        free(sym);
        return SQ_FAIL(SQ_ENOMEM, "tokenizer: no memory for %zu bytes of text", len);
    }
    size_t k = 0, n_sym = 0;
    for (size_t i = 0; i < len;) {
        bool prefix = n_sym == 0 && self->add_space_prefix;
        size_t n = 0;                     /* 0: a "▁" goes in */
        if (!prefix && text[i] != ' ' && !(n = sq_utf8_char_len(text + i, len - i)))
            n = 1;                        /* an invalid byte, or NUL: a symbol of its own */
        const char *src = n ? text + i : S_SPACE_MARK;
        size_t n_norm = n ? n : S_SPACE_MARK_LEN;
        bool raw = n == S_SPACE_MARK_LEN && memcmp(src, S_SPACE_MARK, n) == 0;
        memcpy(norm + k, src, n_norm);
        sym[n_sym] = (s_symbol_t) { (uint32_t) k, (uint32_t) n_norm, (int32_t) n_sym - 1,
                                    (int32_t) n_sym + 1, raw };
        n_sym++;
        k += n_norm;
        i += prefix ? 0 : n ? n : 1;
    }
    if (n_sym > 0)
        sym[n_sym - 1].next = -1;
    *norm_p = norm;
    *sym_p = sym;
    *n_sym_p = n_sym;
    return 0;
}

/* Append the ids spelling one final symbol: its piece, else its bytes. */
static int s_emit_symbol(const sq_tokenizer_t *self, const char *p, size_t n, int32_t id,
                         int32_t *ids, size_t *n_ids)
{
    if (id >= 0) {
        ids[(*n_ids)++] = id;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t b = self->byte_id[(uint8_t) p[i]];
        if (b < 0)
            b = self->unk_id;
        if (b < 0)
            return SQ_FAIL(SQ_EINVAL, "tokenizer: byte 0x%02x has no piece and there is no <unk>",
                           (uint8_t) p[i]);
        ids[(*n_ids)++] = b;
    }
    return 0;
}

/* The BPE loop over symbols [lo, hi) of norm, in place. */
static int s_merge_range(const sq_tokenizer_t *self, const char *norm, s_symbol_t *sym,
                         int32_t lo, int32_t hi, s_heap_t *heap)
{
    int rc = 0;
    for (int32_t i = lo; i + 1 < hi && rc == 0; i++)
        rc = s_try_pair(self, norm, sym, i, lo, hi, heap);
    while (heap->n > 0 && rc == 0) {
        s_pair_t p = s_heap_pop(heap);
        s_symbol_t *l = &sym[p.left], *r = &sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;   /* stale: a side was merged elsewhere since */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = p.left;
        rc = s_try_pair(self, norm, sym, l->prev, lo, hi, heap);
        if (rc == 0)
            rc = s_try_pair(self, norm, sym, p.left, lo, hi, heap);
    }
    heap->n = 0;
    return rc;
}

static bool s_is_space_mark(const char *norm, const s_symbol_t *sym)
{
    return sym->n == S_SPACE_MARK_LEN && memcmp(norm + sym->off, S_SPACE_MARK, S_SPACE_MARK_LEN) == 0;
}

/* Merge the symbols of norm in place. When no piece has "▁" after other
 * text (s_words_apart), no merge can cross the boundary in front of a run
 * of "▁", so each word (with the spaces before it) is merged on its own:
 * the same result, but the heap stays small and in cache (one heap over
 * megabytes of text is several times slower). */
static int s_merge(const sq_tokenizer_t *self, const char *norm, s_symbol_t *sym, size_t n_sym)
{
    s_heap_t heap = { 0 };
    int rc = 0;
    for (size_t lo = 0, hi; lo < n_sym && rc == 0; lo = hi) {
        hi = lo + 1;
        while (hi < n_sym && !(self->words_apart && s_is_space_mark(norm, &sym[hi])
                               && !s_is_space_mark(norm, &sym[hi - 1])))
            hi++;
        rc = s_merge_range(self, norm, sym, (int32_t) lo, (int32_t) hi, &heap);
    }
    free(heap.items);
    return rc == SQ_ENOMEM ? SQ_FAIL(SQ_ENOMEM, "tokenizer: no memory for merge queue") : rc;
}

/* After merging: the piece id of each final symbol (-1: spelled with
 * bytes), kept in its no longer needed prev field. Returns the ids needed. */
static size_t s_resolve(const sq_tokenizer_t *self, const char *norm, s_symbol_t *sym,
                        size_t n_sym)
{
    size_t n_ids = 0;
    for (int32_t i = n_sym > 0 ? 0 : -1; i >= 0; i = sym[i].next) {
        int32_t id = sym[i].raw ? -1 : s_find_mergeable(self, norm + sym[i].off, sym[i].n);
        sym[i].prev = id;
        n_ids += id >= 0 ? 1 : sym[i].n;
    }
    return n_ids;
}

int sq_tokenizer_encode(const sq_tokenizer_t *self, const char *text, size_t len,
                        bool add_bos, int32_t **ids_p, size_t *n_ids_p)
{
    char *norm = NULL;
    s_symbol_t *sym = NULL;
    int32_t *ids = NULL;
    size_t n_sym = 0, n_ids = 0;
    int rc = s_split(self, text, len, &norm, &sym, &n_sym);
    if (rc == 0)
        rc = s_merge(self, norm, sym, n_sym);
    if (rc < 0)
        goto done;
    ids = malloc((s_resolve(self, norm, sym, n_sym) + 1) * sizeof *ids);
    if (!ids) {
        rc = SQ_FAIL(SQ_ENOMEM, "tokenizer: no memory for the ids of %zu bytes", len);
        goto done;
    }
    if (add_bos && self->bos_id >= 0)
        ids[n_ids++] = self->bos_id;
    for (int32_t i = n_sym > 0 ? 0 : -1; i >= 0 && rc == 0; i = sym[i].next)
        rc = s_emit_symbol(self, norm + sym[i].off, sym[i].n, sym[i].prev, ids, &n_ids);
    if (rc == 0) {
        *ids_p = ids;
        *n_ids_p = n_ids;
        ids = NULL;
    }
done:
    free(norm);
    free(sym);
    free(ids);
    return rc;
}

int sq_tokenizer_encode_turns(const sq_tokenizer_t *self, const sq_tokenizer_text_t *turns,
                              size_t n_turns, int32_t sep_id, bool add_bos, int32_t **ids_p,
                              size_t *n_ids_p)
{
    if (n_turns > 1 && (sep_id < 0 || sep_id >= self->n_vocab))
        return SQ_FAIL(SQ_EINVAL, "tokenizer: separator id %d outside vocabulary of %d", sep_id,
                       self->n_vocab);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 0;
    for (size_t i = 0; i < n_turns && rc == 0; i++) {
        int32_t *part;
        size_t n_part;
        if ((rc = sq_tokenizer_encode(self, turns[i].text, turns[i].len, i == 0 && add_bos, &part,
                                      &n_part)))
            break;
        const size_t n_sep = i > 0;
        int32_t *grown = realloc(ids, (n_ids + n_sep + n_part + 1) * sizeof *ids);
        if (!grown) {
            free(part);
            rc = SQ_FAIL(SQ_ENOMEM, "tokenizer: no memory for %zu ids", n_ids + n_part + 1);
            break;
        }
        ids = grown;
        if (n_sep)
            ids[n_ids++] = sep_id;
        memcpy(ids + n_ids, part, n_part * sizeof *ids);
        n_ids += n_part;
        free(part);
    }
    if (rc == 0 && !ids && !(ids = malloc(sizeof *ids)))
        rc = SQ_FAIL(SQ_ENOMEM, "tokenizer: no memory for ids");
    if (rc) {
        free(ids);
        return rc;
    }
    *ids_p = ids;
    *n_ids_p = n_ids;
    return 0;
}

int32_t sq_tokenizer_special(const sq_tokenizer_t *self, const char *piece, size_t len)
{
    const int32_t id = sq_tokenizer_find(self, piece, len);
    const int type = sq_tokenizer_token_type(self, id);
    const bool special = type == SQ_TOKEN_CONTROL || type == SQ_TOKEN_USER_DEFINED ||
                         (id >= 0 && (id == self->bos_id || id == self->eos_id));
    return special ? id : -1;
}

/* ---- decoding -------------------------------------------------------- */

const char *sq_tokenizer_token_text(const sq_tokenizer_t *self, int32_t prev_id,
                                    int32_t id, size_t *len_p)
{
    if (id < 0 || id >= self->n_vocab)
        return NULL;
    const char *t = self->text_bytes + self->text_off[id];
    size_t n = self->text_len[id];
    /* the encoder's prefix space sits on the first piece after BOS */
    if (prev_id >= 0 && prev_id == self->bos_id && self->add_space_prefix
        && n > 0 && t[0] == ' ' && self->types[id] != SQ_TOKEN_BYTE) {
        t++;
        n--;
    }
    *len_p = n;
    return t;
}

int sq_tokenizer_decode(const sq_tokenizer_t *self, const int32_t *ids, size_t n,
                        char **text_p, size_t *len_p)
{
    size_t total = 0, len;
    for (size_t i = 0; i < n; i++) {
        if (!sq_tokenizer_token_text(self, i ? ids[i - 1] : -1, ids[i], &len))
            return SQ_FAIL(SQ_EINVAL, "tokenizer: id %d at position %zu outside vocabulary of %d",
                           ids[i], i, self->n_vocab);
        total += len;
    }
    char *out = malloc(total + 1);
    if (!out)
        return SQ_FAIL(SQ_ENOMEM, "tokenizer: no memory for %zu bytes of text", total);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *t = sq_tokenizer_token_text(self, i ? ids[i - 1] : -1, ids[i], &len);
        memcpy(out + k, t, len);
        k += len;
    }
    out[k] = '\0';
    *text_p = out;
    *len_p = k;
    return 0;
}

size_t sq_tokenizer_utf8_complete(const char *buf, size_t len)
{
    return sq_utf8_cut(buf, len);
}

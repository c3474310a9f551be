/*  sq_tokenizer: SentencePiece-style BPE with byte fallback, as stored in
 *  GGUF metadata under `tokenizer.ggml.model = "llama"`.
 *
 *  The tokenizer is built from plain arrays (pieces, scores, token types and
 *  the special ids), so it does not depend on the GGUF reader: the engine's
 *  loader reads `tokenizer.ggml.tokens`, `.scores`, `.token_type`,
 *  `.bos_token_id`, `.eos_token_id`, `.unknown_token_id` and passes them in.
 *  The constructor copies everything; the caller's arrays may go away.
 *
 *  Encoding follows SentencePiece / llama.cpp: put U+2581 "▁" in front of
 *  the text, replace every space with "▁", start from single UTF-8
 *  characters, then repeatedly merge the adjacent pair whose concatenation
 *  is a piece with the highest score (ties: leftmost). A symbol that is not
 *  a piece at the end is spelled with byte pieces `<0xNN>` (or <unk> when
 *  the vocabulary has no byte pieces). Invalid UTF-8 bytes are single
 *  symbols and so always take the byte fallback. Cost is O(n log n) in the
 *  input length (a heap of candidate pairs over a linked list of symbols).
 *
 *  Decoding maps "▁" back to a space, byte pieces to their raw byte, control
 *  tokens (BOS/EOS) to nothing, and drops the one space the encoder put in
 *  front of the text: decode(encode(text, BOS)) == text, byte for byte.
 */
#ifndef SQ_TOKENIZER_H
#define SQ_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Token types as in GGUF `tokenizer.ggml.token_type` (llama.cpp). */
enum {
    SQ_TOKEN_UNDEFINED = 0,
    SQ_TOKEN_NORMAL = 1,
    SQ_TOKEN_UNKNOWN = 2,
    SQ_TOKEN_CONTROL = 3,
    SQ_TOKEN_USER_DEFINED = 4,
    SQ_TOKEN_UNUSED = 5,
    SQ_TOKEN_BYTE = 6
};

/* Everything the tokenizer is built from. Arrays have n_vocab entries.
 * pieces[i] need not be NUL-terminated: piece_lens[i] gives its bytes.
 * scores may be NULL (all 0); token_types may be NULL (all NORMAL, except
 * pieces spelled "<0xNN>", which are taken as byte pieces).
 * Special ids are -1 when the vocabulary has none. */
typedef struct {
    int32_t n_vocab;
    const char *const *pieces;
    const uint32_t *piece_lens;
    const float *scores;
    const int32_t *token_types;
    int32_t bos_id;
    int32_t eos_id;
    int32_t unk_id;
    bool add_space_prefix;      /* SentencePiece default: true */
    bool add_bos;               /* prompts start with BOS (tokenizer.ggml.add_bos_token;
                                 * llama.cpp's default: true) */
} sq_tokenizer_config_t;

typedef struct sq_tokenizer sq_tokenizer_t;

/* Build from cfg (copied). NULL on error (SQ_FAIL detail names the piece or
 * id at fault: empty piece, special id out of range, n_vocab <= 0). */
sq_tokenizer_t *sq_tokenizer_new(const sq_tokenizer_config_t *cfg);
void sq_tokenizer_destroy(sq_tokenizer_t **self_p);

int32_t sq_tokenizer_n_vocab(const sq_tokenizer_t *self);
int32_t sq_tokenizer_bos(const sq_tokenizer_t *self);   /* -1: none */
int32_t sq_tokenizer_eos(const sq_tokenizer_t *self);   /* -1: none */
int32_t sq_tokenizer_unk(const sq_tokenizer_t *self);   /* -1: none */
/* Whether a prompt starts with BOS (the config's add_bos): what
 * sq_sequence passes as add_bos. */
bool sq_tokenizer_add_bos(const sq_tokenizer_t *self);
/* Type of token id (SQ_TOKEN_*), or -1 when id is out of range. */
int sq_tokenizer_token_type(const sq_tokenizer_t *self, int32_t id);
/* The stored piece text of id ("▁" not replaced) and its length; NULL when
 * id is out of range. Borrowed. */
const char *sq_tokenizer_piece(const sq_tokenizer_t *self, int32_t id, size_t *len_p);
/* Id of the piece with exactly these bytes, or -1. */
int32_t sq_tokenizer_find(const sq_tokenizer_t *self, const char *piece, size_t len);

/* Encode len bytes of text (any bytes; NUL is an ordinary byte).
 * add_bos prepends the BOS id (when the vocabulary has one).
 * OUT *ids_p: malloc'd array of *n_ids_p ids, the caller frees it.
 * Special pieces written in the text ("<s>") are ordinary text, never
 * control tokens. Returns 0, SQ_ENOMEM, or SQ_EINVAL when a byte has no
 * piece and the vocabulary has neither byte pieces nor <unk>. */
int sq_tokenizer_encode(const sq_tokenizer_t *self, const char *text, size_t len,
                        bool add_bos, int32_t **ids_p, size_t *n_ids_p);

/* A span of text: len bytes at text (any bytes). */
typedef struct {
    const char *text;
    size_t len;
} sq_tokenizer_text_t;

/* Encode text in turns with the special token sep_id between them:
 * [BOS] + encode(turns[0]) + [sep_id] + encode(turns[1]) + ... Each turn
 * is encoded as text of its own (add_space_prefix included), as llama.cpp
 * encodes the text around a special token it parses out of a prompt for a
 * SentencePiece vocabulary; the turns' own text is never parsed for
 * special pieces. One turn is sq_tokenizer_encode. Returns as
 * sq_tokenizer_encode, and SQ_EINVAL when sep_id is out of range. */
int sq_tokenizer_encode_turns(const sq_tokenizer_t *self, const sq_tokenizer_text_t *turns,
                              size_t n_turns, int32_t sep_id, bool add_bos, int32_t **ids_p,
                              size_t *n_ids_p);

/* The id of the special token (control or user-defined, BOS, EOS)
 * spelled exactly so ("</s>"), or -1 when no special token has these
 * bytes. */
int32_t sq_tokenizer_special(const sq_tokenizer_t *self, const char *piece, size_t len);

/* Decode n ids. OUT *text_p: malloc'd, NUL-terminated (the bytes may also
 * contain NUL: use *len_p). The space the encoder prepends is dropped from
 * the first piece after a BOS. Returns 0, SQ_EINVAL (an id out of range,
 * named in the detail) or SQ_ENOMEM. */
int sq_tokenizer_decode(const sq_tokenizer_t *self, const int32_t *ids, size_t n,
                        char **text_p, size_t *len_p);

/* Decode one token for streaming: the bytes of id, without its leading
 * space when prev_id is BOS (pass -1 when there is no previous token).
 * Byte pieces give one raw byte, which may be part of a UTF-8 character;
 * see sq_tokenizer_utf8_complete(). OUT *len_p bytes at the returned
 * pointer (borrowed, valid for the tokenizer's lifetime, not
 * NUL-terminated); NULL when id is out of range. */
const char *sq_tokenizer_token_text(const sq_tokenizer_t *self, int32_t prev_id,
                                    int32_t id, size_t *len_p);

/* How many leading bytes of buf can be emitted now without splitting a
 * UTF-8 character: len minus the bytes of a trailing sequence that is
 * still incomplete (a valid lead byte missing continuation bytes). Invalid
 * bytes are never held back. (sq_utf8_cut.) */
size_t sq_tokenizer_utf8_complete(const char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif

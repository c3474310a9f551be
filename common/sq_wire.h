/*  sq_wire: the shardq wire protocol codec (docs/protocol.md is the spec).
 *
 *  A message is three ZeroMQ frames (after the ROUTER identity frame, which
 *  only the broker sees):
 *
 *      [ "SQP1" ][ command: 1 byte ][ body: one msgpack map ]
 *
 *  Receiving is done in two steps, both bounded:
 *    1. sq_wire_recv()/sq_wire_parse() check the frame count, the header,
 *       the command byte and the body size BEFORE looking inside the body,
 *       then walk the body once (sq_wire_validate) checking that it is one
 *       well-formed msgpack map: every declared length fits in the bytes
 *       that remain, nesting depth <= SQ_WIRE_MAX_DEPTH. Nothing is
 *       allocated from declared lengths (msgpack-c's unpacker trusts them,
 *       so we never use it on untrusted input).
 *    2. Fields are read in place with the zero-copy accessors below
 *       (sq_wire_get_*), which take caps and required flags and record a
 *       detail naming the field on failure. Strings are checked to be valid
 *       UTF-8 without NUL bytes (PostgreSQL text cannot hold them).
 *  Encoding uses msgpack-c's packer through sq_wire_enc_t.
 *
 *  Ownership: sq_wire_msg_t owns its frames; every sq_wire_val_t and every
 *  string pointer returned by an accessor borrows from the message and is
 *  valid until sq_wire_msg_destroy(). Returned strings are NOT
 *  NUL-terminated: use the length (or sq_wire_get_strdup).
 */
#ifndef SQ_WIRE_H
#define SQ_WIRE_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- protocol constants (docs/protocol.md §2) ---- */

#define SQ_WIRE_HEADER "SQP1"
#define SQ_WIRE_HEADER_LEN 4

/* Caps checked before any decoding. */
#define SQ_WIRE_MAX_BODY (64u * 1024u * 1024u) /* bytes of the body frame */
#define SQ_WIRE_MAX_FRAMES 4                   /* identity + 3 */
#define SQ_WIRE_MAX_DEPTH 16                   /* msgpack nesting */
/* Field caps (bytes unless stated), enforced by the receiver. */
#define SQ_WIRE_MAX_ID 256          /* custom_id, group id, job id, lease ids */
#define SQ_WIRE_MAX_NAME 128        /* tenant, model, adapter, device */
#define SQ_WIRE_MAX_PROMPT (1u << 20)  /* prompt text */
#define SQ_WIRE_MAX_TEXT (4u << 20)    /* result text, params/body JSON */
#define SQ_WIRE_MAX_ERROR 4096      /* error messages */
#define SQ_WIRE_MAX_TASKS 100000    /* tasks in one SUBMIT */
#define SQ_WIRE_MAX_BATCH 4096      /* entries in one TASKS/RESULT/FAIL */
#define SQ_WIRE_MAX_PAGE 10000      /* RESULTS/LIST page size */

/* Heartbeats (docs/protocol.md §5). */
#define SQ_WIRE_HEARTBEAT_MS 1000
#define SQ_WIRE_HEARTBEAT_LIVENESS 3

/* Commands. Replies to client requests carry the request's command with
 * SQ_WIRE_REPLY set; SQ_WIRE_ERROR answers any request that failed. */
typedef enum {
    /* client -> broker (requests; broker replies cmd|0x80 or ERROR) */
    SQ_WIRE_SUBMIT = 0x01,
    SQ_WIRE_STATUS = 0x02,
    SQ_WIRE_RESULTS = 0x03,
    SQ_WIRE_CANCEL = 0x04,
    SQ_WIRE_LIST = 0x05,
    SQ_WIRE_STATS = 0x06,
    SQ_WIRE_WORKERS = 0x07,
    SQ_WIRE_LORA = 0x08,         /* LoRA adapter updates: publish, activate, ... */
    SQ_WIRE_SCALING = 0x09,      /* the scheduler's recorded scaling decisions */
    /* worker <-> broker */
    SQ_WIRE_READY = 0x10,        /* w -> b */
    SQ_WIRE_TASKS = 0x11,        /* b -> w */
    SQ_WIRE_HEARTBEAT = 0x12,    /* both ways */
    SQ_WIRE_PARTIAL = 0x13,      /* w -> b, optional */
    SQ_WIRE_RESULT = 0x14,       /* w -> b */
    SQ_WIRE_FAIL = 0x15,         /* w -> b */
    SQ_WIRE_DISCONNECT = 0x16,   /* both ways */
    SQ_WIRE_CANCEL_LEASE = 0x17, /* b -> w */
    SQ_WIRE_ERROR = 0x7F,        /* b -> client or worker */
    SQ_WIRE_REPLY = 0x80         /* flag on replies to client requests */
} sq_wire_cmd_t;

/* Error codes carried in ERROR bodies ("code"). Stable numbers. */
typedef enum {
    SQ_WIRE_E_BADMSG = 1,      /* malformed frames/body; not retryable */
    SQ_WIRE_E_TOOBIG = 2,      /* over a size cap; not retryable */
    SQ_WIRE_E_INVALID = 3,     /* a field missing or invalid; not retryable */
    SQ_WIRE_E_NOTFOUND = 4,    /* no such job */
    SQ_WIRE_E_UNAVAILABLE = 5, /* database down / shutting down; RETRYABLE */
    SQ_WIRE_E_STATE = 6,       /* not valid in the current state */
    SQ_WIRE_E_VERSION = 7,     /* unknown protocol header */
    SQ_WIRE_E_UNKNOWN = 8,     /* unknown command */
    SQ_WIRE_E_INTERNAL = 9     /* broker bug; retryable */
} sq_wire_errcode_t;

/* Name of a command ("SUBMIT", "TASKS", "SUBMIT-REPLY", ...) or "?". */
const char *sq_wire_cmd_name(int cmd);
/* True for commands defined in the given direction. */
bool sq_wire_cmd_is_client_request(int cmd);
bool sq_wire_cmd_is_from_worker(int cmd);
/* The job states STATUS and LIST name, as one string for messages, and
 * whether s is one of them (LIST's state filter). */
#define SQ_WIRE_JOB_STATES "queued, running, succeeded, failed or cancelled"
bool sq_wire_job_state_known(const char *s);

/* ---- values and accessors ---- */

typedef enum {
    SQ_WIRE_T_NIL = 0,
    SQ_WIRE_T_BOOL,
    SQ_WIRE_T_UINT,
    SQ_WIRE_T_INT, /* negative integers only */
    SQ_WIRE_T_FLOAT,
    SQ_WIRE_T_STR,
    SQ_WIRE_T_BIN,
    SQ_WIRE_T_ARRAY,
    SQ_WIRE_T_MAP,
    SQ_WIRE_T_EXT,
    SQ_WIRE_T_INVALID
} sq_wire_type_t;

/* A span holding exactly one encoded msgpack value (borrowed). */
typedef struct {
    const uint8_t *p;
    size_t n;
} sq_wire_val_t;

/* Check that buf holds exactly one well-formed msgpack value, with every
 * declared length inside buf and nesting <= max_depth. O(n), no
 * allocation. Returns 0 or SQ_EFORMAT/SQ_ETRUNC with a detail. */
int sq_wire_validate(const uint8_t *buf, size_t n, int max_depth);

sq_wire_type_t sq_wire_type(sq_wire_val_t v);
/* Number of entries of an array or map value (0 for others). */
uint32_t sq_wire_count(sq_wire_val_t v);

/* Array iteration:  sq_wire_iter_t it; sq_wire_iter_init(&it, arr);
 *                   while (sq_wire_iter_next(&it, &elem)) ... */
typedef struct {
    const uint8_t *p, *end;
    uint32_t left;
} sq_wire_iter_t;
int sq_wire_iter_init(sq_wire_iter_t *it, sq_wire_val_t array);
bool sq_wire_iter_next(sq_wire_iter_t *it, sq_wire_val_t *out);
/* Map iteration yields key and value spans. */
int sq_wire_map_iter_init(sq_wire_iter_t *it, sq_wire_val_t map);
bool sq_wire_map_iter_next(sq_wire_iter_t *it, sq_wire_val_t *key, sq_wire_val_t *val);

/* Look up a string key in a map. 0, SQ_ENOTFOUND, or SQ_EFORMAT. */
int sq_wire_map_find(sq_wire_val_t map, const char *key, sq_wire_val_t *out);

/* Typed field getters on a map. `required`: a missing key (or nil) is an
 * error (SQ_EINVAL naming the key); when not required a missing key leaves
 * *out untouched and returns 0 (preset the default). Wrong type or over
 * the cap: SQ_EINVAL / SQ_ETOOBIG naming the key. Strings: borrowed, not
 * NUL-terminated, validated UTF-8 without NUL. */
int sq_wire_get_str(sq_wire_val_t map, const char *key, bool required, size_t max_len,
                    const char **out, size_t *out_len);
/* Same, copied into a new NUL-terminated string (caller frees). A missing
 * optional key gives *out = NULL. */
int sq_wire_get_strdup(sq_wire_val_t map, const char *key, bool required, size_t max_len,
                       char **out);
int sq_wire_get_u64(sq_wire_val_t map, const char *key, bool required, uint64_t max,
                    uint64_t *out);
int sq_wire_get_i64(sq_wire_val_t map, const char *key, bool required, int64_t *out);
int sq_wire_get_double(sq_wire_val_t map, const char *key, bool required, double *out);
int sq_wire_get_bool(sq_wire_val_t map, const char *key, bool required, bool *out);
/* A nested array or map (type checked). max_count caps its entries. */
int sq_wire_get_array(sq_wire_val_t map, const char *key, bool required, uint32_t max_count,
                      sq_wire_val_t *out);
int sq_wire_get_map(sq_wire_val_t map, const char *key, bool required, sq_wire_val_t *out);

/* Decode a value standing alone (array elements). */
int sq_wire_val_str(sq_wire_val_t v, const char **out, size_t *out_len);
int sq_wire_val_u64(sq_wire_val_t v, uint64_t *out);

/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates) with no
 * NUL byte (sq_utf8_ok). */
bool sq_wire_utf8_ok(const char *s, size_t n);

/* ---- messages ---- */

typedef struct {
    zframe_t *identity; /* ROUTER peer identity, or NULL (DEALER side) */
    uint8_t cmd;
    zframe_t *body_frame;
    sq_wire_val_t body; /* the body map, borrowed from body_frame */
} sq_wire_msg_t;

/* Parse a received zmsg (destroyed in all cases). `router`: the first frame
 * is a peer identity. On success *out is a new message. On failure returns
 * SQ_EPROTO (frames/header/command), SQ_EUNSUPPORTED (other header
 * version), SQ_ETOOBIG, SQ_EFORMAT or SQ_ETRUNC (a body that is not
 * one whole msgpack map: sq_wire_validate), and when the identity could be read
 * *identity_out (if non-NULL) receives it so the caller can answer ERROR. */
int sq_wire_parse(zmsg_t **zmsg_p, bool router, size_t max_body, sq_wire_msg_t **out,
                  zframe_t **identity_out);
/* zmsg_recv + sq_wire_parse. Returns SQ_EAGAIN when interrupted/no message. */
int sq_wire_recv(void *sock, bool router, size_t max_body, sq_wire_msg_t **out,
                 zframe_t **identity_out);
void sq_wire_msg_destroy(sq_wire_msg_t **self_p);

/* Map a negative SQ_E* code to the protocol error code. */
sq_wire_errcode_t sq_wire_errcode_from(int rc);
bool sq_wire_errcode_retryable(int code);

/* ---- encoding ---- */

typedef struct sq_wire_enc_t sq_wire_enc_t;

sq_wire_enc_t *sq_wire_enc_new(void);
void sq_wire_enc_destroy(sq_wire_enc_t **self_p);
/* Forget the bytes written so far (keeps the buffer). */
void sq_wire_enc_reset(sq_wire_enc_t *self);
msgpack_packer *sq_wire_enc_packer(sq_wire_enc_t *self);
const uint8_t *sq_wire_enc_data(sq_wire_enc_t *self);
size_t sq_wire_enc_size(sq_wire_enc_t *self);

/* Builders: open containers with their entry count, then add key/value
 * pairs. s may contain any bytes; n = strlen(s) when SIZE_MAX. A NULL
 * string packs nil. */
void sq_wire_map(sq_wire_enc_t *self, uint32_t n_pairs);
void sq_wire_array(sq_wire_enc_t *self, uint32_t n);
void sq_wire_str(sq_wire_enc_t *self, const char *s, size_t n);
void sq_wire_u64(sq_wire_enc_t *self, uint64_t v);
void sq_wire_kv_str(sq_wire_enc_t *self, const char *key, const char *s);
void sq_wire_kv_strn(sq_wire_enc_t *self, const char *key, const char *s, size_t n);
void sq_wire_kv_u64(sq_wire_enc_t *self, const char *key, uint64_t v);
void sq_wire_kv_i64(sq_wire_enc_t *self, const char *key, int64_t v);
void sq_wire_kv_double(sq_wire_enc_t *self, const char *key, double v);
void sq_wire_kv_bool(sq_wire_enc_t *self, const char *key, bool v);
void sq_wire_kv_nil(sq_wire_enc_t *self, const char *key);
/* Key only: the caller packs the value next (array/map/raw). */
void sq_wire_key(sq_wire_enc_t *self, const char *key);
/* Append an already-encoded value (e.g. a span from a received message). */
void sq_wire_raw(sq_wire_enc_t *self, sq_wire_val_t v);

/* Send [identity?][SQP1][cmd][body]. identity is borrowed (duplicated);
 * NULL on DEALER sockets. body NULL sends an empty map. Returns 0 or
 * SQ_EIO. Non-blocking when ZMQ_DONTWAIT semantics are set on the socket's
 * HWM; ROUTER drops to unknown peers silently (ZMQ semantics). */
int sq_wire_send(void *sock, zframe_t *identity, uint8_t cmd, sq_wire_enc_t *body);

/* Send ERROR {rid?, code, message, retryable}. rid 0 = none. */
int sq_wire_send_error(void *sock, zframe_t *identity, uint64_t rid, int code,
                       const char *message);

#ifdef __cplusplus
}
#endif
#endif

/*  sq_wire_msg: framing of shardq messages over ZeroMQ and the encoder.
 *
 *  Frame layout (docs/protocol.md §2):  [identity]? ["SQP1"] [cmd] [body].
 *  Everything about the frames is checked before the body is looked at;
 *  the body is then validated once as a single msgpack map.
 */
#include "sq_wire.h"

#include "sq_error.h"

#include <stdlib.h>
#include <string.h>

/* ---- commands ---- */

static const struct {
    int cmd;
    const char *name;
} s_cmds[] = {
    {SQ_WIRE_SUBMIT, "SUBMIT"},         {SQ_WIRE_STATUS, "STATUS"},
    {SQ_WIRE_RESULTS, "RESULTS"},       {SQ_WIRE_CANCEL, "CANCEL"},
    {SQ_WIRE_LIST, "LIST"},             {SQ_WIRE_STATS, "STATS"},
    {SQ_WIRE_WORKERS, "WORKERS"},       {SQ_WIRE_LORA, "LORA"},
    {SQ_WIRE_SCALING, "SCALING"},
    {SQ_WIRE_READY, "READY"},
    {SQ_WIRE_TASKS, "TASKS"},           {SQ_WIRE_HEARTBEAT, "HEARTBEAT"},
    {SQ_WIRE_PARTIAL, "PARTIAL"},       {SQ_WIRE_RESULT, "RESULT"},
    {SQ_WIRE_FAIL, "FAIL"},             {SQ_WIRE_DISCONNECT, "DISCONNECT"},
    {SQ_WIRE_CANCEL_LEASE, "CANCEL-LEASE"}, {SQ_WIRE_ERROR, "ERROR"},
};

const char *sq_wire_cmd_name(int cmd)
{
    static const char *reply_names[] = {"?", "SUBMIT-REPLY", "STATUS-REPLY", "RESULTS-REPLY",
                                        "CANCEL-REPLY", "LIST-REPLY", "STATS-REPLY",
                                        "WORKERS-REPLY", "LORA-REPLY", "SCALING-REPLY"};
    if ((cmd & SQ_WIRE_REPLY) && sq_wire_cmd_is_client_request(cmd & ~SQ_WIRE_REPLY))
        return reply_names[cmd & ~SQ_WIRE_REPLY];
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++)
        if (s_cmds[i].cmd == cmd)
            return s_cmds[i].name;
    return "?";
}

bool sq_wire_cmd_is_client_request(int cmd)
{
    return cmd >= SQ_WIRE_SUBMIT && cmd <= SQ_WIRE_SCALING;
}

bool sq_wire_job_state_known(const char *s)
{
    static const char *const states[] = {"queued", "running", "succeeded", "failed",
                                         "cancelled"};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (strcmp(s, states[i]) == 0)
            return true;
    return false;
}

bool sq_wire_cmd_is_from_worker(int cmd)
{
    return cmd == SQ_WIRE_READY || cmd == SQ_WIRE_HEARTBEAT || cmd == SQ_WIRE_PARTIAL ||
           cmd == SQ_WIRE_RESULT || cmd == SQ_WIRE_FAIL || cmd == SQ_WIRE_DISCONNECT;
}

sq_wire_errcode_t sq_wire_errcode_from(int rc)
{
    switch (rc) {
    case SQ_ETOOBIG: return SQ_WIRE_E_TOOBIG;
    case SQ_EINVAL: return SQ_WIRE_E_INVALID;
    case SQ_EFORMAT: case SQ_ETRUNC: case SQ_EPROTO: return SQ_WIRE_E_BADMSG;
    case SQ_ENOTFOUND: return SQ_WIRE_E_NOTFOUND;
    case SQ_EDBDOWN: case SQ_EAGAIN: return SQ_WIRE_E_UNAVAILABLE;
    case SQ_ESTATE: case SQ_ESTALE: return SQ_WIRE_E_STATE;
    case SQ_EUNSUPPORTED: return SQ_WIRE_E_VERSION;
    default: return SQ_WIRE_E_INTERNAL;
    }
}

bool sq_wire_errcode_retryable(int code)
{
    return code == SQ_WIRE_E_UNAVAILABLE || code == SQ_WIRE_E_INTERNAL;
}

/* ---- receiving ---- */

static int s_check_frames(zmsg_t *zmsg, size_t max_body, zframe_t **hdr, zframe_t **cmd,
                          zframe_t **body)
{
    if (zmsg_size(zmsg) != 3)
        return SQ_FAIL(SQ_EPROTO, "expected 3 frames (header, command, body), got %zu",
                       zmsg_size(zmsg));
    *hdr = zmsg_first(zmsg);
    *cmd = zmsg_next(zmsg);
    *body = zmsg_next(zmsg);
    size_t hn = zframe_size(*hdr);
    const byte *hd = zframe_data(*hdr);
    if (hn != SQ_WIRE_HEADER_LEN || memcmp(hd, SQ_WIRE_HEADER, SQ_WIRE_HEADER_LEN) != 0) {
        if (hn == SQ_WIRE_HEADER_LEN && memcmp(hd, "SQP", 3) == 0)
            return SQ_FAIL(SQ_EUNSUPPORTED, "protocol version '%c' not supported (want %s)",
                           hd[3], SQ_WIRE_HEADER);
        return SQ_FAIL(SQ_EPROTO, "bad header frame (%zu bytes), want \"%s\"", hn,
                       SQ_WIRE_HEADER);
    }
    if (zframe_size(*cmd) != 1)
        return SQ_FAIL(SQ_EPROTO, "command frame must be 1 byte, got %zu", zframe_size(*cmd));
    if (zframe_size(*body) > max_body)
        return SQ_FAIL(SQ_ETOOBIG, "body of %zu bytes over the cap of %zu",
                       zframe_size(*body), max_body);
    return 0;
}

int sq_wire_parse(zmsg_t **zmsg_p, bool router, size_t max_body, sq_wire_msg_t **out,
                  zframe_t **identity_out)
{
    zmsg_t *zmsg = *zmsg_p;
    *zmsg_p = NULL;
    *out = NULL;
    if (identity_out)
        *identity_out = NULL;
    if (!zmsg)
        return SQ_FAIL(SQ_EPROTO, "no message");
    /* the identity comes first so that even a bad message can be answered */
    zframe_t *identity = router ? zmsg_pop(zmsg) : NULL;
    zframe_t *hdr = NULL, *cmd = NULL, *body = NULL;
    int rc = zmsg_size(zmsg) > SQ_WIRE_MAX_FRAMES - 1
                 ? SQ_FAIL(SQ_EPROTO, "%zu frames, at most 3 allowed", zmsg_size(zmsg))
                 : s_check_frames(zmsg, max_body, &hdr, &cmd, &body);
    if (rc == 0)
        rc = sq_wire_validate(zframe_data(body), zframe_size(body), SQ_WIRE_MAX_DEPTH);
    if (rc == 0 &&
        sq_wire_type((sq_wire_val_t){zframe_data(body), zframe_size(body)}) != SQ_WIRE_T_MAP)
        rc = SQ_FAIL(SQ_EFORMAT, "body is not a msgpack map");
    sq_wire_msg_t *msg = rc == 0 ? calloc(1, sizeof *msg) : NULL;
    if (rc == 0 && !msg)
        rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
    if (rc) {
        if (identity_out)
            *identity_out = identity;
        else
            zframe_destroy(&identity);
        zmsg_destroy(&zmsg);
        return rc;
    }
    msg->identity = identity;
    msg->cmd = zframe_data(cmd)[0];
    zmsg_remove(zmsg, body);
    msg->body_frame = body;
    msg->body.p = zframe_data(body);
    msg->body.n = zframe_size(body);
    zmsg_destroy(&zmsg);
    *out = msg;
    return 0;
}

int sq_wire_recv(void *sock, bool router, size_t max_body, sq_wire_msg_t **out,
                 zframe_t **identity_out)
{
    zmsg_t *zmsg = zmsg_recv(sock);
    if (!zmsg) {
        *out = NULL;
        if (identity_out)
            *identity_out = NULL;
        return SQ_EAGAIN;
    }
    return sq_wire_parse(&zmsg, router, max_body, out, identity_out);
}

void sq_wire_msg_destroy(sq_wire_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_wire_msg_t *self = *self_p;
    zframe_destroy(&self->identity);
    zframe_destroy(&self->body_frame);
    free(self);
    *self_p = NULL;
}

/* ---- encoding ---- */

struct sq_wire_enc_t {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
};

sq_wire_enc_t *sq_wire_enc_new(void)
{
    sq_wire_enc_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    msgpack_sbuffer_init(&self->sbuf);
    msgpack_packer_init(&self->pk, &self->sbuf, msgpack_sbuffer_write);
    return self;
}

void sq_wire_enc_destroy(sq_wire_enc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    msgpack_sbuffer_destroy(&(*self_p)->sbuf);
    free(*self_p);
    *self_p = NULL;
}

void sq_wire_enc_reset(sq_wire_enc_t *self) { msgpack_sbuffer_clear(&self->sbuf); }
msgpack_packer *sq_wire_enc_packer(sq_wire_enc_t *self) { return &self->pk; }
const uint8_t *sq_wire_enc_data(sq_wire_enc_t *self) { return (const uint8_t *)self->sbuf.data; }
size_t sq_wire_enc_size(sq_wire_enc_t *self) { return self->sbuf.size; }

void sq_wire_map(sq_wire_enc_t *self, uint32_t n_pairs) { msgpack_pack_map(&self->pk, n_pairs); }
void sq_wire_array(sq_wire_enc_t *self, uint32_t n) { msgpack_pack_array(&self->pk, n); }
void sq_wire_u64(sq_wire_enc_t *self, uint64_t v) { msgpack_pack_uint64(&self->pk, v); }

void sq_wire_str(sq_wire_enc_t *self, const char *s, size_t n)
{
    if (!s) {
        msgpack_pack_nil(&self->pk);
        return;
    }
    if (n == SIZE_MAX)
        n = strlen(s);
    msgpack_pack_str(&self->pk, n);
    msgpack_pack_str_body(&self->pk, s, n);
}

void sq_wire_key(sq_wire_enc_t *self, const char *key) { sq_wire_str(self, key, SIZE_MAX); }

void sq_wire_kv_str(sq_wire_enc_t *self, const char *key, const char *s)
{
    sq_wire_key(self, key);
    sq_wire_str(self, s, SIZE_MAX);
}

void sq_wire_kv_strn(sq_wire_enc_t *self, const char *key, const char *s, size_t n)
{
    sq_wire_key(self, key);
    sq_wire_str(self, s, n);
}

void sq_wire_kv_u64(sq_wire_enc_t *self, const char *key, uint64_t v)
{
    sq_wire_key(self, key);
    msgpack_pack_uint64(&self->pk, v);
}

void sq_wire_kv_i64(sq_wire_enc_t *self, const char *key, int64_t v)
{
    sq_wire_key(self, key);
    msgpack_pack_int64(&self->pk, v);
}

void sq_wire_kv_double(sq_wire_enc_t *self, const char *key, double v)
{
    sq_wire_key(self, key);
    msgpack_pack_double(&self->pk, v);
}

void sq_wire_kv_bool(sq_wire_enc_t *self, const char *key, bool v)
{
    sq_wire_key(self, key);
    if (v)
        msgpack_pack_true(&self->pk);
    else
        msgpack_pack_false(&self->pk);
}

void sq_wire_kv_nil(sq_wire_enc_t *self, const char *key)
{
    sq_wire_key(self, key);
    msgpack_pack_nil(&self->pk);
}

void sq_wire_raw(sq_wire_enc_t *self, sq_wire_val_t v)
{
    msgpack_sbuffer_write(&self->sbuf, (const char *)v.p, v.n);
}

int sq_wire_send(void *sock, zframe_t *identity, uint8_t cmd, sq_wire_enc_t *body)
{
    static const uint8_t empty_map = 0x80;
    zmsg_t *zmsg = zmsg_new();
    if (!zmsg)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    if (identity)
        zmsg_append(zmsg, &(zframe_t *){zframe_dup(identity)});
    zmsg_addmem(zmsg, SQ_WIRE_HEADER, SQ_WIRE_HEADER_LEN);
    zmsg_addmem(zmsg, &cmd, 1);
    if (body && body->sbuf.size > 0)
        zmsg_addmem(zmsg, body->sbuf.data, body->sbuf.size);
    else
        zmsg_addmem(zmsg, &empty_map, 1);
    if (zmsg_send(&zmsg, sock) != 0) {
        zmsg_destroy(&zmsg);
        return SQ_FAIL(SQ_EIO, "send %s: %s", sq_wire_cmd_name(cmd), zmq_strerror(zmq_errno()));
    }
    return 0;
}

int sq_wire_send_error(void *sock, zframe_t *identity, uint64_t rid, int code,
                       const char *message)
{
    sq_wire_enc_t *enc = sq_wire_enc_new();
    if (!enc)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    sq_wire_map(enc, 4);
    sq_wire_kv_u64(enc, "rid", rid);
    sq_wire_kv_u64(enc, "code", (uint64_t)code);
    sq_wire_kv_str(enc, "message", message ? message : "");
    sq_wire_kv_bool(enc, "retryable", sq_wire_errcode_retryable(code));
    int rc = sq_wire_send(sock, identity, SQ_WIRE_ERROR, enc);
    sq_wire_enc_destroy(&enc);
    return rc;
}

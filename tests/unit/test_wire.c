/*  test_wire: the sq_wire codec on good, truncated, oversized and garbage
 *  input. The fuzz cases feed random bytes and mutated valid messages to
 *  the validator, the parser and every accessor: none may crash, read out
 *  of bounds (run under ASan) or accept a malformed body.
 */
#include "sq_test.h"
#include "sq_wire.h"
#include "sq_error.h"

#include <stdlib.h>
#include <string.h>

/* A SUBMIT-like body: {rid, tenant, tasks: [{custom_id, prompt, temperature}]} */
static sq_wire_enc_t *s_sample(void)
{
    sq_wire_enc_t *enc = sq_wire_enc_new();
    sq_wire_map(enc, 5);
    sq_wire_kv_u64(enc, "rid", 42);
    sq_wire_kv_str(enc, "tenant", "acme");
    sq_wire_kv_i64(enc, "neg", -300);
    sq_wire_kv_bool(enc, "flag", true);
    sq_wire_key(enc, "tasks");
    sq_wire_array(enc, 2);
    for (int i = 0; i < 2; i++) {
        sq_wire_map(enc, 3);
        sq_wire_kv_str(enc, "custom_id", i ? "r-2" : "r-1");
        sq_wire_kv_strn(enc, "prompt", "hi \"there\"", 10);
        sq_wire_kv_double(enc, "temperature", 0.5 * i);
    }
    return enc;
}

static sq_wire_val_t s_val(sq_wire_enc_t *enc)
{
    return (sq_wire_val_t){sq_wire_enc_data(enc), sq_wire_enc_size(enc)};
}

static void test_roundtrip(void)
{
    sq_wire_enc_t *enc = s_sample();
    sq_wire_val_t body = s_val(enc);
    SQ_REQUIRE(sq_wire_validate(body.p, body.n, SQ_WIRE_MAX_DEPTH) == 0);
    SQ_CHECK(sq_wire_type(body) == SQ_WIRE_T_MAP);
    SQ_CHECK(sq_wire_count(body) == 5);
    uint64_t rid = 0;
    SQ_CHECK(sq_wire_get_u64(body, "rid", true, 100, &rid) == 0 && rid == 42);
    SQ_CHECK(sq_wire_get_u64(body, "rid", true, 10, &rid) == SQ_EINVAL);
    int64_t neg = 0;
    SQ_CHECK(sq_wire_get_i64(body, "neg", true, &neg) == 0 && neg == -300);
    SQ_CHECK(sq_wire_get_u64(body, "neg", true, 1000, &rid) == SQ_EINVAL);
    bool flag = false;
    SQ_CHECK(sq_wire_get_bool(body, "flag", true, &flag) == 0 && flag);
    const char *s;
    size_t n;
    SQ_CHECK(sq_wire_get_str(body, "tenant", true, 128, &s, &n) == 0 && n == 4 &&
             memcmp(s, "acme", 4) == 0);
    SQ_CHECK(sq_wire_get_str(body, "tenant", true, 3, &s, &n) == SQ_ETOOBIG);
    SQ_CHECK(strstr(sq_error_detail(), "tenant") != NULL);
    SQ_CHECK(sq_wire_get_str(body, "missing", true, 10, &s, &n) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "missing") != NULL);
    s = "default";
    SQ_CHECK(sq_wire_get_str(body, "missing", false, 10, &s, &n) == 0 && strcmp(s, "default") == 0);
    SQ_CHECK(sq_wire_get_str(body, "rid", true, 10, &s, &n) == SQ_EINVAL);
    char *dup = NULL;
    SQ_CHECK(sq_wire_get_strdup(body, "tenant", true, 128, &dup) == 0 && strcmp(dup, "acme") == 0);
    free(dup);

    sq_wire_val_t tasks;
    SQ_REQUIRE(sq_wire_get_array(body, "tasks", true, 10, &tasks) == 0);
    SQ_CHECK(sq_wire_get_array(body, "tasks", true, 1, &tasks) == SQ_ETOOBIG);
    SQ_REQUIRE(sq_wire_get_array(body, "tasks", true, 10, &tasks) == 0);
    sq_wire_iter_t it;
    sq_wire_val_t t;
    int i = 0;
    SQ_REQUIRE(sq_wire_iter_init(&it, tasks) == 0);
    while (sq_wire_iter_next(&it, &t)) {
        double temp = -1;
        SQ_CHECK(sq_wire_get_double(t, "temperature", true, &temp) == 0 && temp == 0.5 * i);
        SQ_CHECK(sq_wire_get_str(t, "prompt", true, 100, &s, &n) == 0 && n == 10);
        i++;
    }
    SQ_CHECK(i == 2);
    sq_wire_enc_destroy(&enc);
    SQ_CHECK(enc == NULL);
    sq_wire_enc_destroy(&enc); /* safe twice */
}

static void test_utf8(void)
{
    SQ_CHECK(sq_wire_utf8_ok("plain", 5));
    SQ_CHECK(sq_wire_utf8_ok("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    SQ_CHECK(!sq_wire_utf8_ok("a\0b", 3));
    SQ_CHECK(!sq_wire_utf8_ok("\xc0\xaf", 2));         /* overlong */
    SQ_CHECK(!sq_wire_utf8_ok("\xed\xa0\x80", 3));     /* surrogate */
    SQ_CHECK(!sq_wire_utf8_ok("\xe2\x82", 2));         /* truncated */
    SQ_CHECK(!sq_wire_utf8_ok("\xff", 1));
    SQ_CHECK(!sq_wire_utf8_ok("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */

    sq_wire_enc_t *enc = sq_wire_enc_new();
    sq_wire_map(enc, 2);
    sq_wire_kv_strn(enc, "nul", "a\0b", 3);
    sq_wire_kv_strn(enc, "sql", "'); DROP TABLE jobs; --", SIZE_MAX);
    const char *s;
    size_t n;
    SQ_CHECK(sq_wire_get_str(s_val(enc), "nul", true, 10, &s, &n) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "nul") != NULL);
    SQ_CHECK(sq_wire_get_str(s_val(enc), "sql", true, 100, &s, &n) == 0 && n == 23);
    sq_wire_enc_destroy(&enc);
}

static void test_hostile_lengths(void)
{
    /* array32 declaring 4 billion entries in 5 bytes: must fail at once */
    const uint8_t big_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    SQ_CHECK(sq_wire_validate(big_array, sizeof big_array, 16) == SQ_ETRUNC);
    const uint8_t big_str[] = {0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'};
    SQ_CHECK(sq_wire_validate(big_str, sizeof big_str, 16) == SQ_ETRUNC);
    const uint8_t big_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
    SQ_CHECK(sq_wire_validate(big_map, sizeof big_map, 16) == SQ_ETRUNC);
    const uint8_t reserved[] = {0xc1};
    SQ_CHECK(sq_wire_validate(reserved, 1, 16) == SQ_EFORMAT);
    const uint8_t trailing[] = {0x80, 0x00};
    SQ_CHECK(sq_wire_validate(trailing, 2, 16) == SQ_EFORMAT);
    SQ_CHECK(sq_wire_validate(trailing, 0, 16) == SQ_ETRUNC);
    /* 20 nested arrays: deeper than the cap */
    uint8_t deep[21];
    memset(deep, 0x91, 20);
    deep[20] = 0xc0;
    SQ_CHECK(sq_wire_validate(deep, sizeof deep, 16) == SQ_EFORMAT);
    SQ_CHECK(sq_wire_validate(deep, sizeof deep, 32) == 0);
    /* accessors on a span that was never validated stay in bounds */
    const uint8_t lying_map[] = {0x82, 0xa3, 'r', 'i', 'd', 0xdb, 0xff, 0xff};
    sq_wire_val_t v = {lying_map, sizeof lying_map};
    uint64_t u;
    SQ_CHECK(sq_wire_get_u64(v, "rid", true, 10, &u) != 0);
    SQ_CHECK(sq_wire_get_u64(v, "zzz", true, 10, &u) != 0);
}

static zmsg_t *s_zmsg(const char *hdr, size_t hdr_n, const uint8_t *cmd, size_t cmd_n,
                      const uint8_t *body, size_t body_n, bool identity)
{
    zmsg_t *m = zmsg_new();
    if (identity)
        zmsg_addstr(m, "peer-1");
    zmsg_addmem(m, hdr, hdr_n);
    zmsg_addmem(m, cmd, cmd_n);
    zmsg_addmem(m, body, body_n);
    return m;
}

static void test_parse(void)
{
    const uint8_t cmd = SQ_WIRE_STATUS, empty = 0x80;
    sq_wire_msg_t *msg = NULL;
    zframe_t *id = NULL;
    zmsg_t *m = s_zmsg("SQP1", 4, &cmd, 1, &empty, 1, true);
    SQ_REQUIRE(sq_wire_parse(&m, true, 1024, &msg, &id) == 0);
    SQ_CHECK(m == NULL && id == NULL);
    SQ_CHECK(msg->cmd == SQ_WIRE_STATUS && zframe_streq(msg->identity, "peer-1"));
    sq_wire_msg_destroy(&msg);
    SQ_CHECK(msg == NULL);

    m = s_zmsg("SQP2", 4, &cmd, 1, &empty, 1, true);
    SQ_CHECK(sq_wire_parse(&m, true, 1024, &msg, &id) == SQ_EUNSUPPORTED);
    SQ_CHECK(id && zframe_streq(id, "peer-1") && msg == NULL);
    zframe_destroy(&id);
    m = s_zmsg("HTTP", 4, &cmd, 1, &empty, 1, true);
    SQ_CHECK(sq_wire_parse(&m, true, 1024, &msg, NULL) == SQ_EPROTO);
    m = s_zmsg("SQP1", 4, (const uint8_t *)"ab", 2, &empty, 1, false);
    SQ_CHECK(sq_wire_parse(&m, false, 1024, &msg, NULL) == SQ_EPROTO);
    uint8_t big[2048];
    memset(big, 0xc0, sizeof big);
    m = s_zmsg("SQP1", 4, &cmd, 1, big, sizeof big, false);
    SQ_CHECK(sq_wire_parse(&m, false, 1024, &msg, NULL) == SQ_ETOOBIG);
    const uint8_t not_map = 0x90;
    m = s_zmsg("SQP1", 4, &cmd, 1, &not_map, 1, false);
    SQ_CHECK(sq_wire_parse(&m, false, 1024, &msg, NULL) == SQ_EFORMAT);
    m = zmsg_new();
    zmsg_addstr(m, "SQP1");
    SQ_CHECK(sq_wire_parse(&m, false, 1024, &msg, NULL) == SQ_EPROTO);
    m = zmsg_new();
    for (int i = 0; i < 9; i++)
        zmsg_addstr(m, "x");
    SQ_CHECK(sq_wire_parse(&m, true, 1024, &msg, NULL) == SQ_EPROTO);
    SQ_CHECK(sq_wire_errcode_from(SQ_EDBDOWN) == SQ_WIRE_E_UNAVAILABLE);
    SQ_CHECK(sq_wire_errcode_retryable(SQ_WIRE_E_UNAVAILABLE));
    SQ_CHECK(!sq_wire_errcode_retryable(SQ_WIRE_E_INVALID));
    SQ_CHECK(strcmp(sq_wire_cmd_name(SQ_WIRE_SUBMIT | SQ_WIRE_REPLY), "SUBMIT-REPLY") == 0);
    SQ_CHECK(strcmp(sq_wire_cmd_name(SQ_WIRE_CANCEL_LEASE), "CANCEL-LEASE") == 0);
}

/* Exercise every accessor on a body that passed validation. */
static void s_poke(sq_wire_val_t v)
{
    const char *s;
    size_t n;
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    sq_wire_val_t a;
    sq_wire_get_str(v, "tenant", true, 100, &s, &n);
    sq_wire_get_u64(v, "rid", true, UINT64_MAX, &u);
    sq_wire_get_i64(v, "neg", true, &i);
    sq_wire_get_bool(v, "flag", true, &b);
    if (sq_wire_get_array(v, "tasks", true, 100, &a) == 0) {
        sq_wire_iter_t it;
        sq_wire_val_t t;
        sq_wire_iter_init(&it, a);
        while (sq_wire_iter_next(&it, &t)) {
            sq_wire_get_double(t, "temperature", true, &d);
            sq_wire_get_str(t, "prompt", true, 100, &s, &n);
        }
    }
}

static void test_fuzz(void)
{
    srand(12345);
    sq_wire_enc_t *enc = s_sample();
    size_t n = sq_wire_enc_size(enc);
    uint8_t *buf = malloc(n);
    int n_valid = 0;
    /* every truncation of a valid body is rejected */
    for (size_t cut = 0; cut < n; cut++)
        SQ_CHECK(sq_wire_validate(sq_wire_enc_data(enc), cut, SQ_WIRE_MAX_DEPTH) != 0);
    /* mutations: flip 1-4 bytes, validate, poke whatever passes */
    for (int round = 0; round < 200000; round++) {
        memcpy(buf, sq_wire_enc_data(enc), n);
        int flips = 1 + rand() % 4;
        for (int f = 0; f < flips; f++)
            buf[rand() % n] = (uint8_t)rand();
        size_t len = (rand() % 8 == 0) ? (size_t)rand() % n : n;
        if (sq_wire_validate(buf, len, SQ_WIRE_MAX_DEPTH) == 0) {
            n_valid++;
            s_poke((sq_wire_val_t){buf, len});
        }
        /* accessors on unvalidated input must be safe too */
        s_poke((sq_wire_val_t){buf, len});
    }
    /* pure random bytes through the full parser */
    uint8_t rnd[64];
    for (int round = 0; round < 50000; round++) {
        size_t len = (size_t)rand() % sizeof rnd;
        for (size_t k = 0; k < len; k++)
            rnd[k] = (uint8_t)rand();
        const uint8_t cmd = (uint8_t)rand();
        zmsg_t *m = s_zmsg("SQP1", 4, &cmd, 1, rnd, len, rand() % 2);
        sq_wire_msg_t *msg = NULL;
        if (sq_wire_parse(&m, rand() % 2, 1024, &msg, NULL) == 0) {
            SQ_CHECK(sq_wire_type(msg->body) == SQ_WIRE_T_MAP);
            s_poke(msg->body);
            sq_wire_msg_destroy(&msg);
        }
    }
    SQ_CHECK(n_valid > 0); /* some mutations stay well-formed (e.g. in strings) */
    free(buf);
    sq_wire_enc_destroy(&enc);
}

/* Through real sockets: a DEALER sends, a ROUTER receives and answers. */
static void test_sockets(void)
{
    zsock_t *router = zsock_new_router("inproc://test-wire");
    zsock_t *dealer = zsock_new_dealer(">inproc://test-wire");
    SQ_REQUIRE(router && dealer);
    zsock_set_rcvtimeo(router, 5000);
    zsock_set_rcvtimeo(dealer, 5000);
    sq_wire_enc_t *enc = s_sample();
    SQ_REQUIRE(sq_wire_send(zsock_resolve(dealer), NULL, SQ_WIRE_SUBMIT, enc) == 0);
    sq_wire_msg_t *msg = NULL;
    SQ_REQUIRE(sq_wire_recv(zsock_resolve(router), true, SQ_WIRE_MAX_BODY, &msg, NULL) == 0);
    SQ_CHECK(msg->cmd == SQ_WIRE_SUBMIT && msg->body.n == sq_wire_enc_size(enc));
    SQ_CHECK(sq_wire_send_error(zsock_resolve(router), msg->identity, 42, SQ_WIRE_E_INVALID,
                                "tasks[1].custom_id: required") == 0);
    sq_wire_msg_destroy(&msg);
    SQ_REQUIRE(sq_wire_recv(zsock_resolve(dealer), false, SQ_WIRE_MAX_BODY, &msg, NULL) == 0);
    SQ_CHECK(msg->cmd == SQ_WIRE_ERROR);
    uint64_t rid = 0, code = 0;
    bool retry = true;
    SQ_CHECK(sq_wire_get_u64(msg->body, "rid", true, UINT64_MAX, &rid) == 0 && rid == 42);
    SQ_CHECK(sq_wire_get_u64(msg->body, "code", true, 100, &code) == 0 && code == 3);
    SQ_CHECK(sq_wire_get_bool(msg->body, "retryable", true, &retry) == 0 && !retry);
    sq_wire_msg_destroy(&msg);
    sq_wire_enc_destroy(&enc);
    zsock_destroy(&dealer);
    zsock_destroy(&router);
}

int main(void)
{
    SQ_RUN(test_roundtrip);
    SQ_RUN(test_utf8);
    SQ_RUN(test_hostile_lengths);
    SQ_RUN(test_parse);
    SQ_RUN(test_fuzz);
    SQ_RUN(test_sockets);
    return sq_test_summary("wire");
}

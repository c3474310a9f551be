/*  sq_lora: LoRA update requests and the version registry (see sq_lora.h).
 *  The request thread owns its connection and the adapter directory
 *  writes; the loop owns the registry. An op travels loop -> thread ->
 *  loop as a pointer over the actor pipe; whoever holds it owns it.
 */
#include "sq_lora.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sq_db.h"
#include "sq_error.h"
#include "sq_log.h"
#include "sq_sha256.h"

#define S_MAX_FILE (60u << 20)  /* adapter bytes per publish (under the body cap) */
#define S_MAX_TARGETS 7
#define S_NAME 129

typedef enum { S_PUBLISH, S_ACTIVATE, S_ROLLBACK, S_LIST } s_kind_t;

typedef struct {
    char name[S_NAME], version[S_NAME];   /* "" when none */
    char canary[S_NAME];
    int canary_pct;
    char *pins;   /* "\nv1\nv2\n": the versions a task may pin (all but rolled back) */
} s_entry_t;

static void s_entries_free(s_entry_t **e_p, size_t n)
{
    for (size_t i = 0; *e_p && i < n; i++)
        free((*e_p)[i].pins);
    free(*e_p);
    *e_p = NULL;
}

typedef struct {
    s_kind_t kind;
    zframe_t *to;
    uint64_t rid;
    char *name, *version, *actor, *source, *metrics, *sha256, *base_sha256, *targets;
    uint64_t rank, canary_pct;
    uint8_t *file;
    size_t file_len;
    int rc;
    char error[512];
    sq_wire_enc_t *reply;
    s_entry_t *snap;            /* registry after the op (NULL: unchanged) */
    size_t n_snap;
    bool stale;                 /* the registry could not be read after the op */
} s_op_t;

struct sq_lora_t {
    char *conninfo, *dir;
    zactor_t *actor;
    s_entry_t *reg;
    size_t n_reg;
    bool stale;   /* reg may miss a change: pins cannot be judged */
};

static void s_op_destroy(s_op_t **op_p)
{
    s_op_t *op = *op_p;
    if (!op)
        return;
    zframe_destroy(&op->to);
    free(op->name), free(op->version), free(op->actor), free(op->source);
    free(op->metrics), free(op->sha256), free(op->base_sha256), free(op->targets);
    free(op->file);
    sq_wire_enc_destroy(&op->reply);
    s_entries_free(&op->snap, op->n_snap);
    free(op);
    *op_p = NULL;
}

bool sq_lora_name_ok(const char *s, size_t n)
{
    if (!s || n == 0 || n >= S_NAME || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* Names and versions become file names: a safe alphabet only. */
static bool s_safe(const char *s)
{
    return s && sq_lora_name_ok(s, strlen(s));
}

/* A tensor name in "targets": 1-12 of [a-z_]. It is a span of the message,
 * not NUL-terminated, so every byte is checked by index. */
static bool s_target_ok(const char *s, size_t n)
{
    if (n == 0 || n > 12)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return false;
    return true;
}

/* ---- the request thread ---- */

/* Append "v\n" to *pins ("\n" first): false when out of memory. */
static bool s_pin_add(char **pins, const char *version)
{
    size_t have = *pins ? strlen(*pins) : 1, n = strlen(version);
    char *p = realloc(*pins, have + n + 2);
    if (!p)
        return false;
    if (!*pins)
        p[0] = '\n';
    memcpy(p + have, version, n);
    memcpy(p + have + n, "\n", 2);
    *pins = p;
    return true;
}

/* The registry: one entry a name, every version but the rolled back. */
static int s_snapshot(sq_db_t *db, s_entry_t **out, size_t *n_out)
{
    PGresult *res = NULL;
    int rc = sq_db_exec(db, "SELECT name, version, state, coalesce(canary_pct, 0)"
                            " FROM lora_updates WHERE state <> 'rolled_back'"
                            " ORDER BY name", 0, NULL, &res);
    if (rc)
        return rc;
    int n = PQntuples(res);
    s_entry_t *e = calloc((size_t)n + 1, sizeof *e);
    size_t k = 0;
    bool ok = e != NULL;
    for (int i = 0; ok && i < n; i++) {
        const char *name = PQgetvalue(res, i, 0), *version = PQgetvalue(res, i, 1);
        const char *state = PQgetvalue(res, i, 2);
        if (k == 0 || strcmp(e[k - 1].name, name) != 0)
            snprintf(e[k++].name, S_NAME, "%s", name);
        s_entry_t *x = &e[k - 1];
        ok = s_pin_add(&x->pins, version);
        if (!strcmp(state, "active"))
            snprintf(x->version, S_NAME, "%s", version);
        else if (!strcmp(state, "canary")) {
            snprintf(x->canary, S_NAME, "%s", version);
            x->canary_pct = atoi(PQgetvalue(res, i, 3));
        }
    }
    PQclear(res);
    if (!ok) {
        s_entries_free(&e, k);
        return SQ_FAIL(SQ_ENOMEM, "adapter registry");
    }
    *out = e;
    *n_out = k;
    return 0;
}

/* A file written beside its final place (dir/rel), synced, not yet in
 * place: the change that needs it commits first (s_file_place), or the
 * file goes (s_file_drop), so that no file is there that the database
 * does not record, and no record names a file that is not there. */
typedef struct {
    char path[4096], tmp[4200];
    bool staged;
} s_file_t;

static int s_file_stage(s_file_t *f, const char *dir, const char *rel, const void *data,
                        size_t n)
{
    snprintf(f->path, sizeof f->path, "%s/%s", dir, rel);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%d", f->path, (int)getpid());
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return SQ_FAIL(-errno, "%s: %s", f->tmp, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(f->tmp);
            return SQ_FAIL(-e, "%s: %s", f->tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(f->tmp);
        return SQ_FAIL(-e, "%s: %s", f->tmp, strerror(e));
    }
    f->staged = true;
    return 0;
}

static void s_file_drop(s_file_t *f)
{
    if (f->staged)
        unlink(f->tmp);
    f->staged = false;
}

/* After the commit: the file in place. A rename in the same directory
 * does not fail for want of space; if it fails at all the change stands
 * (it is committed) and the log says what the workers lack. */
static void s_file_place(s_file_t *f)
{
    if (f->staged && rename(f->tmp, f->path) != 0) {
        SQ_ERROR("adapter file not in place after its change was committed",
                 "path=%s error=\"%s\"", f->path, strerror(errno));
        unlink(f->tmp);
    }
    f->staged = false;
}

/* End the transaction: ROLLBACK after a failure, else COMMIT; then the
 * staged file (f, may be unstaged) goes in place or goes. A COMMIT whose
 * answer was lost with the connection may have landed: that is no
 * retryable error, or the client would make the change twice, and the
 * file goes in place as for a change that landed (a retry of it is then
 * refused as done, or makes it). */
static int s_end(sq_db_t *db, int rc, s_file_t *f)
{
    bool unknown = false;
    if (rc) {
        sq_db_rollback(db);
    } else if ((rc = sq_db_commit(db)) != 0 && !sq_db_is_up(db)) {
        unknown = true;
        rc = SQ_FAIL(SQ_ESTATE, "the database connection was lost during COMMIT: the change may "
                                "or may not have been made (see `shardq lora list`)");
    }
    if (rc == 0 || unknown)
        s_file_place(f);
    else
        s_file_drop(f);
    return rc;
}

/* One state change: its lora_events row and its audit row. */
static int s_record(sq_db_t *db, const s_op_t *op, const char *version, const char *from,
                    const char *to, const char *action)
{
    char pct[16];
    snprintf(pct, sizeof pct, "%llu", (unsigned long long)op->canary_pct);
    const char *p[6] = {op->name, version, from, to, op->actor, pct};
    int rc = sq_db_exec(db, "INSERT INTO lora_events (name, version, from_state, to_state, actor,"
                            " details) VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'canary'"
                            " THEN jsonb_build_object('canary_pct', $6::int) ELSE '{}' END)",
                        6, p, NULL);
    const char *a[7] = {op->actor, action, op->name, version, from, to, pct};
    if (rc == 0)
        rc = sq_db_exec(db, "INSERT INTO audit_log (actor, action, subject, details)"
                            " VALUES ($1, $2, 'lora:' || $3 || '@' || $4,"
                            " jsonb_build_object('from', $5::text, 'to', $6::text,"
                            " 'canary_pct', CASE WHEN $6 = 'canary' THEN $7::int END))",
                        7, a, NULL);
    return rc;
}

static int s_set_state(sq_db_t *db, const s_op_t *op, const char *version, const char *state)
{
    char pct[16];
    snprintf(pct, sizeof pct, "%llu", (unsigned long long)op->canary_pct);
    const char *p[5] = {op->name, version, state, op->actor, pct};
    return sq_db_exec(db, "UPDATE lora_updates SET state = $3, updated_at = now(),"
                          " updated_by = $4, canary_pct = CASE WHEN $3 = 'canary'"
                          " THEN $5::int END WHERE name = $1 AND version = $2",
                      5, p, NULL);
}

/* The single row of a query as text, "" when none. */
static int s_one(sq_db_t *db, const char *sql, int n, const char *const *p, char *out, size_t size)
{
    PGresult *res = NULL;
    int rc = sq_db_exec(db, sql, n, p, &res);
    out[0] = '\0';
    if (rc == 0 && PQntuples(res) > 0)
        snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* DIR/NAME/active naming version, staged (nothing without a directory) */
static int s_active_file(s_file_t *f, const char *dir, const char *name, const char *version)
{
    if (!dir)
        return 0;
    char rel[300], line[S_NAME + 2];
    snprintf(rel, sizeof rel, "%s/active", name);
    int n = snprintf(line, sizeof line, "%s\n", version);
    return s_file_stage(f, dir, rel, line, (size_t)n);
}

static int s_publish(sq_db_t *db, const char *dir, s_op_t *op)
{
    if (!dir)
        return SQ_FAIL(SQ_ESTATE, "this broker has no --adapters directory: publish is off");
    char sha[65], have[S_NAME], rel[300];
    snprintf(rel, sizeof rel, "%s/%s.gguf", op->name, op->version);
    int rc = sq_sha256_hex(op->file, op->file_len, sha);
    if (rc == 0 && strcmp(sha, op->sha256) != 0)
        return SQ_FAIL(SQ_EINVAL, "field \"sha256\": the file's checksum is %s, not %s", sha,
                       op->sha256);
    const char *k[2] = {op->name, op->version};
    if (rc == 0)
        rc = s_one(db, "SELECT sha256 || ' ' || state FROM lora_updates"
                       " WHERE name = $1 AND version = $2", 2, k, have, sizeof have);
    /* published before: the same file again (a nightly job rerun after a
     * lost answer or a refused activation) changes nothing; another file
     * is refused */
    const char *state = have[0] && strchr(have, ' ') ? strchr(have, ' ') + 1 : "staged";
    const bool repeated = rc == 0 && have[0];
    if (repeated && strncmp(have, sha, 64) != 0)
        return SQ_FAIL(SQ_ESTATE, "adapter %s@%s is already published (state %s) with "
                       "another file (sha256 %.64s): publish this one as a new version",
                       op->name, op->version, state, have);
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", dir, op->name);
    if (rc == 0 && !repeated && mkdir(sub, 0755) != 0 && errno != EEXIST)
        rc = SQ_FAIL(-errno, "%s: %s", sub, strerror(errno));
    char size[32], rank[16];
    snprintf(size, sizeof size, "%zu", op->file_len);
    snprintf(rank, sizeof rank, "%llu", (unsigned long long)op->rank);
    const char *p[10] = {op->name, op->version, sha, size, rank, op->targets, op->base_sha256,
                         op->source, op->metrics, op->actor};
    if (rc == 0 && !repeated && (rc = sq_db_begin(db)) == 0) {
        s_file_t file = {.staged = false};
        rc = s_file_stage(&file, dir, rel, op->file, op->file_len);
        if (rc == 0)
            rc = sq_db_exec(db, "INSERT INTO lora_updates (name, version, state, sha256,"
                                " size_bytes, rank, targets, base_sha256, source, metrics,"
                                " created_by, updated_by) VALUES ($1, $2, 'staged', $3, $4, $5,"
                                " string_to_array($6, ','), $7, $8, $9::jsonb, $10, $10)",
                            10, p, NULL);
        if (rc == 0)
            rc = s_record(db, op, op->version, NULL, "staged", "lora_published");
        rc = s_end(db, rc, &file);
    }
    if (rc == 0) {
        op->reply = sq_wire_enc_new();
        sq_wire_map(op->reply, repeated ? 5 : 4);
        sq_wire_kv_u64(op->reply, "rid", op->rid);
        sq_wire_kv_str(op->reply, "state", state);
        sq_wire_kv_str(op->reply, "sha256", sha);
        sq_wire_kv_str(op->reply, "path", rel);
        if (repeated)
            sq_wire_kv_bool(op->reply, "repeated", true);
    }
    return rc;
}

/* Activate (or, canary_pct > 0, start a canary of) a version. The
 * states (docs/lora.md): staged -> canary -> active -> retired, staged ->
 * active, retired -> active (back to a known version), canary|active ->
 * rolled_back, which is final. A canary needs an active version for the
 * rest of the tasks. */
static int s_activate(sq_db_t *db, const char *dir, s_op_t *op)
{
    char state[S_NAME], other[S_NAME], active[S_NAME];
    const char *k[2] = {op->name, op->version};
    int rc = sq_db_begin(db);
    if (rc)
        return rc;
    rc = s_one(db, "SELECT state FROM lora_updates WHERE name = $1 AND version = $2 FOR UPDATE",
               2, k, state, sizeof state);
    if (rc == 0 && !state[0])
        rc = SQ_FAIL(SQ_ENOTFOUND, "adapter %s@%s was never published", op->name, op->version);
    if (rc == 0 && !strcmp(state, "rolled_back"))
        rc = SQ_FAIL(SQ_ESTATE, "%s@%s was rolled back, which is final: publish a new version",
                     op->name, op->version);
    /* (the active version, locked: a change of it waits for this one) */
    if (rc == 0)
        rc = s_one(db, "SELECT version FROM lora_updates WHERE name = $1 AND state = 'active'"
                       " FOR UPDATE", 1, k, active, sizeof active);
    bool done = rc == 0 && op->canary_pct > 0 && !strcmp(state, "active");
    if (done) {
        /* a canary asked for a version already active (promoted since: a
         * nightly job run again) asks for nothing more */
    } else if (rc == 0 && op->canary_pct > 0) {
        /* a canary already running takes the new share (or, the same, is
         * left as it is: a rerun) */
        char pct[16] = "";
        bool again = strcmp(state, "canary") == 0;
        if (again)
            rc = s_one(db, "SELECT canary_pct FROM lora_updates WHERE name = $1 AND version = $2",
                       2, k, pct, sizeof pct);
        if (rc == 0 && !again && strcmp(state, "staged") != 0)
            rc = SQ_FAIL(SQ_ESTATE, "%s@%s is %s: a canary starts from a staged version",
                         op->name, op->version, state);
        if (rc == 0 && !active[0])
            rc = SQ_FAIL(SQ_ESTATE, "adapter %s has no active version for the other %d%% of "
                         "tasks: activate %s@%s without --canary", op->name,
                         100 - (int)op->canary_pct, op->name, op->version);
        if (rc == 0)
            rc = s_one(db, "SELECT version FROM lora_updates WHERE name = $1 AND state = 'canary'"
                           " AND version <> $2", 2, k, other, sizeof other);
        if (rc == 0 && other[0])
            rc = SQ_FAIL(SQ_ESTATE, "%s@%s is in canary: activate or roll it back first",
                         op->name, other);
        if (rc == 0 && (!again || strtoull(pct, NULL, 10) != op->canary_pct) &&
            (rc = s_set_state(db, op, op->version, "canary")) == 0)
            rc = s_record(db, op, op->version, state, "canary", "lora_canary");
    } else if (rc == 0) {
        if (active[0] && strcmp(active, op->version) != 0 &&
            (rc = s_set_state(db, op, active, "retired")) == 0)
            rc = s_record(db, op, active, "active", "retired", "lora_retired");
        if (rc == 0 && strcmp(state, "active") != 0 &&
            (rc = s_set_state(db, op, op->version, "active")) == 0)
            rc = s_record(db, op, op->version, state, "active", "lora_activated");
    }
    s_file_t file = {.staged = false};
    if (rc == 0 && op->canary_pct == 0)
        rc = s_active_file(&file, dir, op->name, op->version);
    rc = s_end(db, rc, &file);
    if (rc == 0) {
        op->reply = sq_wire_enc_new();
        sq_wire_map(op->reply, 2);
        sq_wire_kv_u64(op->reply, "rid", op->rid);
        sq_wire_kv_str(op->reply, "state", op->canary_pct && !done ? "canary" : "active");
    }
    return rc;
}

static int s_rollback(sq_db_t *db, const char *dir, s_op_t *op)
{
    char canary[S_NAME], active[S_NAME] = "", prev[S_NAME];
    const char *k[1] = {op->name};
    const char *restored = NULL;
    int rc = sq_db_begin(db);
    if (rc)
        return rc;
    rc = s_one(db, "SELECT version FROM lora_updates WHERE name = $1 AND state = 'canary'"
                   " FOR UPDATE", 1, k, canary, sizeof canary);
    if (rc == 0 && canary[0]) {
        if ((rc = s_set_state(db, op, canary, "rolled_back")) == 0)
            rc = s_record(db, op, canary, "canary", "rolled_back", "lora_rolled_back");
    } else if (rc == 0) {
        rc = s_one(db, "SELECT version FROM lora_updates WHERE name = $1 AND state = 'active'"
                       " FOR UPDATE", 1, k, active, sizeof active);
        if (rc == 0 && !active[0])
            rc = SQ_FAIL(SQ_ENOTFOUND, "adapter %s has no active or canary version to roll back",
                         op->name);
        if (rc == 0)
            rc = s_one(db, "SELECT version FROM lora_updates WHERE name = $1 AND state = 'retired'"
                           " ORDER BY updated_at DESC, id DESC LIMIT 1 FOR UPDATE",
                       1, k, prev, sizeof prev);
        if (rc == 0 && !prev[0])
            rc = SQ_FAIL(SQ_ESTATE, "adapter %s has no earlier version to return to", op->name);
        if (rc == 0 && (rc = s_set_state(db, op, active, "rolled_back")) == 0)
            rc = s_record(db, op, active, "active", "rolled_back", "lora_rolled_back");
        if (rc == 0 && (rc = s_set_state(db, op, prev, "active")) == 0)
            rc = s_record(db, op, prev, "retired", "active", "lora_activated");
        restored = prev;
    }
    s_file_t file = {.staged = false};
    if (rc == 0 && restored)
        rc = s_active_file(&file, dir, op->name, restored);
    rc = s_end(db, rc, &file);
    if (rc == 0) {
        op->reply = sq_wire_enc_new();
        sq_wire_map(op->reply, 3);
        sq_wire_kv_u64(op->reply, "rid", op->rid);
        sq_wire_kv_str(op->reply, "rolled_back", canary[0] ? canary : active);
        sq_wire_kv_str(op->reply, "active", restored);
    }
    return rc;
}

static int s_list(sq_db_t *db, s_op_t *op)
{
    static const char *const cols[] = {"name", "version", "state", "canary_pct", "sha256",
                                       "size_bytes", "rank", "targets", "source", "metrics",
                                       "created_at", "created_by", "updated_at", "updated_by"};
    enum { N_COLS = sizeof cols / sizeof cols[0] };
    PGresult *res = NULL;
    const char *p[1] = {op->name};
    int rc = sq_db_exec(db, "SELECT name, version, state, canary_pct::text, sha256,"
                            " size_bytes::text, rank::text, array_to_string(targets, ','),"
                            " source, metrics::text, to_char(created_at AT TIME ZONE 'UTC',"
                            " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), created_by,"
                            " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                            " updated_by FROM lora_updates WHERE $1::text IS NULL OR name = $1"
                            " ORDER BY name, id", 1, p, &res);
    if (rc)
        return rc;
    int n = PQntuples(res);
    op->reply = sq_wire_enc_new();
    sq_wire_map(op->reply, 2);
    sq_wire_kv_u64(op->reply, "rid", op->rid);
    sq_wire_key(op->reply, "adapters");
    sq_wire_array(op->reply, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        sq_wire_map(op->reply, N_COLS);
        for (int c = 0; c < N_COLS; c++)
            sq_wire_kv_str(op->reply, cols[c], PQgetisnull(res, i, c) ? NULL : PQgetvalue(res, i, c));
    }
    PQclear(res);
    return 0;
}

/* Run op. *stale: a change was committed but the version table could not
 * be read after it; the next op (a list too) reads it. */
static void s_run(sq_db_t **db, const char *conninfo, const char *dir, s_op_t *op, bool *stale)
{
    if (!*db || !sq_db_is_up(*db)) {
        sq_db_destroy(db);
        if (sq_db_connect(conninfo, 2000, db) != 0) {
            op->rc = SQ_EDBDOWN;
            snprintf(op->error, sizeof op->error, "database unavailable: %s", sq_error_detail());
            return;
        }
    }
    int rc = op->kind == S_PUBLISH    ? s_publish(*db, dir, op)
           : op->kind == S_ACTIVATE   ? s_activate(*db, dir, op)
           : op->kind == S_ROLLBACK   ? s_rollback(*db, dir, op)
                                      : s_list(*db, op);
    if (rc == 0 && (op->kind != S_LIST || *stale)) {
        /* the change is committed: its reply says so whatever comes now
         * (an error would be retried, and make the change twice) */
        *stale = s_snapshot(*db, &op->snap, &op->n_snap) != 0;
        if (*stale)
            SQ_ERROR("adapter versions not reread after a change", "detail=\"%s\"",
                     sq_error_detail());
    }
    if (rc) {
        op->rc = rc;
        snprintf(op->error, sizeof op->error, "%s", sq_error_detail());
        sq_wire_enc_destroy(&op->reply);
        /* a change that failed with the connection may have committed
         * (its COMMIT's answer lost): read the versions again, now if the
         * database answers, else with the next request */
        if (op->kind != S_LIST && !sq_db_is_up(*db)) {
            sq_db_destroy(db);
            *stale = sq_db_connect(conninfo, 2000, db) != 0 ||
                     s_snapshot(*db, &op->snap, &op->n_snap) != 0;
        }
    }
}

static void s_actor(zsock_t *pipe, void *arg)
{
    sq_lora_t *self = arg;
    sq_db_t *db = NULL;
    bool stale = false;
    zsock_signal(pipe, 0);
    for (;;) {
        zmsg_t *m = zmsg_recv(pipe);
        if (!m)
            break;
        char *cmd = zmsg_popstr(m);
        bool term = cmd && !strcmp(cmd, "$TERM");
        zframe_t *f = term ? NULL : zmsg_pop(m);
        free(cmd);
        zmsg_destroy(&m);
        if (term)
            break;
        s_op_t *op = NULL;
        if (f && zframe_size(f) == sizeof op)
            memcpy(&op, zframe_data(f), sizeof op);
        zframe_destroy(&f);
        if (!op)
            continue;
        s_run(&db, self->conninfo, self->dir, op, &stale);
        op->stale = stale;
        zsock_send(pipe, "sp", "DONE", op);
    }
    sq_db_destroy(&db);
}

/* ---- the loop side ---- */

sq_lora_t *sq_lora_new(const char *conninfo, const char *adapters_dir)
{
    sq_lora_t *self = calloc(1, sizeof *self);
    if (!self || !(self->conninfo = strdup(conninfo ? conninfo : "")) ||
        (adapters_dir && !(self->dir = strdup(adapters_dir)))) {
        sq_lora_destroy(&self);
        SQ_FAIL(SQ_ENOMEM, "lora");
        return NULL;
    }
    if (self->dir && mkdir(self->dir, 0755) != 0 && errno != EEXIST) {
        SQ_FAIL(-errno, "--adapters %s: %s", self->dir, strerror(errno));
        sq_lora_destroy(&self);
        return NULL;
    }
    sq_db_t *db = NULL;
    int rc = sq_db_connect(self->conninfo, 10000, &db);
    if (rc == 0)
        rc = s_snapshot(db, &self->reg, &self->n_reg);
    sq_db_destroy(&db);
    if (rc || !(self->actor = zactor_new(s_actor, self))) {
        if (!rc)
            SQ_FAIL(SQ_ENOMEM, "lora thread");
        sq_lora_destroy(&self);
        return NULL;
    }
    return self;
}

void sq_lora_destroy(sq_lora_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_lora_t *self = *self_p;
    zactor_destroy(&self->actor);
    free(self->conninfo);
    free(self->dir);
    s_entries_free(&self->reg, self->n_reg);
    free(self);
    *self_p = NULL;
}

zsock_t *sq_lora_sock(sq_lora_t *self)
{
    return zactor_sock(self->actor);
}

static int s_field(sq_wire_val_t b, const char *key, bool required, char **out)
{
    int rc = sq_wire_get_strdup(b, key, required, SQ_WIRE_MAX_NAME, out);
    if (rc == 0 && *out && !s_safe(*out))
        rc = SQ_FAIL(SQ_EINVAL, "field \"%s\": use 1-128 of [A-Za-z0-9._-], not starting with '.'",
                     key);
    return rc;
}

static int s_parse(s_op_t *op, sq_wire_val_t b)
{
    char *kind = NULL;
    int rc = sq_wire_get_strdup(b, "op", true, 16, &kind);
    if (rc == 0) {
        op->kind = !strcmp(kind, "publish") ? S_PUBLISH : !strcmp(kind, "activate") ? S_ACTIVATE
                 : !strcmp(kind, "rollback") ? S_ROLLBACK : !strcmp(kind, "list") ? S_LIST : -1;
        if ((int)op->kind < 0)
            rc = SQ_FAIL(SQ_EINVAL, "field \"op\": %s is not publish, activate, rollback or list",
                         kind);
    }
    free(kind);
    if (rc == 0)
        rc = s_field(b, "name", op->kind != S_LIST, &op->name);
    if (rc == 0 && (op->kind == S_PUBLISH || op->kind == S_ACTIVATE))
        rc = s_field(b, "version", true, &op->version);
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "actor", false, SQ_WIRE_MAX_NAME, &op->actor);
    if (rc == 0 && !op->actor && !(op->actor = strdup("unknown")))
        rc = SQ_ENOMEM;
    if (rc == 0 && op->kind == S_ACTIVATE)
        rc = sq_wire_get_u64(b, "canary_pct", false, 99, &op->canary_pct);
    sq_wire_val_t pct;
    if (rc == 0 && op->kind == S_ACTIVATE && op->canary_pct == 0 &&
        sq_wire_map_find(b, "canary_pct", &pct) == 0)
        rc = SQ_FAIL(SQ_EINVAL, "field \"canary_pct\": 1 to 99 (leave it out to activate)");
    if (rc || op->kind != S_PUBLISH)
        return rc;
    sq_wire_val_t file, targets, t;
    rc = sq_wire_map_find(b, "file", &file);
    if (rc || sq_wire_type(file) != SQ_WIRE_T_BIN)
        return SQ_FAIL(SQ_EINVAL, "field \"file\": the adapter bytes (bin) are required");
    /* a bin value: marker, length, then the bytes at the end of the span */
    size_t hdr = file.p[0] == 0xc4 ? 2 : file.p[0] == 0xc5 ? 3 : 5;
    op->file_len = file.n - hdr;
    if (op->file_len == 0 || op->file_len > S_MAX_FILE)
        return SQ_FAIL(SQ_ETOOBIG, "field \"file\": %zu bytes (1 to %u)", op->file_len, S_MAX_FILE);
    if (!(op->file = malloc(op->file_len)))
        return SQ_FAIL(SQ_ENOMEM, "adapter of %zu bytes", op->file_len);
    memcpy(op->file, file.p + hdr, op->file_len);
    if ((rc = sq_wire_get_strdup(b, "sha256", true, 64, &op->sha256)) ||
        (rc = sq_wire_get_strdup(b, "base_sha256", false, 64, &op->base_sha256)) ||
        (rc = sq_wire_get_strdup(b, "source", false, SQ_WIRE_MAX_ERROR, &op->source)) ||
        (rc = sq_wire_get_strdup(b, "metrics", false, SQ_WIRE_MAX_TEXT, &op->metrics)) ||
        (rc = sq_wire_get_u64(b, "rank", true, 4096, &op->rank)))
        return rc;
    if (op->rank < 1)
        return SQ_FAIL(SQ_EINVAL, "field \"rank\": must be 1 to 4096");
    if (op->metrics) {
        json_error_t err;
        json_t *j = json_loads(op->metrics, 0, &err);
        bool obj = json_is_object(j);
        json_decref(j);
        if (!obj)
            return SQ_FAIL(SQ_EINVAL, "field \"metrics\": not a JSON object");
    }
    if ((rc = sq_wire_get_array(b, "targets", true, S_MAX_TARGETS, &targets)))
        return rc;
    char buf[S_MAX_TARGETS * 16] = "";
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, targets);
    while (sq_wire_iter_next(&it, &t)) {
        const char *s;
        size_t n;
        if (sq_wire_val_str(t, &s, &n) || !s_target_ok(s, n))
            return SQ_FAIL(SQ_EINVAL, "field \"targets\": not a list of tensor names");
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%.*s", buf[0] ? "," : "", (int)n, s);
    }
    return (op->targets = strdup(buf)) ? 0 : SQ_FAIL(SQ_ENOMEM, "targets");
}

int sq_lora_request(sq_lora_t *self, zframe_t *to, uint64_t rid, sq_wire_val_t body)
{
    s_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return SQ_FAIL(SQ_ENOMEM, "lora request");
    op->rid = rid;
    int rc = s_parse(op, body);
    if (rc == 0 && !(op->to = zframe_dup(to)))
        rc = SQ_FAIL(SQ_ENOMEM, "lora request");
    if (rc == 0 && zsock_send(zactor_sock(self->actor), "sp", "OP", op) != 0)
        rc = SQ_FAIL(SQ_EIO, "lora thread unavailable");
    if (rc)
        s_op_destroy(&op);
    return rc;
}

int sq_lora_take_done(sq_lora_t *self, sq_lora_done_t *out)
{
    char *cmd = NULL;
    void *p = NULL;
    if (zsock_recv(zactor_sock(self->actor), "sp", &cmd, &p) != 0 || !p) {
        free(cmd);
        return SQ_EAGAIN;
    }
    free(cmd);
    s_op_t *op = p;
    self->stale = op->stale && !op->snap;
    if (op->snap) {
        s_entries_free(&self->reg, self->n_reg);
        self->reg = op->snap;
        self->n_reg = op->n_snap;
        op->snap = NULL;
        for (size_t i = 0; i < self->n_reg; i++)
            if (self->reg[i].version[0] || self->reg[i].canary[0])
                SQ_INFO("adapter versions", "name=%s active=%s canary=%s canary_pct=%d",
                    self->reg[i].name, self->reg[i].version[0] ? self->reg[i].version : "-",
                    self->reg[i].canary[0] ? self->reg[i].canary : "-", self->reg[i].canary_pct);
    }
    *out = (sq_lora_done_t){.to = op->to, .rid = op->rid, .rc = op->rc, .reply = op->reply};
    snprintf(out->error, sizeof out->error, "%s", op->error);
    op->to = NULL;
    op->reply = NULL;
    s_op_destroy(&op);
    return 0;
}

const char *sq_lora_resolve(const sq_lora_t *self, const char *name, uint64_t task_id)
{
    if (!self || !name)
        return NULL;
    for (size_t i = 0; i < self->n_reg; i++) {
        const s_entry_t *e = &self->reg[i];
        if (strcmp(e->name, name) != 0)
            continue;
        if (e->canary[0]) {
            /* splitmix64 of the task id: uniform, and stable across retries */
            uint64_t z = task_id + 0x9e3779b97f4a7c15ull;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            if (!e->version[0] || (int)(z % 100) < e->canary_pct)
                return e->canary;
        }
        return e->version[0] ? e->version : NULL;
    }
    return NULL;
}

bool sq_lora_pin_ok(const sq_lora_t *self, const char *name, const char *version)
{
    if (self && self->stale) /* a version published since may be missing */
        return true;
    for (size_t i = 0; self && i < self->n_reg; i++) {
        const s_entry_t *e = &self->reg[i];
        if (strcmp(e->name, name) != 0)
            continue;
        size_t n = strlen(version);
        for (const char *p = e->pins ? strstr(e->pins, version) : NULL; p;
             p = strstr(p + 1, version))
            if (p[-1] == '\n' && p[n] == '\n')
                return true;
        return false;
    }
    return true;
}

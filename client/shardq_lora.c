/*  shardq_lora: `shardq lora publish|activate|rollback|list` — LoRA adapter
 *  updates recorded by the broker in lora_updates (sql/0003_lora.sql).
 *
 *  publish checks the adapter file here first (llama.cpp LoRA keys, every
 *  tensor a known pair, shapes that fit --base when given) with the
 *  engine's GGUF reader, so a broken file never reaches the broker; the
 *  broker then checks the SHA-256 again, stores the file where the worker
 *  groups read it and records the version as staged.
 */
#define _POSIX_C_SOURCE 200809L
#include "shardq_cli.h"
#include "sq_client_internal.h"
#include "sq_file.h"
#include "sq_gguf.h"
#include "sq_lora.h"
#include "sq_sha256.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_FILE (60u << 20)

typedef struct {
    const char *op, *name, *version, *source, *metrics, *actor;
    char sha256[65], base_sha256[65];
    const uint8_t *file;
    size_t file_len;
    int rank;
    unsigned targets;
    uint64_t canary_pct;
} s_req_t;

static int s_build(sq_wire_enc_t *e, uint64_t rid, const void *arg)
{
    const s_req_t *r = arg;
    bool pub = !strcmp(r->op, "publish");
    uint32_t n = 3 + (r->name != NULL) + (r->version != NULL) + (r->canary_pct > 0) +
                 (pub ? 4 + (r->source != NULL) + (r->metrics != NULL) + (r->base_sha256[0] != 0)
                      : 0);
    sq_wire_map(e, n);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_str(e, "op", r->op);
    sq_wire_kv_str(e, "actor", r->actor);
    if (r->name)
        sq_wire_kv_str(e, "name", r->name);
    if (r->version)
        sq_wire_kv_str(e, "version", r->version);
    if (r->canary_pct > 0)
        sq_wire_kv_u64(e, "canary_pct", r->canary_pct);
    if (!pub)
        return 0;
    sq_wire_key(e, "file");
    msgpack_pack_bin(sq_wire_enc_packer(e), r->file_len);
    msgpack_pack_bin_body(sq_wire_enc_packer(e), r->file, r->file_len);
    sq_wire_kv_str(e, "sha256", r->sha256);
    sq_wire_kv_u64(e, "rank", (uint64_t)r->rank);
    sq_wire_key(e, "targets");
    uint32_t n_t = 0;
    for (int t = 0; t < SQ_LORA_N_TARGETS; t++)
        n_t += (r->targets >> t) & 1;
    sq_wire_array(e, n_t);
    for (int t = 0; t < SQ_LORA_N_TARGETS; t++)
        if ((r->targets >> t) & 1)
            sq_wire_str(e, sq_lora_target_name((sq_lora_target_t)t), SIZE_MAX);
    if (r->base_sha256[0])
        sq_wire_kv_str(e, "base_sha256", r->base_sha256);
    if (r->source)
        sq_wire_kv_str(e, "source", r->source);
    if (r->metrics)
        sq_wire_kv_str(e, "metrics", r->metrics);
    return 0;
}

/* Who is acting: $SHARDQ_ACTOR, else the login name. */
static const char *s_actor(void)
{
    const char *a = getenv("SHARDQ_ACTOR");
    if (a && *a)
        return a;
    struct passwd *pw = getpwuid(getuid());
    return pw ? pw->pw_name : "unknown";
}

static int s_call(s_req_t *r, sq_wire_msg_t **reply)
{
    r->actor = s_actor();
    sq_client_t *c = sq_cli_client();
    if (!c)
        return sq_cli_exit_code(sq_error_code());
    /* publish, activate and rollback change the registry: never sent twice */
    int rc = strcmp(r->op, "list") ? sq_client_request_change(c, SQ_WIRE_LORA, s_build, r, reply)
                                   : sq_client_request(c, SQ_WIRE_LORA, s_build, r, reply);
    sq_client_destroy(&c);
    return rc ? sq_cli_fail(rc) : 0;
}

/* Parse a subcommand's argv (positionals into pos) and, unless it was
 * only --help, send r. 0 with *reply set, or the exit code; *reply stays
 * NULL when --help was answered. */
static int s_parse_call(const sq_cli_cmd_t *cmd, int argc, char **argv, const sq_cli_opt_t *opts,
                        const char **pos, int n_want, int n_min, s_req_t *r,
                        sq_wire_msg_t **reply)
{
    bool done;
    *reply = NULL;
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, pos, n_want, n_min, &done);
    if (rc || done)
        return rc;
    if (pos && pos[0] && !r->name)
        r->name = pos[0];
    return s_call(r, reply);
}

static int s_publish(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    s_req_t r = {.op = "publish"};
    const char *file = NULL, *base = NULL;
    bool done;
    sq_cli_opt_t opts[] = {{"--name", NULL, &r.name, NULL},   {"--version", NULL, &r.version, NULL},
                           {"--file", NULL, &file, NULL},      {"--base", NULL, &base, NULL},
                           {"--source", NULL, &r.source, NULL},
                           {"--metrics", NULL, &r.metrics, NULL}, {NULL, NULL, NULL, NULL}};
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, NULL, 0, 0, &done);
    if (rc || done)
        return rc;
    if (!r.name || !r.version || !file) {
        fprintf(stderr, "shardq %s: missing%s%s%s (usage: shardq %s %s)\n", cmd->name,
                r.name ? "" : " --name", r.version ? "" : " --version", file ? "" : " --file",
                cmd->name, cmd->args);
        return SQ_EXIT_USAGE;
    }
    sq_gguf_t *g = sq_gguf_open(file), *b = NULL;
    if (!g)
        return sq_cli_fail(sq_error_code() ? sq_error_code() : SQ_EFORMAT);
    if (base && !(b = sq_gguf_open(base))) {
        sq_gguf_destroy(&g);
        return sq_cli_fail(sq_error_code() ? sq_error_code() : SQ_EFORMAT);
    }
    rc = sq_lora_check(g, b, &r.rank, &r.targets);
    sq_gguf_destroy(&g);
    sq_gguf_destroy(&b);
    if (rc == 0 && base)
        rc = sq_sha256_file_hex(base, r.base_sha256);
    char *data = NULL;
    if (rc == 0)
        rc = sq_file_read(file, S_MAX_FILE, &data, &r.file_len);
    if (rc) {
        fprintf(stderr, "shardq: %s: %s\n", file, sq_error_detail());
        return SQ_EXIT_INVALID;
    }
    r.file = (const uint8_t *)data;
    sq_sha256_hex(data, r.file_len, r.sha256);
    sq_wire_msg_t *reply = NULL;
    rc = s_call(&r, &reply);
    free(data);
    if (rc)
        return rc;
    bool repeated = false;
    char state[32];
    sq_wire_get_bool(reply->body, "repeated", false, &repeated);
    sq_client_get_fixed(reply->body, "state", state, sizeof state);
    if (repeated)   /* the same file again: a rerun of a nightly job */
        printf("%s@%s was published before with this file (sha256 %s); it is %s, nothing "
               "changed (its source, metrics and base stay the first publish's)\n", r.name,
               r.version, r.sha256, state);
    else
        printf("published %s@%s: rank %d, %zu bytes, sha256 %s (staged)\n", r.name, r.version,
               r.rank, r.file_len, r.sha256);
    sq_wire_msg_destroy(&reply);
    return SQ_EXIT_OK;
}

/* NAME@VERSION into its parts (in place). */
static int s_split(char *arg, const char **name, const char **version)
{
    char *at = strchr(arg, '@');
    if (!at || at == arg || !at[1]) {
        fprintf(stderr, "shardq: '%s' is not NAME@VERSION\n", arg);
        return SQ_EXIT_USAGE;
    }
    *at = '\0';
    *name = arg;
    *version = at + 1;
    return 0;
}

static int s_activate(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    s_req_t r = {.op = "activate"};
    const char *pct = NULL, *pos[1];
    bool done;
    sq_cli_opt_t opts[] = {{"--canary", NULL, &pct, NULL}, {NULL, NULL, NULL, NULL}};
    int rc = sq_cli_cmd_parse(cmd, argc, argv, opts, pos, 1, 1, &done);
    if (rc || done || (pct && (rc = sq_cli_parse_uint(cmd->name, "--canary", pct, 1, 99,
                                                      &r.canary_pct))))
        return rc;
    char arg[300];
    snprintf(arg, sizeof arg, "%s", pos[0]);
    if ((rc = s_split(arg, &r.name, &r.version)))
        return rc;
    sq_wire_msg_t *reply = NULL;
    if ((rc = s_call(&r, &reply)))
        return rc;
    char state[32];
    sq_client_get_fixed(reply->body, "state", state, sizeof state);
    if (!strcmp(state, "canary"))
        printf("%s@%s is in canary for %llu%% of new tasks\n", r.name, r.version,
               (unsigned long long)r.canary_pct);
    else   /* (a canary asked for a version active already: nothing to do) */
        printf("%s@%s is active for new tasks%s\n", r.name, r.version,
               r.canary_pct ? " (it was already: nothing changed)" : "");
    sq_wire_msg_destroy(&reply);
    return SQ_EXIT_OK;
}

static int s_rollback(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    s_req_t r = {.op = "rollback"};
    const char *pos[1] = {NULL};
    sq_wire_msg_t *reply = NULL;
    int rc = s_parse_call(cmd, argc, argv, NULL, pos, 1, 1, &r, &reply);
    if (rc || !reply)
        return rc;
    char gone[130], active[130];
    sq_client_get_fixed(reply->body, "rolled_back", gone, sizeof gone);
    sq_client_get_fixed(reply->body, "active", active, sizeof active);
    if (active[0])
        printf("%s@%s rolled back; %s@%s is active again\n", r.name, gone, r.name, active);
    else
        printf("%s@%s rolled back; the active version stays\n", r.name, gone);
    sq_wire_msg_destroy(&reply);
    return SQ_EXIT_OK;
}

static int s_list(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    s_req_t r = {.op = "list"};
    const char *pos[1] = {NULL};
    bool json = false;
    sq_cli_opt_t opts[] = {{"--json", NULL, NULL, &json}, {NULL, NULL, NULL, NULL}};
    sq_wire_msg_t *reply = NULL;
    int rc = s_parse_call(cmd, argc, argv, opts, pos, 1, 0, &r, &reply);
    if (rc || !reply)
        return rc;
    static const char *const cols[] = {"name", "version", "state", "canary_pct", "sha256",
                                       "size_bytes", "rank", "targets", "source", "metrics",
                                       "created_at", "created_by", "updated_at", "updated_by"};
    sq_wire_val_t arr, m;
    json_t *out = json ? json_array() : NULL;
    if (!json)
        printf("%-16s %-16s %-12s %6s %-14s %5s %-20s %s\n", "NAME", "VERSION", "STATE", "CANARY",
               "SHA256", "RANK", "UPDATED", "BY");
    if (sq_wire_get_array(reply->body, "adapters", true, 100000, &arr) == 0) {
        sq_wire_iter_t it;
        sq_wire_iter_init(&it, arr);
        while (sq_wire_iter_next(&it, &m)) {
            enum { N = sizeof cols / sizeof cols[0] };
            char *v[N];   /* whole: source and metrics may be long */
            for (size_t c = 0; c < N; c++)
                v[c] = sq_client_get_dup(m, cols[c]);
            if (json) {
                json_t *o = json_object();
                for (size_t c = 0; c < N; c++) {
                    json_t *val = !v[c] || !v[c][0] ? json_null()
                                : (c == 3 || c == 5 || c == 6) ? json_integer(atoll(v[c]))
                                : c == 9 ? json_loads(v[c], 0, NULL) : json_string(v[c]);
                    json_object_set_new(o, cols[c], val ? val : json_null());
                }
                json_array_append_new(out, o);
            } else {
#define S_COL(c) (v[c] ? v[c] : "")
                printf("%-16s %-16s %-12s %6s %-14.12s %5s %-20s %s\n", S_COL(0), S_COL(1),
                       S_COL(2), v[3] && v[3][0] ? v[3] : "-", S_COL(4), S_COL(6), S_COL(12),
                       S_COL(13));
#undef S_COL
            }
            for (size_t c = 0; c < N; c++)
                free(v[c]);
        }
    }
    if (json)
        sq_cli_print_json(out);
    sq_wire_msg_destroy(&reply);
    return SQ_EXIT_OK;
}

static const sq_cli_cmd_t s_sub[] = {
    {"lora publish", s_publish,
     "--name NAME --version V --file ADAPTER.gguf [--base MODEL] [--source TEXT] [--metrics JSON]",
     "Check an adapter file (against the base model with --base) and record it as staged.\n",
     "  --name, --version   adapter name and version: [A-Za-z0-9._-]\n"
     "  --file F            GGUF LoRA adapter (llama.cpp convention), at most 60 MiB\n"
     "  --base MODEL        the base model: shapes are checked, its sha256 recorded\n"
     "  --source TEXT       where the adapter comes from (training run, commit)\n"
     "  --metrics JSON      evaluation figures, a JSON object\n"},
    {"lora activate", s_activate, "NAME@VERSION [--canary PCT]",
     "Make VERSION the one new tasks get (or, with --canary, PCT % of them).\n",
     "  --canary PCT        1..99: only this share of new tasks, by task id\n"},
    {"lora rollback", s_rollback, "NAME",
     "End the canary, or return to the previously active version.\n", ""},
    {"lora list", s_list, "[NAME] [--json]", "Show adapter versions and their states.\n",
     "  --json              print a JSON array\n"},
};

int sq_cli_lora(const sq_cli_cmd_t *cmd, int argc, char **argv)
{
    const char *op = argc > 1 ? argv[1] : "";
    for (size_t i = 0; i < sizeof s_sub / sizeof s_sub[0]; i++)
        if (!strcmp(op, s_sub[i].name + 5))
            return s_sub[i].fn(&s_sub[i], argc - 1, argv + 1);
    /* --help asked for it (stdout, 0); anything else, none included, is
     * a usage error (all of it to stderr, 2) */
    const bool help = !strcmp(op, "--help") || !strcmp(op, "-h");
    FILE *out = help ? stdout : stderr;
    fprintf(out, "usage: shardq lora publish|activate|rollback|list ...\n");
    for (size_t i = 0; i < sizeof s_sub / sizeof s_sub[0]; i++)
        fprintf(out, "  shardq %s %s\n      %s", s_sub[i].name, s_sub[i].args,
                s_sub[i].summary);
    (void)cmd;
    return help ? SQ_EXIT_OK : SQ_EXIT_USAGE;
}

/*  sq_oneshot: one generation through the whole engine, printed once.
 *
 *  --json prints {"prompt_ids": [...], "ids": [...], "text": "..."} with
 *  the text escaped for JSON; bytes that are not valid UTF-8 (a byte
 *  token can end mid-character) become U+FFFD so the line is always
 *  valid JSON.
 */
#include "sq_oneshot.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_error.h"
#include "sq_log.h"

static void s_print_ids(const int32_t *ids, size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", ids[i]);
    putchar(']');
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t s_utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
               : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || len > n || (len == 2 && s[0] < 0xC2) || (len == 4 && s[0] > 0xF4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((len == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (len == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
        (len == 4 && s[0] == 0xF0 && s[1] < 0x90) || (len == 4 && s[0] == 0xF4 && s[1] >= 0x90))
        return 0;
    return len;
}

static void s_print_json_string(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    putchar('"');
    for (size_t i = 0; i < n;) {
        size_t len = s_utf8_len(s + i, n - i);
        if (len == 0) {
            fputs("\\ufffd", stdout);
            i++;
        } else if (len > 1) {
            fwrite(s + i, 1, len, stdout);
            i += len;
        } else {
            unsigned char c = s[i++];
            if (c == '"' || c == '\\')
                printf("\\%c", c);
            else if (c == '\n')
                fputs("\\n", stdout);
            else if (c == '\t')
                fputs("\\t", stdout);
            else if (c == '\r')
                fputs("\\r", stdout);
            else if (c < 0x20 || c == 0x7f)
                printf("\\u%04x", c);
            else
                putchar(c);
        }
    }
    putchar('"');
}

static void s_print(const sq_oneshot_opts_t *o, const sq_gen_result_t *r)
{
    if (o->json) {
        fputs("{\"prompt_ids\": ", stdout);
        s_print_ids(r->prompt_ids, r->n_prompt);
        fputs(", \"ids\": ", stdout);
        s_print_ids(r->ids, r->n_ids);
        fputs(", \"text\": ", stdout);
        s_print_json_string(r->text, r->text_len);
        printf(", \"finish_reason\": \"%s\"}\n", sq_finish_name(r->finish));
    } else {
        fwrite(r->text, 1, r->text_len, stdout);
        putchar('\n');
    }
    fflush(stdout);
}

int sq_oneshot_run(const sq_oneshot_opts_t *o)
{
    sq_tp_comm_t *comm = sq_tp_comm_mpi_world_new();
    if (!comm) {
        SQ_ERROR("cannot set up the rank group", "error=\"%s\"", sq_error_detail());
        return 1;
    }
    int rank = comm->rank(comm);
    sq_engine_params_t ep = {.model_path = o->model_path, .device = o->device,
                             .n_threads = o->n_threads, .n_ctx = o->n_ctx,
                             .kv_type = o->kv_type, .comm = comm};
    sq_engine_t *e = sq_engine_new(&ep);
    int code = 1;
    if (!e) {
        char q[512];
        SQ_ERROR("cannot load model", "rank=%d error=%s", rank,
                 sq_log_quote(sq_error_detail(), q, sizeof q));
    } else {
        sq_gen_result_t r;
        int rc = sq_engine_generate(e, o->prompt, strlen(o->prompt), &o->gen, &r);
        if (rc) {
            char q[512];
            SQ_ERROR("generation failed", "rank=%d code=%s error=%s", rank, sq_strerror(rc),
                     sq_log_quote(sq_error_detail(), q, sizeof q));
        } else {
            if (rank == 0)
                s_print(o, &r);
            code = 0;
        }
        sq_gen_result_free(&r);
    }
    char *profile = sq_engine_profile(e);   /* SHARDQ_PROFILE=1: the table, at the end */
    if (profile)
        fprintf(stderr, "rank %d device profile:\n%s", rank, profile);
    free(profile);
    sq_engine_destroy(&e);
    sq_tp_comm_destroy(&comm);
    return code;
}

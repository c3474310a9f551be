/*  test_jsonl: job-file validation (both shapes, every error naming its line
 *  and field, hostile strings, caps) and OpenAI-Batch result lines. */
#define _POSIX_C_SOURCE 200809L
#include "sq_error.h"
#include "sq_jsonl.h"
#include "sq_test.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sq_jsonl_t *
s_parse(const char *text)
{
    sq_jsonl_t *j = NULL;
    int rc = sq_jsonl_parse(text, strlen(text), NULL, &j);
    if (rc)
        fprintf(stderr, "unexpected parse error: %s\n", sq_error_detail());
    return j;
}

/* Parse must fail with rc and a detail containing every needle. */
static int
s_rejects(const char *text, size_t len, const sq_jsonl_limits_t *lim, int rc_want,
          const char *needle1, const char *needle2)
{
    sq_jsonl_t *j = NULL;
    int rc = sq_jsonl_parse(text, len, lim, &j);
    const char *d = sq_error_detail();
    int ok = rc == rc_want && j == NULL && strstr(d, needle1) && (!needle2 || strstr(d, needle2));
    if (!ok)
        fprintf(stderr, "rc=%d (want %d) detail: %s\n  wanted: %s / %s\n", rc, rc_want, d,
                needle1, needle2 ? needle2 : "");
    sq_jsonl_destroy(&j);
    return ok;
}

#define REJECTS(text, rc, n1, n2) s_rejects(text, strlen(text), NULL, rc, n1, n2)

static void
test_simple_shape(void)
{
    sq_jsonl_t *j = s_parse(
        "{\"custom_id\":\"r-1\",\"prompt\":\"Summarise Q3\",\"max_tokens\":128,\"temperature\":0}\n"
        "\n"
        "  \r\n"
        "{\"custom_id\":\"r-2\",\"prompt\":\"x\",\"top_p\":0.5,\"seed\":7,\"stop\":[\"\\n\","
        "\"END\"]}");
    SQ_REQUIRE(j);
    SQ_CHECK(sq_jsonl_size(j) == 2);
    const sq_jsonl_task_t *t = sq_jsonl_task(j, 0);
    SQ_CHECK(t->line_no == 1 && t->kind == SQ_JSONL_KIND_SIMPLE);
    SQ_CHECK(t->custom_id_len == 3 && memcmp(t->custom_id, "r-1", 3) == 0);
    SQ_CHECK(t->prompt_len == 12 && strcmp(t->prompt, "Summarise Q3") == 0);
    SQ_CHECK(t->max_tokens == 128 && t->temperature == 0 && isnan(t->top_p) && t->seed == -1);
    SQ_CHECK(t->model == NULL && sq_jsonl_model(j) == NULL);
    t = sq_jsonl_task(j, 1);
    SQ_CHECK(t->line_no == 4 && t->max_tokens == -1 && isnan(t->temperature));
    SQ_CHECK(t->top_p == 0.5 && t->seed == 7 && t->n_stop == 2);
    SQ_CHECK(strcmp(t->stop[0], "\n") == 0 && strcmp(t->stop[1], "END") == 0);
    SQ_CHECK(sq_jsonl_task(j, 2) == NULL);
    sq_jsonl_destroy(&j);
    /* a byte order mark and CRLF line ends are accepted */
    j = s_parse("\xEF\xBB\xBF{\"custom_id\":\"w\",\"prompt\":\"crlf\"}\r\n{\"custom_id\":\"x\","
                "\"prompt\":\"y\"}\r\n");
    SQ_REQUIRE(j);
    SQ_CHECK(sq_jsonl_size(j) == 2 && strcmp(sq_jsonl_task(j, 0)->prompt, "crlf") == 0);
    sq_jsonl_destroy(&j);
    sq_jsonl_destroy(&j); /* safe twice */
    SQ_CHECK(j == NULL);
}

#define LINE_COMPLETION                                                                  \
    "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\","                  \
    "\"body\":{\"model\":\"tiny\",\"prompt\":\"Hello\",\"max_tokens\":5,\"n\":1,"           \
    "\"stream\":false,\"user\":\"u1\",\"stop\":\"\\n\"}}\n"
#define LINE_CHAT                                                                        \
    "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","             \
    "\"body\":{\"model\":\"tiny\",\"max_completion_tokens\":9,\"messages\":["            \
    "{\"role\":\"system\",\"content\":\"Be brief.\"},"                                   \
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},"               \
    "{\"type\":\"text\",\"text\":\"there\"}]}]}}\n"

static void
test_batch_shapes(void)
{
    sq_jsonl_t *j = s_parse(LINE_COMPLETION "{\"custom_id\":\"s\",\"prompt\":\"x\"}\n");
    SQ_REQUIRE(j);
    SQ_CHECK(strcmp(sq_jsonl_model(j), "tiny") == 0);
    SQ_CHECK(sq_jsonl_kind(j) == SQ_JSONL_KIND_COMPLETION);
    const sq_jsonl_task_t *a = sq_jsonl_task(j, 0);
    SQ_CHECK(a->kind == SQ_JSONL_KIND_COMPLETION && strcmp(a->prompt, "Hello") == 0);
    SQ_CHECK(a->max_tokens == 5 && a->n_stop == 1 && strcmp(a->stop[0], "\n") == 0);
    /* the body travels verbatim as compact JSON */
    json_t *body = json_loadb(a->body_json, a->body_json_len, 0, NULL);
    SQ_CHECK(body && strcmp(json_string_value(json_object_get(body, "user")), "u1") == 0);
    json_decref(body);
    SQ_CHECK(sq_jsonl_task(j, 1)->body_json == NULL);
    sq_jsonl_destroy(&j);

    j = s_parse(LINE_CHAT);
    SQ_REQUIRE(j);
    const sq_jsonl_task_t *b = sq_jsonl_task(j, 0);
    SQ_CHECK(b->kind == SQ_JSONL_KIND_CHAT && b->max_tokens == 9);
    SQ_CHECK(sq_jsonl_kind(j) == SQ_JSONL_KIND_CHAT);
    const char *want = "<|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\n";
    SQ_CHECK(b->prompt_len == strlen(want) && strcmp(b->prompt, want) == 0);
    SQ_CHECK(strcmp(sq_jsonl_kind_name(b->kind), "chat") == 0);
    SQ_CHECK(sq_jsonl_kind_parse("completion") == SQ_JSONL_KIND_COMPLETION);
    SQ_CHECK(sq_jsonl_kind_parse("bogus") == SQ_JSONL_KIND_SIMPLE);
    sq_jsonl_destroy(&j);

    /* what OpenAI's SDKs write for unset fields (null) and fields spelled
     * out at their default are taken as not given; OpenAI's default
     * temperature is 1, a completion's prompt is not sent twice */
    j = s_parse("{\"custom_id\":\"d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                "\"body\":{\"model\":null,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
                "{\"role\":\"assistant\",\"content\":\"Yes\",\"refusal\":null}],"
                "\"max_tokens\":null,\"temperature\":null,\"top_p\":null,\"seed\":null,"
                "\"n\":1,\"stream\":false,\"logprobs\":false,\"presence_penalty\":0,"
                "\"frequency_penalty\":0.0,\"logit_bias\":{},\"tools\":[],\"user\":null,"
                "\"response_format\":{\"type\":\"text\"},\"stop\":null,\"tool_choice\":\"none\","
                "\"top_logprobs\":0,\"metadata\":{\"run\":\"q3\"},\"service_tier\":\"auto\"}}\n"
                "{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                "\"temperature\":0.25,\"top_p\":0.5}}\n");
    SQ_REQUIRE(j);
    const sq_jsonl_task_t *d = sq_jsonl_task(j, 0);
    SQ_CHECK(d->max_tokens == -1 && d->seed == -1 && d->n_stop == 0 && d->model == NULL);
    SQ_CHECK(d->temperature == 1 && isnan(d->top_p));
    SQ_CHECK(sq_jsonl_task(j, 1)->temperature == 0.25 && sq_jsonl_task(j, 1)->top_p == 0.5);
    sq_jsonl_destroy(&j);
    j = s_parse(LINE_COMPLETION);
    SQ_REQUIRE(j);
    body = json_loadb(sq_jsonl_task(j, 0)->body_json, sq_jsonl_task(j, 0)->body_json_len, 0,
                      NULL);
    SQ_CHECK(body && !json_object_get(body, "prompt") && json_object_get(body, "stop"));
    json_decref(body);
    SQ_CHECK(sq_jsonl_task(j, 0)->temperature == 1);
    sq_jsonl_destroy(&j);

    /* null shape keys (pandas writes missing columns so) leave it simple */
    j = s_parse("{\"custom_id\":\"n\",\"prompt\":\"x\",\"method\":null,\"url\":null,"
                "\"body\":null}\n");
    SQ_REQUIRE(j);
    SQ_CHECK(sq_jsonl_kind(j) == SQ_JSONL_KIND_SIMPLE && isnan(sq_jsonl_task(j, 0)->temperature));
    sq_jsonl_destroy(&j);

    /* simple lines keep stop sequences in a synthesised body */
    j = s_parse("{\"custom_id\":\"s\",\"prompt\":\"x\",\"stop\":\"END\"}");
    SQ_REQUIRE(j);
    SQ_CHECK(strcmp(sq_jsonl_task(j, 0)->body_json, "{\"stop\":\"END\"}") == 0);
    SQ_CHECK(sq_jsonl_kind(j) == SQ_JSONL_KIND_SIMPLE);
    sq_jsonl_destroy(&j);

    /* one job, one endpoint: chat after completions names the chat line */
    SQ_CHECK(REJECTS(LINE_COMPLETION "\n" LINE_CHAT, SQ_EINVAL,
                     "line 3: field \"url\": a chat task cannot join the completion tasks of "
                     "line 1", NULL));
}

/* Each bad line sits on line 3 after two good ones, so the test proves the
 * number is the line's, not the task's. */
static int
s_rejects_at_line3(const char *bad, int rc, const char *field_msg)
{
    char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"custom_id\":\"ok-1\",\"prompt\":\"p\"}\n\n%s\n{\"custom_id\":\"ok-2\","
             "\"prompt\":\"p\"}\n", bad);
    return s_rejects(buf, strlen(buf), NULL, rc, "line 3: ", field_msg);
}

/* A task may name a LoRA adapter and pin a version, in either shape. */
static void
test_adapters(void)
{
    sq_jsonl_t *j = s_parse(
        "{\"custom_id\":\"a\",\"prompt\":\"p\"}\n"
        "{\"custom_id\":\"b\",\"prompt\":\"p\",\"adapter\":\"fin\"}\n"
        "{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":"
        "{\"prompt\":\"p\",\"adapter\":\"fin\",\"adapter_version\":\"2026-11-29\"}}");
    SQ_REQUIRE(j);
    SQ_CHECK(sq_jsonl_task(j, 0)->adapter == NULL);
    SQ_CHECK(strcmp(sq_jsonl_task(j, 1)->adapter, "fin") == 0);
    SQ_CHECK(sq_jsonl_task(j, 1)->adapter_version == NULL);
    SQ_CHECK(strcmp(sq_jsonl_task(j, 2)->adapter, "fin") == 0);
    SQ_CHECK(strcmp(sq_jsonl_task(j, 2)->adapter_version, "2026-11-29") == 0);
    sq_jsonl_destroy(&j);
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"adapter\":\"../etc\"}",
                                SQ_EINVAL, "field \"adapter\": use 1-128 of"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"adapter\":\"\"}",
                                SQ_EINVAL, "field \"adapter\""));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"adapter_version\":\"v1\"}",
                                SQ_EINVAL, "field \"adapter_version\": needs \"adapter\""));
}

static void
test_field_errors(void)
{
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"max_tokens\":0}",
                                SQ_EINVAL, "field \"max_tokens\": expected a positive integer"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"max_tokens\":1.5}",
                                SQ_EINVAL, "field \"max_tokens\": expected a positive integer"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"max_tokens\":\"9\"}",
                                SQ_EINVAL, "field \"max_tokens\""));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"temperature\":3}",
                                SQ_EINVAL, "field \"temperature\": expected a number in [0, 2]"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"top_p\":-0.5}", SQ_EINVAL,
                                "field \"top_p\": expected a number in [0, 1]"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"top_p\":1.5}", SQ_EINVAL,
                                "field \"top_p\": expected a number in [0, 1]"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"seed\":-1}", SQ_EINVAL,
                                "field \"seed\""));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"stop\":[1]}", SQ_EINVAL,
                                "field \"stop\": entry 0"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"stop\":[\"a\",\"b\",\"c\","
                                "\"d\",\"e\"]}", SQ_EINVAL, "field \"stop\": expected"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\"}", SQ_EINVAL,
                                "field \"prompt\": missing (required)"));
    SQ_CHECK(s_rejects_at_line3("{\"prompt\":\"p\"}", SQ_EINVAL,
                                "field \"custom_id\": missing (required)"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":7,\"prompt\":\"p\"}", SQ_EINVAL,
                                "field \"custom_id\": expected a string"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"\",\"prompt\":\"p\"}", SQ_EINVAL,
                                "field \"custom_id\": must not be empty"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"max_token\":5}", SQ_EINVAL,
                                "field \"max_token\": unknown"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"ok-1\",\"prompt\":\"p\"}", SQ_EINVAL,
                                "field \"custom_id\": duplicate of line 1"));
    SQ_CHECK(s_rejects_at_line3("[1,2]", SQ_EFORMAT, "expected a JSON object"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",", SQ_EFORMAT, "invalid JSON"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"custom_id\":\"y\",\"prompt\":\"p\"}",
                                SQ_EFORMAT, "duplicate"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"\\ud800\"}", SQ_EFORMAT,
                                "invalid JSON"));
}

static void
test_batch_errors(void)
{
    const char *pre = "{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/completions\",";
    const char *chat = "{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",";
    char b[1024];
    SQ_CHECK(
        s_rejects_at_line3("{\"custom_id\":\"x\",\"method\":\"GET\",\"url\":\"/v1/completions\","
                           "\"body\":{\"prompt\":\"p\"}}",
                           SQ_EINVAL, "field \"method\": expected \"POST\""));
    SQ_CHECK(
        s_rejects_at_line3("{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
                           "\"body\":{}}",
                           SQ_EINVAL, "field \"url\": expected"));
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"method\":\"POST\","
                                "\"url\":\"/v1/completions\"}", SQ_EINVAL,
                                "field \"body\": missing"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"max_tokens\":-3}}", pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.max_tokens\": expected a positive"));
    snprintf(b, sizeof b, "%s\"body\":{\"max_tokens\":3}}", pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.prompt\": missing"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"n\":2}}", pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL,
                                "field \"body.n\": not supported: only its default, 1,"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"stream\":true}}", pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.stream\": not supported"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"logit_bias\":{\"50256\":-100}}}",
             pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.logit_bias\": not supported"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"presence_penalty\":0.5}}", pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.presence_penalty\": not supported"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"logprobs\":0}}", pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.logprobs\": not supported: only its "
                                              "default, null,"));
    /* each endpoint's own fields: echo is a completion's */
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
             "\"echo\":false}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.echo\": unknown"));
    /* a null shape key is no shape key; a null required field is missing */
    SQ_CHECK(s_rejects_at_line3("{\"custom_id\":\"x\",\"prompt\":\"p\",\"body\":null,"
                                "\"max_token\":1}", SQ_EINVAL, "field \"max_token\": unknown"));
    snprintf(b, sizeof b, "%s\"body\":null}", pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body\": missing (required)"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":null}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.messages\": missing (required)"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"content\":null}]}}",
             chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL,
                                "field \"body.messages[0].content\": missing (required)"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"content\":"
             "[{\"type\":\"image_url\",\"image_url\":{}}]}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "part 0: expected {\"type\":\"text\",\"text\":"
                                              "string} (only text parts)"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"max_tokens\":null,\"frobs\":1}}",
             pre);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.frobs\": unknown"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"content\":"
             "[{\"type\":\"text\",\"text\":\"a\",\"cache_control\":{}}]}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL,
                                "field \"body.messages[0].content[0].cache_control\": unknown"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.messages\": expected a non-empty"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
             "{\"role\":\"robot\",\"content\":\"b\"}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.messages[1].role\""));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\"}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.messages[0].content\": missing"));
    /* a role or part type with NUL in it is not the role or type before it
     * (strcmp would have stopped there), and name, when given, is a string */
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\\u0000x\","
             "\"content\":\"a\"}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL,
                                "field \"body.messages[0].role\": must not contain NUL"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"content\":\"a\"}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.messages[0].role\": missing"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"content\":"
             "[{\"type\":\"text\\u0000x\",\"text\":\"a\"}]}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.messages[0].content\": part 0"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"name\":5,"
             "\"content\":\"a\"}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL,
                                "field \"body.messages[0].name\": expected a string"));
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"name\":\"ann\","
             "\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}]}}\n", chat);
    sq_jsonl_t *named = s_parse(b);
    SQ_CHECK(named && sq_jsonl_size(named) == 1);
    sq_jsonl_destroy(&named);
    snprintf(b, sizeof b, "%s\"body\":{\"messages\":[{\"role\":\"user\",\"content\":"
             "[{\"type\":\"image_url\"}]}]}}", chat);
    SQ_CHECK(s_rejects_at_line3(b, SQ_EINVAL, "field \"body.messages[0].content\": part 0"));
    snprintf(b, sizeof b, "%s\"body\":{\"prompt\":\"p\",\"model\":\"other\"}}", pre);
    char file[2048];
    snprintf(file, sizeof file,
             "{\"custom_id\":\"a\",\"prompt\":\"p\",\"model\":\"tiny\"}\n%s\n", b);
    SQ_CHECK(REJECTS(file, SQ_EINVAL, "line 2: field \"body.model\": \"other\" differs from "
                                      "\"tiny\" on line 1", NULL));
}

/* NUL, quotes, backslashes, SQL, emoji and RTL text survive byte for byte;
 * invalid UTF-8 is refused with its line and byte. */
static void
test_hostile_strings(void)
{
    sq_jsonl_t *j = s_parse(
        "{\"custom_id\":\"id\\u0000'; DROP TABLE jobs;--\",\"prompt\":\"a\\u0000b\\\"c\\\\d "
        "\xF0\x9F\x92\xB8 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \\ud83d\\ude00\"}\n");
    SQ_REQUIRE(j);
    const sq_jsonl_task_t *t = sq_jsonl_task(j, 0);
    const char id[] = "id\0'; DROP TABLE jobs;--";
    SQ_CHECK(t->custom_id_len == sizeof id - 1 && memcmp(t->custom_id, id, sizeof id - 1) == 0);
    const char p[] =
        "a\0b\"c\\d \xF0\x9F\x92\xB8 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xF0\x9F\x98\x80";
    SQ_CHECK(t->prompt_len == sizeof p - 1 && memcmp(t->prompt, p, sizeof p - 1) == 0);
    sq_jsonl_destroy(&j);

    /* "é" cut in half on line 2, byte 28 */
    const char bad[] =
        "{\"custom_id\":\"a\",\"prompt\":\"p\"}\n{\"custom_id\":\"b\",\"prompt\":\"\xC3\"}\n";
    SQ_CHECK(s_rejects(bad, sizeof bad - 1, NULL, SQ_EFORMAT, "line 2: invalid UTF-8 at byte 28",
                       NULL));
    const char overlong[] = "{\"custom_id\":\"\xC0\xAF\",\"prompt\":\"p\"}";
    SQ_CHECK(s_rejects(overlong, sizeof overlong - 1, NULL, SQ_EFORMAT, "line 1: invalid UTF-8",
                       NULL));
    const char surrogate[] = "{\"custom_id\":\"\xED\xA0\x80\",\"prompt\":\"p\"}";
    SQ_CHECK(s_rejects(surrogate, sizeof surrogate - 1, NULL, SQ_EFORMAT, "invalid UTF-8", NULL));
    /* a raw NUL byte outside a string is not JSON */
    const char raw_nul[] = "{\"custom_id\":\"a\",\0\"prompt\":\"p\"}";
    SQ_CHECK(s_rejects(raw_nul, sizeof raw_nul - 1, NULL, SQ_EFORMAT, "line 1: ", "invalid JSON"));
    SQ_CHECK(REJECTS("{\"custom_id\":\"a\",\"prompt\":\"p\",\"model\":\"m\\u0000x\"}", SQ_EINVAL,
                     "field \"model\": must not contain NUL", NULL));
    /* an unknown key of 400 two-byte characters: the detail names it, cut
     * to fit on a whole character, and stays UTF-8 */
    char key_line[1024];
    int at = snprintf(key_line, sizeof key_line, "{\"custom_id\":\"a\",\"prompt\":\"p\",\"");
    for (int i = 0; i < 400; i++)
        at += snprintf(key_line + at, sizeof key_line - at, "\xC3\xA9");
    snprintf(key_line + at, sizeof key_line - at, "\":1}");
    SQ_CHECK(REJECTS(key_line, SQ_EINVAL, "line 1: field \"\xC3\xA9\xC3\xA9", "unknown"));
    const char *d = sq_error_detail();
    SQ_CHECK(sq_jsonl_utf8_valid_prefix(d, strlen(d)) == strlen(d));
    SQ_CHECK(sq_jsonl_utf8_valid_prefix("ab\xF4\x90\x80\x80", 6) == 2); /* > U+10FFFF */
    SQ_CHECK(sq_jsonl_utf8_valid_prefix("\xE2\x82\xAC", 3) == 3);
    SQ_CHECK(sq_jsonl_utf8_valid_prefix("\xE2\x82", 2) == 0);
}

static void
test_caps(void)
{
    sq_jsonl_limits_t lim = {.max_line_bytes = 64, .max_file_bytes = 4096, .max_tasks = 3};
    const char *three =
        "{\"custom_id\":\"1\",\"prompt\":\"p\"}\n{\"custom_id\":\"2\",\"prompt\":\"p\"}\n"
        "{\"custom_id\":\"3\",\"prompt\":\"p\"}\n";
    sq_jsonl_t *j = NULL;
    SQ_CHECK(sq_jsonl_parse(three, strlen(three), &lim, &j) == 0 && sq_jsonl_size(j) == 3);
    sq_jsonl_destroy(&j);
    char four[512];
    snprintf(four, sizeof four, "%s{\"custom_id\":\"4\",\"prompt\":\"p\"}\n", three);
    SQ_CHECK(s_rejects(four, strlen(four), &lim, SQ_ETOOBIG, "line 4: more than 3 tasks", NULL));
    const char *long_line =
        "{\"custom_id\":\"1\",\"prompt\":\"012345678901234567890123456789012345678901\"}";
    SQ_CHECK(s_rejects(long_line, strlen(long_line), &lim, SQ_ETOOBIG,
                       "line 1: 71 bytes, over the cap of 64 bytes per line", NULL));
    char *big = malloc(5000);
    SQ_REQUIRE(big);
    memset(big, '\n', 5000);
    SQ_CHECK(s_rejects(big, 5000, &lim, SQ_ETOOBIG, "file is 5000 bytes, over the cap", NULL));
    free(big);
    char id[600];
    memset(id, 'x', sizeof id);
    char line[800];
    snprintf(line, sizeof line, "{\"custom_id\":\"%.*s\",\"prompt\":\"p\"}", 513, id);
    SQ_CHECK(
        REJECTS(line, SQ_ETOOBIG, "field \"custom_id\": 513 bytes, over the cap of 512", NULL));
    SQ_CHECK(REJECTS("\n \n", SQ_EINVAL, "no tasks", NULL));
    /* the caps a broker client sets: wire caps and no NUL */
    sq_jsonl_limits_t wire = {.max_custom_id_bytes = 4, .max_prompt_bytes = 50, .refuse_nul = 1};
    const char *nul =
        "{\"custom_id\":\"a\",\"prompt\":\"p\"}\n{\"custom_id\":\"b\",\"prompt\":\"x\\u0000\"}";
    SQ_CHECK(s_rejects(nul, strlen(nul), &wire, SQ_EINVAL,
                       "line 2: field \"prompt\": contains NUL", NULL));
    const char *nul_id = "{\"custom_id\":\"\\u0000\",\"prompt\":\"p\"}";
    SQ_CHECK(s_rejects(nul_id, strlen(nul_id), &wire, SQ_EINVAL,
                       "line 1: field \"custom_id\": contains NUL", NULL));
    const char *long_id = "{\"custom_id\":\"abcde\",\"prompt\":\"p\"}";
    SQ_CHECK(s_rejects(long_id, strlen(long_id), &wire, SQ_ETOOBIG,
                       "line 1: field \"custom_id\": 5 bytes, over the cap of 4", NULL));
    SQ_CHECK(s_rejects(LINE_CHAT, strlen(LINE_CHAT), &wire, SQ_ETOOBIG,
                       "line 1: field \"body.messages\": prompt of 61 bytes (templated), over "
                       "the cap of 50", NULL));
    SQ_CHECK(REJECTS("", SQ_EINVAL, "no tasks", NULL));
}

static void
test_load_file(void)
{
    char path[] = "/tmp/test_jsonl_XXXXXX";
    int fd = mkstemp(path);
    SQ_REQUIRE(fd >= 0);
    const char *text = "{\"custom_id\":\"f\",\"prompt\":\"from disk\"}\n";
    SQ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    sq_jsonl_t *j = NULL;
    SQ_CHECK(sq_jsonl_load(path, NULL, &j) == 0 && j && sq_jsonl_size(j) == 1);
    sq_jsonl_destroy(&j);
    sq_jsonl_limits_t lim = {.max_file_bytes = 10};
    SQ_CHECK(sq_jsonl_load(path, &lim, &j) == SQ_ETOOBIG && !j);
    SQ_CHECK(strstr(sq_error_detail(), path) != NULL);
    unlink(path);
    SQ_CHECK(sq_jsonl_load(path, NULL, &j) == -ENOENT && !j);
    SQ_CHECK(strstr(sq_error_detail(), path) != NULL);
    /* a directory opens, then fails to read: named as what it is */
    SQ_CHECK(sq_jsonl_load("/tmp", NULL, &j) == SQ_EINVAL && !j);
    SQ_CHECK(strcmp(sq_error_detail(), "/tmp: is a directory, not a file") == 0);
}

static json_t *
s_format(const sq_jsonl_result_t *r)
{
    char *line = NULL;
    size_t len = 0;
    if (sq_jsonl_format_result(r, &line, &len) != 0)
        return NULL;
    json_error_t err;
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &err);
    if (!j || memchr(line, '\n', len))
        fprintf(stderr, "bad line: %s\n", line);
    free(line);
    return j;
}

/* The stop strings a worker reads from a task's body */
static int
s_body_stop(const char *body, char **stop, int *n)
{
    return sq_jsonl_body_stop(body, strlen(body), stop, n);
}

static void
test_body_stop(void)
{
    char *stop[SQ_JSONL_MAX_STOP];
    int n = -1;
    SQ_CHECK(s_body_stop("{\"model\":\"m\",\"prompt\":\"p\"}", stop, &n) == 0 && n == 0);
    SQ_CHECK(s_body_stop("{\"stop\":null}", stop, &n) == 0 && n == 0);
    SQ_REQUIRE(s_body_stop("{\"stop\":\"Lily\"}", stop, &n) == 0 && n == 1);
    SQ_CHECK(strcmp(stop[0], "Lily") == 0);
    free(stop[0]);
    SQ_REQUIRE(s_body_stop("{\"stop\":[\"\\n\",\"END\",\"\u00e9\"]}", stop, &n) == 0 && n == 3);
    SQ_CHECK(!strcmp(stop[0], "\n") && !strcmp(stop[1], "END") && !strcmp(stop[2], "\xc3\xa9"));
    for (int i = 0; i < n; i++)
        free(stop[i]);
    /* what a job file may not hold, a body may not either */
    SQ_CHECK(s_body_stop("{\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", stop, &n) == SQ_EINVAL &&
             n == 0);
    SQ_CHECK(strcmp(sq_error_detail(), "field \"body.stop\": expected a string or an array of at "
                                       "most 4 strings") == 0);
    SQ_CHECK(s_body_stop("{\"stop\":[\"a\",\"\"]}", stop, &n) == SQ_EINVAL && n == 0);
    SQ_CHECK(strstr(sq_error_detail(), "field \"body.stop\": entry 1: expected a non-empty"));
    SQ_CHECK(s_body_stop("{\"stop\":[\"a\\u0000b\"]}", stop, &n) == SQ_EINVAL && n == 0);
    SQ_CHECK(s_body_stop("[1]", stop, &n) == SQ_EINVAL);
    SQ_CHECK(strcmp(sq_error_detail(), "field \"body\": not a JSON object") == 0);
    SQ_CHECK(s_body_stop("{\"stop\":", stop, &n) == SQ_EINVAL);
    const char *prefix = "field \"body\": not a JSON object: ";
    SQ_CHECK(strncmp(sq_error_detail(), prefix, strlen(prefix)) == 0);
}

/* A chat task's turns, as a worker renders them from the body it gets:
 * the text between the template's "</s>", joined again the job's prompt;
 * a "</s>" in a message is inside its turn */
static void
test_body_chat(void)
{
    sq_jsonl_t *j = s_parse(
        "{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
        "\"body\":{\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a</s>\"},"
        "{\"type\":\"text\",\"text\":\"b\\u0000\"}]}]}}\n");
    SQ_REQUIRE(j);
    const sq_jsonl_task_t *t = sq_jsonl_task(j, 0);
    sq_jsonl_chat_t chat;
    SQ_REQUIRE(sq_jsonl_body_chat(t->body_json, t->body_json_len, &chat) == 0);
    static const char *const want[] = {"<|system|>\nBe brief.", "\n<|user|>\na</s>b\0",
                                       "\n<|assistant|>\n"};
    static const size_t want_len[] = {20, 17, 15};
    SQ_REQUIRE(chat.n_turns == 3);
    for (size_t i = 0, from = 0; i < 3; from = chat.ends[i++])
        SQ_CHECK(chat.ends[i] - from == want_len[i] &&
                 memcmp(chat.text + from, want[i], want_len[i]) == 0);
    char *prompt;
    size_t len;
    SQ_REQUIRE(sq_jsonl_chat_prompt(&chat, &prompt, &len) == 0);
    SQ_CHECK(len == t->prompt_len && memcmp(prompt, t->prompt, len) == 0);
    SQ_CHECK(len == 60 && memcmp(prompt, "<|system|>\nBe brief.</s>\n<|user|>\na</s>b\0</s>\n"
                                         "<|assistant|>\n", len) == 0);
    free(prompt);
    sq_jsonl_chat_free(&chat);
    sq_jsonl_chat_free(&chat);   /* safe twice */
    sq_jsonl_destroy(&j);
    /* a body without valid messages has no turns, named as in a job file */
    SQ_CHECK(sq_jsonl_body_chat("{\"prompt\":\"x\"}", 14, &chat) == SQ_EINVAL && chat.n_turns == 0);
    SQ_CHECK(strcmp(sq_error_detail(), "field \"body.messages\": missing (required)") == 0);
    const char *bad = "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}";
    SQ_CHECK(sq_jsonl_body_chat(bad, strlen(bad), &chat) == SQ_EINVAL && chat.text == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "field \"body.messages[0].role\": expected") != NULL);
    SQ_CHECK(sq_jsonl_body_chat("[]", 2, &chat) == SQ_EINVAL);
    /* the kind a job's params name */
    SQ_CHECK(sq_jsonl_params_kind("{\"kind\":\"chat\"}", 15) == SQ_JSONL_KIND_CHAT);
    SQ_CHECK(sq_jsonl_params_kind("{\"kind\":\"completion\"}", 21) == SQ_JSONL_KIND_COMPLETION);
    SQ_CHECK(sq_jsonl_params_kind("{}", 2) == SQ_JSONL_KIND_SIMPLE);
    SQ_CHECK(sq_jsonl_params_kind("not json", 8) == SQ_JSONL_KIND_SIMPLE);
    SQ_CHECK(sq_jsonl_params_kind(NULL, 0) == SQ_JSONL_KIND_SIMPLE);
}

static void
test_result_lines(void)
{
    const char text[] = "Q3 \0up \xF0\x9F\x93\x88";
    sq_jsonl_result_t r = {.job_id = "j7", .task_id = 42, .custom_id = "r\"1", .custom_id_len = 3,
                           .kind = SQ_JSONL_KIND_COMPLETION, .outcome = SQ_JSONL_RESULT_OK,
                           .text = text, .text_len = sizeof text - 1, .model = "tiny",
                           .finish_reason = "length", .prompt_tokens = 5,
                           .completion_tokens = 4, .cached_tokens = 3, .created_s = 1700000000};
    json_t *j = s_format(&r);
    SQ_REQUIRE(j);
    SQ_CHECK(strcmp(json_string_value(json_object_get(j, "id")), "batch_req_j7-42") == 0);
    SQ_CHECK(strcmp(json_string_value(json_object_get(j, "custom_id")), "r\"1") == 0);
    SQ_CHECK(json_is_null(json_object_get(j, "error")));
    json_t *resp = json_object_get(j, "response");
    SQ_CHECK(json_integer_value(json_object_get(resp, "status_code")) == 200);
    SQ_CHECK(strcmp(json_string_value(json_object_get(resp, "request_id")), "req_j7-42") == 0);
    json_t *body = json_object_get(resp, "body");
    SQ_CHECK(strcmp(json_string_value(json_object_get(body, "object")), "text_completion") == 0);
    SQ_CHECK(strcmp(json_string_value(json_object_get(body, "model")), "tiny") == 0);
    json_t *c0 = json_array_get(json_object_get(body, "choices"), 0);
    json_t *t = json_object_get(c0, "text");
    SQ_CHECK(json_string_length(t) == sizeof text - 1 &&
             memcmp(json_string_value(t), text, sizeof text - 1) == 0);
    SQ_CHECK(strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length") == 0);
    json_t *usage = json_object_get(body, "usage");
    SQ_CHECK(json_integer_value(json_object_get(usage, "total_tokens")) == 9);
    json_t *details = json_object_get(usage, "prompt_tokens_details");
    SQ_CHECK(json_integer_value(json_object_get(details, "cached_tokens")) == 3);
    json_decref(j);

    r.kind = SQ_JSONL_KIND_CHAT;
    r.text = "ok \xC3";  /* a cut character is replaced, the line stays JSON */
    r.text_len = 4;
    r.prompt_tokens = -1;
    j = s_format(&r);
    SQ_REQUIRE(j);
    body = json_object_get(json_object_get(j, "response"), "body");
    SQ_CHECK(strcmp(json_string_value(json_object_get(body, "object")), "chat.completion") == 0);
    json_t *msg = json_object_get(json_array_get(json_object_get(body, "choices"), 0), "message");
    SQ_CHECK(strcmp(json_string_value(json_object_get(msg, "content")), "ok \xEF\xBF\xBD") == 0);
    SQ_CHECK(strcmp(json_string_value(json_object_get(msg, "role")), "assistant") == 0);
    SQ_CHECK(json_is_null(json_object_get(json_object_get(body, "usage"), "prompt_tokens")));
    json_decref(j);

    /* counts from a broken broker whose sum is past INT64_MAX: no total
     * (it used to overflow, a negative total or undefined behaviour) */
    r.prompt_tokens = INT64_MAX;
    r.completion_tokens = 1;
    j = s_format(&r);
    SQ_REQUIRE(j);
    usage = json_object_get(json_object_get(json_object_get(j, "response"), "body"), "usage");
    SQ_CHECK(json_integer_value(json_object_get(usage, "prompt_tokens")) == INT64_MAX);
    SQ_CHECK(json_is_null(json_object_get(usage, "total_tokens")));
    json_decref(j);
    r.completion_tokens = 4;

    /* a cached count unknown (an older worker): no details, as before */
    r.prompt_tokens = 5;
    r.cached_tokens = -1;
    j = s_format(&r);
    SQ_REQUIRE(j);
    usage = json_object_get(json_object_get(json_object_get(j, "response"), "body"), "usage");
    SQ_CHECK(json_integer_value(json_object_get(usage, "prompt_tokens")) == 5);
    SQ_CHECK(json_object_get(usage, "prompt_tokens_details") == NULL);
    json_decref(j);

    r.outcome = SQ_JSONL_RESULT_FAILED;
    r.error = "worker: out of memory";
    r.error_len = strlen(r.error);
    j = s_format(&r);
    SQ_REQUIRE(j);
    SQ_CHECK(json_is_null(json_object_get(j, "response")));
    json_t *err = json_object_get(j, "error");
    SQ_CHECK(strcmp(json_string_value(json_object_get(err, "code")), "task_failed") == 0);
    SQ_CHECK(strcmp(json_string_value(json_object_get(err, "message")), r.error) == 0);
    json_decref(j);
    r.outcome = SQ_JSONL_RESULT_CANCELLED;
    r.error = NULL;
    j = s_format(&r);
    SQ_REQUIRE(j);
    err = json_object_get(j, "error");
    SQ_CHECK(strcmp(json_string_value(json_object_get(err, "code")), "cancelled") == 0);
    SQ_CHECK(json_string_length(json_object_get(err, "message")) > 0);
    json_decref(j);
}

/* A 20,000-line file in both shapes parses completely and in order. */
static void
test_many_lines(void)
{
    size_t n = 20000, cap = n * 160, len = 0;
    char *buf = malloc(cap);
    SQ_REQUIRE(buf);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len,
                                i % 2 ? "{\"custom_id\":\"t%zu\",\"prompt\":\"p%zu\"}\n"
                                      : "{\"custom_id\":\"t%zu\",\"method\":\"POST\",\"url\":"
                                        "\"/v1/completions\",\"body\":{\"prompt\":\"p%zu\"}}\n",
                                i, i);
    sq_jsonl_t *j = NULL;
    SQ_CHECK(sq_jsonl_parse(buf, len, NULL, &j) == 0);
    SQ_REQUIRE(j && sq_jsonl_size(j) == n);
    const sq_jsonl_task_t *last = sq_jsonl_task(j, n - 1);
    SQ_CHECK(strcmp(last->custom_id, "t19999") == 0 && last->line_no == 20000);
    sq_jsonl_destroy(&j);
    free(buf);
}

/* Mutated files (flipped, inserted and dropped bytes, cut short) never
 * crash the parser, and every refusal names a line (or says the file is
 * empty): 3,000 deterministic mutations of a file of both shapes. */
static void
test_mutations(void)
{
    const char *base = "{\"custom_id\":\"a\",\"prompt\":\"x \\u00e9 "
                       "\\\"q\\\"\",\"max_tokens\":8,\"stop\":[\"\\n\"]}\n"
                       "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                       "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n";
    const char *base2 = "{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                        "\"body\":{\"prompt\":\"p\",\"temperature\":0.5,\"seed\":3}}\n";
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char buf[1024];
    int n_ok = 0, n_bad = 0;
    for (int round = 0; round < 3000; round++) {
        const char *src = round % 2 ? base : base2;
        size_t len = strlen(src);
        memcpy(buf, src, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % len);
            unsigned char byte = (unsigned char)(rng >> 32);
            switch ((rng >> 40) % 4) {
            case 0: buf[at] = (char)byte; break;                           /* flip */
            case 1: memmove(buf + at + 1, buf + at, len - at); buf[at] = (char)byte; len++; break;
            case 2: memmove(buf + at, buf + at + 1, len - at - 1); len--; break;
            default: len = at; break;                                      /* cut */
            }
            if (len == 0 || len > sizeof buf - 8)
                break;
        }
        sq_jsonl_t *j = NULL;
        int rc = sq_jsonl_parse(buf, len, NULL, &j);
        if (rc == 0) {
            n_ok++;
            SQ_CHECK(j && sq_jsonl_size(j) >= 1);
        } else {
            n_bad++;
            const char *d = sq_error_detail();
            SQ_CHECK(j == NULL && (strncmp(d, "line ", 5) == 0 || strstr(d, "no tasks")));
        }
        sq_jsonl_destroy(&j);
    }
    SQ_CHECK(n_ok > 0 && n_bad > 0);
}

int
main(void)
{
    SQ_RUN(test_simple_shape);
    SQ_RUN(test_batch_shapes);
    SQ_RUN(test_field_errors);
    SQ_RUN(test_adapters);
    SQ_RUN(test_batch_errors);
    SQ_RUN(test_hostile_strings);
    SQ_RUN(test_caps);
    SQ_RUN(test_load_file);
    SQ_RUN(test_body_stop);
    SQ_RUN(test_body_chat);
    SQ_RUN(test_result_lines);
    SQ_RUN(test_many_lines);
    SQ_RUN(test_mutations);
    return sq_test_summary("jsonl");
}

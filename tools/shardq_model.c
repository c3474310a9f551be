/*  shardq-model: inspect, quantize and generate GGUF model files.
 *
 *    shardq-model info FILE
 *    shardq-model quantize IN OUT q8_0
 *    shardq-model random --shape NAME [--type f32|f16|q8_0] [--seed S]
 *                 [--dim N] [--layers N] [--heads N] [--kv-heads N]
 *                 [--ffn N] [--vocab N] [--ctx N] [--tied] OUT
 *
 *  Exit codes: 0 success, 1 the command failed (bad or unreadable file,
 *  I/O error: the message names the file and the problem), 2 usage error.
 *  Commands live in a table so later ones (lora-random) slot in beside
 *  these.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shardq_model.h"
#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_version.h"

#define S_EXIT_FAIL 1
#define S_EXIT_USAGE 2

static const char s_usage[] =
    "usage: shardq-model COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  info FILE                 print a GGUF file's metadata and tensors\n"
    "  quantize IN OUT q8_0      write IN with its matrices in Q8_0 to OUT\n"
    "  random --shape NAME OUT   write a randomly initialised Llama model\n"
    "      --shape NAME          llama-110m, tinyllama-1.1b or tiny-gqa\n"
    "      --type T              f32 (default), f16 or q8_0 for the matrices\n"
    "      --seed S              random seed (default 1); same seed, same file\n"
    "      --dim N --layers N --heads N --kv-heads N --ffn N --vocab N --ctx N\n"
    "                            override one size of the shape\n"
    "      --tied                no output.weight: reuse the token embedding\n"
    "  lora-random --base MODEL --rank R OUT\n"
    "                            write a random LoRA adapter shaped for MODEL\n"
    "      --targets LIST        comma list of attn_q, attn_k, attn_v, attn_output,\n"
    "                            ffn_gate, ffn_up, ffn_down (default attn_q,attn_v)\n"
    "      --alpha A             adapter.lora.alpha (default R: scale 1)\n"
    "      --gain G              amplitude of B (default 0.05)\n"
    "      --seed S --name NAME  random seed (default 1), general.name\n"
    "  lora-merge BASE ADAPTER OUT\n"
    "                            write BASE with ADAPTER merged into its matrices\n"
    "\n"
    "options: --help, --version\n"
    "exit codes: 0 ok, 1 the command failed, 2 usage error\n";

static int s_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "shardq-model: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see shardq-model --help)\n");
    return S_EXIT_USAGE;
}

static int s_report(const char *cmd, int rc)
{
    if (rc == 0)
        return 0;
    /* the detail, then the code's text unless the detail says it already
     * (a system error's detail ends with strerror's text) */
    const char *detail = sq_error_detail(), *code = sq_strerror(rc);
    const bool said = detail[0] && strstr(detail, code);
    fprintf(stderr, "shardq-model %s: %s%s%s\n", cmd, detail, detail[0] && !said ? ": " : "",
            said ? "" : code);
    return S_EXIT_FAIL;
}

/* Positive integer argument, or -1. */
static int64_t s_parse_count(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno || end == s || *end || v <= 0 ? -1 : (int64_t) v;
}

/* The same file under two names (a link, "./x"): a command must not
 * write the file it reads (the writer truncates what the reader maps). */
static bool s_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* A whole seed: digits only (no sign: strtoull would wrap "-1") */
static int s_parse_seed(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = isdigit((unsigned char)s[0]) ? strtoull(s, &end, 10) : 0;
    if (!isdigit((unsigned char)s[0]) || errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* A finite number in [lo, hi] */
static int s_parse_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int s_cmd_info(int argc, char **argv)
{
    if (argc != 1)
        return s_usage_error("info takes one FILE%s", "");
    return s_report("info", sq_model_info(argv[0], stdout));
}

static int s_cmd_quantize(int argc, char **argv)
{
    if (argc != 3)
        return s_usage_error("quantize takes IN OUT TYPE%s", "");
    if (strcmp(argv[2], "q8_0") != 0)
        return s_usage_error("quantize: type %s is not supported (q8_0)", argv[2]);
    if (s_same_file(argv[0], argv[1]))
        return s_usage_error("quantize: %s is both input and output", argv[0]);
    return s_report("quantize", sq_model_quantize(argv[0], argv[1], stdout));
}

/* The value of --name, either "--name V" or "--name=V"; advances *i. */
static const char *s_opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int s_cmd_random(int argc, char **argv)
{
    static const struct { const char *name; size_t field; } sizes[] = {
        { "--dim", offsetof(sq_model_shape_t, dim) },
        { "--layers", offsetof(sq_model_shape_t, n_layers) },
        { "--heads", offsetof(sq_model_shape_t, n_heads) },
        { "--kv-heads", offsetof(sq_model_shape_t, n_kv_heads) },
        { "--ffn", offsetof(sq_model_shape_t, ffn) },
        { "--vocab", offsetof(sq_model_shape_t, vocab) },
        { "--ctx", offsetof(sq_model_shape_t, ctx) },
    };
    sq_model_random_opts_t o = { .dtype = SQ_DTYPE_F32, .seed = 1 };
    const char *shape = NULL, *out = NULL, *v;
    int64_t over[sizeof sizes / sizeof *sizes] = { 0 };
    for (int i = 0; i < argc; i++) {
        size_t k = 0;
        while (k < sizeof sizes / sizeof *sizes && !(v = s_opt_value(argc, argv, &i, sizes[k].name)))
            k++;
        if (k < sizeof sizes / sizeof *sizes) {
            if ((over[k] = s_parse_count(v)) < 0)
                return s_usage_error("random: %s needs a positive integer", sizes[k].name);
        } else if ((v = s_opt_value(argc, argv, &i, "--shape"))) {
            shape = v;
        } else if ((v = s_opt_value(argc, argv, &i, "--type"))) {
            o.dtype = !strcmp(v, "f32") ? SQ_DTYPE_F32 : !strcmp(v, "f16") ? SQ_DTYPE_F16
                    : !strcmp(v, "q8_0") ? SQ_DTYPE_Q8_0 : -1;
            if (o.dtype < 0)
                return s_usage_error("random: unknown --type %s (f32, f16, q8_0)", v);
        } else if ((v = s_opt_value(argc, argv, &i, "--seed"))) {
            if (s_parse_seed(v, &o.seed))
                return s_usage_error("random: --seed %s is not a whole number >= 0", v);
        } else if (strcmp(argv[i], "--tied") == 0) {
            o.tied = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return s_usage_error("random: unknown option %s", argv[i]);
        } else if (out) {
            return s_usage_error("random: one OUT file only (extra %s)", argv[i]);
        } else {
            out = argv[i];
        }
    }
    if (!shape || !out)
        return s_usage_error("random needs --shape NAME and OUT%s", "");
    const sq_model_shape_t *base = sq_model_shape_find(shape);
    if (!base)
        return s_usage_error("random: unknown shape %s (llama-110m, tinyllama-1.1b, tiny-gqa)",
                             shape);
    o.shape = *base;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        if (over[k] > 0)
            *(int64_t *) ((char *) &o.shape + sizes[k].field) = over[k];
    return s_report("random", sq_model_random(&o, out, stdout));
}

static int s_cmd_lora_random(int argc, char **argv)
{
    sq_model_lora_opts_t o = { .rank = 0, .gain = 0.05f, .seed = 1, .targets = 0x5 };
    const char *out = NULL, *v;
    for (int i = 0; i < argc; i++) {
        if ((v = s_opt_value(argc, argv, &i, "--base"))) {
            o.base_path = v;
        } else if ((v = s_opt_value(argc, argv, &i, "--rank"))) {
            int64_t r = s_parse_count(v);
            if (r < 1 || r > 1024)
                return s_usage_error("lora-random: --rank %s is not in [1, 1024]", v);
            o.rank = (int) r;
        } else if ((v = s_opt_value(argc, argv, &i, "--targets"))) {
            if (sq_model_lora_target_mask(v, &o.targets))
                return s_usage_error("lora-random: %s", sq_error_detail());
        } else if ((v = s_opt_value(argc, argv, &i, "--alpha"))) {
            if (s_parse_float(v, 0.0f, 1e6f, &o.alpha))   /* 0: the rank */
                return s_usage_error("lora-random: --alpha %s is not a number in [0, 1e6]", v);
        } else if ((v = s_opt_value(argc, argv, &i, "--gain"))) {
            if (s_parse_float(v, -1e6f, 1e6f, &o.gain))
                return s_usage_error("lora-random: --gain %s is not a finite number", v);
        } else if ((v = s_opt_value(argc, argv, &i, "--seed"))) {
            if (s_parse_seed(v, &o.seed))
                return s_usage_error("lora-random: --seed %s is not a whole number >= 0", v);
        } else if ((v = s_opt_value(argc, argv, &i, "--name"))) {
            o.name = v;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return s_usage_error("lora-random: unknown option %s", argv[i]);
        } else if (out) {
            return s_usage_error("lora-random: one OUT file only (extra %s)", argv[i]);
        } else {
            out = argv[i];
        }
    }
    if (!o.base_path || !o.rank || !out)
        return s_usage_error("lora-random needs --base MODEL, --rank R and OUT%s", "");
    if (s_same_file(o.base_path, out))
        return s_usage_error("lora-random: %s is both the base and the output", out);
    return s_report("lora-random", sq_model_lora_random(&o, out, stdout));
}

static int s_cmd_lora_merge(int argc, char **argv)
{
    if (argc != 3)
        return s_usage_error("lora-merge needs BASE ADAPTER OUT%s", "");
    if (s_same_file(argv[0], argv[2]) || s_same_file(argv[1], argv[2]))
        return s_usage_error("lora-merge: %s is both an input and the output", argv[2]);
    return s_report("lora-merge", sq_model_lora_merge(argv[0], argv[1], argv[2], stdout));
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} s_commands[] = {
    { "info", s_cmd_info },
    { "quantize", s_cmd_quantize },
    { "random", s_cmd_random },
    { "lora-random", s_cmd_lora_random },
    { "lora-merge", s_cmd_lora_merge },
};

int main(int argc, char **argv)
{
    if (argc < 2)
        return s_usage_error("no command given%s", "");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(s_usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("shardq-model %s\n", SQ_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof s_commands / sizeof *s_commands; i++)
        if (strcmp(argv[1], s_commands[i].name) == 0)
            return s_commands[i].run(argc - 2, argv + 2);
    return s_usage_error("unknown command %s", argv[1]);
}

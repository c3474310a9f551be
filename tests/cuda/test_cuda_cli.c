/*  test_cuda_cli: shardq-worker --device, through the real binary.
 *
 *    test_cuda_cli WORKER MODEL [CAUSE]
 *
 *  With CAUSE, no device may be usable, and the cause (sq_cuda_usable's,
 *  which the worker's error must repeat) must contain it:
 *  unit.cuda.emu.device_flag_no_kernels runs the emulated device with a
 *  build that has no kernels for it.
 *  --device auto prints exactly what --device cpu prints when no CUDA
 *  device is usable; --device cuda then exits 1 naming the cause ("no
 *  usable CUDA device: ..."). With a device, cuda and auto run on it and
 *  must print the CPU's greedy text; every run keeps its KV cache in F32,
 *  so that the two backends' logits differ by rounding only (the F16
 *  cache's 1e-3 could turn a near tie). An unknown device is a usage error.
 *  With a device, SHARDQ_PROFILE=1 adds the rank's profile table to
 *  stderr and changes nothing on stdout. Built against the CPU emulator
 *  (unit.cuda.emu.device_flag, with shardq-worker-emu) the device is
 *  there, so CPU CI runs the device half too.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sq_backend_cuda.h"
#include "sq_test.h"

static const char *s_worker, *s_model, *s_cause;
static char s_dir[] = "/tmp/sq-cuda-cli-XXXXXX";

typedef struct {
    int code;
    char out[4096], err[16384];
} s_run_t;

static void s_read(const char *path, char *buf, size_t size)
{
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(buf, 1, size - 1, fp) : 0;
    buf[n] = '\0';
    if (fp)
        fclose(fp);
}

/* the worker with --device device, greedy, 24 tokens, env ("VAR=value"
 * or "") in its environment */
static void s_worker_run_env(const char *env, const char *device, s_run_t *r)
{
    char cmd[2048], out[128], err[128];
    snprintf(out, sizeof out, "%s/out", s_dir);
    snprintf(err, sizeof err, "%s/err", s_dir);
    snprintf(cmd, sizeof cmd,
             "%s '%s' --model '%s' --prompt 'Once upon a time' --max-tokens 24 --kv-type f32 "
             "--device %s >'%s' 2>'%s'",
             env, s_worker, s_model, device, out, err);
    int st = system(cmd);
    r->code = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    s_read(out, r->out, sizeof r->out);
    s_read(err, r->err, sizeof r->err);
}

static void s_worker_run(const char *device, s_run_t *r)
{
    s_worker_run_env("", device, r);
}

static void test_devices(void)
{
    static s_run_t cpu, aut, cuda;
    char why[256] = "";
    const int usable = sq_cuda_usable(why, sizeof why);
    if (s_cause) {
        SQ_REQUIRE(!usable);
        SQ_CHECK(strstr(why, s_cause) != NULL);
    }
    s_worker_run("cpu", &cpu);
    s_worker_run("auto", &aut);
    s_worker_run("cuda", &cuda);
    SQ_REQUIRE(cpu.code == 0 && strlen(cpu.out) > 0);
    SQ_CHECK(aut.code == 0);
    SQ_CHECK(!strcmp(aut.out, cpu.out));
    if (!usable) {
        SQ_CHECK(cuda.code == 1);
        SQ_CHECK(cuda.out[0] == '\0');
        SQ_CHECK(strstr(cuda.err, "no usable CUDA device: ") != NULL);
        SQ_CHECK(strstr(cuda.err, why) != NULL);
        fprintf(stderr, "   --device cuda: exit %d, %s", cuda.code, cuda.err);
    } else {
        SQ_CHECK(cuda.code == 0);
        SQ_CHECK(!strcmp(cuda.out, cpu.out));
    }
}

/* SHARDQ_PROFILE=1 on a device: the same text, then rank 0's table
 * on stderr, with the steps a decode step runs (the attention on the F32
 * cache, the norms) in batch bucket [1]; none without it; on the CPU the
 * CPU backend's table */
static void test_profile(void)
{
    static s_run_t plain, prof, cpu;
    s_worker_run("cuda", &plain);
    s_worker_run_env("SHARDQ_PROFILE=1", "cuda", &prof);
    s_worker_run_env("SHARDQ_PROFILE=1", "cpu", &cpu);
    SQ_REQUIRE(plain.code == 0 && prof.code == 0 && cpu.code == 0);
    SQ_CHECK(strlen(prof.out) > 0 && !strcmp(prof.out, plain.out));
    const char *table = strstr(prof.err, "rank 0 device profile:\nCUDA profile (device 0): ");
    SQ_CHECK(table != NULL);
    SQ_CHECK(table && strstr(table, "attention kv f32 [1]") && strstr(table, "add+rmsnorm [1]") &&
             strstr(table, "all steps"));
    SQ_CHECK(strstr(plain.err, "device profile") == NULL);
    /* the CPU backend's own (sq_backend_prof), not the CUDA one */
    SQ_CHECK(strstr(cpu.err, "rank 0 device profile:\ncpu profile: ") != NULL);
    SQ_CHECK(strstr(cpu.err, "CUDA profile") == NULL);
}

static void test_unknown_device(void)
{
    static s_run_t r;
    s_worker_run("tpu", &r);
    SQ_CHECK(r.code == 2);
    SQ_CHECK(strstr(r.err, "--device: 'tpu' is not cpu, cuda or auto") != NULL);
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: test_cuda_cli WORKER MODEL [CAUSE]\n");
        return 2;
    }
    s_worker = argv[1];
    s_model = argv[2];
    s_cause = argc == 4 ? argv[3] : NULL;
    if (!mkdtemp(s_dir)) {
        perror("mkdtemp");
        return 1;
    }
    SQ_RUN(test_devices);
    SQ_RUN(test_unknown_device);
    char why[256];
    if (sq_cuda_usable(why, sizeof why))
        SQ_RUN(test_profile);
    else   /* unit.cuda.emu.device_flag runs it on the emulator */
        printf("test_profile not run: %s\n", why);
    char path[128];
    snprintf(path, sizeof path, "%s/out", s_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/err", s_dir);
    unlink(path);
    rmdir(s_dir);
    return sq_test_summary("cuda_cli");
}

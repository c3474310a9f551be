/*  test_cuda_unit: the CUDA backend's host side, with or without a device.
 *
 *    test_cuda_unit
 *
 *  Device choice from the launcher's local rank, the all-reduce plan for a
 *  group (NCCL, host path when ranks share a device or SHARDQ_NCCL=0), and
 *  device selection by name: without a usable device "cuda" fails with
 *  SQ_EDEVICE and the CUDA error text and "auto" gives the CPU backend;
 *  with one, both give the CUDA backend.
 */
#include <stdlib.h>
#include <string.h>

#include "sq_backend.h"
#include "sq_backend_cuda.h"
#include "sq_error.h"
#include "sq_test.h"

static void test_pick_device(void)
{
    SQ_CHECK(sq_cuda_pick_device(0, 4) == 0);
    SQ_CHECK(sq_cuda_pick_device(3, 4) == 3);
    /* more ranks than devices: they wrap round and share */
    SQ_CHECK(sq_cuda_pick_device(5, 4) == 1);
    SQ_CHECK(sq_cuda_pick_device(1, 1) == 0);
    SQ_CHECK(sq_cuda_pick_device(-3, 2) == 0);
    SQ_CHECK(sq_cuda_pick_device(0, 0) == -1);
}

static void test_local_rank(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (int i = 0; i < 3; i++)
        unsetenv(vars[i]);
    SQ_CHECK(sq_cuda_local_rank() == 0);
    setenv("SLURM_LOCALID", "2", 1);
    SQ_CHECK(sq_cuda_local_rank() == 2);
    /* Open MPI's variable wins over Slurm's */
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5", 1);
    SQ_CHECK(sq_cuda_local_rank() == 5);
    /* garbage is ignored, not read as 0 of the wrong launcher */
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "x7", 1);
    SQ_CHECK(sq_cuda_local_rank() == 2);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "-1", 1);
    SQ_CHECK(sq_cuda_local_rank() == 2);
    for (int i = 0; i < 3; i++)
        unsetenv(vars[i]);
}

static void test_plan_comm(void)
{
    unsigned long long distinct[4] = {sq_cuda_key("h1/0000:18:00.0"), sq_cuda_key("h1/0000:2a:00.0"),
                                      sq_cuda_key("h2/0000:18:00.0"), sq_cuda_key("h2/0000:2a:00.0")};
    unsigned long long shared[2] = {sq_cuda_key("h1/0000:18:00.0"), sq_cuda_key("h1/0000:18:00.0")};
    SQ_CHECK(distinct[0] != distinct[2]);   /* same bus id, other host */
    SQ_CHECK(sq_cuda_plan_comm(distinct, 1, true, NULL) == SQ_CUDA_COMM_LOCAL);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, true, NULL) == SQ_CUDA_COMM_NCCL);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, true, "1") == SQ_CUDA_COMM_NCCL);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, true, "0") == SQ_CUDA_COMM_HOST);
    SQ_CHECK(sq_cuda_plan_comm(distinct, 4, false, NULL) == SQ_CUDA_COMM_HOST);
    SQ_CHECK(sq_cuda_plan_comm(shared, 2, true, NULL) == SQ_CUDA_COMM_HOST);
    SQ_CHECK(sq_cuda_key("a") != sq_cuda_key("b"));
    SQ_CHECK(sq_cuda_key("") == sq_cuda_key(""));
}

static void test_device_by_name(void)
{
    char why[256] = "";
    const int usable = sq_cuda_usable(why, sizeof why);
    sq_backend_t *cuda = sq_backend_new("cuda", 1);
    sq_backend_t *aut = sq_backend_new("auto", 2);
    SQ_REQUIRE(aut != NULL);
    if (usable) {
        SQ_CHECK(cuda && sq_backend_is_cuda(cuda) && !strcmp(cuda->ops->name, "cuda"));
        SQ_CHECK(sq_backend_is_cuda(aut));
        fprintf(stderr, "   a CUDA device is usable: cuda and auto give the CUDA backend\n");
    } else {
        SQ_CHECK(cuda == NULL);
        SQ_CHECK(sq_error_code() == SQ_EDEVICE);
        SQ_CHECK(strstr(sq_error_detail(), "no usable CUDA device: ") != NULL);
        SQ_CHECK(strstr(why, "no usable CUDA device: ") == why);
        SQ_CHECK(!strcmp(aut->ops->name, "cpu") && !sq_backend_is_cuda(aut));
        SQ_CHECK(sq_backend_cuda_new(0) == NULL && sq_error_code() == SQ_EDEVICE);
        fprintf(stderr, "   %s: cuda refused, auto gives the cpu backend\n", why);
    }
    /* a device communicator needs a CUDA backend */
    sq_tp_comm_t *local = sq_tp_comm_local_new();
    SQ_CHECK(sq_tp_comm_cuda_new(usable ? NULL : aut, local) == NULL);
    SQ_CHECK(sq_error_code() == SQ_EINVAL);
    sq_tp_comm_destroy(&local);
    sq_backend_destroy(&cuda);
    sq_backend_destroy(&aut);
    SQ_CHECK(sq_backend_new("tpu", 1) == NULL && sq_error_code() == SQ_EUNSUPPORTED);
}

int main(void)
{
    SQ_RUN(test_pick_device);
    SQ_RUN(test_local_rank);
    SQ_RUN(test_plan_comm);
    SQ_RUN(test_device_by_name);
    return sq_test_summary("cuda_unit");
}

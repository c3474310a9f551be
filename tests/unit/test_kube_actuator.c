/*  The kubernetes actuator against a LOCAL HTTPS endpoint that speaks the
 *  real API shapes (sched_kube_api.py: Scale objects, Status errors, a
 *  self-signed certificate made here with openssl). A Kubernetes API
 *  server cannot run on this machine; the request/response handling,
 *  TLS verification and token use are what this test covers.
 *  argv[1]: path of sched_kube_api.py. Port 18510. */
#define _POSIX_C_SOURCE 200809L
#include "sched_testutil.h"
#include "sq_actuator.h"
#include "sq_error.h"
#include "sq_test.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *s_script = "tests/unit/sched_kube_api.py";
static char s_dir[64], s_token[128], s_server_token[128], s_ca[128], s_other_ca[128], s_log[128];
static const char *s_url = "https://127.0.0.1:18510";
static pid_t s_server = -1;

static int
s_sh(const char *fmt, const char *a)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, a, a, a, a);
    return system(cmd);
}

static void
s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static sq_actuator_t *
s_actuator(const char *ca)
{
    sq_actuator_kube_opts_t o = {.api_url = s_url, .token_path = s_token, .ca_path = ca,
                                 .namespace_ = "shardq", .timeout_ms = 3000};
    return sq_actuator_kube_new(&o);
}

static int
s_start_server(void)
{
    char cert[128], key[128], port[] = "18510";
    snprintf(cert, sizeof cert, "%s/server.crt", s_dir);
    snprintf(key, sizeof key, "%s/server.key", s_dir);
    char *argv[] = {"/usr/bin/python3", (char *)s_script, "--cert", cert, "--key", key,
                    "--port", port, "--token-file", s_server_token, "--log", s_log, NULL};
    if (posix_spawn(&s_server, argv[0], NULL, NULL, argv, environ) != 0)
        return -1;
    /* Poll until the endpoint answers TLS (or 15 s pass). */
    sq_actuator_t *a = s_actuator(s_ca);
    int rc = -1, d, c;
    for (int64_t end = sq_test_now_ms() + 15000; sq_test_now_ms() < end;) {
        if ((rc = sq_actuator_kube_get(a, "workers", &d, &c)) != SQ_EIO)
            break;
        nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
    }
    sq_actuator_destroy(&a);
    return rc;
}

/* The last request the server logged, as its JSON line. */
static void
s_last_request(char *line, size_t size)
{
    FILE *f = fopen(s_log, "r");
    line[0] = '\0';
    if (!f)
        return;
    while (fgets(line, (int)size, f))
        ;
    fclose(f);
}

static void
test_get_and_patch(void)
{
    const char *yaml = "pools:\n  - {name: p, worker: {model: m}, max_groups: 8, "
                       "target_queued_per_group: 8, kubernetes: {statefulset: workers}}\n";
    sq_policy_t *pol = sq_policy_parse(yaml, strlen(yaml), "p.yaml");
    sq_actuator_t *a = s_actuator(s_ca);
    SQ_REQUIRE(pol && a);
    const sq_pool_policy_t *p = &pol->pools[0];
    int desired = -1, current = -1;
    SQ_CHECK(sq_actuator_kube_get(a, "workers", &desired, &current) == 0);
    SQ_CHECK(desired == 1 && current == 1);
    SQ_CHECK(sq_actuator_set(a, p, 3, 0) == 0);
    char line[1024];
    s_last_request(line, sizeof line);
    SQ_CHECK(strstr(line, "\"method\": \"PATCH\"") != NULL);
    SQ_CHECK(strstr(line, "/apis/apps/v1/namespaces/shardq/statefulsets/workers/scale") != NULL);
    SQ_CHECK(strstr(line, "\"content_type\": \"application/merge-patch+json\"") != NULL);
    SQ_CHECK(strstr(line, "\"auth\": \"Bearer sq-test-token-1\"") != NULL);
    SQ_CHECK(strstr(line, "{\\\"spec\\\":{\\\"replicas\\\":3}}") != NULL);
    /* The controller catches up one pod per GET in the fake. */
    sq_actuator_counts_t c;
    SQ_CHECK(sq_actuator_counts(a, p, &c) == 0 && c.requested == 3 && c.starting == 2);
    SQ_CHECK(sq_actuator_counts(a, p, &c) == 0 && c.starting == 1);
    SQ_CHECK(sq_actuator_counts(a, p, &c) == 0 && c.starting == 0);
    /* Scale to zero: the API omits spec.replicas (omitempty). */
    SQ_CHECK(sq_actuator_set(a, p, 0, 0) == 0);
    SQ_CHECK(sq_actuator_kube_get(a, "workers", &desired, &current) == 0 && desired == 0);
    SQ_CHECK(sq_actuator_counts(a, p, &c) == 0 && c.requested == 0 && c.draining > 0);
    sq_actuator_destroy(&a);
    sq_policy_destroy(&pol);
}

static void
test_status_errors(void)
{
    const char *yaml = "pools:\n  - {name: p, worker: {model: m}, max_groups: 8, "
                       "target_queued_per_group: 8, kubernetes: {statefulset: nope}}\n"
                       "  - {name: f, worker: {model: m}, max_groups: 8, "
                       "target_queued_per_group: 8, kubernetes: {statefulset: forbidden}}\n"
                       "  - {name: workers, worker: {model: m}, max_groups: 8, "
                       "target_queued_per_group: 8}\n";
    sq_policy_t *pol = sq_policy_parse(yaml, strlen(yaml), "p.yaml");
    sq_actuator_t *a = s_actuator(s_ca);
    SQ_REQUIRE(pol && a);
    SQ_CHECK(sq_actuator_set(a, &pol->pools[0], 2, 0) == SQ_ENOTFOUND);
    SQ_CHECK(strstr(sq_error_detail(), "HTTP 404 NotFound: statefulsets.apps \"nope\" not found"));
    SQ_CHECK(sq_actuator_set(a, &pol->pools[1], 2, 0) == -EACCES);
    SQ_CHECK(strstr(sq_error_detail(), "HTTP 403 Forbidden") &&
             strstr(sq_error_detail(), "cannot patch resource \"statefulsets/scale\""));
    /* statefulset defaults to the pool name ("workers"); -1 is refused by the API. */
    SQ_CHECK(sq_actuator_set(a, &pol->pools[2], -1, 0) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "HTTP 422 Invalid") &&
             strstr(sq_error_detail(), "spec.replicas: Invalid value: -1"));
    int d, c;
    SQ_CHECK(sq_actuator_kube_get(a, "weird", &d, &c) == SQ_EPROTO);
    SQ_CHECK(strstr(sq_error_detail(), "expected a Scale object, got StatefulSet") != NULL);
    /* A rotated token is re-read on the next request; a wrong one is refused. */
    s_write(s_token, "wrong-token\n");
    SQ_CHECK(sq_actuator_kube_get(a, "workers", &d, &c) == -EACCES);
    SQ_CHECK(strstr(sq_error_detail(), "HTTP 401 Unauthorized") != NULL);
    s_write(s_token, "sq-test-token-1\n");
    SQ_CHECK(sq_actuator_kube_get(a, "workers", &d, &c) == 0);
    sq_actuator_destroy(&a);
    sq_policy_destroy(&pol);
}

static void
test_transport_errors(void)
{
    int d, c;
    sq_actuator_t *a = s_actuator(s_other_ca); /* server cert not signed by this CA */
    SQ_REQUIRE(a);
    SQ_CHECK(sq_actuator_kube_get(a, "workers", &d, &c) == SQ_EIO);
    SQ_CHECK(strstr(sq_error_detail(), "SSL") || strstr(sq_error_detail(), "certificate"));
    sq_actuator_destroy(&a);
    sq_actuator_kube_opts_t o = {.api_url = "https://127.0.0.1:18511", .token_path = s_token,
                                 .ca_path = s_ca, .namespace_ = "shardq", .timeout_ms = 2000};
    a = sq_actuator_kube_new(&o);
    SQ_REQUIRE(a);
    SQ_CHECK(sq_actuator_kube_get(a, "workers", &d, &c) == SQ_EIO);
    sq_actuator_destroy(&a);
    o.api_url = s_url;
    o.token_path = "/nonexistent/token";
    a = sq_actuator_kube_new(&o);
    SQ_REQUIRE(a);
    SQ_CHECK(sq_actuator_kube_get(a, "workers", &d, &c) == -ENOENT);
    SQ_CHECK(strstr(sq_error_detail(), "/nonexistent/token") != NULL);
    sq_actuator_destroy(&a);
    /* Outside a pod with no URL given: refused at construction. */
    unsetenv("KUBERNETES_SERVICE_HOST");
    o.api_url = NULL;
    SQ_CHECK(sq_actuator_kube_new(&o) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "no API URL") != NULL);
}

int
main(int argc, char **argv)
{
    if (argc > 1)
        s_script = argv[1];
    snprintf(s_dir, sizeof s_dir, "/tmp/sq-kube-XXXXXX");
    if (!mkdtemp(s_dir))
        return 1;
    snprintf(s_token, sizeof s_token, "%s/token", s_dir);
    snprintf(s_ca, sizeof s_ca, "%s/server.crt", s_dir);
    snprintf(s_other_ca, sizeof s_other_ca, "%s/other.crt", s_dir);
    snprintf(s_log, sizeof s_log, "%s/requests.jsonl", s_dir);
    snprintf(s_server_token, sizeof s_server_token, "%s/server-token", s_dir);
    s_write(s_token, "sq-test-token-1\n");
    s_write(s_server_token, "sq-test-token-1\n");
    const char *mk = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                     "-addext subjectAltName=IP:127.0.0.1,DNS:localhost ";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s-keyout %%s/server.key -out %%s/server.crt 2>/dev/null", mk);
    int ok = s_sh(cmd, s_dir) == 0;
    snprintf(cmd, sizeof cmd, "%s-keyout %%s/other.key -out %%s/other.crt 2>/dev/null", mk);
    ok = ok && s_sh(cmd, s_dir) == 0;
    int rc = ok ? s_start_server() : -1;
    SQ_CHECK(ok && rc == 0);
    if (rc == 0) {
        SQ_RUN(test_get_and_patch);
        SQ_RUN(test_status_errors);
        SQ_RUN(test_transport_errors);
    } else {
        fprintf(stderr, "fake API server did not come up: %s\n", sq_error_detail());
    }
    if (s_server > 0) {
        kill(s_server, SIGTERM);
        waitpid(s_server, NULL, 0);
    }
    sched_rm_tree(s_dir);
    return sq_test_summary("kube_actuator");
}

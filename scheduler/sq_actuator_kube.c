/*  sq_actuator_kube: scale a worker StatefulSet through the API server.
 *
 *    GET   {api}/apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale
 *    PATCH (same URL), Content-Type: application/merge-patch+json,
 *          body {"spec":{"replicas":N}}
 *  Replies are autoscaling/v1 Scale objects
 *    {"kind":"Scale","spec":{"replicas":3},"status":{"replicas":2,...}}
 *  or, on failure, a metav1 Status
 *    {"kind":"Status","status":"Failure","message":"...","reason":"NotFound","code":404}
 *  Credentials are the pod's service account (token re-read on every
 *  request, since projected tokens rotate; CA bundle for TLS). One pod of
 *  the StatefulSet is one worker group, so replicas = groups.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_actuator.h"

#include "sq_error.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct {
    sq_actuator_t base;
    char api[256], token_path[256], ca_path[256], ns[128];
    int timeout_ms;
    CURL *curl;
} s_kube_t;

typedef struct {
    char *data;
    size_t len;
} s_buf_t;

static size_t
s_write(char *ptr, size_t size, size_t n, void *arg)
{
    s_buf_t *b = arg;
    size_t add = size * n;
    if (b->len + add > (1u << 20))
        return 0; /* a scale reply is tiny; refuse anything huge */
    char *grown = realloc(b->data, b->len + add + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, ptr, add);
    b->data = grown;
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

static int
s_read_small(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return SQ_FAIL(-errno, "%s: %s", path, strerror(errno));
    size_t n = fread(out, 1, size - 1, f);
    fclose(f);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        n--;
    out[n] = '\0';
    return n ? 0 : SQ_FAIL(SQ_EFORMAT, "%s: empty", path);
}

/* Map a Status (or a bare HTTP code) to an SQ_E* code with a detail. */
static int
s_status_error(long http, json_t *root, const char *what)
{
    const char *reason = json_string_value(json_object_get(root, "reason"));
    const char *message = json_string_value(json_object_get(root, "message"));
    int rc = http == 404                     ? SQ_ENOTFOUND
             : http == 401 || http == 403    ? -EACCES
             : http == 409 || http == 429 || http >= 500 ? SQ_EAGAIN
             : http == 422 || http == 400    ? SQ_EINVAL
                                             : SQ_EPROTO;
    return SQ_FAIL(rc, "kubernetes %s: HTTP %ld %s: %s", what, http, reason ? reason : "",
                   message ? message : "(no Status body)");
}

/* Parse a Scale reply into spec.replicas / status.replicas. */
static int
s_parse_scale(long http, const char *body, const char *what, int *desired, int *current)
{
    json_error_t jerr;
    json_t *root = body ? json_loads(body, 0, &jerr) : NULL;
    int rc = 0;
    const char *kind = json_string_value(json_object_get(root, "kind"));
    if (http < 200 || http >= 300 || (kind && strcmp(kind, "Status") == 0)) {
        rc = s_status_error(http, root, what);
    } else if (!kind || strcmp(kind, "Scale") != 0) {
        rc = SQ_FAIL(SQ_EPROTO, "kubernetes %s: expected a Scale object, got %s", what,
                     kind ? kind : "no JSON object");
    } else {
        json_t *spec = json_object_get(json_object_get(root, "spec"), "replicas");
        json_t *status = json_object_get(json_object_get(root, "status"), "replicas");
        /* Omitted replicas mean 0 (Go's omitempty on int32). */
        if ((spec && !json_is_integer(spec)) || (status && !json_is_integer(status)))
            rc = SQ_FAIL(SQ_EPROTO, "kubernetes %s: replicas is not an integer", what);
        if (desired)
            *desired = spec ? (int)json_integer_value(spec) : 0;
        if (current)
            *current = status ? (int)json_integer_value(status) : 0;
    }
    json_decref(root);
    return rc;
}

/* One request; body NULL = GET. Fills *http and *reply (caller frees). */
static int
s_request(s_kube_t *self, const char *name, const char *body, long *http, s_buf_t *reply)
{
    char token[4096], auth[4200], url[640];
    int rc = s_read_small(self->token_path, token, sizeof token);
    if (rc)
        return rc;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(url, sizeof url, "%s/apis/apps/v1/namespaces/%s/statefulsets/%s/scale", self->api,
             self->ns, name);
    struct curl_slist *hdr = curl_slist_append(NULL, auth);
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (body)
        hdr = curl_slist_append(hdr, "Content-Type: application/merge-patch+json");
    CURL *c = self->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_CAINFO, self->ca_path);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)self->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, reply);
    if (body) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(hdr);
    if (cc != CURLE_OK)
        return SQ_FAIL(cc == CURLE_OPERATION_TIMEDOUT ? SQ_ETIMEDOUT : SQ_EIO,
                       "kubernetes %s: %s", url, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http);
    return 0;
}

int
sq_actuator_kube_get(sq_actuator_t *base, const char *name, int *desired, int *current)
{
    s_buf_t reply = {0};
    long http = 0;
    int rc = s_request((s_kube_t *)base, name, NULL, &http, &reply);
    if (!rc)
        rc = s_parse_scale(http, reply.data, "get scale", desired, current);
    free(reply.data);
    return rc;
}

static int
s_set(sq_actuator_t *base, const sq_pool_policy_t *p, int desired, int64_t now_ms)
{
    char body[64];
    snprintf(body, sizeof body, "{\"spec\":{\"replicas\":%d}}", desired);
    s_buf_t reply = {0};
    long http = 0;
    int got = -1;
    int rc = s_request((s_kube_t *)base, p->statefulset, body, &http, &reply);
    if (!rc)
        rc = s_parse_scale(http, reply.data, "patch scale", &got, NULL);
    if (!rc && got != desired)
        rc = SQ_FAIL(SQ_EPROTO, "kubernetes patch scale: asked %d replicas, API says %d",
                     desired, got);
    free(reply.data);
    return rc;
}

static int
s_poll(sq_actuator_t *base, int64_t now_ms)
{
    return 0; /* the StatefulSet controller does the housekeeping */
}

static int
s_counts(sq_actuator_t *base, const sq_pool_policy_t *p, sq_actuator_counts_t *out)
{
    int desired = 0, current = 0;
    memset(out, 0, sizeof *out);
    int rc = sq_actuator_kube_get(base, p->statefulset, &desired, &current);
    if (rc)
        return rc;
    out->requested = desired;
    out->starting = desired > current ? desired - current : 0;
    out->draining = current > desired ? current - desired : 0;
    return 0;
}

static void
s_destroy(sq_actuator_t *base)
{
    s_kube_t *self = (s_kube_t *)base;
    curl_easy_cleanup(self->curl);
    free(self);
}

static const sq_actuator_ops_t s_ops = {"kubernetes", s_set, s_poll, s_counts, s_destroy};

static void
s_opt(char *dst, size_t size, const char *given, const char *fallback)
{
    snprintf(dst, size, "%s", given && *given ? given : fallback);
}

sq_actuator_t *
sq_actuator_kube_new(const sq_actuator_kube_opts_t *opts)
{
    static int curl_ready;
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) == 0)
        curl_ready = 1;
    s_kube_t *self = calloc(1, sizeof *self);
    sq_actuator_kube_opts_t o = {0};
    if (opts)
        o = *opts;
    if (!self || !(self->curl = curl_easy_init())) {
        free(self);
        SQ_FAIL(SQ_ENOMEM, "kubernetes actuator");
        return NULL;
    }
    self->base.ops = &s_ops;
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    char api[256] = "";
    if (host && *host)
        snprintf(api, sizeof api, "https://%s%s%s:%s", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", port && *port ? port : "443");
    s_opt(self->api, sizeof self->api, o.api_url, api);
    s_opt(self->token_path, sizeof self->token_path, o.token_path, S_SA_DIR "/token");
    s_opt(self->ca_path, sizeof self->ca_path, o.ca_path, S_SA_DIR "/ca.crt");
    self->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : 5000;
    int rc = 0;
    if (!self->api[0])
        rc = SQ_FAIL(SQ_EINVAL, "kubernetes: no API URL (not in a pod? pass --k8s-api)");
    if (!rc && o.namespace_ && *o.namespace_)
        snprintf(self->ns, sizeof self->ns, "%s", o.namespace_);
    else if (!rc && getenv("POD_NAMESPACE") && *getenv("POD_NAMESPACE"))
        snprintf(self->ns, sizeof self->ns, "%s", getenv("POD_NAMESPACE"));
    else if (!rc)
        rc = s_read_small(S_SA_DIR "/namespace", self->ns, sizeof self->ns);
    if (rc) {
        s_destroy(&self->base);
        return NULL;
    }
    return &self->base;
}

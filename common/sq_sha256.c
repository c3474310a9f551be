/*  sq_sha256: OpenSSL's EVP digest, wrapped so callers never see its types. */
#define _POSIX_C_SOURCE 200809L
#include "sq_sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_error.h"

static void s_hex(const unsigned char md[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int sq_sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (!EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) || len != 32)
        return SQ_FAIL(SQ_EIO, "sha256 failed");
    s_hex(md, out);
    return 0;
}

struct sq_sha256_t {
    EVP_MD_CTX *ctx;
    int ok;
};

sq_sha256_t *sq_sha256_new(void)
{
    sq_sha256_t *self = calloc(1, sizeof *self);
    if (self && !(self->ctx = EVP_MD_CTX_new())) {
        free(self);
        return NULL;
    }
    if (self)
        self->ok = EVP_DigestInit_ex(self->ctx, EVP_sha256(), NULL);
    return self;
}

void sq_sha256_update(sq_sha256_t *self, const void *data, size_t n)
{
    self->ok = self->ok && EVP_DigestUpdate(self->ctx, data, n);
}

int sq_sha256_finish_hex(sq_sha256_t **self_p, char out[65])
{
    sq_sha256_t *self = *self_p;
    unsigned char md[32];
    unsigned int len = 0;
    int ok = self && self->ok && EVP_DigestFinal_ex(self->ctx, md, &len) && len == 32;
    if (self) {
        EVP_MD_CTX_free(self->ctx);
        free(self);
    }
    *self_p = NULL;
    if (!ok)
        return SQ_FAIL(SQ_EIO, "sha256 failed");
    s_hex(md, out);
    return 0;
}

int sq_sha256_file_hex(const char *path, char out[65])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return SQ_FAIL(-errno, "%s: %s", path, strerror(errno));
    sq_sha256_t *h = sq_sha256_new();
    unsigned char buf[1 << 16];
    size_t n;
    while (h && (n = fread(buf, 1, sizeof buf, f)) > 0)
        sq_sha256_update(h, buf, n);
    int bad = !h || ferror(f);
    fclose(f);
    char digest[65];
    int rc = sq_sha256_finish_hex(&h, digest);   /* frees h */
    if (bad || rc)
        return SQ_FAIL(SQ_EIO, "%s: cannot read or digest", path);
    memcpy(out, digest, sizeof digest);
    return 0;
}

/*  sq_file: see sq_file.h. */
#define _POSIX_C_SOURCE 200809L
#include "sq_file.h"

#include "sq_error.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sq_file_read(const char *path, size_t cap, char **data_p, size_t *len_p)
{
    *data_p = NULL;
    *len_p = 0;
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return SQ_FAIL(-errno, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    bool known = fstat(fileno(f), &st) == 0;
    if (known && S_ISDIR(st.st_mode))
        rc = SQ_FAIL(SQ_EINVAL, "%s: is a directory, not a file", path);
    else if (known && S_ISREG(st.st_mode) && (uint64_t)st.st_size > cap)
        rc = SQ_FAIL(SQ_ETOOBIG, "%s: file is %lld bytes, over the cap of %zu bytes", path,
                     (long long)st.st_size, cap);
    while (rc == 0) {
        if (len + 1 >= bcap) {   /* a byte to spare after the data, for the NUL */
            bcap = bcap ? bcap * 2 : 65536;
            char *nb = realloc(buf, bcap);
            if (!nb) {
                rc = SQ_FAIL(SQ_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, bcap - len - 1, f);
        len += n;
        if (len > cap)
            rc = SQ_FAIL(SQ_ETOOBIG, "%s: over the cap of %zu bytes", path, cap);
        else if (n == 0 && ferror(f))
            rc = SQ_FAIL(SQ_EIO, "%s: read error: %s", path, strerror(errno));
        else if (n == 0)
            break;
    }
    if (f != stdin)
        fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *data_p = buf;
    *len_p = len;
    return 0;
}

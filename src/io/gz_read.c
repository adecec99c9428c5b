/* Checked reads from a (possibly gzip-compressed) file: a cut gzip stream reads as a short count, which the
 * format readers turn into a "truncated" message.  Sizes come from headers, which may lie (issue 11): a buffer
 * grows with the data that really arrives (vxm_io_read_grow) instead of being allocated from the header. */
#include "io/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Reads up to n bytes; returns the count, or -1 on a zlib/file error (message in *why). */
long long vxm_io_gz_read_full(void *gzv, void *buf, size_t n, const char **why)
{
    gzFile gz = gzv;
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        unsigned m = n - got > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(gz, p + got, m);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            if (zerr == Z_BUF_ERROR) /* "unexpected end of file": a cut gzip stream */
                return (long long)got;
            *why = (zerr == Z_ERRNO) ? strerror(errno) : msg;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long long)got;
}

#define GROW_FIRST_BYTES ((size_t)1 << 20)

vxm_status vxm_io_read_grow(vxm_context *ctx, const char *path, const char *what, vxm_io_reader rd, void *src,
                            size_t bytes, unsigned char **out)
{
    *out = NULL;
    size_t cap = bytes < GROW_FIRST_BYTES ? bytes : GROW_FIRST_BYTES, got = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory (%zu bytes)", cap);
    while (got < bytes) {
        if (got == cap) { /* the data so far filled the buffer: there may be more */
            size_t ncap = cap > bytes / 2 ? bytes : 2 * cap;
            unsigned char *grown = realloc(buf, ncap);
            if (!grown) {
                free(buf);
                return vxm_error(ctx, VXM_ENOMEM, path, "out of memory (%zu bytes)", ncap);
            }
            buf = grown;
            cap = ncap;
        }
        const char *why = "";
        long long r = rd(src, buf + got, cap - got, &why);
        if (r < 0) {
            free(buf);
            return vxm_error(ctx, VXM_EFORMAT, path, "cannot read %s: %s", what, why);
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got < bytes) {
        free(buf);
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated %s (%zu of %zu bytes)", what, got, bytes);
    }
    *out = buf;
    return VXM_OK;
}

static long long gz_source(void *gz, void *buf, size_t n, const char **why)
{
    return vxm_io_gz_read_full(gz, buf, n, why);
}

vxm_status vxm_io_read_voxels_alloc(vxm_context *ctx, const char *path, void *gz, size_t bytes,
                                    unsigned char **out)
{
    return vxm_io_read_grow(ctx, path, "data", gz_source, gz, bytes, out);
}

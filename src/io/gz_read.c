/* Checked reads from a (possibly gzip-compressed) file: a cut gzip stream reads as a short count, which the
 * format readers turn into a "truncated" message. */
#include "io/io.h"

#include <errno.h>
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

vxm_status vxm_io_read_voxels(vxm_context *ctx, const char *path, void *gz, void *buf, size_t bytes)
{
    const char *why = "";
    long long got = vxm_io_gz_read_full(gz, buf, bytes, &why);
    if (got < 0)
        return vxm_error(ctx, VXM_EFORMAT, path, "cannot read the voxel data: %s", why);
    if ((size_t)got < bytes)
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated data (%lld of %zu bytes)", got, bytes);
    return VXM_OK;
}

/* Atomic output for the evaluation writers (CSV, PNG): write "<dir>/.<base>.tmpXXXXXX", rename when complete. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/tempfile.h"
#include "eval/eval.h"

FILE *vxm_eval_temp_open(vxm_context *ctx, const char *path, char **tmp)
{
    *tmp = NULL;
    if (!path || !*path) {
        vxm_error(ctx, VXM_EINVAL, "output", "empty file name");
        return NULL;
    }
    int fd;
    if (vxm_temp_create(ctx, path, tmp, &fd))
        return NULL;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        vxm_error(ctx, VXM_EIO, path, "cannot write: %s", strerror(e));
    }
    return f;
}

vxm_status vxm_eval_temp_finish(vxm_context *ctx, const char *path, FILE *f, char *tmp, int ok)
{
    /* a caller that gives up (ok == 0) has recorded its own error already */
    vxm_status st = ok ? VXM_OK : (ctx->code ? ctx->code : VXM_EIO);
    int werr = ferror(f);
    errno = 0;
    if (fclose(f) != 0 || werr) {
        int e = errno ? errno : EIO;
        if (ok)
            st = vxm_error(ctx, VXM_EIO, path, "cannot write: %s", strerror(e));
        ok = 0;
    }
    st = vxm_temp_commit(ctx, tmp, path, st); /* st is set whenever ok is 0 */
    free(tmp);
    return st;
}

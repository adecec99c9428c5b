/* Atomic output for the evaluation writers (CSV, PNG): write "<dir>/.<base>.tmpXXXXXX", rename when complete. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "eval/eval.h"

FILE *vxm_eval_temp_open(vxm_context *ctx, const char *path, char **tmp)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    *tmp = NULL;
    if (!path || !*path) {
        vxm_error(ctx, VXM_EINVAL, "output", "empty file name");
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    if (!*base) {
        vxm_error(ctx, VXM_EINVAL, path, "output name is a directory");
        return NULL;
    }
    size_t n = strlen(path) + 16;
    char *name = malloc(n);
    if (!name) {
        vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                    (uint64_t)(uintptr_t)&ts;
    for (int attempt = 0; attempt < 100; attempt++) {
        char rnd[7];
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull); /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (int i = 0; i < 6; i++, z /= 36)
            rnd[i] = alphabet[z % 36];
        rnd[6] = '\0';
        snprintf(name, n, "%.*s.%s.tmp%s", (int)dirlen, path, base, rnd);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            FILE *f = fdopen(fd, "wb");
            if (!f) {
                int e = errno;
                close(fd);
                unlink(name);
                free(name);
                vxm_error(ctx, VXM_EIO, path, "cannot write: %s", strerror(e));
                return NULL;
            }
            *tmp = name;
            return f;
        }
        if (errno != EEXIST) {
            int e = errno;
            free(name);
            vxm_error(ctx, VXM_EIO, path, "cannot create a file in %s: %s",
                      dirlen ? "its directory" : "the current directory", strerror(e));
            return NULL;
        }
    }
    free(name);
    vxm_error(ctx, VXM_EIO, path, "cannot create a unique temporary file");
    return NULL;
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
    if (ok && rename(tmp, path) != 0) {
        st = vxm_error(ctx, VXM_EIO, path, "cannot rename the temporary file into place: %s", strerror(errno));
        ok = 0;
    }
    if (!ok)
        unlink(tmp);
    free(tmp);
    return st;
}

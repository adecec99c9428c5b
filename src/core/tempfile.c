/* Exclusive temporary files next to an output, so every writer can write under a temporary name and
 * rename() when complete: a failure never leaves a partial output behind. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/tempfile.h"

/* Creates "<dir>/.<base>.tmpXXXXXX" exclusively (mode 0666 minus umask, like any new file).  On success
 * *tmp is malloc'd and *fd open for writing. */
vxm_status vxm_temp_create(vxm_context *ctx, const char *path, char **tmp, int *fd)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0; /* includes the slash */
    const char *base = slash ? slash + 1 : path;
    if (!*base)
        return vxm_error(ctx, VXM_EINVAL, path, "output name is a directory");
    size_t n = strlen(path) + 16;
    char *name = malloc(n);
    if (!name)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long seed = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                    (uint64_t)(uintptr_t)&ts;
    for (int attempt = 0; attempt < 100; attempt++) {
        char rnd[7];
        unsigned long long z = vxm_rng_next(&seed);
        for (int i = 0; i < 6; i++, z /= 36)
            rnd[i] = alphabet[z % 36];
        rnd[6] = '\0';
        snprintf(name, n, "%.*s.%s.tmp%s", (int)dirlen, path, base, rnd);
        int f = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f >= 0) {
            *tmp = name;
            *fd = f;
            return VXM_OK;
        }
        if (errno != EEXIST) {
            int e = errno;
            free(name);
            return vxm_error(ctx, VXM_EIO, path, "cannot create a file in %s: %s",
                             dirlen ? "its directory" : "the current directory", strerror(e));
        }
    }
    free(name);
    return vxm_error(ctx, VXM_EIO, path, "cannot create a unique temporary file");
}

/* fsync of an existing file or directory by name; 0 on success. */
static int sync_path(const char *path, int dir)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

vxm_status vxm_temp_commit(vxm_context *ctx, const char *tmp, const char *path, vxm_status st)
{
    if (st == VXM_OK && sync_path(tmp, 0) != 0)
        st = vxm_error(ctx, VXM_EIO, path, "cannot flush the file to disk: %s", strerror(errno));
    if (st == VXM_OK && rename(tmp, path) != 0)
        st = vxm_error(ctx, VXM_EIO, path, "cannot rename the temporary file into place: %s", strerror(errno));
    if (st != VXM_OK) {
        unlink(tmp);
        return st;
    }
    const char *slash = strrchr(path, '/');
    if (!slash)
        sync_path(".", 1);
    else if (slash == path)
        sync_path("/", 1);
    else {
        char *dir = strndup(path, (size_t)(slash - path));
        if (dir)
            sync_path(dir, 1);
        free(dir);
    }
    return VXM_OK;
}

/* Reading a Keras .h5 file first in a child process (issue 11: hostile inputs never crash vxm).
 *
 * Debian's libhdf5 1.10 has no defence against some corrupt files: a bad global-heap or metadata-cache entry makes
 * H5Aread/H5Dread dereference garbage (SIGSEGV), loop forever, or print "HDF5: infinite loop closing library" to
 * stderr at exit (tests/fuzz/upstream/fuzz_h5model holds examples).  It happens inside the library before any value
 * reaches our checks, so no check of ours can prevent it.  Models come from the internet, so vxm reads every model
 * file once in a forked child first (stderr to /dev/null, killed after a deadline): only a file the child read
 * without a fault is read again in this process, and any other outcome is the usual one-line error.  The child
 * runs the very same reader (keras_h5.c), so a file it accepted is one this process reads the same way.
 *
 * The child costs one extra read of the file (~10 ms for the published model, ~0.1 s for a 100 MB SynthMorph
 * model).  VXM_H5_ISOLATE=0 turns it off (the fuzz targets: they look for faults in-process); VXM_H5_ISOLATE_SECONDS
 * sets the deadline (default 60 s plus 1 s per 10 MB of file). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "model/keras_h5.h"

static int isolate_enabled(void)
{
    const char *e = getenv("VXM_H5_ISOLATE");
    return !(e && strcmp(e, "0") == 0);
}

static double deadline_seconds(const char *path)
{
    const char *e = getenv("VXM_H5_ISOLATE_SECONDS");
    if (e && atof(e) > 0)
        return atof(e);
    struct stat sb;
    double mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
    return 60.0 + mb / 10.0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The child: read, report "<status> <message>" on fd, leave without running atexit handlers (HDF5's own, and
 * the parent's stdio buffers, which must not be flushed twice). */
static void child_read(vxm_context *ctx, const char *path, int fd)
{
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, STDERR_FILENO);
        dup2(null, STDOUT_FILENO);
    }
    vxm_keras_file *f = NULL;
    vxm_status st = vxm_keras_file_read_direct(ctx, path, &f);
    vxm_keras_file_free(f);
    char msg[VXM_ERRMSG_MAX + 16];
    int n = snprintf(msg, sizeof msg, "%d %s", (int)st, st ? vxm_context_error(ctx) : "");
    if (n > 0 && write(fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0)
        _exit(3);
    _exit(0);
}

vxm_status vxm_keras_file_check_isolated(vxm_context *ctx, const char *path)
{
    if (!isolate_enabled())
        return VXM_OK;
    int fd[2];
    if (pipe(fd) != 0)
        return vxm_error(ctx, VXM_EIO, path, "cannot start the HDF5 check: %s", strerror(errno));
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fd[0]);
        close(fd[1]);
        return vxm_error(ctx, VXM_EIO, path, "cannot start the HDF5 check: %s", strerror(e));
    }
    if (pid == 0) {
        close(fd[0]);
        child_read(ctx, path, fd[1]);
    }
    close(fd[1]);
    /* Collect the report until EOF (the child exited or died) or the deadline. */
    char buf[VXM_ERRMSG_MAX + 16];
    size_t used = 0;
    double limit = deadline_seconds(path), t_end = now() + limit;
    int timed_out = 0;
    for (;;) {
        double left = t_end - now();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {fd[0], POLLIN, 0};
        int r = poll(&p, 1, left > 1e6 ? 1000000000 : (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue; /* the deadline is checked above */
        ssize_t k = read(fd[0], buf + used, sizeof buf - 1 - used);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        used += (size_t)k;
        if (used == sizeof buf - 1)
            break;
    }
    close(fd[0]);
    buf[used] = '\0';
    if (timed_out)
        kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (timed_out)
        return vxm_error(ctx, VXM_EFORMAT, path,
                         "corrupt HDF5 file: the HDF5 library did not finish reading it in %.0f s "
                         "(VXM_H5_ISOLATE_SECONDS)", limit);
    if (WIFSIGNALED(ws))
        return vxm_error(ctx, VXM_EFORMAT, path, "corrupt HDF5 file: the HDF5 library crashed reading it (%s)",
                         strsignal(WTERMSIG(ws)));
    int code = 0, off = 0;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || sscanf(buf, "%d %n", &code, &off) < 1)
        return vxm_error(ctx, VXM_EFORMAT, path, "corrupt HDF5 file: the HDF5 check ended without a result");
    if (code != VXM_OK)
        return vxm_error(ctx, (vxm_status)code, NULL, "%s", buf + off);
    return VXM_OK;
}

/* Output sink: a plain or gzip-compressed stream on a file descriptor, with every write and the final close
 * checked (a full disk shows up as an error, never as a silently short file). */
#include "io/io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

int vxm_sink_open(vxm_sink *s, int fd, int level)
{
    char mode[8];
    if (level < 0)
        snprintf(mode, sizeof mode, "wbT");
    else
        snprintf(mode, sizeof mode, "wb%d", level > 9 ? 9 : level);
    s->err = 0;
    s->gz = gzdopen(fd, mode);
    if (!s->gz) {
        s->err = errno ? errno : ENOMEM;
        close(fd);
        return -1;
    }
    gzbuffer((gzFile)s->gz, 1u << 20);
    return 0;
}

int vxm_sink_write(vxm_sink *s, const void *buf, size_t n)
{
    const char *p = buf;
    if (s->err)
        return -1;
    while (n > 0) {
        unsigned m = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        errno = 0;
        if (gzwrite((gzFile)s->gz, p, m) != (int)m) {
            int zerr;
            gzerror((gzFile)s->gz, &zerr);
            s->err = (zerr == Z_ERRNO && errno) ? errno : -1;
            return -1;
        }
        p += m;
        n -= m;
    }
    return 0;
}

int vxm_sink_close(vxm_sink *s)
{
    if (!s->gz)
        return s->err ? -1 : 0;
    errno = 0;
    int rc = gzclose((gzFile)s->gz);
    s->gz = NULL;
    if (rc != Z_OK && !s->err)
        s->err = (rc == Z_ERRNO && errno) ? errno : -1;
    return s->err ? -1 : 0;
}

const char *vxm_sink_strerror(const vxm_sink *s)
{
    return s->err > 0 ? strerror(s->err) : "compression error";
}

/* Output sink: a plain or gzip-compressed file on a descriptor, with every write and the final close checked
 * (a full disk shows up as an error, never as a silently short file).  gzip output is compressed in parallel:
 * each write is cut into fixed 4 MiB chunks, each deflated as its own gzip member, and the members are written
 * in order -- the same bytes for any thread count.  Chunks are compressed straight from the caller's buffer in
 * batches of two per thread, so little memory is held besides the data itself.  Readers take the members
 * as one stream (RFC 1952 section 2.2), gzip -t and Python's gzip included. */
#include "io/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libdeflate.h>

#define GZ_CHUNK (4u << 20)

static int write_all(vxm_sink *s, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0 && !s->err) {
        ssize_t w = write(s->fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            s->err = errno ? errno : EIO;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    return s->err ? -1 : 0;
}

int vxm_sink_open(vxm_sink *s, int fd, int level, int threads)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->level = level > 9 ? 9 : level;
    s->threads = threads > 0 ? threads : 1;
    return fd < 0 ? (s->err = EBADF, -1) : 0;
}

/* One chunk as a complete gzip member, compressed with libdeflate (issue 12).  Its gzip header has MTIME 0, so
 * the bytes depend on the data and the level only.  Against zlib level 1 with Z_RLE, the writer before
 * (bench/gzip_bench.c prints both; CPU time per 4 MiB member): vxm's float outputs have little redundancy
 * besides zero background, and there libdeflate level 1 is as small and 0.85-0.9 times as fast (pair1 warp
 * 75.8 vs 75.0 MB at 134 vs 153 MB/s; moved image 8.5 vs 8.5 MB at 270 vs 336 MB/s); on anything with repeats
 * it is smaller and up to 2.3 times faster (a label map 0.5 vs 1.8 MB; the TensorFlow-written golden warp
 * 25.3 vs 38.6 MB at 371 vs 161 MB/s).  Level 6 costs 2.6 times level 1's time for 18 % less there and
 * under 0.3 % less on vxm's outputs, so the writers' level 1 stays. */
static int deflate_chunk(const char *in, size_t n, int level, unsigned char **out, size_t *outlen)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
    if (!c)
        return -1;
    size_t bound = libdeflate_gzip_compress_bound(c, n);
    *out = malloc(bound);
    *outlen = *out ? libdeflate_gzip_compress(c, in, n, *out, bound) : 0;
    libdeflate_free_compressor(c);
    return *outlen ? 0 : -1;
}

static int write_gzip(vxm_sink *s, const char *data, size_t len)
{
    size_t nchunks = len ? (len + GZ_CHUNK - 1) / GZ_CHUNK : 1, batch = 2 * (size_t)s->threads;
    unsigned char **out = calloc(batch, sizeof *out);
    size_t *outlen = calloc(batch, sizeof *outlen);
    if (!out || !outlen)
        s->err = ENOMEM;
    for (size_t first = 0; first < nchunks && !s->err; first += batch) {
        size_t count = nchunks - first < batch ? nchunks - first : batch;
        int failed = 0;
#pragma omp parallel for num_threads(s->threads) schedule(dynamic, 1) reduction(| : failed)
        for (size_t c = 0; c < count; c++) {
            size_t off = (first + c) * GZ_CHUNK, n = len - off < GZ_CHUNK ? len - off : GZ_CHUNK;
            failed |= deflate_chunk(len ? data + off : "", len ? n : 0, s->level, &out[c], &outlen[c]);
        }
        if (failed)
            s->err = -1;
        for (size_t c = 0; c < count; c++) {
            if (!s->err)
                write_all(s, out[c], outlen[c]);
            free(out[c]);
            out[c] = NULL;
        }
    }
    free(out);
    free(outlen);
    return s->err ? -1 : 0;
}

int vxm_sink_write(vxm_sink *s, const void *buf, size_t n)
{
    if (s->err || s->fd < 0)
        return -1;
    if (n == 0)
        return 0;
    return s->level < 0 ? write_all(s, buf, n) : write_gzip(s, buf, n);
}

int vxm_sink_close(vxm_sink *s)
{
    if (s->fd < 0)
        return s->err ? -1 : 0;
    if (close(s->fd) != 0 && !s->err)
        s->err = errno ? errno : EIO;
    s->fd = -1;
    return s->err ? -1 : 0;
}

const char *vxm_sink_strerror(const vxm_sink *s)
{
    return s->err > 0 ? strerror(s->err) : "compression error";
}

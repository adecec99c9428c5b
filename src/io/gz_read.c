/* Reading the bytes of a (possibly gzip-compressed) file for the format readers.
 *
 * vxm_io_src (issue 12): a file that starts with the gzip magic is read whole into memory and decompressed with
 * libdeflate, one member after the other as the reader asks for data (libdeflate has no streaming interface;
 * it is 1.6-5x as fast as zlib's gzread on our files).  Each member goes straight into the buffer that holds
 * everything decompressed so far, so the readers take the voxel data in place, without a copy; the compressed
 * bytes are freed (vxm_io_src_finish) before the reader allocates the volume, so the peak is the decompressed
 * file plus the volume, as it was with gzread.  Any other file is read as it is, as the data is asked for.
 *
 * Sizes in headers and gzip trailers may lie (issue 11): a member's output space starts from a guess (the
 * file's last ISIZE for the first member, the previous member's size after that), is bounded by what the
 * member's compressed bytes can expand to (deflate: at most 1032:1) and by the allocation ceiling, and grows 4x
 * on LIBDEFLATE_INSUFFICIENT_SPACE.  The buffer grows with the data that really arrives.
 *
 * A member libdeflate rejects is decoded again by zlib's inflate, which says why and keeps what gzread gave:
 * a cut stream is the end of the data (the readers then say "truncated ... (N of M bytes)", N counting the
 * bytes before the cut), a corrupt one an error ("corrupt gzip data (zlib's reason)").  After the last member,
 * bytes that do not start with the gzip magic are ignored, as zlib's gzread ignores them.
 *
 * vxm_io_read_grow: the same growth rule for other sources of bytes (npz members read through libzip). */
#define _GNU_SOURCE /* mremap */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define GROW_FIRST_BYTES ((size_t)1 << 20)
#define BIG_BUFFER ((size_t)1 << 20)         /* from here on, buffers are mappings of their own (big_resize) */
#define FIRST_MEMBER_GUESS ((size_t)4 << 20) /* src/io/sink.c writes 4 MiB members */
#define DEFLATE_MAX_RATIO 1032.0             /* a 258-byte match in 2 bits */

struct vxm_io_src {
    int fd;                              /* plain file: open while data is read; -1 for gzip */
    int gz;                              /* the file starts with the gzip magic */
    unsigned char *z;                    /* gzip: the compressed file (freed by vxm_io_src_finish) */
    size_t zlen, zpos, zcap;             /* its size; where the next member starts; allocated */
    size_t guess;                        /* output space tried first for the next member */
    struct libdeflate_decompressor *dec;
    unsigned char *buf;                  /* every byte read or decompressed so far, from file offset 0 */
    size_t cap, len, pos;                /* allocated, filled, the reader's position */
    double ceiling;                      /* vxm_io_alloc_ceiling() */
    int end;                             /* no more data: end of file, of the last member, or a cut member */
    const char *err;                     /* set once: every later read that needs more data fails with it */
    char msg[160];
};

/* Buffers of BIG_BUFFER bytes and more are anonymous mappings on Linux: growing one moves its pages (mremap)
 * instead of copying them, which glibc's realloc does once its dynamic mmap threshold has risen past the size
 * (after the first image read, for example: a 75 MB multi-member warp read no faster than with gzread); and the
 * pages of a big buffer come as transparent huge pages where the system allows them (a hint): faulting in
 * 4 KiB pages took about as long as decompressing (pair1 warp, 82 MB).  Smaller buffers stay with malloc, so
 * the sanitizers keep checking the accesses of the fuzzed small inputs. */
static unsigned char *big_resize(unsigned char *old, size_t oldcap, size_t ncap)
{
#if defined(__linux__) && defined(MREMAP_MAYMOVE)
    void *p;
    if (ncap < BIG_BUFFER)
        return realloc(old, ncap);
    if (oldcap >= BIG_BUFFER) {
        p = mremap(old, oldcap, ncap, MREMAP_MAYMOVE);
    } else {
        p = mmap(NULL, ncap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED && old) {
            memcpy(p, old, oldcap);
            free(old);
        }
    }
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    uintptr_t huge = (uintptr_t)2 << 20, a = ((uintptr_t)p + huge - 1) & ~(huge - 1),
              b = ((uintptr_t)p + ncap) & ~(huge - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_HUGEPAGE);
#endif
    return p;
#else
    (void)oldcap;
    return realloc(old, ncap);
#endif
}

static void big_free(unsigned char *p, size_t cap)
{
#if defined(__linux__) && defined(MREMAP_MAYMOVE)
    if (p && cap >= BIG_BUFFER) {
        munmap(p, cap);
        return;
    }
#endif
    (void)cap;
    free(p);
}

/* Makes room for `need` bytes in s->buf (growing by half at least, never past the ceiling); 0 on success. */
static int reserve(vxm_io_src *s, size_t need)
{
    if (need <= s->cap)
        return 0;
    if ((double)need > s->ceiling) {
        snprintf(s->msg, sizeof s->msg, "the data exceed the allocation ceiling (%.3g GB%s)", s->ceiling / 1e9,
                 getenv("VXM_MAX_ALLOC_MB") ? ", VXM_MAX_ALLOC_MB" : "");
        s->err = s->msg;
        return -1;
    }
    size_t ncap = s->cap + s->cap / 2;
    if (ncap < need || (double)ncap > s->ceiling)
        ncap = need;
    unsigned char *grown = big_resize(s->buf, s->cap, ncap);
    if (!grown) {
        snprintf(s->msg, sizeof s->msg, "out of memory (%zu bytes)", ncap);
        s->err = s->msg;
        return -1;
    }
    s->buf = grown;
    s->cap = ncap;
    return 0;
}

/* Plain file: reads at least `want` more bytes where the file has them (64 KiB at least, one buffer growth at
 * a time, as vxm_io_read_grow does). */
static void plain_more(vxm_io_src *s, size_t want)
{
    if (s->len == s->cap) {
        double t = s->cap ? 2.0 * (double)s->cap : (double)GROW_FIRST_BYTES;
        if (t > s->ceiling)
            t = s->ceiling;
        if (reserve(s, t > (double)s->len ? (size_t)t : s->len + 1)) /* the latter fails: at the ceiling */
            return;
    }
    size_t n = s->cap - s->len;
    if (want < ((size_t)64 << 10))
        want = (size_t)64 << 10;
    if (n > want)
        n = want;
    if (n > ((size_t)1 << 30))
        n = (size_t)1 << 30;
    ssize_t r;
    do
        r = read(s->fd, s->buf + s->len, n);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        snprintf(s->msg, sizeof s->msg, "%s", strerror(errno));
        s->err = s->msg;
    } else if (r == 0) {
        s->end = 1;
    } else {
        s->len += (size_t)r;
    }
}

/* zlib decodes the member libdeflate rejected: a cut member ends the data (the bytes before the cut are kept,
 * as gzread returned them), a corrupt one is an error, a good one (libdeflate and zlib disagree) is taken. */
static void zlib_member(vxm_io_src *s)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        s->err = "out of memory (zlib)";
        return;
    }
    const unsigned char *in = s->z + s->zpos;
    size_t avail = s->zlen - s->zpos, used = 0, start = s->len;
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (s->len == s->cap && reserve(s, s->cap + GROW_FIRST_BYTES))
            break;
        size_t in_n = avail - used, out_n = s->cap - s->len;
        z.next_in = (Bytef *)(uintptr_t)(in + used);
        z.avail_in = in_n > UINT_MAX ? UINT_MAX : (uInt)in_n;
        z.next_out = s->buf + s->len;
        z.avail_out = out_n > UINT_MAX ? UINT_MAX : (uInt)out_n;
        uInt in0 = z.avail_in, out0 = z.avail_out;
        rc = inflate(&z, Z_NO_FLUSH);
        used += in0 - z.avail_in;
        s->len += out0 - z.avail_out;
        if (rc == Z_OK && used == avail && z.avail_out > 0) /* all input used, more output wanted: a cut */
            rc = Z_BUF_ERROR;
    }
    if (s->err) {
        s->len = start; /* reserve() said why */
    } else if (rc == Z_STREAM_END) {
        s->zpos += used;
        s->guess = s->len - start;
    } else if (rc == Z_BUF_ERROR) {
        s->end = 1;
    } else if (rc == Z_MEM_ERROR) {
        s->err = "out of memory (zlib)";
        s->len = start;
    } else {
        snprintf(s->msg, sizeof s->msg, "corrupt gzip data (%s)", z.msg ? z.msg : "unknown zlib error");
        s->err = s->msg;
        s->len = start; /* none of a corrupt member's bytes are used */
    }
    inflateEnd(&z);
}

/* Decompresses the next member onto the end of s->buf. */
static void gz_member(vxm_io_src *s)
{
    const unsigned char *in = s->z + s->zpos;
    size_t avail = s->zlen - s->zpos;
    if (avail < 2 || in[0] != 0x1f || in[1] != 0x8b) { /* the end, or trailing bytes gzread ignores too */
        s->end = 1;
        return;
    }
    double bound = DEFLATE_MAX_RATIO * (double)avail + 4096.0, room = s->ceiling - (double)s->len;
    if (bound > room)
        bound = room > 0 ? room : 0;
    size_t guess = s->guess < ((size_t)64 << 10) ? ((size_t)64 << 10) : s->guess;
    if ((double)guess > bound)
        guess = (size_t)bound;
    for (;;) {
        if (reserve(s, s->len + guess)) { /* only a guess (room >= guess): zlib grows with the real data */
            s->err = NULL;
            break;
        }
        size_t used = 0, made = 0;
        enum libdeflate_result r =
            libdeflate_gzip_decompress_ex(s->dec, in, avail, s->buf + s->len, guess, &used, &made);
        if (r == LIBDEFLATE_SUCCESS) {
            s->zpos += used;
            s->len += made;
            s->guess = made;
            return;
        }
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE || (double)guess >= bound)
            break;
        guess = (double)guess * 4.0 >= bound ? (size_t)bound : guess * 4;
    }
    zlib_member(s); /* says why; grows only with the data zlib really produces, up to the ceiling */
}

/* Makes `want` bytes from the position available where the file has them; -1 on an error (s->err). */
static int fill(vxm_io_src *s, size_t want)
{
    while (!s->err && !s->end && s->len - s->pos < want) {
        if (s->z)
            gz_member(s);
        else if (s->fd >= 0)
            plain_more(s, want - (s->len - s->pos));
        else
            s->end = 1; /* finished */
    }
    return s->err && s->len - s->pos < want ? -1 : 0;
}

/* Reads the whole compressed file (its size is known, and must fit under the ceiling). */
static vxm_status slurp(vxm_context *ctx, const char *path, vxm_io_src *s)
{
    struct stat sb;
    if (fstat(s->fd, &sb) != 0)
        return vxm_error(ctx, VXM_EIO, path, "%s", strerror(errno));
    if ((double)sb.st_size > s->ceiling)
        return vxm_error(ctx, VXM_EFORMAT, path, "compressed file of %.3g GB, more than the allocation ceiling "
                         "(%.3g GB)", (double)sb.st_size / 1e9, s->ceiling / 1e9);
    size_t cap = (size_t)sb.st_size + 1, n = 0; /* + 1: a file that grew since is read up to cap */
    s->z = big_resize(NULL, 0, cap);
    s->zcap = cap;
    if (!s->z)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory (%zu bytes)", cap);
    while (n < cap) {
        size_t m = cap - n > ((size_t)1 << 30) ? ((size_t)1 << 30) : cap - n;
        ssize_t r = read(s->fd, s->z + n, m);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return vxm_error(ctx, VXM_EIO, path, "%s", strerror(errno));
        if (r == 0)
            break;
        n += (size_t)r;
    }
    s->zlen = n;
    /* the last member's ISIZE: the whole size for a single-member file (most tools), a 4 MiB guess otherwise */
    s->guess = FIRST_MEMBER_GUESS;
    if (n >= 20) {
        const unsigned char *t = s->z + n - 4;
        size_t isize = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
        if (isize > s->guess)
            s->guess = isize;
    }
    s->dec = libdeflate_alloc_decompressor();
    if (!s->dec)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory (libdeflate)");
    close(s->fd);
    s->fd = -1;
    return VXM_OK;
}

vxm_status vxm_io_src_open(vxm_context *ctx, const char *path, vxm_io_src **out)
{
    *out = NULL;
    vxm_io_src *s = calloc(1, sizeof *s);
    if (!s)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    s->ceiling = vxm_io_alloc_ceiling();
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        vxm_status st = vxm_error(ctx, VXM_EIO, path, "%s", strerror(errno));
        free(s);
        return st;
    }
    unsigned char magic[2];
    ssize_t r;
    do
        r = pread(s->fd, magic, 2, 0);
    while (r < 0 && errno == EINTR);
    if (r == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        s->gz = 1;
        vxm_status st = slurp(ctx, path, s);
        if (st) {
            vxm_io_src_close(s);
            return st;
        }
    }
    *out = s;
    return VXM_OK;
}

int vxm_io_src_is_gzip(const vxm_io_src *s)
{
    return s->gz;
}

long long vxm_io_src_read(vxm_io_src *s, void *buf, size_t n, const char **why)
{
    if (fill(s, n)) {
        *why = s->err;
        return -1;
    }
    size_t m = s->len - s->pos < n ? s->len - s->pos : n;
    memcpy(buf, s->buf + s->pos, m);
    s->pos += m;
    return (long long)m;
}

int vxm_io_src_seek(vxm_io_src *s, uint64_t off, const char **why)
{
    if (off > SIZE_MAX)
        return 1;
    if (off > s->pos && fill(s, (size_t)off - s->pos)) {
        *why = s->err;
        return -1;
    }
    if (off > s->len)
        return 1;
    s->pos = (size_t)off;
    return 0;
}

vxm_status vxm_io_src_take(vxm_context *ctx, const char *path, const char *what, vxm_io_src *s, size_t bytes,
                           size_t *off)
{
    if (fill(s, bytes))
        return vxm_error(ctx, VXM_EFORMAT, path, "cannot read %s: %s", what, s->err);
    size_t have = s->len - s->pos;
    if (have < bytes)
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated %s (%zu of %zu bytes)", what, have, bytes);
    *off = s->pos;
    s->pos += bytes;
    return VXM_OK;
}

const unsigned char *vxm_io_src_at(const vxm_io_src *s, size_t off)
{
    return s->buf + off;
}

void vxm_io_src_finish(vxm_io_src *s)
{
    big_free(s->z, s->zcap);
    s->z = NULL;
    s->zlen = s->zpos = 0;
    if (s->dec)
        libdeflate_free_decompressor(s->dec);
    s->dec = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

void vxm_io_src_close(vxm_io_src *s)
{
    if (!s)
        return;
    vxm_io_src_finish(s);
    big_free(s->buf, s->cap);
    free(s);
}

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

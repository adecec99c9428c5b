/* gzip_bench: .nii.gz write and read speed, zlib against libdeflate (issue 12), on the uncompressed bytes of
 * one file (make bench: the 82 MB pair1 warp), all in the same run.
 *
 *   gzip_bench FILE.gz... [--runs N]
 *
 * Writes: the bytes cut into 4 MiB chunks, each a gzip member, compressed on 1 and 2 threads.  The libdeflate
 * rows run vxm's own writer (vxm_sink, src/io/sink.c) into a temporary file; the zlib rows run the writer vxm
 * had before (deflateInit2 level 1, Z_RLE) and zlib's default strategy, into a temporary file as well.
 * Reads: each row's file read back whole by zlib (gzread, as the format readers do) and by libdeflate
 * (member by member from memory, after one read of the file), checked bitwise against the input.
 * MB/s are of uncompressed bytes (1 MB = 1e6 bytes); each time is the best of N runs after a warm-up (the
 * least disturbed by other load; zlib level 6, at ~10 MB/s only a reference: one run).  One table per file. */
#include <fcntl.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "io/io.h"

#define CHUNK (4u << 20)
#define MAX_RUNS 15

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && (buf = malloc((size_t)st.st_size + 1)) != NULL)
        *n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    return buf;
}

/* zlib reader: the whole (multi-member) stream through gzread, as src/io/nifti_io.c reads. */
static size_t read_zlib(const char *path, unsigned char *out, size_t cap)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return 0;
    gzbuffer(gz, 1u << 20);
    size_t got = 0;
    int r;
    while (got < cap && (r = gzread(gz, out + got, (unsigned)(cap - got > (1u << 30) ? 1u << 30 : cap - got))) > 0)
        got += (size_t)r;
    gzclose(gz);
    return got;
}

/* libdeflate reader: one read of the file, then one member after the other (each member's size is known only
 * once it has been decompressed, so the members cannot be handed to threads). */
static size_t read_libdeflate(const char *path, unsigned char *out, size_t cap)
{
    size_t n = 0, pos = 0, got = 0;
    unsigned char *in = slurp(path, &n);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    while (in && d && pos < n) {
        size_t used = 0, made = 0;
        if (libdeflate_gzip_decompress_ex(d, in + pos, n - pos, out + got, cap - got, &used, &made) !=
            LIBDEFLATE_SUCCESS)
            break;
        pos += used;
        got += made;
    }
    libdeflate_free_decompressor(d);
    free(in);
    return got;
}

/* zlib writer: every chunk deflated on its own thread into its own buffer, then written in order. */
static int write_zlib(const char *path, const unsigned char *raw, size_t len, int level, int strategy,
                      int threads)
{
    size_t nchunks = (len + CHUNK - 1) / CHUNK;
    unsigned char **out = calloc(nchunks, sizeof *out);
    size_t *outlen = calloc(nchunks, sizeof *outlen);
    int failed = 0;
    if (!out || !outlen)
        nchunks = 0, failed = 1;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(| : failed)
    for (size_t c = 0; c < nchunks; c++) {
        size_t off = c * CHUNK, n = len - off < CHUNK ? len - off : CHUNK;
        z_stream z;
        memset(&z, 0, sizeof z);
        if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, strategy) != Z_OK) {
            failed = 1;
            continue;
        }
        size_t bound = deflateBound(&z, (uLong)n);
        out[c] = malloc(bound);
        z.next_in = (Bytef *)(uintptr_t)(raw + off);
        z.avail_in = (uInt)n;
        z.next_out = out[c];
        z.avail_out = (uInt)bound;
        failed |= !out[c] || deflate(&z, Z_FINISH) != Z_STREAM_END;
        outlen[c] = bound - z.avail_out;
        deflateEnd(&z);
    }
    FILE *f = failed ? NULL : fopen(path, "wb");
    for (size_t c = 0; f && c < nchunks; c++)
        failed |= fwrite(out[c], 1, outlen[c], f) != outlen[c];
    if (!f || fclose(f) != 0)
        failed = 1;
    for (size_t c = 0; out && c < nchunks; c++)
        free(out[c]);
    free(out);
    free(outlen);
    return failed ? -1 : 0;
}

/* libdeflate writer: vxm's own sink. */
static int write_vxm(const char *path, const unsigned char *raw, size_t len, int level, int threads)
{
    vxm_sink s;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (vxm_sink_open(&s, fd, level, threads))
        return -1;
    int bad = vxm_sink_write(&s, raw, len);
    return vxm_sink_close(&s) || bad ? -1 : 0;
}

typedef struct {
    const char *name;
    int libdeflate, level, strategy;
    int one_run; /* slow reference (zlib level 6, ~10 MB/s): one timed run, no warm-up */
} config;

static int write_one(const config *c, const char *path, const unsigned char *raw, size_t len, int threads)
{
    return c->libdeflate ? write_vxm(path, raw, len, c->level, threads)
                         : write_zlib(path, raw, len, c->level, c->strategy, threads);
}

static int bench_file(const char *src, int runs)
{
    /* The uncompressed bytes of the input, header included: grow until the stream ends. */
    size_t cap = 64u << 20, len = 0;
    unsigned char *raw = NULL;
    for (;;) {
        unsigned char *grown = realloc(raw, cap);
        if (!grown) {
            free(raw);
            fprintf(stderr, "gzip_bench: out of memory\n");
            return 1;
        }
        raw = grown;
        len = read_zlib(src, raw, cap);
        if (len < cap)
            break;
        cap *= 2;
    }
    if (len == 0) {
        fprintf(stderr, "gzip_bench: %s: cannot read as gzip\n", src);
        free(raw);
        return 1;
    }
    char tmp[] = "/tmp/gzip_bench_XXXXXX";
    int tfd = mkstemp(tmp);
    unsigned char *back = malloc(len + 1);
    if (tfd < 0 || !back) {
        fprintf(stderr, "gzip_bench: cannot make a temporary file\n");
        if (tfd >= 0)
            close(tfd), unlink(tmp);
        free(raw);
        free(back);
        return 1;
    }
    close(tfd);
    static const config cfgs[] = {
        {"zlib " ZLIB_VERSION ", Z_RLE (vxm before)", 0, 1, Z_RLE, 0},
        {"zlib " ZLIB_VERSION " (one run)", 0, 6, Z_DEFAULT_STRATEGY, 1},
        {"libdeflate " LIBDEFLATE_VERSION_STRING " (vxm now)", 1, 1, 0, 0},
        {"libdeflate " LIBDEFLATE_VERSION_STRING, 1, 6, 0, 0},
    };
    printf("== gzip: %s, %.1f MB uncompressed, 4 MiB members; best of %d after a warm-up\n", src, len / 1e6,
           runs);
    printf("| writer | level | write, 1 thread | write, 2 threads | read, zlib | read, libdeflate | size |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    int rc = 0;
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        const config *c = &cfgs[k];
        double mbs[4];
        int nrun = c->one_run ? 1 : runs;
        for (int col = 0; col < 4; col++) {
            double best = 1e30;
            for (int r = c->one_run ? 0 : -1; r < nrun; r++) {
                double t0 = now();
                size_t got = len;
                if (col < 2)
                    rc |= write_one(c, tmp, raw, len, col + 1);
                else
                    got = (col == 2 ? read_zlib : read_libdeflate)(tmp, back, len + 1);
                if (r >= 0 && now() - t0 < best)
                    best = now() - t0;
                if (col >= 2 && (got != len || memcmp(back, raw, len))) {
                    fprintf(stderr, "gzip_bench: %s level %d: read back differs\n", c->name, c->level);
                    rc = 1;
                }
            }
            mbs[col] = len / 1e6 / best;
            /* Same bytes for 1 and 2 threads: the 2-thread file must equal the 1-thread one. */
            if (col == 0) {
                size_t n1 = 0, n2 = 0;
                unsigned char *one = slurp(tmp, &n1), *two = NULL;
                rc |= write_one(c, tmp, raw, len, 2);
                two = slurp(tmp, &n2);
                if (!one || !two || n1 != n2 || memcmp(one, two, n1)) {
                    fprintf(stderr, "gzip_bench: %s: 1 and 2 threads write different bytes\n", c->name);
                    rc = 1;
                }
                free(one);
                free(two);
            }
        }
        struct stat st;
        double size = stat(tmp, &st) == 0 ? st.st_size / 1e6 : 0;
        printf("| %s | %d | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.0f MB/s | %.1f MB |\n", c->name, c->level,
               mbs[0], mbs[1], mbs[2], mbs[3], size);
        fflush(stdout);
    }
    unlink(tmp);
    free(raw);
    free(back);
    return rc;
}

int main(int argc, char **argv)
{
    int runs = 3, nfiles = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (argv[i][0] != '-')
            nfiles++;
        else
            nfiles = -argc;
    }
    if (nfiles <= 0) {
        fprintf(stderr, "usage: gzip_bench FILE.gz... [--runs N]\n");
        return 2;
    }
    runs = runs < 1 ? 1 : runs > MAX_RUNS ? MAX_RUNS : runs;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs"))
            i++;
        else
            rc |= bench_file(argv[i], runs);
    }
    if (rc)
        fprintf(stderr, "gzip_bench: failed\n");
    return rc ? 1 : 0;
}

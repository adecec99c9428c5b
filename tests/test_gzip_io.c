/* Compressed outputs (issue 12: libdeflate members in src/io/sink.c): .nii.gz and .mgz written by vxm read back
 * bitwise, are standard multi-member gzip (zlib member by member, gzip -t, Python's gzip), and are the same
 * bytes for 1 and 2 threads.  The volume is a little over 6 MB, so its data spans two 4 MiB members. */
#include "io/io.h"
#include "test_util.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

#define OUT "tests/out/gzip_io"

/* Smooth field, a zero block (background) and noisy low mantissa bits: what warps and images look like. */
static vxm_volume *sample_volume(void)
{
    int shape[3] = {48, 96, 112};
    vxm_volume *v = vxm_volume_new(3, shape, 3);
    if (!v)
        return NULL;
    uint32_t r = 12345u;
    size_t n = vxm_volume_numel(v);
    for (size_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        v->data[i] = (i / 3) % 5000 < 1500 ? 0.0f : sinf((float)i * 1e-4f) * 3.0f + (float)(r >> 8) * 1e-9f;
    }
    return v;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    struct stat st;
    *n = 0;
    if (f && fstat(fileno(f), &st) == 0 && (buf = malloc((size_t)st.st_size + 1)) != NULL)
        *n = fread(buf, 1, (size_t)st.st_size, f);
    if (f)
        fclose(f);
    return buf;
}

/* Inflates the members one after the other; returns the member count (0 on any error), total size in *total. */
static int count_members(const unsigned char *in, size_t n, size_t *total)
{
    static unsigned char out[1u << 16];
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    int members = 0;
    *total = 0;
    for (;;) {
        z.next_out = out;
        z.avail_out = sizeof out;
        int rc = inflate(&z, Z_NO_FLUSH);
        *total += sizeof out - z.avail_out;
        if (rc == Z_STREAM_END) {
            members++;
            if (z.avail_in == 0)
                break;
            inflateReset(&z);
        } else if (rc != Z_OK) {
            members = 0;
            break;
        }
    }
    inflateEnd(&z);
    return members;
}

static void check_format(vxm_context *ctx, const vxm_volume *v, const char *ext)
{
    char p1[256], p2[256], name[64], why[256] = "";
    snprintf(p1, sizeof p1, OUT "/t1%s", ext);
    snprintf(p2, sizeof p2, OUT "/t2%s", ext);
    vxm_context_set_threads(ctx, 1);
    int ok = !vxm_volume_write(ctx, p1, v, NULL);
    vxm_context_set_threads(ctx, 2);
    ok = ok && !vxm_volume_write(ctx, p2, v, NULL);
    if (!ok)
        snprintf(why, sizeof why, "write: %s", vxm_context_error(ctx));

    size_t n1 = 0, n2 = 0;
    unsigned char *b1 = ok ? slurp(p1, &n1) : NULL, *b2 = ok ? slurp(p2, &n2) : NULL;
    snprintf(name, sizeof name, "gzip_threads_same_bytes%s", ext);
    tu_report(ok && b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1), name, "%s (%zu vs %zu bytes)", why, n1, n2);

    size_t total = 0;
    int members = b1 ? count_members(b1, n1, &total) : 0;
    size_t data = vxm_volume_numel(v) * sizeof(float);
    snprintf(name, sizeof name, "gzip_multi_member%s", ext);
    tu_report(members >= 3 && total >= data && total < data + 4096, name, "%d members, %zu bytes inflated",
              members, total);

    vxm_volume *back = NULL;
    snprintf(name, sizeof name, "gzip_read_back_bitwise%s", ext);
    ok = ok && !vxm_volume_read(ctx, p2, NULL, &back);
    int same = ok && back->channels == v->channels && !memcmp(back->shape, v->shape, sizeof v->shape) &&
               !memcmp(back->data, v->data, data);
    tu_report(same, name, "%s", ok ? "data differ" : vxm_context_error(ctx));
    vxm_volume_free(back);

    /* Other tools: gzip(1) and Python's gzip module, where installed. */
    char cmd[512];
    snprintf(name, sizeof name, "gzip_t%s", ext);
    if (system("command -v gzip >/dev/null 2>&1") != 0) {
        tu_skip(name, "no gzip");
    } else {
        snprintf(cmd, sizeof cmd, "gzip -t < %s", p1);
        tu_report(system(cmd) == 0, name, "gzip -t failed on %s", p1);
    }
    snprintf(name, sizeof name, "gzip_python%s", ext);
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        tu_skip(name, "no python3");
    } else {
        snprintf(cmd, sizeof cmd,
                 "python3 -c 'import gzip, sys; sys.exit(0 if len(gzip.open(sys.argv[1]).read()) == %zu else 1)' "
                 "%s",
                 total, p1);
        tu_report(system(cmd) == 0, name, "Python's gzip did not read %zu bytes from %s", total, p1);
    }
    free(b1);
    free(b2);
}

/* The sink alone: an odd length over three members, 1 and 3 threads, zlib's inflate gives the input back. */
static void check_sink(void)
{
    size_t len = (9u << 20) + 12345u;
    unsigned char *in = malloc(len);
    uint32_t r = 7u;
    for (size_t i = 0; in && i < len; i++) {
        r = r * 1664525u + 1013904223u;
        in[i] = (i >> 12) % 3 ? (unsigned char)(r >> 24) : (unsigned char)(i >> 9);
    }
    unsigned char *files[2] = {NULL, NULL};
    size_t sizes[2] = {0, 0};
    int ok = in != NULL;
    for (int k = 0; k < 2 && ok; k++) {
        vxm_sink s;
        const char *p = k ? OUT "/sink3.gz" : OUT "/sink1.gz";
        ok = !vxm_sink_open(&s, open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644), 1, k ? 3 : 1);
        ok = ok && !vxm_sink_write(&s, in, 1000) && !vxm_sink_write(&s, in + 1000, len - 1000);
        ok = !vxm_sink_close(&s) && ok;
        files[k] = ok ? slurp(p, &sizes[k]) : NULL;
    }
    tu_report(ok && files[0] && files[1] && sizes[0] == sizes[1] && !memcmp(files[0], files[1], sizes[0]),
              "gzip_sink_threads_same_bytes", "1 and 3 threads: %zu vs %zu bytes", sizes[0], sizes[1]);
    unsigned char *back = malloc(len + 1);
    uLongf got = (uLongf)len + 1;
    z_stream z;
    memset(&z, 0, sizeof z);
    int members = 0;
    if (ok && back && files[0] && inflateInit2(&z, 15 + 16) == Z_OK) {
        z.next_in = files[0];
        z.avail_in = (uInt)sizes[0];
        z.next_out = back;
        z.avail_out = (uInt)got;
        int rc;
        while ((rc = inflate(&z, Z_NO_FLUSH)) == Z_STREAM_END || rc == Z_OK) {
            if (rc == Z_STREAM_END && (members++, z.avail_in == 0))
                break;
            if (rc == Z_STREAM_END)
                inflateReset(&z);
        }
        got = (uLongf)(z.next_out - back);
        inflateEnd(&z);
    }
    /* 1000 bytes, then 9 MiB + 11345 bytes: one member, then three. */
    tu_report(members == 4 && got == len && !memcmp(back, in, len), "gzip_sink_round_trip",
              "%d members, %lu of %zu bytes", members, (unsigned long)got, len);
    free(back);
    free(files[0]);
    free(files[1]);
    free(in);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    if (!ctx || system("mkdir -p " OUT) != 0) {
        printf("FAIL gzip_setup: no context or no %s\n", OUT);
        return 1;
    }
    vxm_volume *v = sample_volume();
    if (!v) {
        printf("FAIL gzip_setup: out of memory\n");
        vxm_context_free(ctx);
        return 1;
    }
    check_format(ctx, v, ".nii.gz");
    check_format(ctx, v, ".mgz");
    check_sink();
    vxm_volume_free(v);
    vxm_context_free(ctx);
    return tu_exit_code();
}

/* Compressed outputs (issue 12: libdeflate members in src/io/sink.c): .nii.gz and .mgz written by vxm read back
 * bitwise, are standard multi-member gzip (zlib member by member, gzip -t, Python's gzip), and are the same
 * bytes for 1 and 2 threads.  The volume is a little over 6 MB, so its data spans two 4 MiB members.
 * Compressed inputs (issue 12: libdeflate in src/io/gz_read.c) made by other tools: members cut anywhere (inside
 * the header, tiny, empty; zlib here, gzip(1) and Python's gzip where installed), a cut member, trailing
 * garbage, a lying ISIZE, a bad CRC, the allocation ceiling: each reads bitwise or fails with a one-line error. */
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

/* ---- inputs made by other tools ------------------------------------------------------------------- */
typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = 2 * (b->n + n) + 64;
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            return;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

/* Appends d[0..n) as one gzip member made by zlib (level 6, as gzip(1) and most tools). */
static void member(bytes *b, const unsigned char *d, size_t n)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return;
    uLong bound = deflateBound(&z, (uLong)n) + 64;
    unsigned char *out = malloc(bound);
    if (out) {
        z.next_in = (Bytef *)(uintptr_t)d;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)bound;
        if (deflate(&z, Z_FINISH) == Z_STREAM_END)
            put(b, out, bound - z.avail_out);
    }
    free(out);
    deflateEnd(&z);
}

/* Members of plain[0..n) cut at the given offsets (ascending). */
static bytes members_at(const unsigned char *plain, size_t n, const size_t *cuts, int ncuts)
{
    bytes b = {NULL, 0, 0};
    size_t at = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        member(&b, plain + at, end - at);
        at = end;
    }
    return b;
}

static void set_isize(unsigned char *member_end, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        member_end[-4 + i] = (unsigned char)(v >> (8 * i));
}

/* Reads `path` and compares it bitwise with `ref` (ok = 1), or expects a one-line VXM_EFORMAT error containing
 * `want` (ok = 0). */
static void expect_read(vxm_context *ctx, const char *name, const char *path, const vxm_volume *ref, const char *want)
{
    vxm_volume *v = NULL;
    vxm_status st = vxm_volume_read(ctx, path, NULL, &v);
    const char *msg = st ? vxm_context_error(ctx) : "";
    if (!want) {
        int same = !st && v->channels == ref->channels && v->ndim == ref->ndim &&
                   !memcmp(v->shape, ref->shape, sizeof v->shape) &&
                   !memcmp(v->data, ref->data, vxm_volume_numel(ref) * sizeof(float));
        tu_report(same, name, "%s", st ? msg : "data differ");
    } else {
        tu_report(st == VXM_EFORMAT && strstr(msg, want) && !strchr(msg, '\n'), name,
                  "status %d, message '%s', expected '%s'", (int)st, msg, want);
    }
    vxm_volume_free(v);
}

static void spit_bytes(const char *path, const bytes *b)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        if (b->n)
            fwrite(b->p, 1, b->n, f);
        fclose(f);
    }
}

/* A small 2-channel NIfTI (about 0.5 MB) as other tools compress it. */
static void check_foreign_nifti(vxm_context *ctx)
{
    int shape[3] = {32, 40, 48};
    vxm_volume *v = vxm_volume_new(3, shape, 2), *ref = NULL;
    size_t n = 0;
    unsigned char *plain = NULL;
    if (v) {
        for (size_t i = 0; i < vxm_volume_numel(v); i++)
            v->data[i] = (i / 7) % 9 ? sinf((float)i * 3e-3f) : 0.0f;
    }
    if (!v || vxm_volume_write(ctx, OUT "/plain.nii", v, NULL) || vxm_volume_read(ctx, OUT "/plain.nii", NULL, &ref) ||
        !(plain = slurp(OUT "/plain.nii", &n)) || n < 352 + 100000) {
        tu_report(0, "gzip_foreign_setup", "%s", vxm_context_error(ctx));
        vxm_volume_free(v);
        free(plain);
        return;
    }
    char cmd[512];
    /* members cut inside the header, just after it, in the data; empty members first and last */
    size_t cuts[] = {0, 100, 353, 1000, n / 2, n};
    bytes b = members_at(plain, n, cuts, 6);
    spit_bytes(OUT "/members.nii.gz", &b);
    expect_read(ctx, "gzip_read_zlib_members", OUT "/members.nii.gz", ref, NULL);
    free(b.p);
    /* 64 KiB members, as BGZF (bgzip) writes them */
    size_t small[64];
    int ns = 0;
    for (size_t at = 65536; at < n && ns < 64; at += 65536)
        small[ns++] = at;
    b = members_at(plain, n, small, ns);
    spit_bytes(OUT "/small_members.nii.gz", &b);
    expect_read(ctx, "gzip_read_64k_members", OUT "/small_members.nii.gz", ref, NULL);
    free(b.p);

    /* gzip(1) and Python's gzip module, concatenated */
    if (system("command -v gzip >/dev/null 2>&1") != 0) {
        tu_skip("gzip_read_gzip_concat", "no gzip");
    } else {
        snprintf(cmd, sizeof cmd,
                 "(head -c 1000 %s | gzip -c; tail -c +1001 %s | gzip -9 -c) > %s", OUT "/plain.nii",
                 OUT "/plain.nii", OUT "/gzip_concat.nii.gz");
        if (system(cmd) != 0)
            tu_report(0, "gzip_read_gzip_concat", "%s failed", cmd);
        else
            expect_read(ctx, "gzip_read_gzip_concat", OUT "/gzip_concat.nii.gz", ref, NULL);
    }
    if (system("command -v python3 >/dev/null 2>&1") != 0) {
        tu_skip("gzip_read_python_concat", "no python3");
    } else {
        snprintf(cmd, sizeof cmd,
                 "python3 -c 'import gzip, sys; d = open(sys.argv[1], \"rb\").read(); "
                 "open(sys.argv[2], \"wb\").write(gzip.compress(d[:5000]) + gzip.compress(d[5000:], 1))' %s %s",
                 OUT "/plain.nii", OUT "/python_concat.nii.gz");
        if (system(cmd) != 0)
            tu_report(0, "gzip_read_python_concat", "%s failed", cmd);
        else
            expect_read(ctx, "gzip_read_python_concat", OUT "/python_concat.nii.gz", ref, NULL);
    }

    /* two members, the file cut in the second: the bytes before the cut count, as zlib's gzread counted them */
    size_t half[] = {n / 2};
    b = members_at(plain, n, half, 1);
    bytes cut = {NULL, 0, 0};
    size_t first = 0;
    {
        bytes one = {NULL, 0, 0};
        member(&one, plain, n / 2);
        first = one.n;
        free(one.p);
    }
    put(&cut, b.p, first + (b.n - first) / 2);
    spit_bytes(OUT "/cut_member.nii.gz", &cut);
    vxm_volume *bad = NULL;
    vxm_status st = vxm_volume_read(ctx, OUT "/cut_member.nii.gz", NULL, &bad);
    long long got = -1, want = -1;
    if (st)
        sscanf(strstr(vxm_context_error(ctx), "truncated data (") ? strstr(vxm_context_error(ctx), "truncated data (")
                                                                    : "",
               "truncated data (%lld of %lld bytes)", &got, &want);
    tu_report(st == VXM_EFORMAT && got >= (long long)(n / 2 - 352) && got < (long long)(n - 352) &&
                  want == (long long)(n - 352),
              "gzip_read_cut_member", "status %d: %s", (int)st, st ? vxm_context_error(ctx) : "read");
    vxm_volume_free(bad);
    free(cut.p);

    /* trailing garbage after the last member is ignored (zlib's gzread ignores it too), also when it starts
     * with the gzip magic: the reader never needs bytes from it */
    bytes g = {NULL, 0, 0};
    put(&g, b.p, b.n);
    put(&g, "\0\0garbage after the stream", 26);
    spit_bytes(OUT "/trailing.nii.gz", &g);
    expect_read(ctx, "gzip_read_trailing_garbage", OUT "/trailing.nii.gz", ref, NULL);
    g.n = b.n;
    put(&g, "\x1f\x8b\x08 not a member", 17);
    spit_bytes(OUT "/trailing_magic.nii.gz", &g);
    expect_read(ctx, "gzip_read_trailing_magic", OUT "/trailing_magic.nii.gz", ref, NULL);
    free(g.p);

    /* ISIZE that lies (bigger, smaller, huge; last member and first member), and a bad CRC: corrupt members */
    static const struct { const char *name; int which; uint32_t isize; } lies[] = {
        {"gzip_read_isize_bigger", 1, 0}, {"gzip_read_isize_smaller", 1, 7}, {"gzip_read_isize_huge", 1, 0xffffffffu},
        {"gzip_read_isize_first_member", 0, 5},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        bytes l = {NULL, 0, 0};
        put(&l, b.p, b.n);
        uint32_t v2 = lies[i].isize ? lies[i].isize : (uint32_t)(n - n / 2) * 3u;
        set_isize(lies[i].which ? l.p + l.n : l.p + first, v2);
        spit_bytes(OUT "/isize.nii.gz", &l);
        expect_read(ctx, lies[i].name, OUT "/isize.nii.gz", ref, "corrupt gzip data");
        free(l.p);
    }
    {
        bytes c = {NULL, 0, 0};
        put(&c, b.p, b.n);
        c.p[c.n - 8] ^= 0x40; /* CRC32 of the last member */
        spit_bytes(OUT "/crc.nii.gz", &c);
        expect_read(ctx, "gzip_read_bad_crc", OUT "/crc.nii.gz", ref, "corrupt gzip data");
        /* the ceiling bounds the output space even when ISIZE asks for 4 GB */
        set_isize(c.p + c.n, 0xffffffffu);
        c.p[c.n - 8] ^= 0x40;
        spit_bytes(OUT "/isize_ceiling.nii.gz", &c);
        setenv("VXM_MAX_ALLOC_MB", "2", 1);
        expect_read(ctx, "gzip_read_isize_huge_under_ceiling", OUT "/isize_ceiling.nii.gz", ref, "corrupt gzip data");
        unsetenv("VXM_MAX_ALLOC_MB");
        free(c.p);
    }
    free(b.p);

    /* a plain file named .nii.gz reads as it is (as gzread read it) */
    bytes p = {NULL, 0, 0};
    put(&p, plain, n);
    spit_bytes(OUT "/plain_named.nii.gz", &p);
    expect_read(ctx, "gzip_read_plain_named_gz", OUT "/plain_named.nii.gz", ref, NULL);
    free(p.p);

    /* A 4 MB gap before the data (vox_offset) compresses to a few KB: decompressing it is bounded by the
     * ceiling (VXM_MAX_ALLOC_MB), not by the compressed size. */
    bytes gap = {NULL, 0, 0};
    size_t off = (size_t)4 << 20;
    float fo = (float)off;
    unsigned char hdr[352];
    memcpy(hdr, plain, 352);
    memcpy(hdr + 108, &fo, 4);
    put(&gap, hdr, 352);
    unsigned char *zeros = calloc(1, off - 352);
    if (zeros)
        put(&gap, zeros, off - 352);
    free(zeros);
    put(&gap, plain + 352, n - 352);
    bytes gz = {NULL, 0, 0};
    member(&gz, gap.p, gap.n);
    spit_bytes(OUT "/gap.nii.gz", &gz);
    expect_read(ctx, "gzip_read_vox_offset_gap", OUT "/gap.nii.gz", ref, NULL);
    setenv("VXM_MAX_ALLOC_MB", "2", 1);
    expect_read(ctx, "gzip_read_ceiling", OUT "/gap.nii.gz", ref, "allocation ceiling");
    unsetenv("VXM_MAX_ALLOC_MB");
    free(gap.p);
    free(gz.p);

    free(plain);
    vxm_volume_free(ref);
    vxm_volume_free(v);
}

/* MGZ: the footer (TR, flip angle, TE, TI) in a member of its own, then trailing garbage; a cut in the data. */
static void check_foreign_mgz(vxm_context *ctx)
{
    int shape[3] = {20, 24, 28};
    vxm_volume *v = vxm_volume_new(3, shape, 1), *ref = NULL, *r = NULL;
    size_t n = 0;
    unsigned char *plain = NULL;
    if (v)
        for (size_t i = 0; i < vxm_volume_numel(v); i++)
            v->data[i] = (float)(i % 1000) * 0.5f;
    if (!v || vxm_volume_write(ctx, OUT "/plain.mgh", v, NULL) || !(plain = slurp(OUT "/plain.mgh", &n)) ||
        n < 284 + 20) {
        tu_report(0, "gzip_foreign_mgz_setup", "%s", vxm_context_error(ctx));
        vxm_volume_free(v);
        free(plain);
        return;
    }
    static const unsigned char tr[4] = {0x40, 0x20, 0x00, 0x00}; /* 2.5f big-endian */
    memcpy(plain + n - 20, tr, 4);
    FILE *f = fopen(OUT "/plain.mgh", "wb");
    if (f) {
        fwrite(plain, 1, n, f);
        fclose(f);
    }
    size_t cuts[] = {200, n - 20};
    bytes b = members_at(plain, n, cuts, 2);
    put(&b, "trailing", 8);
    spit_bytes(OUT "/footer_member.mgz", &b);
    int ok = !vxm_volume_read(ctx, OUT "/plain.mgh", NULL, &ref) &&
             !vxm_volume_read(ctx, OUT "/footer_member.mgz", NULL, &r);
    ok = ok && r->geom && r->geom->kind == VXM_GEOM_MGH && r->geom->mgh_params[0] == 2.5f &&
         !memcmp(r->data, ref->data, vxm_volume_numel(ref) * sizeof(float));
    tu_report(ok, "gzip_read_mgz_footer_member", "%s", vxm_context_error(ctx));
    bytes cut = {NULL, 0, 0};
    put(&cut, b.p, b.n / 2);
    spit_bytes(OUT "/cut.mgz", &cut);
    expect_read(ctx, "gzip_read_mgz_cut", OUT "/cut.mgz", ref, "truncated data");
    free(cut.p);
    free(b.p);
    free(plain);
    vxm_volume_free(r);
    vxm_volume_free(ref);
    vxm_volume_free(v);
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
    check_foreign_nifti(ctx);
    check_foreign_mgz(ctx);
    vxm_volume_free(v);
    vxm_context_free(ctx);
    return tu_exit_code();
}

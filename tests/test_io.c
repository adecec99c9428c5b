/* Volume I/O: round trips of every writable format, on-disk axis order, shape rules, geometry, scaling,
 * shared data, and the error paths (missing, truncated, garbage, unsupported, no partial output). */
#include "io/io.h"
#include "test_util.h"

#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#define OUT "tests/out/io"

static vxm_context *ctx;

/* ---- helpers ------------------------------------------------------------------------------------- */
static vxm_volume *pattern(int ndim, int n0, int n1, int n2, int c)
{
    int shape[3] = {n0, n1, n2};
    vxm_volume *v = vxm_volume_new(ndim, shape, c);
    if (!v)
        return NULL;
    size_t n = vxm_volume_numel(v);
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)i * 0.5f - 7.0f; /* distinct, exact in float32, asymmetric in every axis */
    return v;
}

static int same_volume(const vxm_volume *a, const vxm_volume *b, char *why, size_t n)
{
    if (a->ndim != b->ndim || a->channels != b->channels || memcmp(a->shape, b->shape, sizeof a->shape) != 0) {
        snprintf(why, n, "shape ndim %d %dx%dx%d c%d vs ndim %d %dx%dx%d c%d", a->ndim, a->shape[0], a->shape[1],
                 a->shape[2], a->channels, b->ndim, b->shape[0], b->shape[1], b->shape[2], b->channels);
        return 0;
    }
    size_t m = vxm_volume_numel(a);
    for (size_t i = 0; i < m; i++)
        if (memcmp(&a->data[i], &b->data[i], sizeof(float)) != 0) {
            snprintf(why, n, "element %zu: %g vs %g", i, a->data[i], b->data[i]);
            return 0;
        }
    return 1;
}

/* Checks that the last error is one line, names `path`, and contains `word` (if not NULL). */
static int msg_ok(const char *path, const char *word, char *why, size_t n)
{
    const char *m = vxm_context_error(ctx);
    if (strchr(m, '\n')) {
        snprintf(why, n, "message has a newline: %s", m);
        return 0;
    }
    if (!strstr(m, path)) {
        snprintf(why, n, "message does not name %s: %s", path, m);
        return 0;
    }
    if (word && !strstr(m, word)) {
        snprintf(why, n, "message lacks '%s': %s", word, m);
        return 0;
    }
    return 1;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Number of leftover temporary files ".<base>.tmp*" in OUT. */
static int temp_leftovers(void)
{
    glob_t g;
    int n = 0;
    if (glob(OUT "/.*.tmp*", 0, NULL, &g) == 0)
        n = (int)g.gl_pathc;
    globfree(&g);
    return n;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(buf, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

/* Writes an .npy by hand: header dict text + raw data. */
static int write_npy(const char *path, const char *descr, int fortran, const char *shape, const void *data,
                     size_t bytes)
{
    char dict[256];
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                      fortran ? "True" : "False", shape);
    size_t total = ((size_t)10 + (size_t)dl + 1 + 63) / 64 * 64;
    unsigned char *b = calloc(1, total + bytes);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)((total - 10) & 0xff);
    b[9] = (unsigned char)((total - 10) >> 8);
    memset(b + 10, ' ', total - 10);
    memcpy(b + 10, dict, (size_t)dl);
    b[total - 1] = '\n';
    memcpy(b + total, data, bytes);
    int rc = spit(path, b, total + bytes);
    free(b);
    return rc;
}

static float be_float(const unsigned char *p)
{
    uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- round trips ------------------------------------------------------------------------------- */
static void test_round_trips(void)
{
    static const char *exts[] = {".nii", ".nii.gz", ".mgh", ".mgz", ".npy", ".npz"};
    struct { const char *name; int ndim, n0, n1, n2, c; } cases[] = {
        {"3d", 3, 5, 6, 7, 1}, {"3d_warp", 3, 5, 6, 7, 3}, {"2d", 2, 1, 6, 7, 1}, {"2d_warp", 2, 1, 6, 7, 2},
    };
    for (size_t e = 0; e < sizeof exts / sizeof exts[0]; e++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            char path[256], name[128], why[256] = "";
            snprintf(path, sizeof path, OUT "/rt_%s%s", cases[k].name, exts[e]);
            snprintf(name, sizeof name, "io_roundtrip_%s%s", cases[k].name, exts[e]);
            vxm_volume *v = pattern(cases[k].ndim, cases[k].n0, cases[k].n1, cases[k].n2, cases[k].c), *r = NULL;
            vxm_status st = vxm_volume_write(ctx, path, v, NULL);
            if (!st)
                st = vxm_volume_read(ctx, path, NULL, &r);
            int ok = !st;
            if (!ok)
                snprintf(why, sizeof why, "%s", vxm_context_error(ctx));
            /* npy/npz cannot tell a 2-D multi-channel array (H,W,C) from a 3-D volume: documented rule */
            int npy = strstr(exts[e], ".np") != NULL;
            if (ok && npy && cases[k].ndim == 2 && cases[k].c > 1) {
                ok = r->ndim == 3 && r->shape[0] == 6 && r->shape[1] == 7 && r->shape[2] == 2 && r->channels == 1;
                if (!ok)
                    snprintf(why, sizeof why, "expected a 3-D (6,7,2) volume before reinterpretation");
                ok = ok && vxm_volume_as_2d_channels(r) == 1;
            }
            if (ok)
                ok = same_volume(r, v, why, sizeof why);
            tu_report(ok, name, "%s", why);
            vxm_volume_free(v);
            vxm_volume_free(r);
        }
}

/* The bytes on disk follow each format's own axis order (checked without our reader). */
static void test_disk_layout(void)
{
    char why[256] = "";
    vxm_volume *v = pattern(3, 5, 6, 7, 3);
    const int n0 = 5, n1 = 6, n2 = 7, C = 3;

    /* NIfTI: dim = [4,5,6,7,3], voxel (i,j,k,c) at i + n0*(j + n1*(k + n2*c)) */
    int ok = vxm_volume_write(ctx, OUT "/layout.nii", v, NULL) == VXM_OK;
    size_t len = 0;
    unsigned char *b = ok ? slurp(OUT "/layout.nii", &len) : NULL;
    ok = b && len == 352 + (size_t)n0 * n1 * n2 * C * 4;
    if (ok) {
        nifti_1_header h;
        memcpy(&h, b, sizeof h);
        ok = h.sizeof_hdr == 348 && h.dim[0] == 4 && h.dim[1] == n0 && h.dim[2] == n1 && h.dim[3] == n2 &&
             h.dim[4] == C && h.datatype == NIFTI_TYPE_FLOAT32 && h.vox_offset == 352.0f &&
             memcmp(h.magic, "n+1", 4) == 0;
        if (!ok)
            snprintf(why, sizeof why, "header dim [%d,%d,%d,%d,%d] type %d", h.dim[0], h.dim[1], h.dim[2],
                     h.dim[3], h.dim[4], h.datatype);
        const float *d = (const float *)(b + 352);
        for (int i = 0; ok && i < n0; i++)
            for (int j = 0; ok && j < n1; j++)
                for (int k = 0; ok && k < n2; k++)
                    for (int c = 0; ok && c < C; c++)
                        if (d[i + n0 * (j + n1 * (k + n2 * c))] != v->data[((i * n1 + j) * n2 + k) * C + c]) {
                            ok = 0;
                            snprintf(why, sizeof why, "voxel (%d,%d,%d,%d) misplaced", i, j, k, c);
                        }
    } else if (!why[0]) {
        snprintf(why, sizeof why, "write/size: %s", vxm_context_error(ctx));
    }
    tu_report(ok, "io_nifti_disk_order", "%s", why);
    free(b);

    /* MGH: big-endian, same Fortran order, data at 284 */
    why[0] = '\0';
    ok = vxm_volume_write(ctx, OUT "/layout.mgh", v, NULL) == VXM_OK;
    b = ok ? slurp(OUT "/layout.mgh", &len) : NULL;
    ok = b && len >= 284 + (size_t)n0 * n1 * n2 * C * 4;
    for (int i = 0; ok && i < n0; i++)
        for (int j = 0; ok && j < n1; j++)
            for (int k = 0; ok && k < n2; k++)
                for (int c = 0; ok && c < C; c++)
                    if (be_float(b + 284 + 4 * (size_t)(i + n0 * (j + n1 * (k + n2 * c)))) !=
                        v->data[((i * n1 + j) * n2 + k) * C + c]) {
                        ok = 0;
                        snprintf(why, sizeof why, "voxel (%d,%d,%d,%d) misplaced", i, j, k, c);
                    }
    if (ok && (b[7] != n0 || b[11] != n1 || b[15] != n2 || b[19] != C || b[23] != 3))
        ok = 0, snprintf(why, sizeof why, "MGH header dims/type");
    tu_report(ok, "io_mgh_disk_order", "%s", why);
    free(b);

    /* npy: C order, shape (5, 6, 7, 3) */
    why[0] = '\0';
    ok = vxm_volume_write(ctx, OUT "/layout.npy", v, NULL) == VXM_OK;
    b = ok ? slurp(OUT "/layout.npy", &len) : NULL;
    ok = b && len > 10 && strstr((const char *)b + 10, "'shape': (5, 6, 7, 3)") != NULL &&
         strstr((const char *)b + 10, "'<f4'") != NULL;
    if (ok) {
        size_t hl = 10 + (size_t)(b[8] | (b[9] << 8));
        ok = hl % 64 == 0 && len == hl + vxm_volume_numel(v) * 4 && memcmp(b + hl, v->data, len - hl) == 0;
    }
    tu_report(ok, "io_npy_disk_order", "bad header or data");
    free(b);
    vxm_volume_free(v);

    /* 2-D images: NIfTI dim [2,H,W]; 2-D with channels [5,H,W,1,1,C] */
    vxm_volume *v2 = pattern(2, 1, 6, 7, 1), *v2c = pattern(2, 1, 6, 7, 2);
    nifti_1_header h1, h2;
    memset(&h1, 0, sizeof h1);
    memset(&h2, 0, sizeof h2);
    ok = !vxm_volume_write(ctx, OUT "/layout2d.nii", v2, NULL) && !vxm_volume_write(ctx, OUT "/layout2dc.nii", v2c, NULL);
    if (ok && (b = slurp(OUT "/layout2d.nii", &len))) {
        memcpy(&h1, b, sizeof h1);
        free(b);
    }
    if (ok && (b = slurp(OUT "/layout2dc.nii", &len))) {
        memcpy(&h2, b, sizeof h2);
        free(b);
    }
    ok = ok && h1.dim[0] == 2 && h1.dim[1] == 6 && h1.dim[2] == 7 && h2.dim[0] == 5 && h2.dim[1] == 6 &&
         h2.dim[2] == 7 && h2.dim[3] == 1 && h2.dim[4] == 1 && h2.dim[5] == 2;
    tu_report(ok, "io_nifti_2d_dims", "dims [%d,%d,%d] and [%d,%d,%d,%d,%d,%d]", h1.dim[0], h1.dim[1], h1.dim[2],
              h2.dim[0], h2.dim[1], h2.dim[2], h2.dim[3], h2.dim[4], h2.dim[5]);
    vxm_volume_free(v2);
    vxm_volume_free(v2c);
}

/* npy dtypes, byte orders and Fortran order. */
static void test_npy_dtypes(void)
{
    /* (2,3,4) int16 big-endian, Fortran order: element (i,j,k) = 100*i + 10*j + k - 50 */
    int16_t be[24];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                uint16_t u = (uint16_t)(int16_t)(100 * i + 10 * j + k - 50);
                u = (uint16_t)((u >> 8) | (u << 8));
                memcpy(&be[i + 2 * (j + 3 * k)], &u, 2);
            }
    vxm_volume *r = NULL;
    int ok = write_npy(OUT "/f_be.npy", ">i2", 1, "(2, 3, 4)", be, sizeof be) == 0 &&
             vxm_volume_read(ctx, OUT "/f_be.npy", NULL, &r) == VXM_OK;
    ok = ok && r->ndim == 3 && r->shape[0] == 2 && r->shape[1] == 3 && r->shape[2] == 4 && r->channels == 1;
    for (int i = 0; ok && i < 24; i++)
        ok = r->data[i] == (float)(100 * (i / 12) + 10 * ((i / 4) % 3) + (i % 4) - 50);
    tu_report(ok, "io_npy_fortran_bigendian_i2", "%s", vxm_context_error(ctx));
    vxm_volume_free(r);

    /* uint8, bool, uint64, float64 (C order); 2-D and 4-D shapes */
    uint8_t u8[6] = {0, 1, 2, 253, 254, 255};
    uint8_t b1[6] = {0, 1, 1, 0, 0, 1};
    uint64_t u64[6] = {0, 1, 2, 3, 1ull << 40, 5};
    double f8[2 * 2 * 2 * 3];
    for (int i = 0; i < 24; i++)
        f8[i] = i * 0.25 - 1;
    struct { const char *file, *descr, *shape; const void *data; size_t bytes; } c[] = {
        {"u1", "|u1", "(2, 3)", u8, sizeof u8},
        {"b1", "|b1", "(2, 3)", b1, sizeof b1},
        {"u8", "<u8", "(2, 3)", u64, sizeof u64},
        {"f8", "<f8", "(2, 2, 2, 3)", f8, sizeof f8},
    };
    for (size_t t = 0; t < sizeof c / sizeof c[0]; t++) {
        char path[128], name[64];
        snprintf(path, sizeof path, OUT "/dt_%s.npy", c[t].file);
        snprintf(name, sizeof name, "io_npy_dtype_%s", c[t].file);
        r = NULL;
        ok = write_npy(path, c[t].descr, 0, c[t].shape, c[t].data, c[t].bytes) == 0 &&
             vxm_volume_read(ctx, path, NULL, &r) == VXM_OK;
        if (ok && t < 3)
            ok = r->ndim == 2 && r->shape[0] == 1 && r->shape[1] == 2 && r->shape[2] == 3 && r->channels == 1;
        if (ok && t == 3)
            ok = r->ndim == 3 && r->shape[0] == 2 && r->shape[1] == 2 && r->shape[2] == 2 && r->channels == 3;
        for (int i = 0; ok && i < 6; i++) {
            float want = t == 0 ? u8[i] : t == 1 ? b1[i] : t == 2 ? (float)u64[i] : (float)f8[i];
            ok = r->data[i] == want;
        }
        tu_report(ok, name, "%s", vxm_context_error(ctx));
        vxm_volume_free(r);
    }

    /* unsupported dtype */
    float cplx[4] = {1, 2, 3, 4};
    r = NULL;
    vxm_status st = write_npy(OUT "/dt_c8.npy", "<c8", 0, "(2,)", cplx, sizeof cplx) == 0
                        ? vxm_volume_read(ctx, OUT "/dt_c8.npy", NULL, &r)
                        : VXM_EIO;
    char why[256] = "";
    ok = st == VXM_EFORMAT && !r && msg_ok(OUT "/dt_c8.npy", "unsupported data type", why, sizeof why);
    tu_report(ok, "io_npy_unsupported_dtype", "status %d: %s", st, why);
}

/* npz: stored and deflated members, key selection, missing key. */
static void test_npz_keys(void)
{
    const char *path = OUT "/two.npz";
    vxm_volume *a = pattern(3, 2, 3, 4, 1), *b = pattern(2, 1, 3, 4, 1);
    unsigned char *na = NULL, *nb = NULL;
    size_t la = 0, lb = 0;
    int ok = !vxm_npy_serialize(ctx, "a", a, &na, &la) && !vxm_npy_serialize(ctx, "b", b, &nb, &lb);
    int err = 0;
    zip_t *za = ok ? zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err) : NULL;
    if (za) {
        zip_source_t *sa = zip_source_buffer(za, na, la, 0), *sb = zip_source_buffer(za, nb, lb, 0);
        zip_int64_t ia = zip_file_add(za, "vol.npy", sa, 0), ib = zip_file_add(za, "mask.npy", sb, 0);
        zip_set_file_compression(za, (zip_uint64_t)ia, ZIP_CM_STORE, 0);
        zip_set_file_compression(za, (zip_uint64_t)ib, ZIP_CM_DEFLATE, 9);
        ok = zip_close(za) == 0;
    } else {
        ok = 0;
    }
    vxm_volume *r = NULL, *r2 = NULL;
    char why[256] = "";
    int ok1 = ok && !vxm_volume_read(ctx, path, NULL, &r) && same_volume(r, a, why, sizeof why);
    int ok2 = ok && !vxm_volume_read(ctx, path, "mask", &r2) && same_volume(r2, b, why, sizeof why);
    tu_report(ok1 && ok2, "io_npz_stored_and_deflated_keys", "%s %s", why, vxm_context_error(ctx));
    vxm_volume_free(r);
    vxm_volume_free(r2);
    r = NULL;
    vxm_status st = ok ? vxm_volume_read(ctx, path, "seg", &r) : VXM_EIO;
    ok = st == VXM_EFORMAT && !r && msg_ok(path, "seg", why, sizeof why) && msg_ok(path, "vol", why, sizeof why) &&
         msg_ok(path, "mask", why, sizeof why);
    tu_report(ok, "io_npz_missing_key", "status %d: %s", st, why);
    free(na);
    free(nb);
    vxm_volume_free(a);
    vxm_volume_free(b);

    /* one array: taken whatever the key (VoxelMorph's load_volfile) */
    vxm_volume *v = pattern(3, 3, 4, 5, 1);
    r = NULL;
    ok = !vxm_volume_write(ctx, OUT "/one.npz", v, NULL) && !vxm_volume_read(ctx, OUT "/one.npz", "seg", &r) &&
         same_volume(r, v, why, sizeof why);
    tu_report(ok, "io_npz_single_array_any_key", "%s %s", why, vxm_context_error(ctx));
    vxm_volume_free(r);
    vxm_volume_free(v);
}

/* NIfTI written by nifti2_io: int16 with scl_slope 2 / inter 1 and a non-trivial sform/qform. */
static nifti_image *make_nim(int datatype, const char *fname)
{
    int64_t dims[8] = {3, 4, 5, 6, 1, 1, 1, 1};
    nifti_image *nim = nifti_make_new_nim(dims, datatype, 1);
    if (!nim)
        return NULL;
    /* rotation about z by 90 degrees, spacing (2, 1.5, 3), translation */
    nifti_dmat44 m;
    memset(&m, 0, sizeof m);
    m.m[0][1] = -1.5; m.m[1][0] = 2.0; m.m[2][2] = 3.0;
    m.m[0][3] = 10; m.m[1][3] = -20; m.m[2][3] = 5; m.m[3][3] = 1;
    nim->sto_xyz = m;
    nim->sform_code = NIFTI_XFORM_MNI_152;
    nifti_dmat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x,
                            &nim->qoffset_y, &nim->qoffset_z, &nim->dx, &nim->dy, &nim->dz, &nim->qfac);
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->pixdim[1] = nim->dx; nim->pixdim[2] = nim->dy; nim->pixdim[3] = nim->dz;
    nim->xyz_units = NIFTI_UNITS_MM;
    snprintf(nim->descrip, sizeof nim->descrip, "vxm test");
    if (nifti_set_filenames(nim, fname, 0, 1)) {
        nifti_image_free(nim);
        return NULL;
    }
    return nim;
}

static int affine_close(const double a[4][4], const double b[4][4], double tol)
{
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(a[r][c] - b[r][c]) > tol)
                return 0;
    return 1;
}

static void test_nifti_headers(void)
{
    nifti_set_debug_level(0);
    /* scaling */
    nifti_image *nim = make_nim(NIFTI_TYPE_INT16, OUT "/scl.nii");
    int ok = nim != NULL;
    if (ok) {
        int16_t *d = nim->data;
        for (int i = 0; i < 120; i++)
            d[i] = (int16_t)(i * 3 - 100);
        nim->scl_slope = 2;
        nim->scl_inter = 1;
        nifti_image_write(nim);
    }
    vxm_volume *r = NULL;
    ok = ok && !vxm_volume_read(ctx, OUT "/scl.nii", NULL, &r) && r->ndim == 3 && r->shape[0] == 4 &&
         r->shape[1] == 5 && r->shape[2] == 6;
    for (int i = 0; ok && i < 4; i++)
        for (int j = 0; ok && j < 5; j++)
            for (int k = 0; ok && k < 6; k++) {
                int disk = i + 4 * (j + 5 * k);
                ok = r->data[(i * 5 + j) * 6 + k] == 2.0f * (float)(disk * 3 - 100) + 1.0f;
            }
    tu_report(ok, "io_nifti_scl_slope_inter", "%s", vxm_context_error(ctx));

    /* affine and header fields preserved NIfTI -> NIfTI; NIfTI -> MGZ -> NIfTI keeps the affine */
    char why[256] = "";
    vxm_volume *out = NULL, *back = NULL, *mg = NULL, *back2 = NULL;
    ok = r && (out = pattern(3, 4, 5, 6, 1)) != NULL &&
         !vxm_volume_write(ctx, OUT "/aff.nii.gz", out, r) && !vxm_volume_read(ctx, OUT "/aff.nii.gz", NULL, &back);
    if (ok) {
        const nifti_image *s = r->geom->nim, *t = back->geom->nim;
        double sa[4][4], ta[4][4];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                sa[i][j] = s->sto_xyz.m[i][j];
                ta[i][j] = t->sto_xyz.m[i][j];
            }
        ok = affine_close(sa, ta, 0) && t->sform_code == NIFTI_XFORM_MNI_152 &&
             t->qform_code == NIFTI_XFORM_SCANNER_ANAT && fabs(t->quatern_d - s->quatern_d) < 1e-7 &&
             t->dx == s->dx && t->dz == s->dz && t->xyz_units == NIFTI_UNITS_MM &&
             strcmp(t->descrip, "vxm test") == 0 && t->datatype == NIFTI_TYPE_FLOAT32;
        if (!ok)
            snprintf(why, sizeof why, "sform/qform/pixdim/units/descrip differ");
    }
    tu_report(ok, "io_nifti_affine_preserved", "%s %s", why, vxm_context_error(ctx));
    ok = back && !vxm_volume_write(ctx, OUT "/aff.mgz", out, back) && !vxm_volume_read(ctx, OUT "/aff.mgz", NULL, &mg);
    double a1[4][4], a2[4][4], a3[4][4];
    if (ok) {
        vxm_geometry_affine(back->geom, back, a1);
        vxm_geometry_affine(mg->geom, mg, a2);
        ok = affine_close(a1, a2, 1e-4);
    }
    tu_report(ok, "io_affine_nifti_to_mgz", "%s", vxm_context_error(ctx));
    ok = mg && !vxm_volume_write(ctx, OUT "/aff2.nii", out, mg) && !vxm_volume_read(ctx, OUT "/aff2.nii", NULL, &back2);
    if (ok) {
        vxm_geometry_affine(back2->geom, back2, a3);
        ok = affine_close(a1, a3, 1e-4) && back2->geom->nim->sform_code == NIFTI_XFORM_SCANNER_ANAT;
    }
    tu_report(ok, "io_affine_mgz_to_nifti", "%s", vxm_context_error(ctx));
    vxm_volume_free(back2);
    vxm_volume_free(mg);
    vxm_volume_free(back);
    vxm_volume_free(r);
    if (nim)
        nifti_image_free(nim);

    /* default frame without geometry: R = [[-1,0,0],[0,0,1],[0,-1,0]], t = -R*(shape/2) */
    back = NULL;
    ok = out && !vxm_volume_write(ctx, OUT "/deflt.nii", out, NULL) && !vxm_volume_read(ctx, OUT "/deflt.nii", NULL, &back);
    if (ok) {
        double want[4][4] = {{-1, 0, 0, 2}, {0, 0, 1, -3}, {0, -1, 0, 2.5}, {0, 0, 0, 1}};
        vxm_geometry_affine(back->geom, back, a1);
        ok = affine_close(a1, want, 1e-6);
    }
    tu_report(ok, "io_default_frame", "%s", vxm_context_error(ctx));
    vxm_volume_free(back);

    /* NIfTI-2 source -> NIfTI-2 output (the fixture is written by hand: libnifti2 3.0.1's nifti_image_write
     * drops the header of single-file NIfTI-2 images) */
    r = back = NULL;
    int64_t d2[8] = {3, 4, 5, 6, 1, 1, 1, 1};
    nifti_2_header *h2 = nifti_make_new_n2_header(d2, NIFTI_TYPE_FLOAT64);
    ok = h2 != NULL;
    if (ok) {
        unsigned char buf[544 + 120 * 8];
        memset(buf, 0, sizeof buf);
        h2->vox_offset = 544;
        h2->sform_code = NIFTI_XFORM_SCANNER_ANAT;
        h2->srow_x[0] = 2; h2->srow_y[1] = 2; h2->srow_z[2] = 2; h2->srow_x[3] = -7;
        memcpy(buf, h2, sizeof *h2);
        for (int i = 0; i < 120; i++) {
            double x = i / 8.0;
            memcpy(buf + 544 + 8 * i, &x, 8);
        }
        ok = spit(OUT "/n2.nii", buf, sizeof buf) == 0;
        free(h2);
    }
    ok = ok && !vxm_volume_read(ctx, OUT "/n2.nii", NULL, &r) && !vxm_volume_write(ctx, OUT "/n2_out.nii.gz", out, r) &&
         !vxm_volume_read(ctx, OUT "/n2_out.nii.gz", NULL, &back);
    ok = ok && r->data[(1 * 5 + 2) * 6 + 3] == (float)((1 + 4 * (2 + 5 * 3)) / 8.0) &&
         back->geom->nifti_version == 2 && same_volume(back, out, why, sizeof why);
    tu_report(ok, "io_nifti2_kept", "%s %s", why, vxm_context_error(ctx));
    if (ok) {
        unsigned char hdr[4];
        gzFile gz = gzopen(OUT "/n2_out.nii.gz", "rb");
        int32_t sz = 0;
        if (gz && gzread(gz, hdr, 4) == 4)
            memcpy(&sz, hdr, 4);
        if (gz)
            gzclose(gz);
        ok = sz == 540 && back->geom->affine[0][0] == 2 && back->geom->affine[0][3] == -7;
    }
    tu_report(ok, "io_nifti2_header_on_disk", "sizeof_hdr/affine");
    vxm_volume_free(r);
    vxm_volume_free(back);

    /* unsupported NIfTI data type */
    int64_t dims[8] = {3, 2, 2, 2, 1, 1, 1, 1};
    nim = nifti_make_new_nim(dims, NIFTI_TYPE_COMPLEX64, 1);
    r = NULL;
    vxm_status st = VXM_EIO;
    if (nim && !nifti_set_filenames(nim, OUT "/cplx.nii", 0, 1)) {
        nifti_image_write(nim);
        st = vxm_volume_read(ctx, OUT "/cplx.nii", NULL, &r);
    }
    ok = st == VXM_EFORMAT && !r && msg_ok(OUT "/cplx.nii", "unsupported data type", why, sizeof why);
    tu_report(ok, "io_nifti_unsupported_dtype", "status %d: %s", st, why);
    if (nim)
        nifti_image_free(nim);
    vxm_volume_free(out);
}

/* ---- bad inputs ------------------------------------------------------------------------------- */
static void expect_error(const char *name, const char *path, const char *key, vxm_status want, const char *word)
{
    vxm_volume *r = NULL;
    char why[256] = "";
    vxm_status st = vxm_volume_read(ctx, path, key, &r);
    int ok = st == want && r == NULL && msg_ok(path, word, why, sizeof why);
    if (st != want)
        snprintf(why, sizeof why, "status %d (%s), want %d", st, vxm_context_error(ctx), want);
    tu_report(ok, name, "%s", why);
    vxm_volume_free(r);
}

static void truncate_copy(const char *src, const char *dst, size_t n)
{
    size_t len = 0;
    unsigned char *b = slurp(src, &len);
    if (b)
        spit(dst, b, n < len ? n : len);
    free(b);
}

static void test_bad_inputs(void)
{
    expect_error("io_missing_file", OUT "/does_not_exist.nii.gz", NULL, VXM_EIO, "No such file or directory");

    /* a file big enough that its gzip stream is long: cut in the data, and in the header */
    vxm_volume *big = pattern(3, 40, 50, 60, 1);
    for (size_t i = 0; i < vxm_volume_numel(big); i++)
        big->data[i] = (float)sin((double)i * 0.37) * 1000.0f;
    vxm_volume_write(ctx, OUT "/big.nii.gz", big, NULL);
    vxm_volume_write(ctx, OUT "/big.nii", big, NULL);
    vxm_volume_write(ctx, OUT "/big.mgz", big, NULL);
    vxm_volume_write(ctx, OUT "/big.npz", big, NULL);
    vxm_volume_write(ctx, OUT "/big.npy", big, NULL);
    truncate_copy(OUT "/big.nii.gz", OUT "/trunc_data.nii.gz", 20000);
    expect_error("io_truncated_nii_gz_data", OUT "/trunc_data.nii.gz", NULL, VXM_EFORMAT, "truncated");
    truncate_copy(OUT "/big.nii.gz", OUT "/trunc_hdr.nii.gz", 60);
    expect_error("io_truncated_nii_gz_header", OUT "/trunc_hdr.nii.gz", NULL, VXM_EFORMAT, "truncated");
    truncate_copy(OUT "/big.nii", OUT "/trunc_data.nii", 5000);
    expect_error("io_truncated_nii_data", OUT "/trunc_data.nii", NULL, VXM_EFORMAT, "truncated");
    truncate_copy(OUT "/big.nii", OUT "/trunc_hdr.nii", 200);
    expect_error("io_truncated_nii_header", OUT "/trunc_hdr.nii", NULL, VXM_EFORMAT, "truncated");
    truncate_copy(OUT "/big.mgz", OUT "/trunc.mgz", 30000);
    expect_error("io_truncated_mgz", OUT "/trunc.mgz", NULL, VXM_EFORMAT, "truncated");
    truncate_copy(OUT "/big.npz", OUT "/trunc.npz", 30000);
    expect_error("io_truncated_npz", OUT "/trunc.npz", NULL, VXM_EFORMAT, NULL);
    truncate_copy(OUT "/big.npy", OUT "/trunc.npy", 30000);
    expect_error("io_truncated_npy", OUT "/trunc.npy", NULL, VXM_EFORMAT, "truncated");
    /* issue 11: header dimensions corrupted to 200000^3 must be an error before any allocation (ASan reported a
     * 8.5e15-byte request for such an MGZ): .mgh, .mgz (the gzip stream's header is re-written) and .nii */
    size_t mlen = 0;
    unsigned char *mgh = NULL;
    if (!vxm_volume_write(ctx, OUT "/dims.mgh", big, NULL) && (mgh = slurp(OUT "/dims.mgh", &mlen)) && mlen > 284) {
        for (int k = 0; k < 3; k++) { /* width, height, depth: big-endian int32 at 4, 8, 12 */
            mgh[4 + 4 * k] = 0x00, mgh[5 + 4 * k] = 0x03, mgh[6 + 4 * k] = 0x0d, mgh[7 + 4 * k] = 0x40;
        }
        spit(OUT "/dims_bad.mgh", mgh, mlen);
        expect_error("io_corrupt_dims_mgh", OUT "/dims_bad.mgh", NULL, VXM_EFORMAT, "200000 x 200000 x 200000");
        gzFile gz = gzopen(OUT "/dims_bad.mgz", "wb");
        if (gz) {
            gzwrite(gz, mgh, (unsigned)mlen);
            gzclose(gz);
        }
        expect_error("io_corrupt_dims_mgz", OUT "/dims_bad.mgz", NULL, VXM_EFORMAT, "corrupt header");
    } else {
        tu_report(0, "io_corrupt_dims_mgh", "cannot write the source file: %s", vxm_context_error(ctx));
    }
    free(mgh);
    unsigned char *nii = NULL;
    if ((nii = slurp(OUT "/big.nii", &mlen)) && mlen > 352) {
        short d[8] = {3, 30000, 30000, 30000, 1, 1, 1, 1}; /* dim[] at byte 40, little-endian shorts */
        memcpy(nii + 40, d, sizeof d);
        spit(OUT "/dims_bad.nii", nii, mlen);
        expect_error("io_corrupt_dims_nii", OUT "/dims_bad.nii", NULL, VXM_EFORMAT, NULL);
    }
    free(nii);
    vxm_volume_free(big);

    unsigned char garbage[1000];
    for (int i = 0; i < 1000; i++)
        garbage[i] = (unsigned char)(i * 7919 % 251);
    spit(OUT "/garbage.nii", garbage, sizeof garbage);
    expect_error("io_garbage_nii", OUT "/garbage.nii", NULL, VXM_EFORMAT, NULL);
    spit(OUT "/garbage.mgz", garbage, sizeof garbage);
    expect_error("io_garbage_mgz", OUT "/garbage.mgz", NULL, VXM_EFORMAT, NULL);
    spit(OUT "/garbage.npy", garbage, sizeof garbage);
    expect_error("io_garbage_npy", OUT "/garbage.npy", NULL, VXM_EFORMAT, NULL);
    spit(OUT "/garbage.npz", garbage, sizeof garbage);
    expect_error("io_garbage_npz", OUT "/garbage.npz", NULL, VXM_EFORMAT, NULL);
    spit(OUT "/garbage.txt", garbage, sizeof garbage);
    expect_error("io_unknown_extension", OUT "/garbage.txt", NULL, VXM_EFORMAT, "extension");
    expect_error("io_no_extension", "/dev/null", NULL, VXM_EFORMAT, "extension");
    spit(OUT "/empty.nii", garbage, 0);
    expect_error("io_empty_file_nii", OUT "/empty.nii", NULL, VXM_EFORMAT, "truncated");

    /* malformed NIfTI headers: clean errors, and nothing printed by libnifti */
    {
        vxm_volume *small = pattern(3, 4, 5, 6, 1);
        size_t len = 0;
        unsigned char *b = NULL;
        if (!vxm_volume_write(ctx, OUT "/small.nii", small, NULL))
            b = slurp(OUT "/small.nii", &len);
        fflush(stderr);
        int saved = dup(2);
        FILE *cap = fopen(OUT "/stderr.txt", "w");
        if (cap)
            dup2(fileno(cap), 2);
        struct { const char *file, *word; size_t off; int16_t val; } bad[] = {
            {OUT "/bad_dim0.nii", "dim[0]", 40, 9},
            {OUT "/bad_dim2.nii", "dim[2]", 44, -4},
            {OUT "/bad_dtype.nii", "unsupported data type", 70, 999},
            {OUT "/bad_rgb.nii", "unsupported data type RGB24", 70, NIFTI_TYPE_RGB24},
        };
        for (size_t i = 0; b && i < sizeof bad / sizeof bad[0]; i++) {
            unsigned char *c = malloc(len);
            memcpy(c, b, len);
            memcpy(c + bad[i].off, &bad[i].val, 2);
            spit(bad[i].file, c, len);
            free(c);
            char name[64];
            snprintf(name, sizeof name, "io_bad_header_%zu", i);
            expect_error(name, bad[i].file, NULL, VXM_EFORMAT, bad[i].word);
        }
        fflush(stderr);
        if (cap) {
            dup2(saved, 2);
            fclose(cap);
        }
        close(saved);
        size_t elen = 0;
        unsigned char *e = slurp(OUT "/stderr.txt", &elen);
        tu_report(b && e && elen == 0, "io_libnifti_silent", "stderr got %zu bytes", elen);
        free(e);
        free(b);
        vxm_volume_free(small);
    }

    /* NaN / Inf are not rejected here */
    vxm_volume *v = pattern(3, 3, 3, 3, 1), *r = NULL;
    v->data[0] = NAN;
    v->data[1] = INFINITY;
    int ok = !vxm_volume_write(ctx, OUT "/nan.nii.gz", v, NULL) && !vxm_volume_read(ctx, OUT "/nan.nii.gz", NULL, &r) &&
             isnan(r->data[0]) && isinf(r->data[1]);
    tu_report(ok, "io_nan_passes_through", "%s", vxm_context_error(ctx));
    vxm_volume_free(r);

    /* writes that fail leave nothing behind */
    char why[256] = "";
    const char *bad = OUT "/no/such/dir/x.nii.gz";
    vxm_status st = vxm_volume_write(ctx, bad, v, NULL);
    ok = st == VXM_EIO && !file_exists(bad) && msg_ok(bad, NULL, why, sizeof why);
    tu_report(ok, "io_write_bad_directory", "status %d: %s", st, why);
    st = vxm_volume_write(ctx, OUT "/x.vol", v, NULL);
    ok = st == VXM_EFORMAT && !file_exists(OUT "/x.vol");
    tu_report(ok, "io_write_unknown_extension", "status %d", st);

    /* a write that fails midway (file size limit) keeps the previous file intact and leaves no temp file */
    vxm_volume *large = pattern(3, 64, 64, 64, 1);
    for (size_t i = 0; i < vxm_volume_numel(large); i++) /* incompressible enough to exceed the limit */
        large->data[i] = (float)sin((double)i * 1.618) * 123.456f;
    const char *target = OUT "/keep.nii";
    ok = !vxm_volume_write(ctx, target, v, NULL);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    static const char *exts[] = {".nii", ".nii.gz", ".mgz", ".npy", ".npz"};
    int all = ok;
    for (size_t e = 0; e < sizeof exts / sizeof exts[0]; e++) {
        char p[128];
        snprintf(p, sizeof p, OUT "/full%s", exts[e]);
        st = vxm_volume_write(ctx, p, large, NULL);
        if (st != VXM_EIO || file_exists(p) || !msg_ok(p, NULL, why, sizeof why)) {
            all = 0;
            snprintf(why, sizeof why, "%s: status %d exists %d: %s", exts[e], st, file_exists(p), vxm_context_error(ctx));
        }
    }
    st = vxm_volume_write(ctx, target, large, NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    vxm_volume *kept = NULL;
    all = all && st == VXM_EIO && !vxm_volume_read(ctx, target, NULL, &kept) && same_volume(kept, v, why, sizeof why);
    tu_report(all && temp_leftovers() == 0, "io_failed_write_leaves_nothing", "%s (leftovers %d)", why,
              temp_leftovers());
    vxm_volume_free(kept);
    vxm_volume_free(large);
    vxm_volume_free(v);
}

/* ---- shared data ----------------------------------------------------------------------------- */
static void test_shared(void)
{
    if (!tu_have_shared()) {
        tu_skip("io_shared_data", "shared data folder not found");
        return;
    }
    char p[1024], why[256] = "";
    vxm_volume *fixed = NULL, *vol = NULL, *seg = NULL, *fseg = NULL, *r = NULL;
    vxm_status st = vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/pairs/fixed.nii.gz"), NULL, &fixed);
    int ok = !st && fixed->ndim == 3 && fixed->shape[0] == 160 && fixed->shape[1] == 192 && fixed->shape[2] == 224 &&
             fixed->channels == 1 && fixed->geom;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; ok && i < vxm_volume_numel(fixed); i++) {
        lo = fixed->data[i] < lo ? fixed->data[i] : lo;
        hi = fixed->data[i] > hi ? fixed->data[i] : hi;
    }
    ok = ok && lo >= 0.0f && hi <= 1.0f && hi > 0.5f && fixed->data[(80 * 192 + 100) * 224 + 120] == 0.1254902f &&
         fixed->data[(100 * 192 + 50) * 224 + 150] == 0.22352941f;
    tu_report(ok, "io_shared_fixed", "%s", st ? vxm_context_error(ctx) : "shape/range/values");
    if (!ok) {
        vxm_volume_free(fixed);
        return;
    }

    /* npz keys vol and seg equal the NIfTI versions (checks the NIfTI axis transposition independently) */
    ok = !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/scans/test_scan.npz"), NULL, &vol) &&
         same_volume(vol, fixed, why, sizeof why);
    tu_report(ok, "io_shared_npz_vol_equals_fixed", "%s %s", why, vxm_context_error(ctx));
    ok = !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/scans/test_scan.npz"), "seg", &seg) &&
         !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/pairs/fixed_seg.nii.gz"), NULL, &fseg) &&
         same_volume(seg, fseg, why, sizeof why);
    tu_report(ok, "io_shared_npz_seg_equals_fixed_seg", "%s %s", why, vxm_context_error(ctx));
    vxm_volume_free(vol);
    vxm_volume_free(seg);
    vxm_volume_free(fseg);
    vol = NULL;
    expect_error("io_shared_npz_missing_key", tu_shared_path(p, sizeof p, "data/scans/test_scan.npz"), "labels",
                 VXM_EFORMAT, "vol, seg");

    /* float64 NIfTI of the same scan */
    ok = !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/scans/test_vol.nii.gz"), NULL, &r) &&
         same_volume(r, fixed, why, sizeof why) && tu_max_abs_diff(r->data, fixed->data, vxm_volume_numel(r)) == 0 &&
         tu_nmse(r->data, fixed->data, vxm_volume_numel(r)) == 0;
    tu_report(ok, "io_shared_test_vol_float64", "%s %s", why, vxm_context_error(ctx));
    vxm_volume_free(r);
    r = NULL;

    /* labels.npz: (30,) int64 -> {1, 1, 30} */
    ok = !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/scans/labels.npz"), "labels", &r) && r->ndim == 2 &&
         r->shape[0] == 1 && r->shape[1] == 1 && r->shape[2] == 30 && r->channels == 1 && r->data[0] == 2.0f &&
         r->data[1] == 3.0f && r->data[3] == 7.0f;
    tu_report(ok, "io_shared_labels", "%s", vxm_context_error(ctx));
    vxm_volume_free(r);
    r = NULL;

    /* 3-D warp: stored dim = [4,160,192,224,3] */
    ok = !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/pairs/pair1_true_warp.nii.gz"), NULL, &r) &&
         r->ndim == 3 && r->shape[0] == 160 && r->shape[1] == 192 && r->shape[2] == 224 && r->channels == 3;
    if (ok) {
        const float *w = r->data + ((size_t)(10 * 192 + 20) * 224 + 30) * 3;
        const float *w2 = r->data + ((size_t)(100 * 192 + 150) * 224 + 200) * 3;
        ok = w[0] == 0.8125f && w[1] == -0.59375f && w[2] == 0.53125f && w2[0] == -1.15625f && w2[1] == -0.71875f &&
             w2[2] == -0.25f;
    }
    tu_report(ok, "io_shared_warp_channels", "%s", vxm_context_error(ctx));

    /* the warp written back (with the fixed image's header) is identical, dim [4,...,3] */
    vxm_volume *back = NULL;
    ok = r && !vxm_volume_write(ctx, OUT "/warp_copy.nii.gz", r, fixed) &&
         !vxm_volume_read(ctx, OUT "/warp_copy.nii.gz", NULL, &back) && same_volume(back, r, why, sizeof why) &&
         back->geom->nim->dim[0] == 4 && back->geom->nim->dim[4] == 3 && back->geom->nim->sform_code == 2;
    tu_report(ok, "io_shared_warp_rewrite", "%s %s", why, vxm_context_error(ctx));
    vxm_volume_free(back);
    vxm_volume_free(r);
    r = NULL;

    /* 2-D image = fixed[80] */
    ok = !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/pairs/pair2d_fixed.nii.gz"), NULL, &r) &&
         r->ndim == 2 && r->shape[0] == 1 && r->shape[1] == 192 && r->shape[2] == 224 && r->channels == 1 &&
         memcmp(r->data, fixed->data + (size_t)80 * 192 * 224, sizeof(float) * 192 * 224) == 0;
    tu_report(ok, "io_shared_pair2d", "%s", vxm_context_error(ctx));
    vxm_volume_free(r);
    r = NULL;

    /* 2-D warp stored as a 3-D (192,224,2) array: read as 3-D, reinterpreted by the caller */
    ok = !vxm_volume_read(ctx, tu_shared_path(p, sizeof p, "data/pairs/pair2d_true_warp.nii.gz"), NULL, &r) &&
         r->ndim == 3 && r->shape[0] == 192 && r->shape[1] == 224 && r->shape[2] == 2 && r->channels == 1 &&
         vxm_volume_as_2d_channels(r) && r->ndim == 2 && r->shape[1] == 192 && r->shape[2] == 224 &&
         r->channels == 2;
    if (ok) {
        const float *w = r->data + (size_t)(50 * 224 + 60) * 2, *w2 = r->data + (size_t)(100 * 224 + 150) * 2;
        ok = w[0] == -0.35062858f && w[1] == -1.1402942f && w2[0] == 0.55123264f && w2[1] == -0.47182474f;
    }
    tu_report(ok, "io_shared_pair2d_warp", "%s", vxm_context_error(ctx));
    vxm_volume_free(r);
    r = NULL;

    /* a cut copy of a shared file */
    truncate_copy(tu_shared_path(p, sizeof p, "data/pairs/fixed.nii.gz"), OUT "/fixed_cut.nii.gz", 1000000);
    expect_error("io_shared_truncated_fixed", OUT "/fixed_cut.nii.gz", NULL, VXM_EFORMAT, "truncated");
    vxm_volume_free(fixed);
}

int main(void)
{
    mkdir("tests/out", 0777);
    mkdir(OUT, 0777);
    ctx = vxm_context_create();
    if (!ctx) {
        printf("FAIL io_context: out of memory\n");
        return 1;
    }
    test_round_trips();
    test_disk_layout();
    test_npy_dtypes();
    test_npz_keys();
    test_nifti_headers();
    test_bad_inputs();
    test_shared();
    vxm_context_free(ctx);
    return tu_exit_code();
}

/* FreeSurfer MGH (.mgh) and gzip'd MGH (.mgz, .mgh.gz).
 *
 * Layout (big-endian): int32 version (1), width, height, depth, nframes, type (0 uchar, 1 int32, 3 float32,
 * 4 int16, 10 uint16), dof; int16 goodRASflag; float32 spacing[3], Mdc[3][3] (row r = RAS direction of voxel
 * axis r), Pxyz_c[3] (RAS of the volume centre); zero padding up to byte 284, where the data starts (width
 * fastest, then height, depth, frame: the same Fortran order as NIfTI); then an optional footer TR, flip angle,
 * TE, TI, FoV (float32).
 *
 * vox2ras (as nibabel and FreeSurfer): M = Mdc^T * diag(spacing), t = Pxyz_c - M * (dims/2).  With goodRASflag
 * <= 0 FreeSurfer's defaults apply: spacing 1, Mdc columns [[-1,0,0],[0,0,1],[0,-1,0]], centre 0.
 * Shape: (width, height, depth) spatial, nframes channels (io.h).  Writing: float32, goodRASflag 1, the
 * geometry's affine decomposed back (spacing = column norms), TR/flip/TE/TI from an MGH source (else 0). */
#include "io/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MGH_HEADER_BYTES 284

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static int32_t be_i32(const unsigned char *p)
{
    uint32_t u = be32(p);
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

static float be_f32(const unsigned char *p)
{
    uint32_t u = be32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void put_be32(unsigned char *p, uint32_t u)
{
    p[0] = (unsigned char)(u >> 24);
    p[1] = (unsigned char)(u >> 16);
    p[2] = (unsigned char)(u >> 8);
    p[3] = (unsigned char)u;
}

static void put_be_f32(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_be32(p, u);
}

static int dtype_of_mgh(int32_t type, vxm_dtype *dt)
{
    switch (type) {
    case 0: *dt = VXM_DT_U8; return 1;
    case 1: *dt = VXM_DT_I32; return 1;
    case 3: *dt = VXM_DT_F32; return 1;
    case 4: *dt = VXM_DT_I16; return 1;
    case 10: *dt = VXM_DT_U16; return 1;
    default: return 0;
    }
}

static void mgh_affine(const float spacing[3], const float mdc[3][3], const float c[3], const int64_t dims[3],
                       double a[4][4])
{
    memset(a, 0, 16 * sizeof(double));
    for (int r = 0; r < 3; r++) {
        double t = c[r];
        for (int k = 0; k < 3; k++) {
            a[r][k] = (double)mdc[k][r] * spacing[k];
            t -= a[r][k] * ((double)dims[k] / 2.0);
        }
        a[r][3] = t;
    }
    a[3][3] = 1;
}

vxm_status vxm_mgh_read(vxm_context *ctx, const char *path, vxm_volume **out)
{
    vxm_status st = VXM_OK;
    vxm_volume *v = NULL;
    vxm_geometry *g = NULL;
    unsigned char h[MGH_HEADER_BYTES];
    const char *why = NULL;
    vxm_io_src *in = NULL;
    if ((st = vxm_io_src_open(ctx, path, &in)))
        return st;
    long long n = vxm_io_src_read(in, h, sizeof h, &why);
    if (n < 0) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "cannot read the MGH header: %s", why);
        goto done;
    }
    if (n < MGH_HEADER_BYTES) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "truncated MGH header (%lld of %d bytes)", n, MGH_HEADER_BYTES);
        goto done;
    }
    int32_t version = be_i32(h), type = be_i32(h + 20);
    int64_t dims[4] = {be_i32(h + 4), be_i32(h + 8), be_i32(h + 12), be_i32(h + 16)};
    if (version != 1) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "not an MGH file (version %d, expected 1)", (int)version);
        goto done;
    }
    vxm_dtype dt;
    if (!dtype_of_mgh(type, &dt)) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "unsupported data type (MGH type %d)", (int)type);
        goto done;
    }
    /* shape checked, then the data read as it arrives (an .mgz has no size to check), then the volume */
    if ((st = vxm_io_volume_check(ctx, path, dims[0], dims[1], dims[2], dims[3])))
        goto done;
    size_t bytes = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2] * (size_t)dims[3] * vxm_dtype_size(dt);
    size_t at = 0;
    if ((st = vxm_io_src_take(ctx, path, "data", in, bytes, &at)))
        goto done;
    unsigned char foot[16];
    const char *fwhy = NULL;
    int have_foot = vxm_io_src_read(in, foot, sizeof foot, &fwhy) == (long long)sizeof foot; /* optional */
    vxm_io_src_finish(in); /* the compressed bytes go before the volume is allocated */
    if ((st = vxm_io_volume_alloc(ctx, path, dims[0], dims[1], dims[2], dims[3], &v)))
        goto done;
    vxm_io_fortran_to_c(vxm_context_effective_threads(ctx),
                        vxm_io_src_at(in, at), dt, vxm_host_is_little_endian(), NULL, (size_t)dims[0], (size_t)dims[1],
                        (size_t)dims[2], (size_t)dims[3], v->data);

    g = calloc(1, sizeof *g);
    if (!g) {
        st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
        goto done;
    }
    g->kind = VXM_GEOM_MGH;
    float spacing[3] = {1, 1, 1}, mdc[3][3] = {{-1, 0, 0}, {0, 0, -1}, {0, 1, 0}}, c[3] = {0, 0, 0};
    int16_t good = (int16_t)(((unsigned)h[28] << 8) | h[29]);
    if (good > 0) {
        for (int i = 0; i < 3; i++) {
            spacing[i] = be_f32(h + 30 + 4 * i);
            c[i] = be_f32(h + 78 + 4 * i);
            for (int j = 0; j < 3; j++)
                mdc[i][j] = be_f32(h + 42 + 12 * i + 4 * j);
        }
    }
    mgh_affine(spacing, mdc, c, dims, g->affine);
    if (have_foot)
        for (int i = 0; i < 4; i++)
            g->mgh_params[i] = be_f32(foot + 4 * i);
    v->geom = g;
    g = NULL;
    *out = v;
    v = NULL;
done:
    vxm_io_src_close(in);
    free(g);
    vxm_volume_free(v);
    return st;
}

vxm_status vxm_mgh_write(vxm_context *ctx, const char *path, int fd, int gz, const vxm_volume *vol,
                         const vxm_geometry *g)
{
    vxm_sink sink;
    if (vxm_sink_open(&sink, fd, gz ? 1 : -1, vxm_context_effective_threads(ctx)))
        return vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
    size_t d[3];
    vxm_io_disk_dims(vol, d);
    double a[4][4];
    vxm_geometry_affine(g, vol, a);

    unsigned char h[MGH_HEADER_BYTES];
    memset(h, 0, sizeof h);
    put_be32(h, 1);
    for (int i = 0; i < 3; i++)
        put_be32(h + 4 + 4 * i, (uint32_t)d[i]);
    put_be32(h + 16, (uint32_t)vol->channels);
    put_be32(h + 20, 3); /* float32 */
    put_be32(h + 24, 0); /* dof */
    h[28] = 0;
    h[29] = 1; /* goodRASflag */
    static const double def_dir[3][3] = {{-1, 0, 0}, {0, 0, -1}, {0, 1, 0}}; /* rows: axis directions */
    for (int k = 0; k < 3; k++) {
        double norm = sqrt(a[0][k] * a[0][k] + a[1][k] * a[1][k] + a[2][k] * a[2][k]);
        put_be_f32(h + 30 + 4 * k, (float)(norm > 0 ? norm : 1.0));
        for (int r = 0; r < 3; r++)
            put_be_f32(h + 42 + 12 * k + 4 * r, (float)(norm > 0 ? a[r][k] / norm : def_dir[k][r]));
    }
    for (int r = 0; r < 3; r++) {
        double c = a[r][3];
        for (int k = 0; k < 3; k++)
            c += a[r][k] * ((double)d[k] / 2.0);
        put_be_f32(h + 78 + 4 * r, (float)c);
    }
    vxm_status st = VXM_OK;
    size_t count = vxm_volume_numel(vol);
    float *fdata = malloc(count * sizeof(float));
    if (!fdata) {
        vxm_sink_close(&sink);
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    }
    vxm_io_c_to_fortran(vxm_context_effective_threads(ctx), vol->data, d[0], d[1], d[2], (size_t)vol->channels, fdata);
    if (vxm_host_is_little_endian())
        for (size_t i = 0; i < count; i++)
            put_be_f32((unsigned char *)(fdata + i), fdata[i]);
    if (vxm_sink_write(&sink, h, sizeof h) || vxm_sink_write(&sink, fdata, count * sizeof(float)))
        goto write_failed;
    unsigned char foot[20];
    memset(foot, 0, sizeof foot);
    if (g && g->kind == VXM_GEOM_MGH)
        for (int i = 0; i < 4; i++)
            put_be_f32(foot + 4 * i, g->mgh_params[i]);
    if (vxm_sink_write(&sink, foot, sizeof foot) || vxm_sink_close(&sink))
        goto write_failed;
    free(fdata);
    return VXM_OK;
write_failed:
    vxm_sink_close(&sink);
    st = vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
    free(fdata);
    return st;
}

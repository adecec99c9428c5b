/* NIfTI-1 / NIfTI-2 (.nii, .nii.gz).  nifti2_io parses the header (with its debug output off); the voxel data
 * is read here (vxm_io_src: plain, or gzip decompressed with libdeflate, gz_read.c) and written through vxm_sink
 * (sink.c), so that truncation and write errors are detected exactly and the library never prints or exits.
 *
 * Reading: voxel (i, j, k, c) at on-disk offset i + nx*(j + ny*(k + nz*c)) becomes our C-order element
 * [i][j][k][c]; scl_slope/scl_inter are applied when the slope is finite, nonzero and (slope, inter) is not
 * (1, 0) (a NaN inter counts as 0).  Shapes follow io.h.  The geometry keeps the header (without extensions).
 *
 * Writing (always float32, scl 1/0, cal_min/max 0):
 *   3-D scalar dim = [3, X, Y, Z]           3-D with C channels [4, X, Y, Z, C] (as nibabel writes (X,Y,Z,C))
 *   2-D scalar dim = [2, H, W]              2-D with C channels [5, H, W, 1, 1, C], intent VECTOR (so it
 *                                           reads back as 2-D; nibabel/VoxelMorph squeeze it to (H, W, C))
 *   header: a NIfTI source's header (sform/qform and codes, pixdim 1-3, units, descrip, ...) with dims, type,
 *   scaling and intent replaced; NIfTI-2 when the source was NIfTI-2 (or a dim exceeds 32767), else NIfTI-1.
 *   An MGH source's vox2ras goes to sform and qform (code 1, scanner), no geometry gives the default frame
 *   (vxm_geometry_affine) with codes 2 (aligned), as nibabel does for a new image. */
#include "io/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int dtype_of_nifti(int datatype, vxm_dtype *dt)
{
    switch (datatype) {
    case NIFTI_TYPE_UINT8: *dt = VXM_DT_U8; return 1;
    case NIFTI_TYPE_INT8: *dt = VXM_DT_I8; return 1;
    case NIFTI_TYPE_UINT16: *dt = VXM_DT_U16; return 1;
    case NIFTI_TYPE_INT16: *dt = VXM_DT_I16; return 1;
    case NIFTI_TYPE_UINT32: *dt = VXM_DT_U32; return 1;
    case NIFTI_TYPE_INT32: *dt = VXM_DT_I32; return 1;
    case NIFTI_TYPE_UINT64: *dt = VXM_DT_U64; return 1;
    case NIFTI_TYPE_INT64: *dt = VXM_DT_I64; return 1;
    case NIFTI_TYPE_FLOAT32: *dt = VXM_DT_F32; return 1;
    case NIFTI_TYPE_FLOAT64: *dt = VXM_DT_F64; return 1;
    default: return 0;
    }
}

static int32_t swap32(int32_t v)
{
    uint32_t u = (uint32_t)v;
    u = (u >> 24) | ((u >> 8) & 0xff00u) | ((u << 8) & 0xff0000u) | (u << 24);
    return (int32_t)u;
}

/* The header as read: raw bytes for nifti2_io (which swaps them itself) and the fields we validate. */
typedef struct raw_header {
    int version;             /* 1 or 2 */
    int swapped;             /* file byte order differs from the host's */
    union { nifti_1_header n1; nifti_2_header n2; } raw;
    int64_t dim[8];
    int datatype;
    int64_t data_offset;     /* vox_offset, at least the header + extension flag (nibabel does the same) */
} raw_header;

static int16_t get16(const unsigned char *p, int swap)
{
    uint16_t u;
    memcpy(&u, p, 2);
    if (swap)
        u = (uint16_t)((u >> 8) | (u << 8));
    int16_t v;
    memcpy(&v, &u, 2);
    return v;
}

static uint64_t get64u(const unsigned char *p, int swap)
{
    uint64_t u;
    memcpy(&u, p, 8);
    return swap ? __builtin_bswap64(u) : u;
}

/* Reads and validates the header ourselves (short file, foreign file, bad dims, unsupported type) so that
 * nifti2_io, which prints to stderr on such headers, only ever sees valid ones. */
static vxm_status read_header(vxm_context *ctx, const char *path, vxm_io_src *in, raw_header *hd)
{
    unsigned char h[540];
    const char *why = NULL;
    memset(hd, 0, sizeof *hd);
    long long n = vxm_io_src_read(in, h, 348, &why);
    if (n < 0)
        return vxm_error(ctx, VXM_EFORMAT, path, "cannot read the NIfTI header: %s", why);
    if (n < 4)
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated NIfTI header (%lld bytes)", n);
    int32_t sz;
    memcpy(&sz, h, 4);
    int swap = 0;
    if (sz != 348 && sz != 540) {
        sz = swap32(sz);
        swap = 1;
    }
    if (sz != 348 && sz != 540)
        return vxm_error(ctx, VXM_EFORMAT, path, "not a NIfTI file (bad header size field)");
    if (sz == 540 && n == 348) {
        long long m = vxm_io_src_read(in, h + 348, 540 - 348, &why);
        if (m < 0)
            return vxm_error(ctx, VXM_EFORMAT, path, "cannot read the NIfTI header: %s", why);
        n += m;
    }
    if (n < sz)
        return vxm_error(ctx, VXM_EFORMAT, path, "truncated NIfTI header (%lld of %d bytes)", n, (int)sz);
    hd->version = sz == 348 ? 1 : 2;
    hd->swapped = swap;
    if (hd->version == 1) {
        if (memcmp(h + 344, "n+1", 4) != 0)
            return vxm_error(ctx, VXM_EFORMAT, path, "not a single-file NIfTI-1 image (bad magic)");
        memcpy(&hd->raw.n1, h, sizeof hd->raw.n1);
        for (int i = 0; i < 8; i++)
            hd->dim[i] = get16(h + 40 + 2 * i, swap);
        hd->datatype = get16(h + 70, swap);
        uint32_t u;
        memcpy(&u, h + 108, 4);
        if (swap)
            u = (uint32_t)swap32((int32_t)u);
        float off;
        memcpy(&off, &u, 4);
        if (isfinite(off) && off > 9.0e18f) /* not representable as a file offset (fuzz_nifti) */
            return vxm_error(ctx, VXM_EFORMAT, path, "invalid NIfTI header (vox_offset %g)", (double)off);
        hd->data_offset = (isfinite(off) && off > 352.0f) ? (int64_t)off : 352;
    } else {
        if (memcmp(h + 4, "n+2", 4) != 0)
            return vxm_error(ctx, VXM_EFORMAT, path, "not a single-file NIfTI-2 image (bad magic)");
        memcpy(&hd->raw.n2, h, sizeof hd->raw.n2);
        for (int i = 0; i < 8; i++)
            hd->dim[i] = (int64_t)get64u(h + 16 + 8 * i, swap);
        hd->datatype = get16(h + 12, swap);
        int64_t off = (int64_t)get64u(h + 168, swap);
        hd->data_offset = off > 544 ? off : 544;
    }
    if (hd->dim[0] < 1 || hd->dim[0] > 7)
        return vxm_error(ctx, VXM_EFORMAT, path, "invalid NIfTI header (dim[0] = %lld)", (long long)hd->dim[0]);
    for (int i = 1; i <= hd->dim[0]; i++)
        if (hd->dim[i] < 1)
            return vxm_error(ctx, VXM_EFORMAT, path, "invalid NIfTI header (dim[%d] = %lld)", i,
                             (long long)hd->dim[i]);
    for (int i = (int)hd->dim[0] + 1; i < 8; i++)
        hd->dim[i] = 1;
    vxm_dtype dt;
    if (!dtype_of_nifti(hd->datatype, &dt)) {
        const char *name = nifti_datatype_string(hd->datatype);
        return vxm_error(ctx, VXM_EFORMAT, path, "unsupported data type %s (NIfTI code %d)",
                         (name && name[0] != '*') ? name : "unknown", hd->datatype);
    }
    return VXM_OK;
}

static void best_affine(const nifti_image *nim, double a[4][4])
{
    const nifti_dmat44 *m = nim->sform_code > 0 ? &nim->sto_xyz : &nim->qto_xyz;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            a[r][c] = m->m[r][c];
}

vxm_status vxm_nifti_read(vxm_context *ctx, const char *path, vxm_volume **out)
{
    vxm_status st = VXM_OK;
    vxm_volume *v = NULL;
    vxm_geometry *g = NULL;
    nifti_image *nim = NULL;
    raw_header hd;
    vxm_io_src *in = NULL;
    if ((st = vxm_io_src_open(ctx, path, &in)))
        return st;
    if ((st = read_header(ctx, path, in, &hd)))
        goto done;
    vxm_dtype dt = VXM_DT_F32;
    dtype_of_nifti(hd.datatype, &dt); /* validated by read_header */
    int64_t nc = 1;
    for (int d = 4; d <= 7; d++) {
        if (nc > INT64_MAX / hd.dim[d]) {
            st = vxm_error(ctx, VXM_EFORMAT, path, "array too large");
            goto done;
        }
        nc *= hd.dim[d];
    }
    size_t esz = vxm_dtype_size(dt);
    double total = (double)hd.dim[1] * (double)hd.dim[2] * (double)hd.dim[3] * (double)nc * (double)esz;
    if (!vxm_io_src_is_gzip(in)) { /* plain file: compare sizes before allocating anything */
        struct stat sb;
        if (stat(path, &sb) == 0 && (double)sb.st_size < (double)hd.data_offset + total) {
            long long have = sb.st_size > hd.data_offset ? (long long)(sb.st_size - hd.data_offset) : 0;
            st = vxm_error(ctx, VXM_EFORMAT, path, "truncated data (%lld of %.0f bytes)", have, total);
            goto done;
        }
    }
    /* shape checked, then the data read as it arrives (a .nii.gz has no size to check), then the volume */
    if ((st = vxm_io_volume_check(ctx, path, hd.dim[1], hd.dim[2], hd.dim[3], nc)))
        goto done;
    const char *why = NULL;
    int sk = vxm_io_src_seek(in, (uint64_t)hd.data_offset, &why);
    if (sk) {
        st = sk < 0 ? vxm_error(ctx, VXM_EFORMAT, path, "cannot read data: %s", why)
                    : vxm_error(ctx, VXM_EFORMAT, path, "truncated data (the file ends before vox_offset %lld)",
                                (long long)hd.data_offset);
        goto done;
    }
    size_t bytes = (size_t)hd.dim[1] * (size_t)hd.dim[2] * (size_t)hd.dim[3] * (size_t)nc * esz; /* checked */
    size_t at = 0;
    if ((st = vxm_io_src_take(ctx, path, "data", in, bytes, &at)))
        goto done;
    vxm_io_src_finish(in); /* the compressed bytes go before the volume is allocated */
    if ((st = vxm_io_volume_alloc(ctx, path, hd.dim[1], hd.dim[2], hd.dim[3], nc, &v)))
        goto done;

    /* the validated header -> nifti_image (qform/sform matrices, units, ...), no file access */
    nifti_set_debug_level(0);
    nim = hd.version == 1 ? nifti_convert_n1hdr2nim(hd.raw.n1, NULL) : nifti_convert_n2hdr2nim(hd.raw.n2, NULL);
    if (!nim) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "invalid NIfTI header");
        goto done;
    }
    double scale[2] = {nim->scl_slope, nim->scl_inter};
    int use_scale = isfinite(scale[0]) && scale[0] != 0.0;
    if (!isfinite(scale[1]))
        scale[1] = 0.0;
    if (scale[0] == 1.0 && scale[1] == 0.0)
        use_scale = 0;
    size_t d[3];
    vxm_io_disk_dims(v, d);
    vxm_io_fortran_to_c(vxm_context_effective_threads(ctx),
                        vxm_io_src_at(in, at), dt, hd.swapped && esz > 1, use_scale ? scale : NULL, d[0], d[1], d[2],
                        (size_t)v->channels, v->data);

    g = calloc(1, sizeof *g);
    if (!g) {
        st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
        goto done;
    }
    g->kind = VXM_GEOM_NIFTI;
    g->nifti_version = hd.version;
    best_affine(nim, g->affine);
    g->nim = nim; /* header only */
    nim = NULL;
    v->geom = g;
    g = NULL;
    *out = v;
    v = NULL;
done:
    vxm_io_src_close(in);
    free(g);
    vxm_volume_free(v);
    if (nim)
        nifti_image_free(nim);
    return st;
}

/* ---- writing ------------------------------------------------------------------------------------- */
static void set_affine(nifti_image *h, const double a[4][4], int code)
{
    nifti_dmat44 m;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            m.m[r][c] = a[r][c];
    h->sto_xyz = m;
    h->sto_ijk = nifti_dmat44_inverse(m);
    h->sform_code = code;
    double dx, dy, dz;
    nifti_dmat44_to_quatern(m, &h->quatern_b, &h->quatern_c, &h->quatern_d, &h->qoffset_x, &h->qoffset_y,
                            &h->qoffset_z, &dx, &dy, &dz, &h->qfac);
    h->qto_xyz = nifti_quatern_to_dmat44(h->quatern_b, h->quatern_c, h->quatern_d, h->qoffset_x, h->qoffset_y,
                                         h->qoffset_z, dx, dy, dz, h->qfac);
    h->qto_ijk = nifti_dmat44_inverse(h->qto_xyz);
    h->qform_code = code;
    h->dx = h->pixdim[1] = dx;
    h->dy = h->pixdim[2] = dy;
    h->dz = h->pixdim[3] = dz;
}

/* Fills dims/type/scaling of header h for vol. */
static void set_dims(nifti_image *h, const vxm_volume *vol)
{
    size_t d[3];
    vxm_io_disk_dims(vol, d);
    int64_t C = vol->channels;
    int64_t dim[8] = {0, (int64_t)d[0], (int64_t)d[1], (int64_t)d[2], 1, 1, 1, 1};
    h->intent_code = NIFTI_INTENT_NONE;
    if (vol->ndim == 3)
        dim[0] = C > 1 ? 4 : 3;
    else
        dim[0] = C > 1 ? 5 : 2;
    if (vol->ndim == 3 && C > 1)
        dim[4] = C;
    if (vol->ndim == 2 && C > 1) {
        dim[5] = C;
        h->intent_code = NIFTI_INTENT_VECTOR;
    }
    for (int i = 0; i < 8; i++)
        h->dim[i] = dim[i];
    h->ndim = dim[0];
    h->nx = dim[1]; h->ny = dim[2]; h->nz = dim[3]; h->nt = dim[4];
    h->nu = dim[5]; h->nv = dim[6]; h->nw = dim[7];
    h->nvox = dim[1] * dim[2] * dim[3] * dim[4] * dim[5] * dim[6] * dim[7];
    for (int i = 1; i <= 3; i++)
        if (!(h->pixdim[i] > 0) || !isfinite(h->pixdim[i]))
            h->pixdim[i] = 1.0;
    for (int i = 4; i <= 7; i++)
        h->pixdim[i] = 1.0;
    h->dx = h->pixdim[1]; h->dy = h->pixdim[2]; h->dz = h->pixdim[3];
    h->dt = h->du = h->dv = h->dw = 1.0;
    h->datatype = NIFTI_TYPE_FLOAT32;
    h->nbyper = 4;
    h->swapsize = 4;
    h->byteorder = nifti_short_order();
    h->scl_slope = 1.0;
    h->scl_inter = 0.0;
    h->cal_min = h->cal_max = 0.0;
    h->intent_p1 = h->intent_p2 = h->intent_p3 = 0.0;
    memset(h->intent_name, 0, sizeof h->intent_name);
    h->data = NULL;
}

vxm_status vxm_nifti_write(vxm_context *ctx, const char *path, int fd, int gz, const vxm_volume *vol,
                           const vxm_geometry *g)
{
    vxm_sink sink;
    if (vxm_sink_open(&sink, fd, gz ? 1 : -1, vxm_context_effective_threads(ctx)))
        return vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
    vxm_status st = VXM_OK;
    float *fdata = NULL;
    nifti_set_debug_level(0);
    nifti_image *h = (g && g->nim) ? nifti_copy_nim_info(g->nim) : nifti_simple_init_nim();
    if (!h) {
        st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
        goto done;
    }
    nifti_free_extensions(h);
    int nifti2 = g && g->nim && g->nifti_version == 2;
    if (!(g && g->nim)) {
        double a[4][4];
        vxm_geometry_affine(g, vol, a);
        h->pixdim[1] = h->pixdim[2] = h->pixdim[3] = 1.0;
        set_affine(h, a, g ? NIFTI_XFORM_SCANNER_ANAT : NIFTI_XFORM_ALIGNED_ANAT);
        h->xyz_units = g ? NIFTI_UNITS_MM : NIFTI_UNITS_UNKNOWN;
        h->time_units = NIFTI_UNITS_UNKNOWN;
    }
    set_dims(h, vol);
    for (int i = 1; i <= 7; i++)
        if (h->dim[i] > 32767)
            nifti2 = 1;

    unsigned char hdr[544];
    size_t hlen;
    memset(hdr, 0, sizeof hdr);
    if (nifti2) {
        nifti_2_header n2;
        h->nifti_type = NIFTI_FTYPE_NIFTI2_1;
        h->iname_offset = 544;
        if (nifti_convert_nim2n2hdr(h, &n2)) {
            st = vxm_error(ctx, VXM_EINVAL, path, "cannot build a NIfTI-2 header");
            goto done;
        }
        n2.sizeof_hdr = 540;
        memcpy(n2.magic, "n+2\0\r\n\032\n", 8);
        n2.vox_offset = 544;
        memcpy(hdr, &n2, sizeof n2);
        hlen = 544;
    } else {
        nifti_1_header n1;
        h->nifti_type = NIFTI_FTYPE_NIFTI1_1;
        h->iname_offset = 352;
        if (nifti_convert_nim2n1hdr(h, &n1)) {
            st = vxm_error(ctx, VXM_EINVAL, path, "cannot build a NIfTI-1 header");
            goto done;
        }
        n1.sizeof_hdr = 348;
        memcpy(n1.magic, "n+1", 4);
        n1.vox_offset = 352.0f;
        memcpy(hdr, &n1, sizeof n1);
        hlen = 352;
    }
    /* bytes hlen-4 .. hlen-1: the extension flag, zero (no extensions) */
    if (vxm_sink_write(&sink, hdr, hlen))
        goto write_failed;

    size_t d[3];
    vxm_io_disk_dims(vol, d);
    size_t count = vxm_volume_numel(vol);
    fdata = malloc(count * sizeof(float));
    if (!fdata) {
        st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
        goto done;
    }
    /* the header is in host byte order too, so the data needs no swap */
    vxm_io_c_to_fortran(vxm_context_effective_threads(ctx), vol->data, d[0], d[1], d[2], (size_t)vol->channels, fdata);
    if (vxm_sink_write(&sink, fdata, count * sizeof(float)))
        goto write_failed;
    if (vxm_sink_close(&sink))
        goto write_failed;
    goto done;
write_failed:
    vxm_sink_close(&sink);
    st = vxm_error(ctx, VXM_EIO, path, "cannot write: %s", vxm_sink_strerror(&sink));
done:
    vxm_sink_close(&sink);
    free(fdata);
    if (h)
        nifti_image_free(h);
    return st;
}

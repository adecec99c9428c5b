/* Writes the fuzzing seed corpus (tests/fuzz/seeds/<target>/) and the constructed regression inputs
 * (tests/fuzz/crashes/<target>/): tiny files made by vxm's own writers, or by hand where a writer cannot make
 * them (integer types, NIfTI-2, several arrays in one .npz, a corrupted MGZ).  Run from the repository root:
 *   make build/fuzz/make_seeds && build/fuzz/make_seeds [TINY_MODEL.h5]
 * TINY_MODEL.h5 (optional): a tiny model to rewrite as the .h5 seeds, e.g. the 0000.h5 of
 *   vxm train --img-list L --model-dir D --enc 2 --dec 2 --int-steps 1 --epochs 0   (two 8x8 .npy scans). */
#include <nifti1.h>
#include <nifti2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include <zlib.h>

#include "model/keras_h5.h"
#include "model/keras_h5_write.h"
#include "vxm.h"

#define SEEDS "tests/fuzz/seeds/"
#define CRASHES "tests/fuzz/crashes/"

static void put_file(const char *path, const void *data, size_t n, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb9");
        if (!f || gzwrite(f, data, (unsigned)n) != (int)n || gzclose(f) != Z_OK) {
            fprintf(stderr, "make_seeds: cannot write %s\n", path);
            exit(1);
        }
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "make_seeds: cannot write %s\n", path);
        exit(1);
    }
}

static void put_text(const char *path, const char *text)
{
    put_file(path, text, strlen(text), 0);
}

static void check(vxm_context *ctx, vxm_status st)
{
    if (st) {
        fprintf(stderr, "make_seeds: %s\n", vxm_context_error(ctx));
        exit(1);
    }
}

/* A volume with a ramp of values (so that no two voxels are equal). */
static vxm_volume *ramp(int ndim, int a, int b, int c, int channels)
{
    int shape[3] = {a, b, c};
    vxm_volume *v = vxm_volume_new(ndim, shape, channels);
    if (!v)
        exit(1);
    for (size_t i = 0; i < vxm_volume_numel(v); i++)
        v->data[i] = (float)i * 0.25f - 3.0f;
    return v;
}

static void write_volumes(vxm_context *ctx)
{
    vxm_volume *v3 = ramp(3, 4, 4, 4, 1), *v2c = ramp(2, 1, 4, 4, 2), *v3c = ramp(3, 3, 2, 2, 2);
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_nifti/vol4x4x4.nii", v3, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_nifti/vol4x4x4.nii.gz", v3, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_nifti/img4x4_2ch.nii", v2c, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_mgh/vol4x4x4.mgh", v3, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_mgh/vol4x4x4.mgz", v3, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_mgh/img4x4_2ch.mgh", v2c, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_npy/vol4x4x4.npy", v3, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_npy/vol3x2x2_2ch.npy", v3c, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_npy/img4x4_2ch.npy", v2c, NULL));
    check(ctx, vxm_volume_write(ctx, SEEDS "fuzz_npz/vol4x4x4.npz", v3, NULL));
    vxm_volume_free(v3);
    vxm_volume_free(v2c);
    vxm_volume_free(v3c);
}

/* NIfTI-1 uint8 2x3x2 with scl_slope 2, inter 1, sform; NIfTI-2 int16 big-endian 2x2x2. */
static void write_nifti_by_hand(void)
{
    unsigned char buf[544 + 16];
    nifti_1_header h1;
    memset(&h1, 0, sizeof h1);
    h1.sizeof_hdr = 348;
    h1.dim[0] = 3;
    h1.dim[1] = 2;
    h1.dim[2] = 3;
    h1.dim[3] = 2;
    h1.datatype = NIFTI_TYPE_UINT8;
    h1.bitpix = 8;
    h1.pixdim[1] = h1.pixdim[2] = h1.pixdim[3] = 1;
    h1.vox_offset = 352;
    h1.scl_slope = 2;
    h1.scl_inter = 1;
    h1.sform_code = 1;
    h1.srow_x[0] = h1.srow_y[1] = h1.srow_z[2] = 1;
    memcpy(h1.magic, "n+1", 4);
    memset(buf, 0, sizeof buf);
    memcpy(buf, &h1, sizeof h1);
    for (int i = 0; i < 12; i++)
        buf[352 + i] = (unsigned char)(i * 20);
    put_file(SEEDS "fuzz_nifti/u8_scaled.nii", buf, 352 + 12, 0);

    nifti_2_header h2;
    memset(&h2, 0, sizeof h2);
    h2.sizeof_hdr = 540;
    memcpy(h2.magic, "n+2\0\r\n\032\n", 8);
    h2.datatype = NIFTI_TYPE_INT16;
    h2.bitpix = 16;
    h2.dim[0] = 3;
    h2.dim[1] = h2.dim[2] = h2.dim[3] = 2;
    h2.pixdim[1] = h2.pixdim[2] = h2.pixdim[3] = 1;
    h2.vox_offset = 544;
    h2.scl_slope = 1;
    h2.qform_code = 1;
    h2.quatern_b = 0.5;
    memset(buf, 0, sizeof buf);
    memcpy(buf, &h2, sizeof h2);
    for (int i = 0; i < 8; i++)
        buf[544 + 2 * i] = (unsigned char)(i + 1);
    put_file(SEEDS "fuzz_nifti/i16_v2.nii", buf, 544 + 16, 0);
}

static void put_be32(unsigned char *p, uint32_t u)
{
    p[0] = (unsigned char)(u >> 24);
    p[1] = (unsigned char)(u >> 16);
    p[2] = (unsigned char)(u >> 8);
    p[3] = (unsigned char)u;
}

/* An MGH header: version 1, the dims, type, goodRASflag 0; data follows at byte 284. */
static void mgh_header(unsigned char *h, uint32_t w, uint32_t ht, uint32_t d, uint32_t frames, uint32_t type)
{
    memset(h, 0, 284);
    put_be32(h, 1);
    put_be32(h + 4, w);
    put_be32(h + 8, ht);
    put_be32(h + 12, d);
    put_be32(h + 16, frames);
    put_be32(h + 20, type);
}

static void write_mgh_by_hand(void)
{
    unsigned char buf[284 + 64];
    mgh_header(buf, 2, 2, 2, 1, 0); /* uint8, no footer */
    for (int i = 0; i < 8; i++)
        buf[284 + i] = (unsigned char)(i * 30);
    put_file(SEEDS "fuzz_mgh/u8_2x2x2.mgh", buf, 284 + 8, 0);
    mgh_header(buf, 3, 2, 1, 1, 4); /* int16 2-D */
    for (int i = 0; i < 12; i++)
        buf[284 + i] = (unsigned char)(i * 7);
    put_file(SEEDS "fuzz_mgh/i16_3x2.mgz", buf, 284 + 12, 1);

    /* Issue 11: a valid MGZ whose width was corrupted asked for a 0x1e35400b820000-byte allocation. */
    mgh_header(buf, 0x7fff0000u, 4, 4, 1, 3);
    memset(buf + 284, 0x3f, 64);
    put_file(CRASHES "fuzz_mgh/issue11_width_7fff0000.mgz", buf, 284 + 64, 1);
    /* Each dimension within the ceiling alone, the product far above it (and above 2^31 voxels). */
    mgh_header(buf, 60000, 60000, 1, 1, 3);
    put_file(CRASHES "fuzz_mgh/dims_60000x60000.mgz", buf, 284 + 64, 1);
    /* The product just under the fuzzers' 256 MB ceiling: must fail on the data, not allocate 256 MB first. */
    mgh_header(buf, 4000, 4000, 4, 1, 3);
    put_file(CRASHES "fuzz_mgh/dims_4000x4000x4_short.mgz", buf, 284 + 64, 1);
    put_file(CRASHES "fuzz_mgh/dims_4000x4000x4_short.mgh", buf, 284 + 64, 0);
}

/* A .npy image: header dictionary `dict` (padded to a multiple of 64) then n data bytes. */
static size_t npy_image(unsigned char *out, const char *dict, const void *data, size_t n)
{
    size_t dl = strlen(dict), total = (10 + dl + 1 + 63) / 64 * 64, hl = total - 10;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (unsigned char)(hl & 0xff);
    out[9] = (unsigned char)(hl >> 8);
    memcpy(out + 10, dict, dl);
    memset(out + 10 + dl, ' ', hl - dl - 1);
    out[total - 1] = '\n';
    memcpy(out + total, data, n);
    return total + n;
}

static void write_npy_by_hand(void)
{
    unsigned char buf[512], data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (unsigned char)(i * 3);
    size_t n = npy_image(buf, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 5), }", data, 15);
    put_file(SEEDS "fuzz_npy/u1_3x5.npy", buf, n, 0);
    n = npy_image(buf, "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3, 4), }", data, 48);
    put_file(SEEDS "fuzz_npy/i2be_fortran_2x3x4.npy", buf, n, 0);
    n = npy_image(buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 2, 3), }", data, 48);
    put_file(SEEDS "fuzz_npy/f8_6axes.npy", buf, n, 0);
    n = npy_image(buf, "{'descr': '|b1', 'fortran_order': False, 'shape': (7,), }", data, 7);
    put_file(SEEDS "fuzz_npy/bool_7.npy", buf, n, 0);
    n = npy_image(buf, "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }", data, 8);
    put_file(SEEDS "fuzz_npy/f2_2x2.npy", buf, n, 0);
}

/* A .npz with the given members (stored or deflated). */
static void write_npz(const char *path, int nmem, const char *const *names, unsigned char *const *images,
                      const size_t *lens, int deflate)
{
    remove(path);
    int err = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    if (!za)
        exit(1);
    for (int i = 0; i < nmem; i++) {
        zip_source_t *s = zip_source_buffer(za, images[i], lens[i], 0);
        zip_int64_t idx = s ? zip_file_add(za, names[i], s, ZIP_FL_ENC_UTF_8) : -1;
        if (idx < 0 || zip_set_file_compression(za, (zip_uint64_t)idx, deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE,
                                                deflate ? 9 : 0))
            exit(1);
    }
    if (zip_close(za) != 0)
        exit(1);
}

static void write_npz_and_labels(void)
{
    unsigned char vol[256], lab[256], seg[256];
    float fv[8];
    int32_t li[4] = {3, 1, 2, 3};
    uint8_t sv[16];
    for (int i = 0; i < 8; i++)
        fv[i] = (float)i / 8.0f;
    for (int i = 0; i < 16; i++)
        sv[i] = (uint8_t)(i % 4);
    size_t lens[2];
    lens[0] = npy_image(vol, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", fv, sizeof fv);
    lens[1] = npy_image(lab, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", li, sizeof li);
    const char *names[2] = {"vol.npy", "labels.npy"};
    unsigned char *images[2] = {vol, lab};
    write_npz(SEEDS "fuzz_npz/vol_and_labels_stored.npz", 2, names, images, lens, 0);
    write_npz(SEEDS "fuzz_npz/vol_and_labels_deflated.npz", 2, names, images, lens, 1);
    write_npz(SEEDS "fuzz_labels/labels.npz", 1, names + 1, images + 1, lens + 1, 0);
    put_file(SEEDS "fuzz_labels/labels.npy", lab, lens[1], 0);
    size_t sl = npy_image(seg, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 4), }", sv, sizeof sv);
    put_file(SEEDS "fuzz_labels/seg4x4.npy", seg, sl, 0);
    unsigned char *si[1] = {seg};
    const char *sn[1] = {"seg.npy"};
    write_npz(SEEDS "fuzz_labels/seg4x4_deflated.npz", 1, sn, si, &sl, 1);
}

static void write_text_seeds(void)
{
    put_text(SEEDS "fuzz_lists/images.txt", "# scans\nscan01.npz\n  scan02.nii.gz\n\nsub/scan03.mgz\n");
    put_text(SEEDS "fuzz_lists/pairs.txt", "moving1.npz fixed1.npz\n# comment\n\tm2.nii\tf2.nii\r\n");
    put_text(SEEDS "fuzz_lists/pairs_segs.txt", "m.npz f.npz m_seg.npz f_seg.npz\nm2.npz f2.npz\n");
    put_text(SEEDS "fuzz_pheno_csv/header_3rows.csv", "age,sex\n61.5,1\n72,0\n\n55,1\n");
    put_text(SEEDS "fuzz_pheno_csv/plain_2rows.csv", "0.5, -1e3\r\n2,3\n");
    put_text(SEEDS "fuzz_pheno_csv/list.csv", "1,2 3\n");
}

/* The model rewritten without the optimiser state (smaller), in the layout vxm train writes. */
static void write_h5_seed(vxm_context *ctx, const char *model)
{
    vxm_keras_file *f = NULL;
    check(ctx, vxm_keras_file_read(ctx, model, &f));
    int nw = 0;
    for (int i = 0; i < f->nlayers; i++)
        nw += f->layers[i].nweights;
    const char **layers = calloc((size_t)f->nlayers + 1, sizeof *layers);
    vxm_h5_out_weight *w = calloc((size_t)nw + 1, sizeof *w);
    char (*kinds)[64] = calloc((size_t)nw + 1, sizeof *kinds);
    if (!layers || !w || !kinds)
        exit(1);
    int k = 0;
    for (int i = 0; i < f->nlayers; i++) {
        layers[i] = f->layers[i].name;
        for (int j = 0; j < f->layers[i].nweights; j++, k++) {
            const vxm_h5_weight *src = &f->layers[i].weights[j];
            const char *slash = strrchr(src->name, '/');
            snprintf(kinds[k], sizeof kinds[k], "%s", slash ? slash + 1 : src->name);
            char *colon = strchr(kinds[k], ':');
            if (colon)
                *colon = '\0';
            w[k].layer = f->layers[i].name;
            w[k].kind = kinds[k];
            w[k].rank = src->rank;
            for (int d = 0; d < src->rank && d < 5; d++)
                w[k].dims[d] = src->dims[d];
            w[k].data = src->data;
        }
    }
    check(ctx, vxm_h5_write_model(ctx, SEEDS "fuzz_h5model/vxmdense_2d_tiny.h5", f->model_config, layers,
                                  f->nlayers, w, nw));
    /* the same config with no weights at all: the reader's smallest valid input */
    check(ctx, vxm_h5_write_model(ctx, SEEDS "fuzz_h5model/config_only.h5", f->model_config, layers, 0, w, 0));
    free(kinds);
    free(w);
    free(layers);
    vxm_keras_file_free(f);
}

int main(int argc, char **argv)
{
    vxm_context *ctx = vxm_context_create();
    write_volumes(ctx);
    write_nifti_by_hand();
    write_mgh_by_hand();
    write_npy_by_hand();
    write_npz_and_labels();
    write_text_seeds();
    if (argc > 1)
        write_h5_seed(ctx, argv[1]);
    vxm_context_free(ctx);
    return 0;
}

/* Any input shape (issue 3): a 150x180x200 crop of pair1 (not a multiple of 16) registers with the published
 * model; the outputs have the input's shape and the fixed image's header; the moved image is exactly the
 * moving image resampled with the returned warp; registration still works (Dice rises well above the
 * unregistered value).  The cropped volumes are also written to tests/out/anyshape for t_anyshape.sh. */
#include <string.h>
#include <sys/stat.h>

#include "io/volume_ext.h"
#include "test_backends.h"
#include "test_data.h"

int main(void)
{
    if (!tu_have_shared()) {
        tu_skip("any shape", "../shared not found (set VXM_SHARED)");
        return 0;
    }
    vxm_context *ctx = vxm_context_create();
    char p[1024];
    vxm_model *m = NULL;
    vxm_backend *be = NULL;
    static const char *files[4] = {"data/pairs/pair1_moving.nii.gz", "data/pairs/fixed.nii.gz",
                                   "data/pairs/pair1_moving_seg.nii.gz", "data/pairs/fixed_seg.nii.gz"};
    static const char *outs[4] = {"moving", "fixed", "moving_seg", "fixed_seg"};
    vxm_volume *full[4] = {0}, *crop[4] = {0}, *moved = NULL, *warp = NULL, *rewarped = NULL, *seg = NULL;
    const int shape[3] = {150, 180, 200}, off[3] = {5, 6, 12};
    if (vxm_model_load(ctx, tu_shared_path(p, sizeof p, "data/models/vxm_dense_brain_T1_3D_mse.h5"), &m) ||
        vxm_backend_open(ctx, "cpu", &be)) {
        tu_report(0, "any shape setup", "%s", vxm_context_error(ctx));
        goto done;
    }
    mkdir("tests/out", 0755);
    mkdir("tests/out/anyshape", 0755);
    for (int i = 0; i < 4; i++)
        if (!(full[i] = td_load(ctx, files[i], NULL)))
            goto done;
    for (int i = 0; i < 4; i++) {
        char out[256];
        snprintf(out, sizeof out, "tests/out/anyshape/%s.nii.gz", outs[i]);
        if (vxm_volume_crop(ctx, full[i], off, shape, &crop[i]) || vxm_volume_write(ctx, out, crop[i], full[1])) {
            tu_report(0, "crop shared volumes", "%s", vxm_context_error(ctx));
            goto done;
        }
        crop[i]->geom = vxm_geometry_clone(full[1]->geom);
    }
    tu_report(vxm_model_size_divisor(m) == 16, "published model needs multiples of 16", "divisor %d",
              vxm_model_size_divisor(m));
    if (vxm_register(ctx, be, m, crop[0], crop[1], NULL, &moved, &warp)) {
        tu_report(0, "register 150x180x200", "%s", vxm_context_error(ctx));
        goto done;
    }
    tu_report(1, "register 150x180x200", "");
    tu_report(!memcmp(moved->shape, shape, sizeof shape) && moved->channels == 1, "moved has the input's shape",
              "%dx%dx%dx%d", moved->shape[0], moved->shape[1], moved->shape[2], moved->channels);
    tu_report(!memcmp(warp->shape, shape, sizeof shape) && warp->channels == 3, "warp has the input's shape",
              "%dx%dx%dx%d", warp->shape[0], warp->shape[1], warp->shape[2], warp->channels);
    double a[4][4], b[4][4];
    vxm_geometry_affine(crop[1]->geom, crop[1], a);
    vxm_geometry_affine(moved->geom, moved, b);
    tu_report(moved->geom && !memcmp(a, b, sizeof a), "moved keeps the fixed header", "affine differs");
    if (vxm_warp_volume(ctx, be, crop[0], warp, 0, &rewarped) == VXM_OK)
        tu_report(tu_max_abs_diff(rewarped->data, moved->data, vxm_volume_numel(moved)) == 0,
                  "moved == warp(moving, returned warp)", "differs");
    int labels[64], nl = 0;
    vxm_volume *lab = td_load(ctx, "data/scans/labels.npz", NULL);
    for (size_t i = 0; lab && i < vxm_volume_numel(lab) && nl < 64; i++)
        labels[nl++] = (int)lab->data[i];
    vxm_volume_free(lab);
    if (nl && vxm_warp_volume(ctx, be, crop[2], warp, 1, &seg) == VXM_OK) {
        double before = td_mean_dice(ctx, crop[2], crop[3], labels, nl), after = td_mean_dice(ctx, seg, crop[3], labels, nl);
        printf("  150x180x200 crop: Dice before %.4f after %.4f (full size: 0.767 -> 0.931)\n", before, after);
        /* the crop keeps the whole brain and the padding is background, so quality stays near full size */
        tu_report(after > 0.92 && after > before + 0.1, "padded registration quality", "Dice %.4f -> %.4f", before,
                  after);
    }
done:
    for (int i = 0; i < 4; i++) {
        vxm_volume_free(full[i]);
        vxm_volume_free(crop[i]);
    }
    vxm_volume_free(moved);
    vxm_volume_free(warp);
    vxm_volume_free(rewarped);
    vxm_volume_free(seg);
    vxm_backend_close(be);
    vxm_model_free(m);
    vxm_context_free(ctx);
    return tu_exit_code();
}

/* vxm warp: apply a saved displacement (ours or Python VoxelMorph's) to an image or label map. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "io/volume_ext.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vxm warp --moving A --warp W --moved OUT [--interp linear|nearest] [--device SPEC]\n\n"
               "Resamples A at x + W(x) (W: displacement in voxels, channel d along array axis d, as written by\n"
               "vxm register or Python VoxelMorph).  Use --interp nearest for label maps.  OUT keeps W's header.\n");
}

int cmd_warp(int argc, char **argv)
{
    const char *moving = NULL, *warp_path = NULL, *moved_path = NULL, *interp = "linear";
    cli_device_opts dev;
    memset(&dev, 0, sizeof dev);
    dev.device = "cpu";
    const cli_string_opt strings[] = {
        {"--moving", &moving}, {"--warp", &warp_path}, {"--moved", &moved_path}, {"--interp", &interp}};
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r = cli_next_option(&a, &dev, strings, (int)(sizeof strings / sizeof strings[0]), usage);
    if (r > 0)
        return cli_usage_error("warp: unknown option '%s' (see vxm warp --help)", a.name);
    if (r)
        return r == CLI_HELP ? 0 : 2;
    if (!moving || !warp_path || !moved_path) {
        usage(stderr);
        return cli_usage_error("warp: --moving, --warp and --moved are required");
    }
    if (strcmp(interp, "linear") && strcmp(interp, "nearest"))
        return cli_usage_error("warp: --interp must be linear or nearest, not '%s'", interp);
    vxm_context *ctx = vxm_context_create();
    vxm_volume *img = NULL, *w = NULL, *out = NULL;
    vxm_backend *be = NULL;
    int rc = 0;
    if (vxm_volume_read(ctx, moving, NULL, &img) || vxm_volume_read(ctx, warp_path, NULL, &w)) {
        rc = cli_fail(ctx);
        goto done;
    }
    if (img->ndim == 2)
        vxm_volume_as_2d_channels(w); /* a 2-D warp saved as an (H, W, 2) array */
    if (w->channels != img->ndim || w->ndim != img->ndim) {
        fprintf(stderr, "vxm: %s: a %d-D image needs a warp with %d channels; this one is %d-D with %d\n", warp_path,
                img->ndim, img->ndim, w->ndim, w->channels);
        rc = 1;
    } else if (cli_open_backend(ctx, &dev, &be) ||
               vxm_warp_volume(ctx, be, img, w, !strcmp(interp, "nearest"), &out) ||
               vxm_volume_write(ctx, moved_path, out, w)) {
        rc = cli_fail(ctx);
    }
done:
    vxm_volume_free(img);
    vxm_volume_free(w);
    vxm_volume_free(out);
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return rc;
}

/* vxm qc: quality-control PNG of a registration (fixed, moving, moved, optional warp). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "io/volume_ext.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vxm qc --fixed F --moving M --moved D [--warp W] --out OUT.png\n\n"
               "Writes one PNG to judge a registration at a glance: rows = the three orthogonal middle slices\n"
               "(2-D images: the image), columns = fixed, moving, moved, fixed/moved checkerboard,\n"
               "|fixed - moving|, |fixed - moved| and, with --warp, the identity grid deformed by the warp (over\n"
               "the moving image) and det J (black = 1, red = expansion, blue = contraction, green = folding).\n");
}

/* The moving/moved images and the warp must have the fixed image's spatial shape; the message names the
 * file that does not fit.  Returns 0 when all fit. */
static int check_shapes(const char *fixed_path, const vxm_volume *fixed, const char *const paths[3],
                        const vxm_volume *const vols[3])
{
    for (int i = 0; i < 3; i++) {
        const vxm_volume *v = vols[i];
        if (!v)
            continue;
        if (v->ndim != fixed->ndim || memcmp(v->shape, fixed->shape, sizeof v->shape) != 0) {
            fprintf(stderr, "vxm: %s: shape %dx%dx%d does not match the fixed image %s (%dx%dx%d)\n", paths[i],
                    v->shape[0], v->shape[1], v->shape[2], fixed_path, fixed->shape[0], fixed->shape[1],
                    fixed->shape[2]);
            return 1;
        }
        if (i == 2 && v->channels != v->ndim) {
            fprintf(stderr, "vxm: %s: a %d-D warp needs %d channels, this one has %d\n", paths[i], v->ndim,
                    v->ndim, v->channels);
            return 1;
        }
    }
    return 0;
}

int cmd_qc(int argc, char **argv)
{
    const char *fixed = NULL, *moving = NULL, *moved = NULL, *warp = NULL, *out = NULL;
    const cli_string_opt strings[] = {
        {"--fixed", &fixed}, {"--moving", &moving}, {"--moved", &moved}, {"--warp", &warp}, {"--out", &out}};
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r = cli_next_option(&a, NULL, strings, (int)(sizeof strings / sizeof strings[0]), usage);
    if (r > 0)
        return cli_usage_error("qc: unknown option '%s' (see vxm qc --help)", a.name);
    if (r)
        return r == CLI_HELP ? 0 : 2;
    if (!fixed || !moving || !moved || !out) {
        usage(stderr);
        return cli_usage_error("qc: --fixed, --moving, --moved and --out are required");
    }
    vxm_context *ctx = vxm_context_create();
    if (!ctx) {
        fprintf(stderr, "vxm: out of memory\n");
        return 1;
    }
    vxm_volume *f = NULL, *m = NULL, *d = NULL, *w = NULL;
    int rc = 0;
    if (vxm_volume_read(ctx, fixed, NULL, &f) || vxm_volume_read(ctx, moving, NULL, &m) ||
        vxm_volume_read(ctx, moved, NULL, &d) || (warp && vxm_volume_read(ctx, warp, NULL, &w))) {
        rc = cli_fail(ctx);
        goto done;
    }
    if (w && f->ndim == 2)
        vxm_volume_as_2d_channels(w); /* a 2-D warp saved as an (H, W, 2) array */
    const char *paths[3] = {moving, moved, warp};
    const vxm_volume *vols[3] = {m, d, w};
    if ((rc = check_shapes(fixed, f, paths, vols)))
        goto done;
    if (vxm_qc_png(ctx, out, f, m, d, w))
        rc = cli_fail(ctx);
    else
        printf("qc: %s\n", out);
done:
    vxm_volume_free(f);
    vxm_volume_free(m);
    vxm_volume_free(d);
    vxm_volume_free(w);
    vxm_context_free(ctx);
    return rc;
}

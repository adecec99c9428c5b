/* vxm synth: one synthetic image (and its label map) as SynthMorph trains on (training doc §6.3), so a person can
 * look at what the network sees: from a label map, or from random shapes without any data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/synth_source.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vxm synth (--labels-in SEG | --shapes --inshape XxY[xZ] [--nb-labels N]) --out IMG\n"
               "                 [--out-labels LAB] [--seed S] [synthesis options] [--device SPEC]\n\n"
               "Draws one image from a label map with SynthMorph's generative model (neurite labels_to_image:\n"
               "random smooth warp, per-label Gaussian intensities, blur, bias field, min-max normalisation,\n"
               "gamma).  LAB receives the warped label map.  The same seed gives the same image on every device.\n"
               "Look at them with vxm qc (e.g. --fixed IMG --moving IMG2 --moved IMG2).\n\n%s",
            synth_options_usage);
}

int cmd_synth(int argc, char **argv)
{
    const char *out = NULL, *out_labels = NULL, *seed_str = NULL;
    synth_spec spec;
    synth_spec_default(&spec);
    cli_device_opts dev;
    memset(&dev, 0, sizeof dev);
    dev.device = "cpu";
    const cli_string_opt strings[] = {{"--out", &out}, {"--out-labels", &out_labels}, {"--seed", &seed_str}};
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &dev, strings, 3, usage)) > 0) {
        int s = synth_option(&a, &spec);
        if (s < 0)
            return 2;
        if (s == 0)
            return cli_usage_error("synth: unknown option '%s' (see vxm synth --help)", a.name);
    }
    if (r)
        return r == CLI_HELP ? 0 : 2;
    if (spec.label_maps)
        return cli_usage_error("synth: use --labels-in SEG (one label map); --label-maps is for vxm train");
    if (!out) {
        usage(stderr);
        return cli_usage_error("synth: --out is required");
    }
    unsigned long long seed = 0;
    if (seed_str && cli_parse_u64("--seed", seed_str, &seed))
        return 2;
    vxm_context *ctx = vxm_context_create();
    synth_source src;
    vxm_backend *be = NULL;
    vxm_volume *img = NULL, *lab = NULL;
    int rc = synth_source_open(ctx, &spec, &src);
    if (rc) {
        vxm_context_free(ctx);
        return rc;
    }
    img = vxm_volume_new(src.ndim, src.shape, spec.syn.nchan);
    lab = vxm_volume_new(src.ndim, src.shape, 1);
    if (!img || !lab) {
        fprintf(stderr, "vxm: out of memory\n");
        rc = 1;
    } else if (cli_open_backend(ctx, &dev, &be) ||
               synth_source_draw(&src, be, 0, NULL, seed, 0, 0, img->data, NULL, lab->data) ||
               vxm_volume_write(ctx, out, img, src.like)) {
        rc = cli_fail(ctx);
    } else if (out_labels && vxm_volume_write(ctx, out_labels, lab, src.like)) {
        rc = cli_fail(ctx);
        remove(out); /* no half of the pair left behind (the image was written by this run) */
    }
    vxm_volume_free(img);
    vxm_volume_free(lab);
    synth_source_close(&src);
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return rc;
}

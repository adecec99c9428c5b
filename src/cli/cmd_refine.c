/* vxm refine: instance-specific optimisation of one pair without a network (VoxelMorph's train_instance.py), and
 * cli_refine, the refinement step shared with `vxm register --refine N`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "train/instance.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vxm refine --moving A --fixed B --moved OUT [--warp W] [options]\n\n"
            "Registers A to B by optimising a velocity field for this one pair, without a network (VoxelMorph's\n"
            "train_instance.py / InstanceDense): a half-resolution stationary velocity field, integrated by scaling\n"
            "and squaring, is fitted with Adam to  image loss + lambda * smoothness.  Writes A warped into B's space\n"
            "(with B's header) and, with --warp, the displacement in voxels.  The loss before and after goes to\n"
            "stderr.  To start from a network's result use 'vxm register --refine N'.\n\n"
            "options:\n"
            "  --steps N            Adam updates (default 200)\n"
            "  --lr LR              learning rate (default 1e-3; the field is 1000 x the parameters, so one step\n"
            "                       moves the velocity by about 1 voxel)\n"
            "  --image-loss mse|ncc image similarity (default mse; ncc: window 9)\n"
            "  --lambda L           weight of the smoothness term (default 0.01)\n"
            "  --seed S             seed of the random initial field (N(0, 0.05) x 1000, as the script)\n"
            "  --init random|zero   initial velocity: the script's random one (default; a 50-voxel std field that\n"
            "                       the first ~200 steps spend smoothing away) or zero (the identity)\n"
            "  --device SPEC        cpu | opencl[:PLATFORM[:DEVICE]] | gpu:N | auto (see 'vxm devices')\n"
            "  --threads N          CPU threads\n");
}

static const char *loss_name(vxm_image_loss l)
{
    return l == VXM_LOSS_NCC ? "ncc" : "mse";
}

static int parse_image_loss(const char *opt, const char *v, vxm_image_loss *out)
{
    if (!strcmp(v, "mse"))
        *out = VXM_LOSS_MSE;
    else if (!strcmp(v, "ncc"))
        *out = VXM_LOSS_NCC;
    else
        return cli_usage_error("%s must be mse or ncc, not '%s'", opt, v);
    return 0;
}

static int check_finite(const vxm_volume *v, const char *path)
{
    size_t n = vxm_volume_numel(v);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v->data[i])) {
            fprintf(stderr, "vxm: %s: contains NaN or Inf (voxel %zu)\n", path, i / (size_t)v->channels);
            return 1;
        }
    return 0;
}

/* Shape, channel and value checks that name the offending file. */
static int check_pair(const vxm_volume *mov, const vxm_volume *fix, const char *mpath, const char *fpath)
{
    if (mov->ndim != fix->ndim || memcmp(mov->shape, fix->shape, sizeof mov->shape) != 0) {
        fprintf(stderr, "vxm: %s: shape %dx%dx%d does not match the moving image %s (%dx%dx%d)\n", fpath,
                fix->shape[0], fix->shape[1], fix->shape[2], mpath, mov->shape[0], mov->shape[1], mov->shape[2]);
        return 1;
    }
    if (mov->channels != fix->channels) {
        fprintf(stderr, "vxm: %s: has %d channel(s), the moving image %s has %d\n", fpath, fix->channels, mpath,
                mov->channels);
        return 1;
    }
    return check_finite(mov, mpath) || check_finite(fix, fpath);
}

/* Floats in the refinement field of a volume. */
size_t cli_refine_field_numel(const vxm_volume *v, const vxm_instance_options *o)
{
    int f[3];
    vxm_instance_field_shape(v->ndim, v->shape, o->int_downsize, f);
    return (size_t)f[0] * f[1] * f[2] * (size_t)v->ndim;
}

int cli_refine(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *mov, const vxm_volume *fix,
               const char *mpath, const char *fpath, const vxm_instance_options *opt, vxm_volume **moved,
               vxm_volume **warp)
{
    *moved = NULL;
    if (warp)
        *warp = NULL;
    if (check_pair(mov, fix, mpath, fpath))
        return 1;
    vxm_instance_options o = *opt;
    float *svf = NULL;
    if (m) {
        int fshape[3];
        vxm_instance_field_shape(mov->ndim, mov->shape, o.int_downsize, fshape);
        if (m->kind != VXM_MODEL_VXMDENSE) {
            /* the legacy graphs' velocity is not exposed: start from the identity */
            fprintf(stderr, "vxm: note: %s is a legacy Keras-graph model; refining from a zero field\n",
                    m->path);
            if (!(svf = calloc(cli_refine_field_numel(mov, &o), sizeof(float)))) {
                fprintf(stderr, "vxm: out of memory\n");
                return 1;
            }
        } else if (vxm_instance_svf_from_model(ctx, be, m, mov, fix, fshape, &svf)) {
            return cli_fail(ctx);
        } else {
            o.int_steps = m->dense.int_steps; /* integrate as the network does */
        }
        o.init_field = svf;
    }
    vxm_volume *mv = vxm_volume_new(mov->ndim, mov->shape, mov->channels);
    vxm_volume *w = vxm_volume_new(mov->ndim, mov->shape, mov->ndim);
    vxm_instance_losses *L = calloc((size_t)o.steps + 1, sizeof *L);
    int rc = 0;
    if (!mv || !w || !L) {
        fprintf(stderr, "vxm: out of memory\n");
        rc = 1;
    } else if (vxm_instance_run(ctx, be, &o, mov->ndim, mov->shape, mov->channels, mov->data, fix->data, mv->data,
                                w->data, L)) {
        rc = cli_fail(ctx);
    } else {
        const vxm_instance_losses *a = &L[0], *b = &L[o.steps];
        fprintf(stderr,
                "refine: loss before %.6g (%s %.6g + grad %.6g), after %d step(s) %.6g (%s %.6g + grad %.6g)\n",
                a->total, loss_name(o.image_loss), a->image, a->reg, o.steps, b->total, loss_name(o.image_loss),
                b->image, b->reg);
    }
    free(L);
    free(svf);
    if (rc) {
        vxm_volume_free(mv);
        vxm_volume_free(w);
        return rc;
    }
    *moved = mv;
    if (warp)
        *warp = w;
    else
        vxm_volume_free(w);
    return 0;
}

/* The refinement options shared by register (--refine-*) and refine (--steps, ...). */
int cli_refine_option(cli_args *a, const char *const names[4], vxm_instance_options *o)
{
    const char *v = NULL;
    if (cli_is(a, names[0]))
        return (v = cli_value(a)) && !cli_parse_int(names[0], v, 0, 1000000, &o->steps) ? 1 : -1;
    if (cli_is(a, names[1]))
        return (v = cli_value(a)) && !cli_parse_double(names[1], v, 1e-12, 1e6, &o->lr) ? 1 : -1;
    if (cli_is(a, names[2]))
        return (v = cli_value(a)) && !cli_parse_double(names[2], v, 0, 1e12, &o->lambda) ? 1 : -1;
    if (cli_is(a, names[3]))
        return (v = cli_value(a)) && !parse_image_loss(names[3], v, &o->image_loss) ? 1 : -1;
    return 0;
}

int cmd_refine(int argc, char **argv)
{
    const char *moving = NULL, *fixed = NULL, *moved_path = NULL, *warp_path = NULL, *init = "random";
    cli_device_opts dev;
    memset(&dev, 0, sizeof dev);
    vxm_instance_options o;
    vxm_instance_options_default(&o);
    const cli_string_opt strings[] = {
        {"--moving", &moving}, {"--fixed", &fixed}, {"--moved", &moved_path}, {"--warp", &warp_path}, {"--init", &init}};
    static const char *const names[4] = {"--steps", "--lr", "--lambda", "--image-loss"};
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &dev, strings, (int)(sizeof strings / sizeof strings[0]), usage)) > 0) {
        int k = cli_refine_option(&a, names, &o);
        const char *v = NULL;
        if (k < 0)
            return 2;
        if (k > 0)
            continue;
        if (cli_is(&a, "--seed")) {
            if (!(v = cli_value(&a)) || cli_parse_u64("--seed", v, &o.seed))
                return 2;
        } else {
            return cli_usage_error("refine: unknown option '%s' (see vxm refine --help)", a.name);
        }
    }
    if (r)
        return r == CLI_HELP ? 0 : 2;
    if (strcmp(init, "random") && strcmp(init, "zero"))
        return cli_usage_error("refine: --init must be random or zero, not '%s'", init);
    if (!moving || !fixed || !moved_path) {
        usage(stderr);
        return cli_usage_error("refine: --moving, --fixed and --moved are required");
    }
    vxm_context *ctx = vxm_context_create();
    if (!ctx) {
        fprintf(stderr, "vxm: out of memory\n");
        return 1;
    }
    vxm_volume *mov = NULL, *fix = NULL, *out = NULL, *w = NULL;
    float *zero = NULL;
    vxm_backend *be = NULL;
    int rc = 0;
    double t0 = cli_now_seconds();
    if (vxm_volume_read(ctx, moving, NULL, &mov) || vxm_volume_read(ctx, fixed, NULL, &fix) ||
        cli_open_backend(ctx, &dev, &be)) {
        rc = cli_fail(ctx);
    } else if (!strcmp(init, "zero") && !(zero = calloc(cli_refine_field_numel(mov, &o), sizeof(float)))) {
        fprintf(stderr, "vxm: out of memory\n");
        rc = 1;
    } else if (o.init_field = zero,
               !(rc = cli_refine(ctx, be, NULL, mov, fix, moving, fixed, &o, &out, warp_path ? &w : NULL))) {
        /* all outputs or none */
        if (vxm_volume_write(ctx, moved_path, out, fix)) {
            rc = cli_fail(ctx);
        } else if (warp_path && vxm_volume_write(ctx, warp_path, w, fix)) {
            rc = cli_fail(ctx);
            unlink(moved_path);
        } else {
            printf("refined %s -> %s in %.2f s (%d steps on %s)\nmoved: %s\n", moving, fixed, cli_now_seconds() - t0,
                   o.steps, vxm_backend_describe(be), moved_path);
            if (warp_path)
                printf("warp: %s\n", warp_path);
        }
    }
    free(zero);
    vxm_volume_free(mov);
    vxm_volume_free(fix);
    vxm_volume_free(out);
    vxm_volume_free(w);
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return rc;
}

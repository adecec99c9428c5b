/* vxm register: moving + fixed -> moved image (and warp), like VoxelMorph's scripts/tf/register.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "train/instance.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vxm register --model M.h5 --moving A --fixed B --moved OUT [--warp W] [options]\n\n"
            "Registers A to B with a VoxelMorph model and writes A warped into B's space (with B's header).\n"
            "Volumes: .nii, .nii.gz, .mgz, .mgh, .npz (key 'vol'), .npy.  The warp is a displacement in voxels,\n"
            "shape (X, Y, Z, 3), channel d along array axis d, as Python VoxelMorph writes it.\n\n"
            "options:\n"
            "  --device SPEC     cpu | opencl[:PLATFORM[:DEVICE]] | gpu:N | auto (default: a GPU if present,\n"
            "                    else the CPU backend); see 'vxm devices'\n"
            "  --gpu N           alias for --device gpu:N (the N-th OpenCL GPU)\n"
            "  --threads N       CPU threads (default: OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, else all cores)\n"
            "  --multichannel    inputs carry a channel axis (last); needed for models with src/trg_feats > 1\n"
            "  --seed S          probabilistic models: sample the velocity with seed S (default: mean mode)\n"
            "  --hyper LAMBDA    HyperMorph models (required there, refused elsewhere): the regularisation weight\n"
            "                    in [0, 1] the hypernetwork makes the registration network for\n"
            "  --check           also run on the CPU backend, print per-layer differences, and fail when the\n"
            "                    final outputs differ by more than --tolerance (relative to their magnitude)\n"
            "  --tolerance T     for --check (default 1e-4)\n"
            "  --qc OUT.png      also write a quality-control picture (see vxm qc --help)\n"
            "  --batch LIST      register many pairs with the model loaded once; LIST has one pair per line:\n"
            "                    MOVING FIXED MOVED [WARP]  (blank lines and lines starting with # are skipped)\n"
            "  --model none      no network: register by --refine N steps from the identity (train_instance.py)\n"
            "  --refine N        then refine the result by N steps of instance-specific optimisation (VoxelMorph's\n"
            "                    train_instance.py, starting from the network's velocity field; see vxm refine)\n"
            "  --refine-lr LR    its Adam learning rate (default 1e-4 from a network's field, where 1e-3 first\n"
            "                    makes the total loss rise for ~20 steps; 1e-3 with --model none)\n"
            "  --refine-lambda L its smoothness weight (default 0.01)\n"
            "  --refine-loss mse|ncc  its image loss (default mse)\n");
}

typedef struct reg_opts {
    const char *model, *moving, *fixed, *moved, *warp, *qc, *batch;
    cli_device_opts dev;
    int multichannel, check, have_seed, has_hyper;
    unsigned long long seed;
    double hyper;
    double tolerance;
    vxm_instance_options refine; /* steps == 0: no refinement */
} reg_opts;

static int parse(int argc, char **argv, reg_opts *o)
{
    memset(o, 0, sizeof *o);
    o->tolerance = 1e-4;
    vxm_instance_options_default(&o->refine);
    o->refine.steps = 0;
    o->refine.lr = 0; /* default chosen after parsing (below) */
    static const char *const refine_names[4] = {"--refine", "--refine-lr", "--refine-lambda", "--refine-loss"};
    const cli_string_opt strings[] = {
        {"--model", &o->model}, {"--moving", &o->moving}, {"--fixed", &o->fixed}, {"--moved", &o->moved},
        {"--warp", &o->warp},   {"--qc", &o->qc},         {"--batch", &o->batch},
    };
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &o->dev, strings, (int)(sizeof strings / sizeof strings[0]), usage)) > 0) {
        const char *v = NULL;
        int k = cli_refine_option(&a, refine_names, &o->refine);
        if (k < 0)
            return 2;
        if (k > 0)
            continue;
        if (cli_is(&a, "--multichannel")) {
            o->multichannel = 1;
        } else if (cli_is(&a, "--check")) {
            o->check = 1;
        } else if (cli_is(&a, "--seed")) {
            if (!(v = cli_value(&a)) || cli_parse_u64("--seed", v, &o->seed))
                return 2;
            o->have_seed = 1;
        } else if (cli_is(&a, "--hyper")) {
            if (!(v = cli_value(&a)) || cli_parse_double("--hyper", v, 0, 1, &o->hyper))
                return 2;
            o->has_hyper = 1;
        } else if (cli_is(&a, "--tolerance")) {
            if (!(v = cli_value(&a)) || cli_parse_double("--tolerance", v, 0, INFINITY, &o->tolerance))
                return 2;
        } else {
            return cli_usage_error("register: unknown option '%s' (see vxm register --help)", a.name);
        }
    }
    if (r)
        return r == CLI_HELP ? -1 : 2;
    if (o->batch && (o->moving || o->fixed || o->moved || o->warp || o->qc))
        return cli_usage_error("register: --batch replaces --moving/--fixed/--moved/--warp/--qc");
    if (!o->model || (!o->batch && (!o->moving || !o->fixed || !o->moved))) {
        usage(stderr);
        return cli_usage_error("register: --model and either --moving, --fixed, --moved or --batch are required");
    }
    /* from the network's field, train_instance.py's 1e-3 first trades smoothness for intensity match (the total
     * loss rises for ~20 steps); 1e-4 decreases it from the first step.  From the identity (--model none), the
     * script's 1e-3. */
    if (o->refine.lr == 0)
        o->refine.lr = strcmp(o->model, "none") ? 1e-4 : 1e-3;
    if (!strcmp(o->model, "none") && o->refine.steps < 1)
        return cli_usage_error("register: --model none registers by refinement alone: give --refine N");
    if (!strcmp(o->model, "none") && o->check)
        return cli_usage_error("register: --check compares a network on two devices: not with --model none");
    return 0;
}

/* File-level checks that name the offending file: channel count and shape agreement. */
typedef struct reg_job {
    const char *moving, *fixed, *moved, *warp, *qc;
} reg_job;

static int check_volumes(const reg_opts *o, const reg_job *j, const vxm_model *m, const vxm_volume *mov,
                         const vxm_volume *fix)
{
    const vxm_volume *v[2] = {mov, fix};
    const char *p[2] = {j->moving, j->fixed};
    for (int i = 0; i < 2; i++)
        if (v[i]->channels > 1 && !o->multichannel) {
            fprintf(stderr, "vxm: %s: has %d channels; pass --multichannel for multi-channel input\n", p[i],
                    v[i]->channels);
            return 1;
        }
    if (mov->ndim != fix->ndim || memcmp(mov->shape, fix->shape, sizeof mov->shape) != 0) {
        fprintf(stderr, "vxm: %s: shape %dx%dx%d does not match the moving image %s (%dx%dx%d)\n", j->fixed,
                fix->shape[0], fix->shape[1], fix->shape[2], j->moving, mov->shape[0], mov->shape[1], mov->shape[2]);
        return 1;
    }
    if (!m)
        return 0; /* --model none: no network, no padding */
    int pshape[3];
    vxm_padded_shape(vxm_model_size_divisor(m), mov->ndim, mov->shape, pshape);
    if (memcmp(pshape, mov->shape, sizeof pshape))
        fprintf(stderr,
                "vxm: note: %s: %dx%dx%d is not a multiple of %d; registering zero-padded (centred) to %dx%dx%d and "
                "cropping the outputs back\n",
                j->moving, mov->shape[0], mov->shape[1], mov->shape[2], vxm_model_size_divisor(m), pshape[0],
                pshape[1], pshape[2]);
    return 0;
}

static int run_check(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *mov,
                     const vxm_volume *fix, double tol)
{
    vxm_backend *ref = NULL;
    if (vxm_backend_open(ctx, "cpu", &ref))
        return cli_fail(ctx);
    vxm_layer_diff *d = NULL;
    int n = 0;
    vxm_status st = vxm_register_check(ctx, be, ref, m, mov, fix, &d, &n);
    vxm_backend_close(ref);
    if (st)
        return cli_fail(ctx);
    printf("check: %s against the CPU backend (per layer: max |a-b|, |ref| max, relative)\n",
           vxm_backend_describe(be));
    printf("%-44s %-10s %-18s %12s %12s %12s\n", "layer", "op", "shape", "max abs", "ref max", "relative");
    double worst = 0;
    for (int i = 0; i < n; i++) {
        char shp[48];
        snprintf(shp, sizeof shp, "%dx%dx%dx%d", d[i].shape[0], d[i].shape[1], d[i].shape[2], d[i].channels);
        printf("%-44s %-10s %-18s %12.3e %12.3e %12.3e\n", d[i].name, d[i].op, shp, d[i].max_abs, d[i].ref_max_abs,
               d[i].rel);
        if (!(d[i].rel <= worst))
            worst = isnan(d[i].rel) ? INFINITY : d[i].rel;
    }
    free(d);
    /* float32 with a different summation order differs by ~1e-6 relative per conv; through ~20 layers and
     * 7 squaring steps that stays well below 1e-4, while any semantic error shows up at 1e-2 or more. */
    int ok = worst <= tol;
    printf("check: worst relative difference %.3e, tolerance %.1e: %s\n", worst, tol, ok ? "OK" : "FAILED");
    if (!ok)
        fprintf(stderr, "vxm: %s: results differ from the CPU backend by %.3e (tolerance %.1e)\n",
                vxm_backend_describe(be), worst, tol);
    return ok ? 0 : 1;
}

/* One pair: read, check, register, write every output or none.  *seconds gets the registration time. */
static int register_one(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const reg_opts *o, const reg_job *j,
                        double *seconds)
{
    vxm_volume *mov = NULL, *fix = NULL, *moved = NULL, *warp = NULL;
    int rc = 1;
    if (vxm_volume_read(ctx, j->moving, NULL, &mov) || vxm_volume_read(ctx, j->fixed, NULL, &fix)) {
        rc = cli_fail(ctx);
        goto done;
    }
    if ((rc = check_volumes(o, j, m, mov, fix)))
        goto done;
    double t1 = cli_now_seconds();
    vxm_register_options ropt = {o->have_seed ? 0 : 1, o->seed, j->moving, j->fixed};
    if (m && vxm_register(ctx, be, m, mov, fix, &ropt, &moved, (j->warp || j->qc) ? &warp : NULL)) {
        rc = cli_fail(ctx);
        goto done;
    }
    if (o->refine.steps > 0) {
        vxm_volume *rmoved = NULL, *rwarp = NULL;
        vxm_instance_options ro = o->refine;
        float *zero = NULL; /* --model none: refine from the identity */
        if (!m && !(zero = calloc(cli_refine_field_numel(mov, &ro), sizeof(float)))) {
            fprintf(stderr, "vxm: out of memory\n");
            goto done;
        }
        if (zero)
            ro.init_field = zero;
        rc = cli_refine(ctx, be, m, mov, fix, j->moving, j->fixed, &ro, &rmoved, &rwarp);
        free(zero);
        if (rc)
            goto done;
        vxm_volume_free(moved);
        vxm_volume_free(warp);
        moved = rmoved;
        warp = rwarp;
    }
    *seconds = cli_now_seconds() - t1;
    /* all outputs or none: a later failure removes what was already written */
    if (vxm_volume_write(ctx, j->moved, moved, fix)) {
        rc = cli_fail(ctx);
        goto done;
    }
    if (j->warp && vxm_volume_write(ctx, j->warp, warp, fix)) {
        rc = cli_fail(ctx);
        unlink(j->moved);
        goto done;
    }
    if (j->qc && vxm_qc_png(ctx, j->qc, fix, mov, moved, warp)) {
        rc = cli_fail(ctx);
        unlink(j->moved);
        if (j->warp)
            unlink(j->warp);
        goto done;
    }
    rc = o->check ? run_check(ctx, be, m, mov, fix, o->tolerance) : 0;
done:
    vxm_volume_free(mov);
    vxm_volume_free(fix);
    vxm_volume_free(moved);
    vxm_volume_free(warp);
    return rc;
}

static void print_done(const reg_job *j, double seconds)
{
    printf("registered %s -> %s in %.2f s\nmoved: %s\n", j->moving, j->fixed, seconds, j->moved);
    if (j->warp)
        printf("warp: %s\n", j->warp);
    if (j->qc)
        printf("qc: %s\n", j->qc);
}

/* --batch LIST: "MOVING FIXED MOVED [WARP]" per line (cli_lists.c); stops at the first failing pair. */
static int run_batch(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const reg_opts *o)
{
    static const cli_list_format fmt = {3, 4, "three or four names (moving fixed moved [warp])", "pairs"};
    cli_list l;
    if (cli_list_read(o->batch, &fmt, &l))
        return 1;
    int rc = 0;
    double sum = 0, sum_rest = 0;
    for (int i = 0; i < l.rows && rc == 0; i++) {
        reg_job j = {cli_list_name(&l, i, 0), cli_list_name(&l, i, 1), cli_list_name(&l, i, 2),
                     cli_list_name(&l, i, 3), NULL};
        double t = 0;
        if ((rc = register_one(ctx, be, m, o, &j, &t)))
            break;
        print_done(&j, t);
        sum += t;
        if (i > 0)
            sum_rest += t;
    }
    if (rc == 0)
        printf("batch: %d pair(s) in %.2f s of registration; %.2f s per pair after the first\n", l.rows, sum,
               l.rows > 1 ? sum_rest / (l.rows - 1) : sum);
    cli_list_free(&l);
    return rc;
}

int cmd_register(int argc, char **argv)
{
    reg_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    vxm_context *ctx = vxm_context_create();
    vxm_model *m = NULL;
    vxm_backend *be = NULL;
    if (!ctx) {
        fprintf(stderr, "vxm: out of memory\n");
        return 1;
    }
    double t0 = cli_now_seconds();
    int no_model = !strcmp(o.model, "none"); /* instance optimisation only (train_instance.py) */
    if ((!no_model && vxm_model_load(ctx, o.model, &m)) || (m && o.has_hyper && vxm_model_set_hyper(ctx, m, o.hyper)) ||
        cli_open_backend(ctx, &o.dev, &be)) {
        rc = cli_fail(ctx);
    } else if ((!m && o.has_hyper) || (m && vxm_model_hyper_params(m) && (o.check || o.refine.steps > 0))) {
        /* the hypernetwork's input exists only in registration (vxm_register); --check and refinement run the
         * network without it */
        fprintf(stderr, "vxm: %s: %s\n", o.model,
                m ? "--check and --refine are not available for HyperMorph models"
                  : "--hyper needs a HyperMorph model");
        rc = 1;
    } else if (o.batch) {
        printf("device: %s (model and device set up in %.2f s)\n", vxm_backend_describe(be), cli_now_seconds() - t0);
        rc = run_batch(ctx, be, m, &o);
    } else {
        reg_job j = {o.moving, o.fixed, o.moved, o.warp, o.qc};
        double t = 0;
        rc = register_one(ctx, be, m, &o, &j, &t);
        if (rc == 0) {
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            printf("device: %s; peak memory %.0f MB (device buffers %.0f MB)\n", vxm_backend_describe(be),
                   ru.ru_maxrss / 1024.0, be->mem_peak / 1048576.0);
            print_done(&j, t);
        }
    }
    vxm_model_free(m);
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return rc;
}

/* vxm train: train a VxmDense model like VoxelMorph's scripts/tf/train.py (training doc §1, §1.1).
 *
 * Data: --img-list (scan-to-scan, or scan-to-atlas with --atlas) as train.py, or --pairs (one listed pair per
 * draw); every file is loaded once (cli/train_data.c).  The engine is src/train (train.h): one trainer on the
 * chosen device.  Checkpoints follow train.py: D/<initial_epoch>.h5 before training, then Keras' ModelCheckpoint
 * with save_freq = --save-freq epochs counted from the initial epoch (doc §1, "Checkpoint naming/timing";
 * identical to "epoch % save_freq == 0" when training starts from a checkpoint epoch), plus the final epoch.
 * A NaN/Inf loss stops training before the bad update, so the last checkpoint holds the last good weights. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/train_data.h"
#include "train/train.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vxm train --model-dir D (--img-list LIST [--atlas A] | --pairs LIST) [options]\n\n"
            "Trains a VxmDense model as VoxelMorph's scripts/tf/train.py: loss = image loss + lambda * Grad('l2',\n"
            "loss_mult = int-downsize) of the pre-integration field; Adam as Keras (beta 0.9/0.999, eps 1e-7).\n"
            "Writes D/%%04d.h5 (VoxelMorph .h5, readable by 'vxm register' and VxmDense.load): the initial epoch\n"
            "before training, then every --save-freq epochs and after the last epoch.  Volumes are used as\n"
            "stored (no intensity scaling: supply [0,1] data); all must share one shape, which must be a multiple\n"
            "of 2^(encoder levels) (no padding in training).  2-D volumes train a 2-D model.\n\n"
            "data:\n"
            "  --img-list LIST   one volume per line; each step draws moving and fixed independently and\n"
            "                    uniformly (scan-to-scan), or with --atlas A, moving = a drawn scan, fixed = A\n"
            "  --pairs LIST      one 'moving fixed' pair per line; each step draws one listed pair uniformly\n"
            "                    (lists: whitespace separated, blank lines and lines starting with # skipped)\n"
            "  --img-prefix P, --img-suffix S   file = P + listed name + S (not applied to --atlas)\n"
            "  --batch-size N    pairs per step (default 1)\n"
            "  --seed S          seeds the draws (splitmix64) and a new model's initialisers (default 0)\n\n"
            "model:\n"
            "  --load-weights M.h5   start from this VoxelMorph model (architecture and weights; Adam restarts)\n"
            "  --enc N...        encoder features of a new model (default 16 32 32 32)\n"
            "  --dec N...        decoder features (default 32 32 32 32 32 16 16)\n"
            "  --int-steps N     scaling-and-squaring steps (default 7; 0 = no integration)\n"
            "  --int-downsize N  integration at 1/N resolution, also Grad's loss_mult (default 2)\n\n"
            "loss and optimiser:\n"
            "  --image-loss mse|ncc   (default mse; ncc: window 9)\n"
            "  --image-sigma X   MSE weight 1/X^2 (default 1)\n"
            "  --lambda X        weight of the Grad regulariser (default 0.01)\n"
            "  --optimizer adam|sgd   (default adam)\n"
            "  --lr X            learning rate (default 1e-4)\n\n"
            "schedule:\n"
            "  --epochs N        final epoch index (default 1500); epochs - initial-epoch epochs run\n"
            "  --steps-per-epoch N   (default 100)\n"
            "  --initial-epoch N     epoch to start counting from, e.g. when resuming (default 0)\n"
            "  --save-freq N     checkpoint every N epochs (default 20)\n\n"
            "device and checks:\n"
            "  --device SPEC     cpu | opencl[:P[:D]] | gpu:N | auto (default); --gpu N, --threads N\n"
            "  --save-gradients G.h5   write the gradients of the first step (one dataset per weight)\n"
            "  --check           before training, compute the first batch's gradients on the CPU backend too\n"
            "                    and fail when any weight's relative L2 difference exceeds --tolerance\n"
            "  --tolerance T     for --check (default 1e-3)\n");
}

typedef struct train_cli {
    const char *model_dir, *save_gradients, *image_loss, *optimizer;
    train_data_spec data;
    vxm_train_options opt;
    cli_device_opts dev;
    int epochs, steps, batch, save_freq, initial_epoch, check, have_tolerance, have_arch;
    double tolerance;
} train_cli;

/* --enc / --dec: several positive integers. */
static int parse_features(cli_args *a, int *feats, int *n)
{
    const char *opt = a->name, *v[VXM_MAX_FEATS];
    int cnt = cli_values(a, v, VXM_MAX_FEATS);
    if (cnt <= 0)
        return -1;
    for (int i = 0; i < cnt; i++)
        if (cli_parse_int(opt, v[i], 1, 65536, &feats[i]))
            return -1;
    *n = cnt;
    return 0;
}

/* Numeric options: name, kind (i: int in [lo, hi], d: double in [lo, hi]), target. */
typedef struct num_opt {
    const char *name;
    char kind;
    double lo, hi;
    void *target;
} num_opt;

static int numeric_option(cli_args *a, const num_opt *opts, int n)
{
    for (int i = 0; i < n; i++) {
        if (!cli_is(a, opts[i].name))
            continue;
        const char *v = cli_value(a);
        if (!v)
            return -1;
        if (opts[i].kind == 'i')
            return cli_parse_int(opts[i].name, v, (int)opts[i].lo, (int)opts[i].hi, opts[i].target) ? -1 : 1;
        return cli_parse_double(opts[i].name, v, opts[i].lo, opts[i].hi, opts[i].target) ? -1 : 1;
    }
    return 0;
}

static int parse(int argc, char **argv, train_cli *o)
{
    memset(o, 0, sizeof *o);
    vxm_train_options_default(&o->opt);
    o->epochs = 1500;
    o->steps = 100;
    o->batch = 1;
    o->save_freq = 20;
    o->tolerance = 1e-3;
    const cli_string_opt strings[] = {
        {"--model-dir", &o->model_dir},       {"--pairs", &o->data.pairs},
        {"--img-list", &o->data.img_list},    {"--atlas", &o->data.atlas},
        {"--img-prefix", &o->data.img_prefix}, {"--img-suffix", &o->data.img_suffix},
        {"--load-weights", &o->opt.load_weights}, {"--save-gradients", &o->save_gradients},
        {"--image-loss", &o->image_loss},     {"--optimizer", &o->optimizer},
    };
    const num_opt nums[] = {
        {"--int-steps", 'i', 0, 64, &o->opt.int_steps},
        {"--int-downsize", 'i', 1, 64, &o->opt.int_downsize},
        {"--image-sigma", 'd', 1e-30, INFINITY, &o->opt.image_sigma},
        {"--lambda", 'd', 0, INFINITY, &o->opt.lambda},
        {"--lr", 'd', 0, INFINITY, &o->opt.lr},
        {"--epochs", 'i', 0, 1000000000, &o->epochs},
        {"--steps-per-epoch", 'i', 1, 1000000000, &o->steps},
        {"--batch-size", 'i', 1, 65536, &o->batch},
        {"--save-freq", 'i', 1, 1000000000, &o->save_freq},
        {"--initial-epoch", 'i', 0, 1000000000, &o->initial_epoch},
        {"--tolerance", 'd', 0, INFINITY, &o->tolerance},
    };
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &o->dev, strings, (int)(sizeof strings / sizeof strings[0]), usage)) > 0) {
        int arch = cli_is(&a, "--int-steps") || cli_is(&a, "--int-downsize") || cli_is(&a, "--enc") ||
                   cli_is(&a, "--dec");
        o->have_arch |= arch;
        o->have_tolerance |= cli_is(&a, "--tolerance");
        int n = numeric_option(&a, nums, (int)(sizeof nums / sizeof nums[0]));
        if (n < 0)
            return 2;
        if (n > 0)
            continue;
        if (cli_is(&a, "--enc") || cli_is(&a, "--dec")) {
            int enc = cli_is(&a, "--enc");
            if (parse_features(&a, enc ? o->opt.enc : o->opt.dec, enc ? &o->opt.n_enc : &o->opt.n_dec))
                return 2;
        } else if (cli_is(&a, "--seed")) {
            const char *v = cli_value(&a);
            if (!v || cli_parse_u64("--seed", v, &o->data.seed))
                return 2;
        } else if (cli_is(&a, "--check")) {
            o->check = 1;
        } else {
            return cli_usage_error("train: unknown option '%s' (see vxm train --help)", a.name);
        }
    }
    if (r)
        return r == CLI_HELP ? -1 : 2;
    o->opt.seed = o->data.seed;
    if (!o->model_dir || (!o->data.pairs && !o->data.img_list)) {
        usage(stderr);
        return cli_usage_error("train: --model-dir and either --img-list or --pairs are required");
    }
    if (o->data.pairs && o->data.img_list)
        return cli_usage_error("train: give either --img-list or --pairs, not both");
    if (o->data.atlas && !o->data.img_list)
        return cli_usage_error("train: --atlas goes with --img-list (a pair list names both images)");
    if (o->have_tolerance && !o->check)
        return cli_usage_error("train: --tolerance goes with --check");
    if (o->have_arch && o->opt.load_weights)
        return cli_usage_error("train: --enc/--dec/--int-steps/--int-downsize describe a new model; with "
                               "--load-weights the architecture comes from %s", o->opt.load_weights);
    if (o->opt.n_dec < o->opt.n_enc)
        return cli_usage_error("train: --dec needs at least as many values as --enc (%d), got %d", o->opt.n_enc,
                               o->opt.n_dec);
    if (o->initial_epoch > o->epochs)
        return cli_usage_error("train: --initial-epoch %d is beyond --epochs %d (the final epoch index)",
                               o->initial_epoch, o->epochs);
    const char *il = o->image_loss ? o->image_loss : "mse", *op = o->optimizer ? o->optimizer : "adam";
    if (strcmp(il, "mse") && strcmp(il, "ncc"))
        return cli_usage_error("train: --image-loss must be mse or ncc, not '%s'", il);
    if (strcmp(op, "adam") && strcmp(op, "sgd"))
        return cli_usage_error("train: --optimizer must be adam or sgd, not '%s'", op);
    o->opt.image_loss = strcmp(il, "ncc") ? VXM_LOSS_MSE : VXM_LOSS_NCC;
    o->opt.optimizer = strcmp(op, "sgd") ? VXM_OPT_ADAM : VXM_OPT_SGD;
    return 0;
}

/* mkdir -p D; 0, or 1 with "vxm: D: problem" printed. */
static int make_dir(const char *dir)
{
    char *p = cli_affix(NULL, dir, NULL);
    if (!p)
        return 1;
    int rc = 0;
    for (char *s = p + 1; *s && !rc; s++)
        if (*s == '/' && s[-1] != '/') {
            *s = '\0';
            if (mkdir(p, 0777) && errno != EEXIST)
                rc = 1;
            *s = '/';
        }
    if (!rc && mkdir(p, 0777) && errno != EEXIST)
        rc = 1;
    struct stat st;
    if (rc || stat(p, &st)) {
        fprintf(stderr, "vxm: %s: %s\n", dir, strerror(errno));
        rc = 1;
    } else if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "vxm: %s: %s\n", dir, strerror(ENOTDIR));
        rc = 1;
    }
    free(p);
    return rc;
}

/* --load-weights is read once before the device is opened, so a file that is no VoxelMorph model is
 * reported at once (the trainer loads it again on the device); *divisor gets its input-size multiple. */
static int check_model_file(vxm_context *ctx, const char *path, int *divisor)
{
    vxm_model *m = NULL;
    if (vxm_model_load(ctx, path, &m))
        return cli_fail(ctx);
    *divisor = vxm_model_size_divisor(m);
    vxm_model_free(m);
    return 0;
}

static int check_divisor(const train_cli *o, const train_data *d, int div)
{
    for (int ax = 3 - d->ndim; ax < 3; ax++)
        if (div > 1 && d->shape[ax] % div) {
            char s[64];
            train_data_shape_str(d->ndim, d->shape, s, sizeof s);
            fprintf(stderr,
                    "vxm: %s: shape %s: size %d along axis %d is not a multiple of %d, which the model needs "
                    "(training does not pad: crop or pad the volumes)%s\n",
                    d->path[0], s, d->shape[ax], ax - (3 - d->ndim), div,
                    o->opt.load_weights ? "" : "; fewer --enc levels lower the multiple");
            return 1;
        }
    return 0;
}

/* Relative L2 difference ||a - b|| / ||b|| (b: the CPU reference); 0 when both vanish. */
static double rel_l2(const float *a, const float *b, size_t n)
{
    double d2 = 0, b2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        d2 += d * d;
        b2 += (double)b[i] * (double)b[i];
    }
    if (b2 > 0)
        return sqrt(d2 / b2);
    return d2 > 0 ? INFINITY : (isnan(d2) ? NAN : 0);
}

/* --check: the first batch's gradients on the device and on the CPU backend, weight by weight. */
static int run_check(vxm_context *ctx, vxm_backend *be, vxm_trainer *t, const train_cli *o, const train_data *d,
                     const float *const *mov, const float *const *fix)
{
    vxm_backend *ref = NULL;
    vxm_trainer *rt = NULL;
    float *ga = NULL, *gb = NULL;
    vxm_train_losses la, lb;
    int rc = 1;
    if (vxm_backend_open(ctx, "cpu", &ref) ||
        vxm_trainer_create(ctx, ref, &o->opt, d->ndim, d->shape, d->channels, d->channels, &rt) ||
        vxm_trainer_compute_gradients(t, mov, fix, o->batch, &la) ||
        vxm_trainer_compute_gradients(rt, mov, fix, o->batch, &lb)) {
        rc = cli_fail(ctx);
        goto done;
    }
    int nw = vxm_trainer_num_weights(t);
    size_t maxn = 1;
    for (int i = 0; i < nw; i++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, i, &wi);
        maxn = wi.numel > maxn ? wi.numel : maxn;
    }
    if (!(ga = malloc(sizeof(float) * maxn)) || !(gb = malloc(sizeof(float) * maxn))) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    printf("check: gradients of the first batch on %s against the CPU backend (loss %.6g vs %.6g)\n",
           vxm_backend_describe(be), la.total, lb.total);
    printf("%-52s %14s\n", "weight", "rel-L2-diff");
    double worst = 0;
    for (int i = 0; i < nw; i++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, i, &wi);
        if (vxm_trainer_read_gradient(t, i, ga) || vxm_trainer_read_gradient(rt, i, gb)) {
            rc = cli_fail(ctx);
            goto done;
        }
        double r = rel_l2(ga, gb, wi.numel);
        char name[256];
        snprintf(name, sizeof name, "%s/%s", wi.layer, wi.kind);
        printf("%-52s %14.3e\n", name, r);
        if (!(r <= worst))
            worst = isnan(r) ? INFINITY : r;
    }
    int ok = worst <= o->tolerance;
    printf("check: max relative difference %.3e, tolerance %.1e: %s\n", worst, o->tolerance, ok ? "OK" : "FAILED");
    fflush(stdout);
    if (!ok)
        fprintf(stderr, "vxm: %s: gradients differ from the CPU backend by %.3e (tolerance %.1e)\n",
                vxm_backend_describe(be), worst, o->tolerance);
    rc = ok ? 0 : 1;
done:
    free(ga);
    free(gb);
    vxm_trainer_free(rt);
    vxm_backend_close(ref);
    return rc;
}

static void format_eta(double s, char *buf, size_t n)
{
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(buf, n, "%lds", t);
    else if (t < 3600)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
}

/* "epoch 3/1500  loss 0.01234 (mse 0.0120, grad 0.00034)  0.52 s/step  ETA 1h02m" (epoch means, as Keras). */
static void progress(const train_cli *o, int epoch, const vxm_train_losses *sum, double s_per_step, double eta)
{
    char e[32];
    format_eta(eta, e, sizeof e);
    fprintf(stderr, "epoch %d/%d  loss %.4g (", epoch, o->epochs, sum->total / o->steps);
    for (int i = 0; i < sum->n; i++)
        fprintf(stderr, "%s%s %.3g", i ? ", " : "", sum->name[i], sum->value[i] / o->steps);
    fprintf(stderr, ")  %.3g s/step  ETA %s\n", s_per_step, e);
}

static int save_checkpoint(vxm_context *ctx, vxm_trainer *t, const char *dir, int epoch, char *path, size_t n)
{
    snprintf(path, n, "%s/%04d.h5", dir, epoch);
    if (vxm_trainer_save(t, path))
        return cli_fail(ctx);
    printf("saved %s\n", path);
    fflush(stdout);
    return 0;
}

typedef struct train_run {
    vxm_context *ctx;
    vxm_trainer *t;
    const train_cli *o;
    train_data *d;
    const float **mov, **fix; /* batch pointers; the first batch is drawn before training (for --check) */
    char *ckpt, *last;        /* checkpoint path buffers */
    size_t ckpt_len;
} train_run;

/* One step; the first one optionally writes the gradients.  Returns 0, or 1 after the message. */
static int train_step(train_run *r, int epoch, int step, int first, vxm_train_losses *L)
{
    vxm_context *ctx = r->ctx;
    const train_cli *o = r->o;
    if (!first)
        train_data_next(r->d, o->batch, r->mov, r->fix);
    vxm_status st;
    if (first && o->save_gradients) {
        st = vxm_trainer_compute_gradients(r->t, r->mov, r->fix, o->batch, L);
        if (!st && (st = vxm_trainer_save_gradients(r->t, o->save_gradients)) == VXM_OK)
            printf("gradients of the first step: %s\n", o->save_gradients);
        if (!st)
            st = vxm_trainer_apply(r->t);
    } else {
        st = vxm_trainer_step(r->t, r->mov, r->fix, o->batch, L);
    }
    if (st == VXM_OK && !isfinite(L->total))
        st = VXM_ENUMERIC; /* the engine reports non-finite terms itself; this guards the sum */
    if (st == VXM_ENUMERIC) {
        const char *msg = vxm_context_error(ctx);
        fprintf(stderr, "vxm: training stopped at epoch %d step %d: %s; last checkpoint %s\n", epoch, step,
                (msg && *msg) ? msg : "the loss is not finite", r->last);
        return 1;
    }
    return st ? cli_fail(ctx) : 0;
}

static int train_loop(train_run *r)
{
    const train_cli *o = r->o;
    double t_start = cli_now_seconds();
    long done_steps = 0, total_steps = (long)(o->epochs - o->initial_epoch) * o->steps;
    for (int e = o->initial_epoch + 1; e <= o->epochs; e++) {
        vxm_train_losses sum;
        memset(&sum, 0, sizeof sum);
        double t0 = cli_now_seconds();
        for (int s = 1; s <= o->steps; s++) {
            vxm_train_losses L;
            if (train_step(r, e, s, done_steps == 0, &L))
                return 1;
            sum.n = L.n;
            for (int i = 0; i < L.n; i++) {
                sum.name[i] = L.name[i];
                sum.value[i] += L.value[i];
            }
            sum.total += L.total;
            done_steps++;
        }
        double now = cli_now_seconds(), avg = (now - t_start) / (double)done_steps;
        progress(o, e, &sum, (now - t0) / o->steps, avg * (double)(total_steps - done_steps));
        /* Keras' ModelCheckpoint counts batches from the start of fit, i.e. epochs from the initial one */
        if ((e - o->initial_epoch) % o->save_freq == 0 || e == o->epochs) {
            if (save_checkpoint(r->ctx, r->t, o->model_dir, e, r->ckpt, r->ckpt_len))
                return 1;
            memcpy(r->last, r->ckpt, r->ckpt_len);
        }
    }
    return 0;
}

/* The whole run after option parsing; returns the exit status. */
static int train(const train_cli *op)
{
    const train_cli o = *op;
    int rc = 1;
    vxm_context *ctx = vxm_context_create();
    vxm_backend *be = NULL;
    vxm_trainer *t = NULL;
    train_data d;
    memset(&d, 0, sizeof d);
    size_t ckpt_len = strlen(o.model_dir) + 32;
    char *ckpt = malloc(ckpt_len), *last = calloc(1, ckpt_len);
    const float **mov = malloc(sizeof(float *) * (size_t)o.batch), **fix = malloc(sizeof(float *) * (size_t)o.batch);
    if (!ctx || !ckpt || !last || !mov || !fix) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    /* 1. everything that can be checked without the device: lists, volumes, the model file, the input-size
     * multiple (a new VxmDense pools once per encoder level, spec §3; checked again with the trainer's own
     * figure below), the directory */
    int div = 1 << (o.opt.n_enc < 30 ? o.opt.n_enc : 30);
    if (train_data_load(ctx, &o.data, &d) ||
        (o.opt.load_weights && check_model_file(ctx, o.opt.load_weights, &div)) || check_divisor(&o, &d, div) ||
        make_dir(o.model_dir))
        goto done;
    /* 2. device and trainer */
    if (cli_open_backend(ctx, &o.dev, &be) ||
        vxm_trainer_create(ctx, be, &o.opt, d.ndim, d.shape, d.channels, d.channels, &t)) {
        rc = cli_fail(ctx);
        goto done;
    }
    if (check_divisor(&o, &d, vxm_trainer_divisor(t)))
        goto done;
    char shp[64];
    train_data_shape_str(d.ndim, d.shape, shp, sizeof shp);
    printf("vxm train: %d %s (%d files, %s, %d channel%s) on %s; %d weight tensors; epochs %d..%d x %d steps, "
           "batch %d\n",
           d.nitems, d.mode == TRAIN_PAIRS ? "pairs" : "scans", d.nfiles, shp, d.channels, d.channels == 1 ? "" : "s",
           vxm_backend_describe(be), vxm_trainer_num_weights(t), o.initial_epoch + 1, o.epochs, o.steps, o.batch);
    fflush(stdout);
    train_data_next(&d, o.batch, mov, fix);
    if (o.check && (rc = run_check(ctx, be, t, &o, &d, mov, fix)))
        goto done;
    /* 3. the initial checkpoint, then the epochs */
    if ((rc = save_checkpoint(ctx, t, o.model_dir, o.initial_epoch, ckpt, ckpt_len)))
        goto done;
    memcpy(last, ckpt, ckpt_len);
    train_run r = {ctx, t, &o, &d, mov, fix, ckpt, last, ckpt_len};
    rc = train_loop(&r);
done:
    free(ckpt);
    free(last);
    free(mov);
    free(fix);
    vxm_trainer_free(t);
    vxm_backend_close(be);
    train_data_free(&d);
    vxm_context_free(ctx);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    train_cli o;
    int rc = parse(argc, argv, &o);
    return rc ? (rc < 0 ? 0 : rc) : train(&o);
}

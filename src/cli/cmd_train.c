/* vxm train: train a VxmDense model like VoxelMorph's scripts/tf/train.py (training doc §1, §1.1).
 *
 * Data: --img-list (scan-to-scan, or scan-to-atlas with --atlas) as train.py, or --pairs (one listed pair per
 * draw); every file is loaded once (cli/train_data.c).  The engine is src/train (train.h): one trainer on the
 * chosen device.  Checkpoints follow train.py: D/<initial_epoch>.h5 before training, then Keras' ModelCheckpoint
 * with save_freq = --save-freq epochs counted from the initial epoch (doc §1, "Checkpoint naming/timing";
 * identical to "epoch % save_freq == 0" when training starts from a checkpoint epoch), plus the final epoch.
 * A NaN/Inf loss stops training before the bad update, so the last checkpoint holds the last good weights.
 * Checkpoints also hold the optimiser state and step (train/checkpoint.h): --resume continues exactly, since the
 * batch draws depend on (seed, step) only.  SIGINT/SIGTERM stop after the current step with a checkpoint.  The
 * person's view: epoch lines, a live line per step on a terminal, D/log.csv and D/loss.png (cli/train_log.c,
 * cli/train_plot.c); volumes are loaded on a background thread (cli/train_prefetch.c). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/train_data.h"
#include "cli/train_log.h"
#include "cli/train_plot.h"
#include "cli/train_prefetch.h"
#include "cli/train_synth.h"
#include "cli/train_check.h"
#include "train/checkpoint.h"
#include "train/train.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vxm train --model-dir D (--img-list LIST [--atlas A] | --pairs LIST) [options]\n"
            "       vxm train --plot D       (draw D/loss.png from D/log.csv, then exit)\n\n"
            "Trains a VxmDense model as VoxelMorph's scripts/tf/train.py: loss = image loss + lambda * Grad('l2',\n"
            "loss_mult = int-downsize) of the pre-integration field (KL with --use-probs; + dice-weight * Dice\n"
            "with --labels); Adam as Keras (beta 0.9/0.999, eps 1e-7).\n"
            "Writes D/%%04d.h5 (VoxelMorph .h5, readable by 'vxm register' and VxmDense.load): the initial epoch\n"
            "before training, then every --save-freq epochs and after the last epoch.  Volumes are used as\n"
            "stored (no intensity scaling: supply [0,1] data); all must share one shape, which must be a multiple\n"
            "of 2^(encoder levels) (no padding in training).  2-D volumes train a 2-D model.\n"
            "Progress: one line per epoch on stderr (and a live line per step when stderr is a terminal);\n"
            "D/log.csv gets one row per step (epoch, step, each weighted loss term, total, seconds).\n"
            "Ctrl-C (SIGINT) or SIGTERM stops after the current step and writes D/<epoch>.h5 (exit 130/143).\n\n"
            "data:\n"
            "  --img-list LIST   one volume per line; each step draws moving and fixed independently and\n"
            "                    uniformly (scan-to-scan), or with --atlas A, moving = a drawn scan, fixed = A\n"
            "  --pairs LIST      one 'moving fixed' pair per line; each step draws one listed pair uniformly\n"
            "                    (lists: whitespace separated, blank lines and lines starting with # skipped)\n"
            "  --img-prefix P, --img-suffix S   file = P + listed name + S (not applied to --atlas)\n"
            "  --batch-size N    pairs per step (default 1)\n"
            "  --multichannel    volumes carry a channel axis (last): src_feats = trg_feats = its size\n"
            "  --labels L        semi-supervised training (train_semisupervised_seg.py): labels (npz 'labels'\n"
            "                    or .npy) one-hot encoded, taken at every second voxel, compared by soft Dice\n"
            "                    with the moving map warped at half resolution; --pairs lines then read\n"
            "                    'moving fixed moving_seg fixed_seg', or with --img-list each scan's map is\n"
            "                    --seg-prefix P + name + --seg-suffix S\n"
            "  --dice-weight X   weight of the Dice term (default 0.01)\n"
            "  --seed S          seeds the draws and a new model's initialisers (default 0); the draws of a\n"
            "                    step depend on (seed, step) only, so --resume continues the same sequence\n"
            "  --cache-mb MB     keep all volumes in memory when they need at most MB (default: half the\n"
            "                    physical memory), else read them from disk for every batch\n"
            "  --no-prefetch     load batches in the training thread (default: a background thread loads\n"
            "                    the next batches while the device computes; the draws are the same)\n\n"
            "model:\n"
            "  --load-weights M.h5   start from this VoxelMorph model (architecture and weights; Adam restarts)\n"
            "  --resume D/NNNN.h5    continue a vxm train checkpoint exactly: architecture, weights, optimizer\n"
            "                    state and step; epochs count on from the checkpoint's (unless --initial-epoch);\n"
            "                    --optimizer and --lr default to the checkpoint's\n"
            "  --enc N...        encoder features of a new model (default 16 32 32 32)\n"
            "  --dec N...        decoder features (default 32 32 32 32 32 16 16)\n"
            "  --int-steps N     scaling-and-squaring steps (default 7; 0 = no integration)\n"
            "  --int-downsize N  integration at 1/N resolution, also Grad's loss_mult (default 2)\n"
            "  --use-probs       probabilistic model (mean and log-variance heads, sampled field): the\n"
            "                    regulariser is KL(--kl-lambda, default 10) weighted by --lambda, as train.py\n"
            "  --bidir           bidirectional: also warp fixed -> moving with the negated field; image losses\n"
            "                    weighted 0.5 and 0.5\n\n"
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
            "  --save-freq N     checkpoint every N epochs (default 20)\n"
            "  --plot-every N    redraw D/loss.png every N epochs (and after the last)\n\n"
            "device and checks:\n"
            "  --device SPEC     cpu | opencl[:P[:D]] | gpu:N | auto (default); --gpu N, --threads N\n"
            "  --save-gradients G.h5   write the gradients of the first step (one dataset per weight)\n"
            "  --check           before training, compute the first batch's gradients on the CPU backend too\n"
            "                    and fail when any weight's relative L2 difference exceeds --tolerance\n"
            "  --tolerance T     for --check (default 1e-3)\n\n"
            "HyperMorph (train_hypermorph.py): --hypermorph trains a HyperVxmDense (a hypernetwork of 6 Dense\n"
            "layers of 128 ReLU units makes every U-Net conv; half-resolution field) for all regularisation\n"
            "weights at once: each sample draws lambda (20 %% 0 or 1, else uniform in [0, 1)) and its loss is\n"
            "(1 - lambda) image loss + lambda Grad; --image-sigma defaults to 0.05, --save-freq to 100 epochs, and\n"
            "no checkpoint is written before training.  Register with 'vxm register --hyper LAMBDA'.\n\n"
            "SynthMorph (train_synthmorph.py): --synthmorph trains on images synthesised on the device from label\n"
            "maps (no intensity data): loss = Dice(fixed map, warped moving map) + Grad('l2', --reg-param 1) of the\n"
            "final displacement; a new model has --enc 64 64 64 64 --dec 64 64 64 64 64 64, --int-steps 5 and a\n"
            "half-resolution field; checkpoints D/%%05d.h5.\n"
            "  --out-labels L    labels compared by Dice (npy/npz 'labels'; those present in the maps)\n"
            "  --same-subj       moving and fixed come from the same label map (default for --shapes)\n"
            "%s",
            synth_options_usage);
}

#define TRAIN_MAX_LABELS 1024

typedef struct train_cli {
    const char *model_dir, *save_gradients, *image_loss, *optimizer, *plot, *labels_file;
    int labels[TRAIN_MAX_LABELS];
    train_data_spec data;
    vxm_train_options opt;
    cli_device_opts dev;
    int epochs, steps, batch, save_freq, initial_epoch, check, have_tolerance, have_arch;
    int have_initial, have_lr, no_prefetch, plot_every, multichannel;
    int have_sigma, have_lambda, have_save_freq; /* --hypermorph's defaults (parse_hypermorph) */
    double tolerance;
    int synthmorph, same_subj, have_feats, have_int_steps, have_synth; /* --synthmorph (cli/train_synth.c) */
    synth_spec synth;
    const char *out_labels;
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

/* --hypermorph: train_hypermorph.py's defaults (training doc §5): image sigma 0.05, ModelCheckpoint(period=100),
 * no initial save; lambda is drawn per sample, so --lambda has no meaning; unidirectional and unsupervised. */
static int parse_hypermorph(train_cli *o)
{
    if (o->synthmorph || o->opt.bidir || o->opt.use_probs || o->labels_file || o->have_lambda)
        return cli_usage_error("train: --hypermorph draws lambda per sample and trains unidirectional, unsupervised "
                               "models: no --lambda, --bidir, --use-probs, --labels or --synthmorph");
    if (!o->have_sigma)
        o->opt.image_sigma = 0.05;
    if (!o->have_save_freq)
        o->save_freq = 100;
    return 0;
}

/* --synthmorph: train_synthmorph.py's defaults for what was not given; no intensity data options. */
static int parse_synthmorph(train_cli *o)
{
    static const int f64[] = {64, 64, 64, 64, 64, 64};
    if (!o->model_dir)
        return cli_usage_error("train: --model-dir is required");
    if (o->data.pairs || o->data.img_list || o->data.atlas || o->labels_file || o->opt.bidir || o->opt.use_probs ||
        o->multichannel || o->check)
        return cli_usage_error("train: --synthmorph synthesises its images from label maps: no --img-list, --pairs, "
                               "--atlas, --labels, --bidir, --use-probs, --multichannel or --check");
    if (o->opt.resume && o->have_arch)
        return cli_usage_error("train: --resume continues %s with its own architecture", o->opt.resume);
    if (!o->have_feats && !o->opt.load_weights && !o->opt.resume) {
        memcpy(o->opt.enc, f64, 4 * sizeof(int));
        o->opt.n_enc = 4;
        memcpy(o->opt.dec, f64, 6 * sizeof(int));
        o->opt.n_dec = 6;
    }
    if (!o->have_int_steps)
        o->opt.int_steps = 5;
    o->opt.synthmorph = 1;
    if (o->synth.shapes)
        o->same_subj = 1;
    o->synth.out_labels = o->out_labels;
    if (o->initial_epoch > o->epochs)
        return cli_usage_error("train: --initial-epoch %d is beyond --epochs %d", o->initial_epoch, o->epochs);
    o->opt.optimizer = o->optimizer && !strcmp(o->optimizer, "sgd") ? VXM_OPT_SGD : VXM_OPT_ADAM;
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
    o->data.cache_mb = -1;
    synth_spec_default(&o->synth);
    const cli_string_opt strings[] = {
        {"--model-dir", &o->model_dir},       {"--pairs", &o->data.pairs},
        {"--img-list", &o->data.img_list},    {"--atlas", &o->data.atlas},
        {"--img-prefix", &o->data.img_prefix}, {"--img-suffix", &o->data.img_suffix},
        {"--load-weights", &o->opt.load_weights}, {"--save-gradients", &o->save_gradients},
        {"--image-loss", &o->image_loss},     {"--optimizer", &o->optimizer},
        {"--resume", &o->opt.resume},         {"--plot", &o->plot},
        {"--labels", &o->labels_file},        {"--seg-prefix", &o->data.seg_prefix},
        {"--seg-suffix", &o->data.seg_suffix}, {"--out-labels", &o->out_labels},
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
        {"--cache-mb", 'd', 0, INFINITY, &o->data.cache_mb},
        {"--plot-every", 'i', 1, 1000000000, &o->plot_every},
        {"--kl-lambda", 'd', 0, INFINITY, &o->opt.kl_lambda},
        {"--dice-weight", 'd', 0, INFINITY, &o->opt.dice_weight},
        {"--reg-param", 'd', 0, INFINITY, &o->opt.reg_param},
    };
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &o->dev, strings, (int)(sizeof strings / sizeof strings[0]), usage)) > 0) {
        int arch = cli_is(&a, "--int-steps") || cli_is(&a, "--int-downsize") || cli_is(&a, "--enc") ||
                   cli_is(&a, "--dec");
        o->have_arch |= arch;
        o->have_feats |= cli_is(&a, "--enc") || cli_is(&a, "--dec");
        o->have_int_steps |= cli_is(&a, "--int-steps");
        o->have_tolerance |= cli_is(&a, "--tolerance");
        o->have_initial |= cli_is(&a, "--initial-epoch");
        o->have_lr |= cli_is(&a, "--lr");
        o->have_sigma |= cli_is(&a, "--image-sigma");
        o->have_lambda |= cli_is(&a, "--lambda");
        o->have_save_freq |= cli_is(&a, "--save-freq");
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
        } else if (cli_is(&a, "--multichannel")) {
            o->multichannel = 1;
        } else if (cli_is(&a, "--no-prefetch")) {
            o->no_prefetch = 1;
        } else if (cli_is(&a, "--bidir")) {
            o->opt.bidir = 1;
        } else if (cli_is(&a, "--use-probs")) {
            o->opt.use_probs = 1;
        } else if (cli_is(&a, "--synthmorph")) {
            o->synthmorph = 1;
        } else if (cli_is(&a, "--hypermorph")) {
            o->opt.hypermorph = 1;
        } else if (cli_is(&a, "--same-subj")) {
            o->same_subj = 1;
        } else {
            int sy = synth_option(&a, &o->synth);
            if (sy < 0)
                return 2;
            if (sy == 0)
                return cli_usage_error("train: unknown option '%s' (see vxm train --help)", a.name);
            o->have_synth = 1;
        }
    }
    if (r)
        return r == CLI_HELP ? -1 : 2;
    o->opt.seed = o->data.seed;
    if (o->plot)
        return 0; /* --plot D: nothing else is needed */
    int hr = o->opt.hypermorph ? parse_hypermorph(o) : 0;
    if (hr)
        return hr;
    if (o->synthmorph)
        return parse_synthmorph(o);
    if (o->have_synth || o->same_subj || o->out_labels)
        return cli_usage_error("train: label-map and synthesis options go with --synthmorph");
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
    if (o->opt.resume && (o->have_arch || o->opt.load_weights))
        return cli_usage_error("train: --resume continues %s with its own architecture and weights: no "
                               "--load-weights/--enc/--dec/--int-steps/--int-downsize", o->opt.resume);
    if ((o->data.seg_prefix || o->data.seg_suffix) && !o->labels_file)
        return cli_usage_error("train: --seg-prefix/--seg-suffix go with --labels (semi-supervised training)");
    if (o->labels_file && o->data.atlas)
        return cli_usage_error("train: semi-supervised training (--labels) pairs scans with scans: no --atlas");
    if (o->labels_file && o->data.img_list && !o->data.seg_prefix && !o->data.seg_suffix)
        return cli_usage_error("train: with --labels and --img-list, --seg-prefix/--seg-suffix name each scan's "
                               "segmentation");
    o->data.semi = o->labels_file != NULL;
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

/* Semi-supervised: a label of --labels that no listed segmentation contains would train an always-empty Dice
 * channel (divide_no_nan gives 0, silently) -- a wrong label file.  Checked on the cached maps (streamed ones
 * are not all read before training).  0, or 1 after the message. */
static int check_labels_present(const train_cli *o, const train_data *d)
{
    if (!d->semi || !d->cached)
        return 0;
    for (int l = 0; l < o->opt.nlabels; l++) {
        int found = 0;
        for (int f = 0; f < d->nfiles && !found; f++) {
            if (!d->is_seg[f])
                continue;
            size_t n = vxm_volume_numel(d->vol[f]);
            for (size_t i = 0; i < n && !found; i++)
                found = d->vol[f]->data[i] == (float)o->opt.labels[l];
        }
        if (!found) {
            fprintf(stderr, "vxm: %s: label %d is in none of the listed segmentations\n", o->labels_file,
                    o->opt.labels[l]);
            return 1;
        }
    }
    return 0;
}

/* As vxm register: a channel axis must be asked for (a 4-D array read by mistake trains a wrong model). */
static int check_channels(const train_cli *o, const train_data *d)
{
    if (d->channels > 1 && !o->multichannel) {
        fprintf(stderr, "vxm: %s: has %d channels; pass --multichannel for multi-channel input\n", d->path[0],
                d->channels);
        return 1;
    }
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

/* Stop requests: the one piece of global mutable state the house rules allow -- set by the SIGINT/SIGTERM
 * handler, read by the training loop after every step. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

/* SA_RESETHAND: a second Ctrl-C ends the process at once (e.g. while the final checkpoint is being written);
 * SA_RESTART: file and device calls of the current step are not interrupted. */
static void catch_stop_signals(struct sigaction old[2])
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old[0]);
    sigaction(SIGTERM, &sa, &old[1]);
}

static void restore_signals(const struct sigaction old[2])
{
    sigaction(SIGINT, &old[0], NULL);
    sigaction(SIGTERM, &old[1], NULL);
}

static int save_checkpoint(vxm_context *ctx, vxm_trainer *t, const train_cli *o, int epoch, char *path, size_t n)
{
    /* train_synthmorph.py names checkpoints {epoch:05d}.h5, train.py %04d */
    snprintf(path, n, o->synthmorph ? "%s/%05d.h5" : "%s/%04d.h5", o->model_dir, epoch);
    if (vxm_trainer_save_checkpoint(t, path, epoch)) {
        train_live_clear();
        return cli_fail(ctx);
    }
    printf("saved %s\n", path);
    fflush(stdout);
    return 0;
}

typedef struct train_run {
    vxm_context *ctx;
    vxm_trainer *t;
    const train_cli *o;
    train_prefetch *pf;
    train_batch *b;           /* the current batch; the first one is taken before training (for --check) */
    train_log *log;
    const char *device;
    train_synth *synth;       /* --synthmorph: batches synthesised on `be` instead of pf */
    vxm_backend *be;
    long next_step;           /* the global step of the next synthetic batch */
    int tty, warned;
    char *ckpt, *last;        /* checkpoint path buffers */
    size_t ckpt_len;
} train_run;

/* The next batch from the prefetcher, its intensity warning printed once; 1 after a message. */
static int next_batch(train_run *r)
{
    if (r->synth) {
        if (train_synth_fill(r->synth, r->be, r->next_step, r->b)) {
            train_live_clear();
            return cli_fail(r->ctx);
        }
        r->next_step++;
        return 0;
    }
    r->b = train_prefetch_next(r->pf);
    if (r->b->warn[0] && !r->warned) {
        train_live_clear();
        fprintf(stderr, "%s\n", r->b->warn);
        r->warned = 1;
    }
    if (r->b->failed) {
        train_live_clear();
        fprintf(stderr, "vxm: %s\n", r->b->err);
        return 1;
    }
    return 0;
}

/* One step; the first one optionally writes the gradients.  Returns 0, or 1 after the message. */
static int train_step(train_run *r, int epoch, int step, int first, vxm_train_losses *L)
{
    vxm_context *ctx = r->ctx;
    const train_cli *o = r->o;
    if (!first && next_batch(r))
        return 1;
    vxm_train_sample *smp = train_batch_samples(r->b);
    if (!smp)
        return 1;
    vxm_status st;
    if (first && o->save_gradients) {
        st = vxm_trainer_compute_gradients_samples(r->t, smp, o->batch, L);
        if (!st && (st = vxm_trainer_save_gradients(r->t, o->save_gradients)) == VXM_OK)
            printf("gradients of the first step: %s\n", o->save_gradients);
        if (!st)
            st = vxm_trainer_apply(r->t);
    } else {
        st = vxm_trainer_step_samples(r->t, smp, o->batch, L);
    }
    free(smp);
    if (st == VXM_OK && !isfinite(L->total))
        st = VXM_ENUMERIC; /* the engine reports non-finite terms itself; this guards the sum */
    if (st)
        train_live_clear();
    if (st == VXM_ENUMERIC) {
        const char *msg = vxm_context_error(ctx);
        fprintf(stderr, "vxm: training stopped at epoch %d step %d: %s; last checkpoint %s\n", epoch, step,
                (msg && *msg) ? msg : "the loss is not finite", r->last[0] ? r->last : "none");
        return 1;
    }
    return st ? cli_fail(ctx) : 0;
}

/* After SIGINT/SIGTERM: the checkpoint of the current epoch (as Keras names it), unless the schedule just wrote
 * it; exit status 128 + signal. */
static int interrupted(train_run *r, int epoch, int step, int saved)
{
    const train_cli *o = r->o;
    int sig = (int)stop_signal;
    train_live_clear();
    if (!saved && save_checkpoint(r->ctx, r->t, o, epoch, r->ckpt, r->ckpt_len))
        return 1;
    char incomplete[96] = "";
    if (step < o->steps)
        snprintf(incomplete, sizeof incomplete, " (epoch %d incomplete: %d of %d steps)", epoch, step, o->steps);
    fprintf(stderr, "vxm: %s: stopped after epoch %d step %d; checkpoint %s%s; continue with --resume %s\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", epoch, step, r->ckpt, incomplete, r->ckpt);
    return 128 + sig;
}

static void add_losses(vxm_train_losses *sum, const vxm_train_losses *L)
{
    sum->n = L->n;
    for (int i = 0; i < L->n; i++) {
        sum->name[i] = L->name[i];
        sum->value[i] += L->value[i];
    }
    sum->total += L->total;
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
            double ts = cli_now_seconds();
            if (train_step(r, e, s, done_steps == 0, &L))
                return 1;
            double now = cli_now_seconds();
            add_losses(&sum, &L);
            done_steps++;
            train_log_row(r->log, e, vxm_trainer_steps_done(r->t), &L, now - ts);
            if (r->tty) {
                double avg = (now - t_start) / (double)done_steps;
                train_live_line(e, o->epochs, s, o->steps, &L, avg, avg * (double)(total_steps - done_steps),
                                r->device);
            }
            if (stop_signal && s < o->steps)
                return interrupted(r, e, s, 0);
        }
        double now = cli_now_seconds(), avg = (now - t_start) / (double)done_steps;
        train_live_clear();
        train_epoch_line(e, o->epochs, &sum, o->steps, (now - t0) / o->steps, avg * (double)(total_steps - done_steps));
        /* Keras' ModelCheckpoint counts batches from the start of fit, i.e. epochs from the initial one */
        int save = (e - o->initial_epoch) % o->save_freq == 0 || e == o->epochs;
        if (save) {
            if (save_checkpoint(r->ctx, r->t, o, e, r->ckpt, r->ckpt_len))
                return 1;
            memcpy(r->last, r->ckpt, r->ckpt_len);
        }
        if (o->plot_every && ((e - o->initial_epoch) % o->plot_every == 0 || e == o->epochs) &&
            train_plot(r->ctx, o->model_dir) == 0) {
            printf("plotted %s/loss.png\n", o->model_dir);
            fflush(stdout);
        }
        if (stop_signal && e < o->epochs)
            return interrupted(r, e, o->steps, save);
    }
    return 0;
}

/* --resume: the checkpoint's epoch (unless --initial-epoch), optimizer and learning rate (unless given).
 * 0, 1 after a one-line error, 2 after a usage error. */
static int resume_options(vxm_context *ctx, train_cli *o)
{
    vxm_checkpoint_info info;
    if (vxm_checkpoint_info_read(ctx, o->opt.resume, &info))
        return cli_fail(ctx);
    if (!o->have_initial)
        o->initial_epoch = info.epoch >= 0 ? (int)info.epoch : 0;
    if (!o->optimizer)
        o->opt.optimizer = strcmp(info.optimizer, "sgd") ? VXM_OPT_ADAM : VXM_OPT_SGD;
    if (!o->have_lr && info.lr > 0)
        o->opt.lr = info.lr;
    if (o->initial_epoch > o->epochs)
        return cli_usage_error("train: %s ends epoch %d, beyond --epochs %d (the final epoch index)",
                               o->opt.resume, o->initial_epoch, o->epochs);
    return 0;
}

/* The whole run after option parsing; returns the exit status. */
static int train(const train_cli *op)
{
    train_cli o = *op;
    int rc = 1;
    vxm_context *ctx = vxm_context_create();
    vxm_backend *be = NULL;
    vxm_trainer *t = NULL;
    train_prefetch *pf = NULL;
    train_log *log = NULL;
    train_data d;
    memset(&d, 0, sizeof d);
    train_synth ts;
    memset(&ts, 0, sizeof ts);
    train_batch sb;
    memset(&sb, 0, sizeof sb);
    char *synth_name[1] = {NULL};
    size_t ckpt_len = (o.model_dir ? strlen(o.model_dir) : 0) + 32;
    char *ckpt = malloc(ckpt_len), *last = calloc(1, ckpt_len);
    if (!ctx || !ckpt || !last) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    if (o.plot) {
        rc = train_plot(ctx, o.plot);
        if (!rc)
            printf("plotted %s/loss.png\n", o.plot);
        goto done;
    }
    /* 1. everything that can be checked without the device: the checkpoint to resume, lists, volumes, the
     * model file, the input-size multiple (a new VxmDense pools once per encoder level, spec §3; checked again
     * with the trainer's own figure below), the directory */
    if (o.opt.resume && (rc = resume_options(ctx, &o)))
        goto done;
    rc = 1;
    if (o.labels_file) {
        if (cli_read_labels(ctx, o.labels_file, o.labels, TRAIN_MAX_LABELS, &o.opt.nlabels))
            goto done;
        o.opt.labels = o.labels;
    }
    int div = 1 << (o.opt.n_enc < 30 ? o.opt.n_enc : 30);
    const char *model_file = o.opt.resume ? o.opt.resume : o.opt.load_weights;
    if (o.synthmorph) {
        /* the label maps (or shapes) stand in for the volumes: shape, one channel per synthesised image */
        if (train_synth_open(ctx, &o.synth, o.batch, o.same_subj, o.data.seed, &ts) || train_batch_init(&sb, o.batch))
            goto done;
        d.ndim = ts.src.ndim;
        memcpy(d.shape, ts.src.shape, sizeof d.shape);
        d.channels = o.synth.syn.nchan;
        d.nitems = ts.src.spec.shapes ? 0 : ts.src.nmaps;
        o.opt.nlabels = ts.src.nout;
        synth_name[0] = (char *)(o.synth.label_maps ? o.synth.label_maps : "--shapes");
        d.path = synth_name; /* for messages */
    } else if (train_data_load(ctx, &o.data, &d)) {
        goto done;
    }
    if ((model_file && check_model_file(ctx, model_file, &div)) || check_divisor(&o, &d, div) ||
        check_labels_present(&o, &d) || check_channels(&o, &d) || make_dir(o.model_dir))
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
    long step0 = vxm_trainer_steps_done(t);
    if (o.synthmorph)
        printf("vxm train --synthmorph: %s (%s, %d labels, Dice over %d) on %s; %d weight tensors; epochs %d..%d "
               "x %d steps, batch %d\n",
               o.synth.shapes ? "random shapes" : o.synth.label_maps, shp, ts.src.nin, ts.src.nout,
               vxm_backend_describe(be), vxm_trainer_num_weights(t), o.initial_epoch + 1, o.epochs, o.steps, o.batch);
    else
        printf("vxm train: %d %s (%d files, %s, %d channel%s) on %s; %d weight tensors; epochs %d..%d x %d steps, "
               "batch %d\n",
               d.nitems, d.mode == TRAIN_PAIRS ? "pairs" : "scans", d.nfiles, shp, d.channels,
               d.channels == 1 ? "" : "s", vxm_backend_describe(be), vxm_trainer_num_weights(t), o.initial_epoch + 1,
               o.epochs, o.steps, o.batch);
    if (o.opt.resume)
        printf("resuming %s: epoch %d, step %ld\n", o.opt.resume, o.initial_epoch, step0);
    fflush(stdout);
    vxm_train_losses names;
    memset(&names, 0, sizeof names);
    if (!o.synthmorph && train_prefetch_start(&d, o.batch, step0, !o.no_prefetch, &pf))
        goto done;
    train_run r = {.ctx = ctx, .t = t, .o = &o, .pf = pf, .b = o.synthmorph ? &sb : NULL, .log = NULL,
                   .device = vxm_backend_describe(be), .synth = o.synthmorph ? &ts : NULL, .be = be,
                   .next_step = step0, .tty = isatty(STDERR_FILENO), .warned = 0, .ckpt = ckpt, .last = last,
                   .ckpt_len = ckpt_len};
    if (next_batch(&r))
        goto done;
    if (o.check && (rc = train_check_gradients(ctx, be, t, &o.opt, o.batch, o.tolerance, &d, r.b)))
        goto done;
    /* 3. the log, the initial checkpoint, then the epochs */
    vxm_trainer_loss_names(t, &names);
    /* train_hypermorph.py saves nothing before training (training doc §5) */
    if (train_log_open(o.model_dir, &names, o.opt.resume ? step0 : -1, &log) ||
        (!o.opt.hypermorph && (rc = save_checkpoint(ctx, t, &o, o.initial_epoch, ckpt, ckpt_len)))) {
        rc = 1;
        goto done;
    }
    if (!o.opt.hypermorph)
        memcpy(last, ckpt, ckpt_len);
    r.log = log;
    struct sigaction old[2];
    catch_stop_signals(old);
    rc = train_loop(&r);
    restore_signals(old);
    if (!rc) { /* what the step needs of the device (issue 10): weights, gradients, Adam moments, activations */
        int mb = be->mem_peak >= (1u << 20);
        printf("device memory: at most %.1f %s of buffers on %s\n", be->mem_peak / (mb ? 1048576.0 : 1024.0),
               mb ? "MB" : "KB", be->spec);
    }
done:
    train_log_close(log);
    train_prefetch_stop(pf);
    free(ckpt);
    free(last);
    vxm_trainer_free(t);
    train_synth_close(&ts); /* device tensors: before the backend */
    vxm_backend_close(be);
    if (o.synthmorph)
        d.path = NULL; /* borrowed for messages */
    train_data_free(&d);
    train_batch_free(&sb);
    vxm_context_free(ctx);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    train_cli o;
    int rc = parse(argc, argv, &o);
    return rc ? (rc < 0 ? 0 : rc) : train(&o);
}

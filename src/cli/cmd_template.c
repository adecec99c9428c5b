/* vxm template: unconditional deformable template creation like VoxelMorph's scripts/tf/train_template.py
 * (TemplateCreation; training doc §4.1).  The engine is src/train/template.h (trainable atlas with gradient from
 * the warped atlas and the U-Net input, MeanStream on the inverse field, the script's four losses, Adam).
 *
 * Data: --img-list, one scan drawn uniformly per step from (seed, step) (cli/train_data.c, as vxm train), so
 * --resume continues exactly.  Initial atlas: --atlas-init, else the mean of the first <= 100 listed scans (file
 * order, as the script).  Checkpoints D/%04d.h5 (initial epoch first, then every --save-freq epochs and the last),
 * readable by `vxm register` (the atlas is the moving image) and Python's TemplateCreation; D/template.nii.gz =
 * the atlas with the first scan's header, written at the end (and after an interruption).  The per-step log is
 * D/log.csv (cli/train_log.c).  SIGINT/SIGTERM stop after the current step with a checkpoint.
 *
 * --pheno CSV: conditional templates (ConditionalTemplateCreation / train_cond_template.py, training doc §4.2;
 * train/template_cond.h): one row of attributes per listed image; the initial atlas becomes the fixed atlas input
 * (written as D/atlas_input.nii.gz, which `vxm template-generate` adds the generated image to), and
 * D/template.nii.gz is the template for the mean attributes. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/pheno_csv.h"
#include "cli/train_data.h"
#include "cli/train_log.h"
#include "train/checkpoint.h"
#include "train/template.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vxm template --img-list LIST --model-dir D [options]\n\n"
            "Builds a deformable template as VoxelMorph's scripts/tf/train_template.py (TemplateCreation): a\n"
            "trainable atlas registered to one drawn scan per step by a bidirectional VxmDense; loss =\n"
            "w * image(scan, warped atlas) + (1 - w) * image(atlas, scan warped back) + mean-loss-weight *\n"
            "MSE(0, MeanStream(cap 100) of the inverse field) + grad-loss-weight * Grad('l2', x2) of the field.\n"
            "Writes D/%%04d.h5 (TemplateCreation .h5: 'vxm register --model D/NNNN.h5 --moving D/template.nii.gz'\n"
            "registers the template to a scan) and D/template.nii.gz (the atlas, first scan's header), D/log.csv.\n\n"
            "  --img-list LIST        one scan per line (--img-prefix P, --img-suffix S: file = P + name + S)\n"
            "  --model-dir D          output directory (created)\n"
            "  --atlas-init A         initial atlas (alias --init-template; default: mean of the first <= 100\n"
            "                         listed scans)\n"
            "  --pheno CSV            conditional template (train_cond_template.py): one row of numeric\n"
            "                         attributes per listed scan (optional header row); the initial atlas is\n"
            "                         then the fixed atlas input (D/atlas_input.nii.gz), a generator adds the\n"
            "                         attributes' image; D/template.nii.gz = template of the mean attributes;\n"
            "                         'vxm template-generate' makes others\n"
            "  --deform-loss-weight X weight of MSE(0, field) with --pheno (default 0.01)\n"
            "  --image-loss ncc|mse   (default ncc)        --image-loss-weight w   (default 1, in [0, 1])\n"
            "  --grad-loss-weight X   (default 1)          --mean-loss-weight X    (default 1)\n"
            "  --meanstream streaming|graph   streaming: the documented running mean (default); graph: what\n"
            "                         train_template.py computes under TF graph mode (the mean never updates)\n"
            "  --epochs N (1500)  --steps-per-epoch N (100)  --save-freq N (20 epochs)  --lr X (1e-4)\n"
            "  --enc F...  --dec F...  --int-steps N (7)  --int-downsize N (2)   architecture of a new model\n"
            "  --seed S               seeds the draws and the initialisers (default 0)\n"
            "  --load-weights F       start from F's weights (a VxmDense or TemplateCreation .h5; its atlas,\n"
            "                         if any, replaces the initial one)\n"
            "  --resume D/NNNN.h5     continue a vxm template run exactly (weights, atlas, MeanStream, Adam)\n"
            "  --device SPEC, --gpu N, --threads N\n"
            "Ctrl-C (SIGINT) or SIGTERM stops after the current step, writes D/<epoch>.h5 and the template.\n");
}

typedef struct tpl_cli {
    const char *model_dir, *atlas_init, *image_loss, *meanstream, *pheno;
    float *attrs; /* --pheno: attributes of every data file (nfiles x npheno) */
    train_data_spec data;
    vxm_template_options opt;
    cli_device_opts dev;
    int epochs, steps, save_freq, initial_epoch, have_lr;
} tpl_cli;

static int parse_feats(cli_args *a, int *feats, int *n)
{
    const char *v[VXM_MAX_FEATS];
    int cnt = cli_values(a, v, VXM_MAX_FEATS);
    for (int i = 0; i < cnt; i++)
        if (cli_parse_int(a->name, v[i], 1, 65536, &feats[i]))
            return -1;
    *n = cnt > 0 ? cnt : 0;
    return cnt > 0 ? 0 : -1;
}

/* One numeric option of the command: 1 consumed, 0 not one, -1 bad value. */
static int numeric(cli_args *a, tpl_cli *o)
{
    static const char *const ints[] = {"--epochs", "--steps-per-epoch", "--save-freq", "--int-steps",
                                       "--int-downsize"};
    int *const iv[] = {&o->epochs, &o->steps, &o->save_freq, &o->opt.train.int_steps, &o->opt.train.int_downsize};
    static const char *const dbls[] = {"--lr", "--image-loss-weight", "--grad-loss-weight", "--mean-loss-weight",
                                       "--deform-loss-weight"};
    double *const dv[] = {&o->opt.train.lr, &o->opt.image_weight, &o->opt.grad_weight, &o->opt.mean_weight,
                          &o->opt.deform_weight};
    static const double hi[] = {1e6, 1, 1e12, 1e12, 1e12};
    for (int i = 0; i < 5; i++)
        if (cli_is(a, ints[i])) {
            const char *v = cli_value(a);
            return v && !cli_parse_int(ints[i], v, i == 1 || i == 2 ? 1 : 0, 1000000000, iv[i]) ? 1 : -1;
        }
    for (int i = 0; i < 5; i++)
        if (cli_is(a, dbls[i])) {
            const char *v = cli_value(a);
            o->have_lr |= i == 0;
            return v && !cli_parse_double(dbls[i], v, i == 0 ? 1e-30 : 0, hi[i], dv[i]) ? 1 : -1;
        }
    return 0;
}

/* 0: run; 1: exit 0 (help); 2: usage error. */
static int parse(int argc, char **argv, tpl_cli *o)
{
    memset(o, 0, sizeof *o);
    vxm_template_options_default(&o->opt);
    o->epochs = 1500;  /* train_template.py --epochs */
    o->steps = 100;    /* --steps-per-epoch */
    o->save_freq = 20; /* ModelCheckpoint(period=20) */
    o->data.cache_mb = -1;
    const char *seed = NULL;
    const cli_string_opt strs[] = {
        {"--img-list", &o->data.img_list}, {"--img-prefix", &o->data.img_prefix},
        {"--img-suffix", &o->data.img_suffix}, {"--model-dir", &o->model_dir}, {"--atlas-init", &o->atlas_init},
        {"--init-template", &o->atlas_init}, {"--image-loss", &o->image_loss}, {"--meanstream", &o->meanstream},
        {"--load-weights", &o->opt.train.load_weights}, {"--resume", &o->opt.train.resume}, {"--seed", &seed},
        {"--pheno", &o->pheno}};
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &o->dev, strs, (int)(sizeof strs / sizeof strs[0]), usage)) == 1) {
        int c = numeric(&a, o);
        if (c == 0 && cli_is(&a, "--enc"))
            c = parse_feats(&a, o->opt.train.enc, &o->opt.train.n_enc) ? -1 : 1;
        else if (c == 0 && cli_is(&a, "--dec"))
            c = parse_feats(&a, o->opt.train.dec, &o->opt.train.n_dec) ? -1 : 1;
        if (c == 0)
            return cli_usage_error("template: unknown option %s (see vxm template --help)", a.name);
        if (c < 0)
            return 2;
    }
    if (r == CLI_HELP)
        return 1;
    if (r < 0)
        return 2;
    if (seed && cli_parse_u64("--seed", seed, &o->data.seed))
        return 2;
    o->opt.train.seed = o->data.seed;
    if (!o->data.img_list || !o->model_dir)
        return cli_usage_error("template: --img-list and --model-dir are required (see vxm template --help)");
    if (o->opt.train.resume && o->opt.train.load_weights)
        return cli_usage_error("template: --resume and --load-weights exclude each other");
    if (o->image_loss && strcmp(o->image_loss, "ncc") && strcmp(o->image_loss, "mse"))
        return cli_usage_error("template: --image-loss must be ncc or mse, not '%s'", o->image_loss);
    if (o->meanstream && strcmp(o->meanstream, "streaming") && strcmp(o->meanstream, "graph"))
        return cli_usage_error("template: --meanstream must be streaming or graph, not '%s'", o->meanstream);
    if (o->image_loss)
        o->opt.train.image_loss = strcmp(o->image_loss, "ncc") ? VXM_LOSS_MSE : VXM_LOSS_NCC;
    if (o->meanstream)
        o->opt.meanstream = strcmp(o->meanstream, "graph") ? VXM_MEANSTREAM_STREAMING : VXM_MEANSTREAM_GRAPH;
    return 0;
}

/* --resume: epoch, learning rate (unless --lr) and MeanStream mode of the checkpoint (a different --meanstream is
 * an error: the stream state would not mean the same).  0, 1 after an error line, 2 after a usage error. */
static int resume_options(vxm_context *ctx, tpl_cli *o)
{
    vxm_checkpoint_info info;
    vxm_meanstream_mode mode = o->opt.meanstream;
    if (vxm_checkpoint_info_read(ctx, o->opt.train.resume, &info) ||
        vxm_template_checkpoint_meanstream(ctx, o->opt.train.resume, &mode))
        return cli_fail(ctx);
    if (o->meanstream && mode != o->opt.meanstream)
        return cli_usage_error("template: %s was trained with --meanstream %s", o->opt.train.resume,
                               mode == VXM_MEANSTREAM_GRAPH ? "graph" : "streaming");
    o->opt.meanstream = mode;
    o->initial_epoch = info.epoch >= 0 ? (int)info.epoch : 0;
    if (!o->have_lr && info.lr > 0)
        o->opt.train.lr = info.lr;
    if (o->initial_epoch > o->epochs)
        return cli_usage_error("template: %s ends epoch %d, beyond --epochs %d", o->opt.train.resume,
                               o->initial_epoch, o->epochs);
    return 0;
}

/* The initial atlas: --atlas-init (same shape as the scans), else the mean of the first <= 100 listed scans in
 * list order (train_template.py).  *first receives the first scan (its header goes to template.nii.gz).  0, or 1
 * after an error line. */
static int initial_atlas(vxm_context *ctx, const tpl_cli *o, const train_data *d, float **atlas, vxm_volume **first)
{
    size_t n = (size_t)d->shape[0] * (size_t)d->shape[1] * (size_t)d->shape[2];
    double *acc = calloc(n, sizeof *acc);
    *atlas = malloc(n * sizeof(float));
    int count = d->nitems < 100 ? d->nitems : 100, rc = 0;
    if (!acc || !*atlas) {
        fprintf(stderr, "vxm: out of memory\n");
        rc = 1;
    }
    for (int i = 0; i < (o->atlas_init ? 1 : count) && !rc; i++) {
        vxm_volume *v = NULL;
        if (vxm_volume_read(ctx, d->path[d->mov[i]], NULL, &v)) {
            rc = cli_fail(ctx);
            break;
        }
        for (size_t k = 0; k < n; k++)
            acc[k] += v->data[k];
        if (i == 0)
            *first = v;
        else
            vxm_volume_free(v);
    }
    for (size_t k = 0; k < n && !rc; k++)
        (*atlas)[k] = (float)(acc[k] / count);
    if (!rc && o->atlas_init) {
        vxm_volume *a = NULL;
        if (vxm_volume_read(ctx, o->atlas_init, NULL, &a))
            rc = cli_fail(ctx);
        else if (a->ndim != d->ndim || memcmp(a->shape, d->shape, sizeof a->shape) || a->channels != 1) {
            fprintf(stderr, "vxm: %s: the initial atlas must have the scans' shape and one channel\n", o->atlas_init);
            rc = 1;
        } else {
            memcpy(*atlas, a->data, n * sizeof(float));
        }
        vxm_volume_free(a);
    }
    free(acc);
    return rc;
}

/* --pheno: the CSV's rows (list order) as attributes per data file; a file listed twice must have one row
 * of attributes.  0, or 1 after one error line. */
static int load_attributes(tpl_cli *o, const train_data *d)
{
    float *rows = NULL;
    int P = 0;
    if (pheno_csv_read(o->pheno, d->nitems, &rows, &P))
        return 1;
    int rc = P > 1024 ? (fprintf(stderr, "vxm: %s: %d attributes (at most 1024)\n", o->pheno, P), 1) : 0;
    char *set = rc ? NULL : calloc((size_t)d->nfiles, 1);
    if (!rc && (!set || !(o->attrs = calloc((size_t)d->nfiles * (size_t)P, sizeof(float))))) {
        fprintf(stderr, "vxm: out of memory\n");
        rc = 1;
    }
    for (int i = 0; i < d->nitems && !rc; i++) {
        float *dst = o->attrs + (size_t)d->mov[i] * (size_t)P, *src = rows + (size_t)i * (size_t)P;
        if (set[d->mov[i]] && memcmp(dst, src, sizeof(float) * (size_t)P)) {
            fprintf(stderr, "vxm: %s: data row %d gives %s other attributes than an earlier row\n", o->pheno, i + 1,
                    d->path[d->mov[i]]);
            rc = 1;
        }
        memcpy(dst, src, sizeof(float) * (size_t)P);
        set[d->mov[i]] = 1;
    }
    o->opt.npheno = P;
    free(set);
    free(rows);
    return rc;
}

static int make_dir(const char *dir)
{
    struct stat sb;
    if (mkdir(dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "vxm: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "vxm: %s: %s\n", dir, strerror(ENOTDIR));
        return 1;
    }
    return 0;
}

/* Stop requests: set by the SIGINT/SIGTERM handler, read after every step (the one kind of global mutable state
 * the house rules allow, as in vxm train). */
static volatile sig_atomic_t tpl_stop;

static void on_signal(int sig)
{
    tpl_stop = sig;
}

typedef struct tpl_run {
    vxm_context *ctx;
    vxm_template *t;
    const tpl_cli *o;
    const train_data *d;
    const vxm_volume *first;
    train_batch b;
    train_log *log;
    char *path;
    size_t path_len;
} tpl_run;

static int save(tpl_run *r, int epoch)
{
    snprintf(r->path, r->path_len, "%s/%04d.h5", r->o->model_dir, epoch);
    if (vxm_template_save(r->t, r->path, epoch))
        return cli_fail(r->ctx);
    printf("saved %s\n", r->path);
    fflush(stdout);
    return 0;
}

/* The atlas: the trainable one, or (--pheno) the template generated for the mean attributes over the files. */
static vxm_status current_atlas(tpl_run *r, float *out)
{
    const tpl_cli *o = r->o;
    int P = o->opt.npheno;
    if (!P)
        return vxm_template_read_atlas(r->t, out);
    float mean[1024];
    for (int k = 0; k < P; k++) {
        double s = 0;
        for (int i = 0; i < r->d->nitems; i++)
            s += o->attrs[(size_t)r->d->mov[i] * (size_t)P + (size_t)k];
        mean[k] = (float)(s / r->d->nitems);
    }
    return vxm_template_generate(r->t, mean, out);
}

/* D/<name>: an atlas with the first scan's header (temp + rename in vxm_volume_write); data NULL: the current
 * atlas. */
static int write_volume(tpl_run *r, const char *name, const float *data)
{
    const train_data *d = r->d;
    vxm_volume *v = vxm_volume_new(d->ndim, d->shape, 1);
    snprintf(r->path, r->path_len, "%s/%s", r->o->model_dir, name);
    int rc = !v ? (fprintf(stderr, "vxm: out of memory\n"), 1) : 0;
    if (!rc && data)
        memcpy(v->data, data, vxm_volume_numel(v) * sizeof(float));
    if (!rc && ((!data && current_atlas(r, v->data)) || vxm_volume_write(r->ctx, r->path, v, r->first)))
        rc = cli_fail(r->ctx);
    if (!rc)
        printf("wrote %s\n", r->path);
    vxm_volume_free(v);
    return rc;
}

static int write_template(tpl_run *r)
{
    return write_volume(r, "template.nii.gz", NULL);
}

static int step(tpl_run *r, int epoch, int s, vxm_train_losses *L)
{
    long gstep = vxm_template_steps_done(r->t);
    if (train_batch_fill(r->d, r->ctx, gstep, &r->b)) {
        fprintf(stderr, "vxm: %s\n", r->b.err);
        return 1;
    }
    double t0 = cli_now_seconds();
    int P = r->o->opt.npheno;
    vxm_status st = P ? vxm_template_set_attributes(r->t, r->o->attrs + (size_t)r->b.mov_file[0] * (size_t)P)
                      : VXM_OK;
    if (!st)
        st = vxm_template_step(r->t, r->b.mov[0], L);
    if (st == VXM_ENUMERIC) {
        fprintf(stderr, "vxm: template stopped at epoch %d step %d: %s; last checkpoint %s\n", epoch, s,
                vxm_context_error(r->ctx), r->path);
        return 1;
    }
    if (st)
        return cli_fail(r->ctx);
    train_log_row(r->log, epoch, gstep + 1, L, cli_now_seconds() - t0);
    return 0;
}

static int loop(tpl_run *r)
{
    const tpl_cli *o = r->o;
    double start = cli_now_seconds();
    long done = 0, total = (long)(o->epochs - o->initial_epoch) * o->steps;
    for (int e = o->initial_epoch + 1; e <= o->epochs; e++) {
        vxm_train_losses sum, L;
        memset(&sum, 0, sizeof sum);
        double t0 = cli_now_seconds();
        for (int s = 1; s <= o->steps; s++, done++) {
            if (step(r, e, s, &L))
                return 1;
            sum.n = L.n;
            for (int i = 0; i < L.n; i++) {
                sum.name[i] = L.name[i];
                sum.value[i] += L.value[i];
            }
            sum.total += L.total;
            if (tpl_stop && (s < o->steps || e < o->epochs)) {
                int sig = (int)tpl_stop;
                if (save(r, e) || write_template(r))
                    return 1;
                fprintf(stderr, "vxm: %s: stopped after epoch %d step %d; continue with --resume %s/%04d.h5\n",
                        sig == SIGTERM ? "SIGTERM" : "SIGINT", e, s, o->model_dir, e);
                return 128 + sig;
            }
        }
        double now = cli_now_seconds(), avg = (now - start) / (double)(done + 1);
        train_epoch_line(e, o->epochs, &sum, o->steps, (now - t0) / o->steps, avg * (double)(total - done - 1));
        if (((e - o->initial_epoch) % o->save_freq == 0 || e == o->epochs) && save(r, e))
            return 1;
    }
    return write_template(r);
}

static int run(tpl_cli *o)
{
    int rc = 1;
    vxm_context *ctx = vxm_context_create();
    vxm_backend *be = NULL;
    train_data d;
    memset(&d, 0, sizeof d);
    tpl_run r;
    memset(&r, 0, sizeof r);
    float *atlas = NULL;
    vxm_volume *first = NULL;
    r.path_len = strlen(o->model_dir) + 32;
    r.path = calloc(1, r.path_len);
    if (!ctx || !r.path || train_batch_init(&r.b, 1)) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    if (o->opt.train.resume && (rc = resume_options(ctx, o)))
        goto done;
    rc = 1;
    if (train_data_load(ctx, &o->data, &d) || initial_atlas(ctx, o, &d, &atlas, &first))
        goto done;
    if (d.channels != 1) {
        fprintf(stderr, "vxm: %s: template creation needs single-channel scans (found %d channels)\n", d.path[0],
                d.channels);
        goto done;
    }
    if ((o->pheno && load_attributes(o, &d)) || make_dir(o->model_dir))
        goto done;
    o->opt.atlas_init = atlas;
    if (cli_open_backend(ctx, &o->dev, &be) || vxm_template_create(ctx, be, &o->opt, d.ndim, d.shape, &r.t)) {
        rc = cli_fail(ctx);
        goto done;
    }
    int div = vxm_trainer_divisor(vxm_template_trainer(r.t));
    for (int k = 3 - d.ndim; k < 3; k++)
        if (d.shape[k] % div) {
            fprintf(stderr, "vxm: %s: every size must be a multiple of %d for this model\n", d.path[0], div);
            goto done;
        }
    char shp[64];
    train_data_shape_str(d.ndim, d.shape, shp, sizeof shp);
    long step0 = vxm_template_steps_done(r.t);
    printf("vxm template: %d scans (%s) on %s; MeanStream %s; epochs %d..%d x %d steps\n", d.nitems, shp,
           vxm_backend_describe(be), o->opt.meanstream == VXM_MEANSTREAM_GRAPH ? "graph" : "streaming",
           o->initial_epoch + 1, o->epochs, o->steps);
    if (o->opt.npheno)
        printf("conditional template: %d attributes per scan (%s)\n", o->opt.npheno, o->pheno);
    if (o->opt.train.resume)
        printf("resuming %s: epoch %d, step %ld\n", o->opt.train.resume, o->initial_epoch, step0);
    fflush(stdout);
    vxm_train_losses names;
    vxm_trainer_loss_names(vxm_template_trainer(r.t), &names);
    r.ctx = ctx;
    r.o = o;
    r.d = &d;
    r.first = first;
    /* --pheno: the fixed atlas input, which generated templates are relative to (template-generate reads it) */
    if (o->opt.npheno && write_volume(&r, "atlas_input.nii.gz", atlas))
        goto done;
    if (train_log_open(o->model_dir, &names, o->opt.train.resume ? step0 : -1, &r.log) || save(&r, o->initial_epoch))
        goto done;
    struct sigaction sa, old[2];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART; /* a second Ctrl-C ends the process at once */
    tpl_stop = 0;
    sigaction(SIGINT, &sa, &old[0]);
    sigaction(SIGTERM, &sa, &old[1]);
    rc = loop(&r);
    sigaction(SIGINT, &old[0], NULL);
    sigaction(SIGTERM, &old[1], NULL);
done:
    train_log_close(r.log);
    train_batch_free(&r.b);
    vxm_template_free(r.t);
    vxm_backend_close(be);
    vxm_volume_free(first);
    free(atlas);
    free(o->attrs);
    free(r.path);
    train_data_free(&d);
    vxm_context_free(ctx);
    return rc;
}

int cmd_template(int argc, char **argv)
{
    tpl_cli o;
    int rc = parse(argc, argv, &o);
    return rc ? (rc == 1 ? 0 : rc) : run(&o);
}

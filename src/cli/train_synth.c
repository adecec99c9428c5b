/* SynthMorph's batches (training doc §6.2): each step draws 2B label maps with replacement (or B, used twice, with
 * --same-subj; shapes draw new random maps), flips all of them along the same random axes, and synthesises
 * moving = maps[:B], fixed = maps[B:] with independent random streams (neurite's two generator models). */
#include "cli/train_synth.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

int train_synth_open(vxm_context *ctx, const synth_spec *spec, int batch, int same_subj, unsigned long long seed,
                     train_synth *ts)
{
    memset(ts, 0, sizeof *ts);
    if (synth_source_open(ctx, spec, &ts->src))
        return 1;
    ts->batch = batch;
    ts->same_subj = same_subj;
    ts->seed = seed;
    return 0;
}

void train_synth_close(train_synth *ts)
{
    synth_source_close(&ts->src);
    for (int k = 0; ts->dev && k < 4 * ts->batch; k++)
        vxm_tensor_release(ts->be, &ts->dev[k]);
    free(ts->dev);
    free(ts->devp);
    ts->dev = NULL;
    ts->devp = NULL;
}

/* The batch's device tensors, once: the synthesised pairs stay on the training device (no host round trip of
 * 2 x (nchan + nlabels) volumes per sample and step). */
static vxm_status alloc_dev(train_synth *ts, vxm_backend *be)
{
    if (ts->dev)
        return ts->be == be ? VXM_OK : vxm_error(be->ctx, VXM_EINVAL, "train", "synthetic batch on another device");
    const synth_source *s = &ts->src;
    size_t n = 4 * (size_t)ts->batch;
    ts->be = be;
    ts->dev = calloc(n, sizeof *ts->dev);
    ts->devp = calloc(n, sizeof *ts->devp);
    if (!ts->dev || !ts->devp)
        return vxm_error(be->ctx, VXM_ENOMEM, "train", "out of memory");
    vxm_status st = VXM_OK;
    for (size_t k = 0; k < n && !st; k++) {
        ts->devp[k] = &ts->dev[k];
        st = vxm_tensor_alloc(be, s->shape, k % 4 < 2 ? s->spec.syn.nchan : s->nout, &ts->dev[k]);
    }
    return st;
}

vxm_status train_synth_fill(train_synth *ts, vxm_backend *be, long step, train_batch *b)
{
    const synth_source *s = &ts->src;
    int B = ts->batch;
    unsigned long long rs = ts->seed * 0x9E3779B97F4A7C15ULL ^ ((unsigned long long)step + 0x5EEDULL);
    int maps[2 * 64], flip[3] = {0, 0, 0};
    if (B > 64)
        return vxm_error(be->ctx, VXM_EINVAL, "train", "batch size %d (at most 64)", B);
    /* rand.integers(len(maps), size=2B); same_subj: x[:B] * 2 */
    for (int i = 0; i < 2 * B; i++) {
        unsigned long long r = vxm_rng_next(&rs);
        maps[i] = s->spec.shapes ? (int)(step * 2 * B + i) : (int)(r % (unsigned long long)s->nmaps);
    }
    if (ts->same_subj)
        for (int i = 0; i < B; i++)
            maps[B + i] = maps[i];
    /* axes = rand.choice(ndims, size=rand.integers(ndims + 1), replace=False): each subset size equally likely */
    if (!s->spec.shapes) {
        int k = (int)(vxm_rng_next(&rs) % (unsigned long long)(s->ndim + 1)), axes[3] = {0, 1, 2};
        for (int i = 0; i < k; i++) {
            int j = i + (int)(vxm_rng_next(&rs) % (unsigned long long)(s->ndim - i)), t = axes[i];
            axes[i] = axes[j];
            axes[j] = t;
            flip[3 - s->ndim + axes[i]] = 1;
        }
    }
    vxm_status st = alloc_dev(ts, be);
    b->step = step;
    b->n = B;
    b->dev = ts->devp;
    for (int i = 0; i < B && !st; i++) {
        vxm_tensor *d = &ts->dev[4 * i]; /* moving, fixed, moving one-hot, fixed one-hot */
        /* one stream per synthesised image; the blur widths are shared by the step */
        unsigned long long sm = ((unsigned long long)step * 64 + (unsigned long long)i) * 2;
        unsigned long long step_stream = (unsigned long long)step;
        st = synth_source_draw_device(&ts->src, be, maps[i], flip, ts->seed, sm, step_stream, &d[0], &d[2]);
        if (!st)
            st = synth_source_draw_device(&ts->src, be, maps[B + i], flip, ts->seed, sm + 1, step_stream, &d[1],
                                          &d[3]);
        b->mov[i] = b->fix[i] = b->mov_seg[i] = b->fix_seg[i] = NULL;
    }
    return st;
}

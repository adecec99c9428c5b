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
    ts->nvox = (size_t)ts->src.shape[0] * ts->src.shape[1] * ts->src.shape[2];
    size_t per = ts->nvox * (size_t)(2 * spec->syn.nchan + 2 * ts->src.nout);
    ts->buf = malloc(per * sizeof(float) * (size_t)batch);
    if (!ts->buf) {
        fprintf(stderr, "vxm: out of memory (%zu MB for the synthetic batch)\n",
                (per * sizeof(float) * (size_t)batch) >> 20);
        synth_source_close(&ts->src);
        return 1;
    }
    return 0;
}

void train_synth_close(train_synth *ts)
{
    synth_source_close(&ts->src);
    free(ts->buf);
    ts->buf = NULL;
}

vxm_status train_synth_fill(train_synth *ts, vxm_backend *be, long step, train_batch *b)
{
    const synth_source *s = &ts->src;
    int B = ts->batch, nchan = s->spec.syn.nchan;
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
    size_t per = ts->nvox * (size_t)(2 * nchan + 2 * s->nout);
    vxm_status st = VXM_OK;
    b->step = step;
    b->n = B;
    for (int i = 0; i < B && !st; i++) {
        float *base = ts->buf + per * (size_t)i;
        float *mov = base, *fix = base + ts->nvox * (size_t)nchan;
        float *mhot = fix + ts->nvox * (size_t)nchan, *fhot = mhot + ts->nvox * (size_t)s->nout;
        /* one stream per synthesised image; the blur widths are shared by the step */
        unsigned long long sm = ((unsigned long long)step * 64 + (unsigned long long)i) * 2;
        unsigned long long step_stream = (unsigned long long)step;
        st = synth_source_draw(&ts->src, be, maps[i], flip, ts->seed, sm, step_stream, mov, mhot, NULL);
        if (!st)
            st = synth_source_draw(&ts->src, be, maps[B + i], flip, ts->seed, sm + 1, step_stream, fix, fhot, NULL);
        b->mov[i] = mov;
        b->fix[i] = fix;
        b->mov_seg[i] = mhot;
        b->fix_seg[i] = fhot;
    }
    return st;
}

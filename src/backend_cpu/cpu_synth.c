/* Synthesis ops (SynthMorph's label-map-to-image model, training doc §6.3) and the element-wise ops declared with
 * them in backend.h: counter-based random fills, per-label intensities, 1-D blur, bias field, min/max, normalise +
 * gamma, argmax, one-hot, ELU (templates, §4.2) and blend.  Every output element is computed by one thread from its
 * inputs only (random numbers too: core/counter_rng.h makes element i a function of (key, i)), so the results are
 * identical for any thread count and equal those of cl/synth.cl. */
#include <math.h>

#include "backend_cpu/cpu_internal.h"
#include "core/counter_rng.h"
#include "core/synth_args.h"

static size_t nvox_of(const vxm_tensor *t)
{
    return (size_t)t->shape[0] * (size_t)t->shape[1] * (size_t)t->shape[2];
}

/* t valid, of ref's spatial shape (ref already checked), with `channels` channels (0: as many as ref). */
static vxm_status check_like(vxm_backend *be, const char *op, const vxm_tensor *ref, const vxm_tensor *t,
                             const char *what, int channels)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, t, op, what)) || (st = cpu_check_same(be, ref, t, 0, op, "input", what)))
        return st;
    int want = channels ? channels : ref->channels;
    if (t->channels != want)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %s has %d channels, expected %d", op, what, t->channels,
                         want);
    return VXM_OK;
}

/* x valid; the output y like x with cy channels (0: x's); the second input z (optional) like x with cz channels. */
static vxm_status check_io(vxm_backend *be, const char *op, const vxm_tensor *x, const vxm_tensor *y, int cy,
                           const vxm_tensor *z, int cz)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "input")) || (st = check_like(be, op, x, y, "output", cy)) ||
        (z && (st = check_like(be, op, x, z, "second input", cz))))
        return st;
    return VXM_OK;
}

/* Uniform: a + (b - a) u, u in [0, 1) exact; the float rounding of the product and sum can reach b, so the top is
 * moved down one ulp to keep the documented [a, b). */
vxm_status cpu_rand_fill(vxm_backend *be, vxm_buffer *p, size_t n, unsigned long long seed, unsigned long long stream,
                         int dist, float a, float b)
{
    vxm_status st;
    if ((st = vxm_synth_check_dist(be, dist)))
        return st;
    if (!p || p->n < n)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "rand_fill: %zu floats into a buffer of %zu", n,
                         p ? p->n : 0);
    const unsigned long long key = vxm_counter_key(seed, stream);
    const float w = b - a, top = b > a ? nextafterf(b, a) : b;
    float *d = p->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++) {
        if (dist == 0) {
            float r = a + w * vxm_counter_uniform(key, (unsigned long long)i);
            d[i] = r > top ? top : r;
        } else {
            d[i] = a + b * vxm_counter_normal(key, (unsigned long long)i);
        }
    }
    return VXM_OK;
}

/* §6.3 steps 5-6: one normal draw per voxel shared by all channels. */
vxm_status cpu_labels_to_intensity(vxm_backend *be, const vxm_tensor *lab, int nlab, const float *mean,
                                   const float *std, const int *blank, unsigned long long seed,
                                   unsigned long long stream, vxm_tensor *y)
{
    static const char op[] = "labels_to_intensity";
    vxm_status st;
    if ((st = cpu_check_tensor(be, y, op, "output")) || (st = check_like(be, op, y, lab, "label map", 1)) ||
        (st = vxm_synth_check_tables(be, op, nlab, mean, std, blank)))
        return st;
    const unsigned long long key = vxm_counter_key(seed, stream);
    const size_t nvox = nvox_of(y), C = (size_t)y->channels;
    const float *l = lab->buf->data;
    float *out = y->buf->data;
    long cnt = (long)nvox;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * C >= CPU_PAR_MIN)
    for (long v = 0; v < cnt; v++) {
        int li = vxm_synth_label(l[v], nlab);
        float g = vxm_counter_normal(key, (unsigned long long)v);
        for (size_t c = 0; c < C; c++) {
            size_t t = c * (size_t)nlab + (size_t)li;
            out[(size_t)v * C + c] = (li < 0 || (li == 0 && blank[c])) ? 0.0f : mean[t] + std[t] * g;
        }
    }
    return VXM_OK;
}

/* §6.3 step 7: taps summed in order t = 0..ntaps-1, terms outside the volume skipped (zero padding). */
vxm_status cpu_conv_axis(vxm_backend *be, const vxm_tensor *x, int axis, const float *taps, int ntaps, vxm_tensor *y)
{
    static const char op[] = "conv_axis";
    vxm_status st;
    if ((st = check_io(be, op, x, y, 0, NULL, 0)) || (st = vxm_synth_check_conv_axis(be, x, axis, taps, ntaps, y)))
        return st;
    const int n1 = x->shape[1], n2 = x->shape[2], len = x->shape[axis], mid = ntaps / 2;
    const size_t C = (size_t)x->channels;
    const long stride = (long)((axis == 0 ? (size_t)n1 * (size_t)n2 : axis == 1 ? (size_t)n2 : 1) * C);
    const size_t nvox = nvox_of(x);
    const float *in = x->buf->data;
    float *out = y->buf->data;
    long cnt = (long)nvox;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * C >= CPU_PAR_MIN)
    for (long v = 0; v < cnt; v++) {
        int k = (int)(v % n2), j = (int)(v / n2 % n1), i = (int)(v / n2 / n1);
        int pos = axis == 0 ? i : axis == 1 ? j : k;
        for (size_t c = 0; c < C; c++) {
            const float *base = in + (size_t)v * C + c;
            float acc = 0.0f;
            for (int t = 0; t < ntaps; t++) {
                int q = pos + t - mid;
                if (q >= 0 && q < len)
                    acc += taps[t] * base[(long)(q - pos) * stride];
            }
            out[(size_t)v * C + c] = acc;
        }
    }
    return VXM_OK;
}

/* §6.3 step 8: y = x * exp(f), f one channel. */
vxm_status cpu_mul_exp(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *f, vxm_tensor *y)
{
    vxm_status st = check_io(be, "mul_exp", x, y, 0, f, 1);
    if (st)
        return st;
    const size_t nvox = nvox_of(x), C = (size_t)x->channels;
    const float *in = x->buf->data, *fv = f->buf->data;
    float *out = y->buf->data;
    long cnt = (long)nvox;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * C >= CPU_PAR_MIN)
    for (long v = 0; v < cnt; v++) {
        float e = expf(fv[v]);
        for (size_t c = 0; c < C; c++)
            out[(size_t)v * C + c] = in[(size_t)v * C + c] * e;
    }
    return VXM_OK;
}

/* One thread: a single pass at memory speed (core/synth_args.h). */
vxm_status cpu_minmax(vxm_backend *be, const vxm_tensor *x, float out[2])
{
    vxm_status st = cpu_check_tensor(be, x, "minmax", "input");
    if (st)
        return st;
    vxm_synth_minmax_fold(x->buf->data, x->buf->data, vxm_tensor_numel(x), 1, out);
    return VXM_OK;
}

/* §6.3 step 9: clip to [0, 255], div_no_nan by (hi - lo), power expo[c]. */
vxm_status cpu_normalize_gamma(vxm_backend *be, const vxm_tensor *x, float lo, float hi, const float *expo,
                               vxm_tensor *y)
{
    static const char op[] = "normalize_gamma";
    vxm_status st;
    if ((st = check_io(be, op, x, y, 0, NULL, 0)) ||
        (st = vxm_synth_check_tables(be, op, x->channels, expo, expo, expo)))
        return st;
    const size_t n = vxm_tensor_numel(x), C = (size_t)x->channels;
    const float den = hi - lo;
    const float *in = x->buf->data;
    float *out = y->buf->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++) {
        float t = fminf(fmaxf(in[i], 0.0f), 255.0f);
        out[i] = den == 0.0f ? 0.0f : powf((t - lo) / den, expo[(size_t)i % C]);
    }
    return VXM_OK;
}

/* The first largest channel (strict >), as tf.argmax. */
vxm_status cpu_argmax_channels(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y)
{
    vxm_status st = check_io(be, "argmax_channels", x, y, 1, NULL, 0);
    if (st)
        return st;
    const size_t nvox = nvox_of(x), C = (size_t)x->channels;
    const float *in = x->buf->data;
    float *out = y->buf->data;
    long cnt = (long)nvox;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * C >= CPU_PAR_MIN)
    for (long v = 0; v < cnt; v++) {
        const float *p = in + (size_t)v * C;
        size_t best = 0;
        for (size_t c = 1; c < C; c++)
            if (p[c] > p[best])
                best = c;
        out[v] = (float)best;
    }
    return VXM_OK;
}

/* §6.3 step 10: label -> LUT -> one-hot (LUT entries -1 and labels outside the LUT: all-zero rows). */
vxm_status cpu_one_hot(vxm_backend *be, const vxm_tensor *lab, const int *lut, int nlut, vxm_tensor *y)
{
    static const char op[] = "one_hot";
    vxm_status st;
    if ((st = cpu_check_tensor(be, y, op, "output")) || (st = check_like(be, op, y, lab, "label map", 1)) ||
        (st = vxm_synth_check_tables(be, op, nlut, lut, lut, lut)))
        return st;
    const size_t n = vxm_tensor_numel(y);
    const long C = y->channels;
    const float *l = lab->buf->data;
    float *out = y->buf->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++) {
        int li = vxm_synth_label(l[i / C], nlut);
        out[i] = (li >= 0 && lut[li] == i % C) ? 1.0f : 0.0f;
    }
    return VXM_OK;
}

/* §4.2: ELU with alpha 1, exp(x) - 1 as written in backend.h. */
vxm_status cpu_elu(vxm_backend *be, const vxm_tensor *x, vxm_tensor *y)
{
    vxm_status st;
    if ((st = check_io(be, "elu", x, y, 0, NULL, 0)))
        return st;
    const size_t n = vxm_tensor_numel(x);
    const float *in = x->buf->data;
    float *out = y->buf->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++) {
        float v = in[i];
        out[i] = v > 0.0f ? v : expf(v) - 1.0f;
    }
    return VXM_OK;
}

vxm_status cpu_elu_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, vxm_tensor *dx)
{
    vxm_status st = check_io(be, "elu_backward", x, dx, 0, dy, 0);
    if (st)
        return st;
    const size_t n = vxm_tensor_numel(x);
    const float *in = x->buf->data, *g = dy->buf->data;
    float *out = dx->buf->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++) {
        float v = in[i];
        out[i] = v > 0.0f ? g[i] : g[i] * expf(v);
    }
    return VXM_OK;
}

/* y = a x + b z over numel (MeanStream, training doc §4). */
vxm_status cpu_blend(vxm_backend *be, float a, const vxm_tensor *x, float b, const vxm_tensor *z, vxm_tensor *y)
{
    static const char op[] = "blend";
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "x")) || (st = cpu_check_tensor(be, z, op, "z")) ||
        (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    const size_t n = vxm_tensor_numel(x);
    if (vxm_tensor_numel(z) != n || vxm_tensor_numel(y) != n)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %zu, %zu and %zu elements", op, n,
                         vxm_tensor_numel(z), vxm_tensor_numel(y));
    const float *px = x->buf->data, *pz = z->buf->data;
    float *py = y->buf->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++)
        py[i] = a * px[i] + b * pz[i];
    return VXM_OK;
}

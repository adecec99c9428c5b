/* Linear resize of every channel (spec §6.1 linspace / §6.2 legacy mapping) with the clamped trilinear sampling
 * of §4.2.  The output sizes come from y (the caller truncates n*f as §6.1 says); per axis the sampling
 * coordinates, corners and weights are tabulated once.  The adjoint (training backward) gathers per input row
 * through the inverted tables. */
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_conv.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_sample.h"
#include "backend_cpu/cpu_simd.h"

/* Coordinate of output index i along an axis of input size n and output size m. */
static float resize_coord(vxm_resize_mapping map, int i, int n, int m, float factor)
{
    if (map == VXM_RESIZE_LEGACY)
        return (float)i / factor; /* legacy neuron: s(i) = i / f in float32 */
    /* TF linspace(0, n-1, m) in float32: exact end points, inner points float32(i) * float32((n-1)/(m-1)).
     * n == m gives delta 1, i.e. the identity. */
    if (m == 1 || i == 0)
        return 0.0f;
    if (i == m - 1)
        return (float)(n - 1);
    float delta = (float)(n - 1) / (float)(m - 1);
    return (float)i * delta;
}

/* Checks shared by the resize and its adjoint: x on the input grid, y on the output grid, same channels, no
 * aliasing, a valid mapping. */
static vxm_status resize_check(vxm_backend *be, const char *op, const vxm_tensor *x, const vxm_tensor *y,
                               vxm_resize_mapping map, const float factor[3])
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "input-grid tensor")) || (st = cpu_check_tensor(be, y, op, "output-grid tensor")))
        return st;
    if (map != VXM_RESIZE_LINSPACE && map != VXM_RESIZE_LEGACY)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: unknown mapping %d", op, (int)map);
    if (y->channels != x->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output grid has %d channels, input grid %d", op,
                         y->channels, x->channels);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    if (map == VXM_RESIZE_LEGACY) {
        if (!factor)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: legacy mapping needs zoom factors", op);
        for (int d = 0; d < 3; d++)
            if (!(factor[d] > 0.0f) && x->shape[d] != 1)
                return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: zoom factor %g along axis %d", op,
                                 (double)factor[d], d);
    }
    return VXM_OK;
}

/* Per axis d and output index i: the corners and weights of §4.2 at the mapped coordinate.  tab[0] owns one
 * allocation for all three axes (NULL when out of memory). */
static void resize_tables(const int n[3], const int m[3], vxm_resize_mapping map, const float factor[3],
                          cpu_lin_axis *tab[3])
{
    tab[0] = malloc(((size_t)m[0] + (size_t)m[1] + (size_t)m[2]) * sizeof(cpu_lin_axis));
    if (!tab[0])
        return;
    tab[1] = tab[0] + m[0];
    tab[2] = tab[1] + m[1];
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < m[d]; i++) {
            /* a size-1 input axis samples its only voxel whatever the factor */
            float s = n[d] == 1 ? 0.0f : resize_coord(map, i, n[d], m[d], factor ? factor[d] : 1.0f);
            tab[d][i] = cpu_lin_axis_at(s, n[d]);
        }
}

/* Axis 2 of the output, one entry per output float j = k*C + c of a row: the input floats of its two corners and
 * their weights, so that a row is straight vector arithmetic over j. */
typedef struct resize_row_tab {
    int *lo, *hi;     /* float offsets into an input row: lo2[k]*C + c, hi2[k]*C + c */
    float *wlo, *whi; /* wlo2[k], whi2[k] */
} resize_row_tab;

/* The input row (i0, i1) gathered at the output's axis-2 corners: e[0][j] = row[lo[j]], e[1][j] = row[hi[j]],
 * from a per-thread cache of RESIZE_SLOTS rows (slot (i0 mod 2, i1 mod 4): an output row's 2x2 input rows never
 * collide, and neighbouring output rows, which share input rows, find them there). */
#define RESIZE_SLOTS 8
typedef struct resize_cache {
    long key[RESIZE_SLOTS];
    float *e[RESIZE_SLOTS][2];
} resize_cache;

static const float *const *expanded_row(const float *in, const int n[3], int C, const resize_row_tab *T, size_t len,
                                        int i0, int i1, resize_cache *K)
{
    int slot = (i0 & 1) * 4 + (i1 & 3);
    long key = (long)i0 * n[1] + i1;
    if (K->key[slot] != key) {
        const float *row = in + ((size_t)i0 * (size_t)n[1] + (size_t)i1) * (size_t)n[2] * (size_t)C;
        float *el = K->e[slot][0], *eh = K->e[slot][1];
        for (size_t j = 0; j < len; j++) {
            el[j] = row[T->lo[j]];
            eh[j] = row[T->hi[j]];
        }
        K->key[slot] = key;
    }
    return (const float *const *)K->e[slot];
}

/* One output row from its 2x2 input rows: out[j] = sum over the 8 corners in cpu_interp_linear's order of
 * ((w0*w1)*w2) * value -- the same float32 products and sums (no contraction in ISO C), a vector of j at a time. */
static void resize_row(const float *const *e00, const float *const *e01, const float *const *e10,
                       const float *const *e11, const cpu_lin_axis *a0, const cpu_lin_axis *a1, const resize_row_tab *T,
                       size_t len, float *out)
{
    const float w00 = a0->wlo * a1->wlo, w01 = a0->wlo * a1->whi, w10 = a0->whi * a1->wlo, w11 = a0->whi * a1->whi;
    const cpu_vf v00 = cpu_vset1(w00), v01 = cpu_vset1(w01), v10 = cpu_vset1(w10), v11 = cpu_vset1(w11);
    size_t j = 0;
    for (; j + CPU_VW <= len; j += CPU_VW) {
        cpu_vf wl = cpu_vload(T->wlo + j), wh = cpu_vload(T->whi + j);
        cpu_vf acc = (v00 * wl) * cpu_vload(e00[0] + j);
        acc = acc + (v00 * wh) * cpu_vload(e00[1] + j);
        acc = acc + (v01 * wl) * cpu_vload(e01[0] + j);
        acc = acc + (v01 * wh) * cpu_vload(e01[1] + j);
        acc = acc + (v10 * wl) * cpu_vload(e10[0] + j);
        acc = acc + (v10 * wh) * cpu_vload(e10[1] + j);
        acc = acc + (v11 * wl) * cpu_vload(e11[0] + j);
        acc = acc + (v11 * wh) * cpu_vload(e11[1] + j);
        cpu_vstore(out + j, acc);
    }
    for (; j < len; j++) {
        float wl = T->wlo[j], wh = T->whi[j];
        float acc = (w00 * wl) * e00[0][j];
        acc += (w00 * wh) * e00[1][j];
        acc += (w01 * wl) * e01[0][j];
        acc += (w01 * wh) * e01[1][j];
        acc += (w10 * wl) * e10[0][j];
        acc += (w10 * wh) * e10[1][j];
        acc += (w11 * wl) * e11[0][j];
        acc += (w11 * wh) * e11[1][j];
        out[j] = acc;
    }
}

vxm_status cpu_resize_linear(vxm_backend *be, const vxm_tensor *x, vxm_resize_mapping map, const float factor[3],
                             vxm_tensor *y)
{
    vxm_status st;
    if ((st = resize_check(be, "resize_linear", x, y, map, factor)))
        return st;
    cpu_lin_axis *tab[3];
    resize_tables(x->shape, y->shape, map, factor, tab);
    const int C = x->channels, nt = vxm_tensor_numel(y) >= CPU_PAR_MIN ? cpu_threads(be) : 1;
    const size_t len = (size_t)y->shape[2] * (size_t)C;
    /* per output float of a row: 2 offsets, 2 weights; per thread: RESIZE_SLOTS cached rows of 2 x len floats */
    size_t per_thread = ((2 * RESIZE_SLOTS * len + 15) / 16) * 16;
    int *offs = malloc(2 * len * sizeof(int));
    float *wts = cpu_alloc_floats(2 * len), *scratch = cpu_alloc_floats(per_thread * (size_t)nt);
    if (!tab[0] || !offs || !wts || !scratch) {
        free(tab[0]);
        free(offs);
        free(wts);
        free(scratch);
        return cpu_nomem(be, per_thread * (size_t)nt * sizeof(float));
    }
    resize_row_tab T = {offs, offs + len, wts, wts + len};
    for (int k = 0; k < y->shape[2]; k++)
        for (int c = 0; c < C; c++) {
            size_t j = (size_t)k * (size_t)C + (size_t)c;
            T.lo[j] = tab[2][k].lo * C + c;
            T.hi[j] = tab[2][k].hi * C + c;
            T.wlo[j] = tab[2][k].wlo;
            T.whi[j] = tab[2][k].whi;
        }
    const float *in = x->buf->data;
    float *out = y->buf->data;
    long rows = (long)y->shape[0] * y->shape[1];
#pragma omp parallel num_threads(nt)
    {
        resize_cache K;
        float *mine = scratch + (size_t)cpu_conv_thread_id() * per_thread;
        for (int i = 0; i < RESIZE_SLOTS; i++) {
            K.key[i] = -1;
            K.e[i][0] = mine + (size_t)(2 * i) * len;
            K.e[i][1] = K.e[i][0] + len;
        }
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++) {
            const cpu_lin_axis *a0 = &tab[0][r / y->shape[1]], *a1 = &tab[1][r % y->shape[1]];
            const float *const *e00 = expanded_row(in, x->shape, C, &T, len, a0->lo, a1->lo, &K);
            const float *const *e01 = expanded_row(in, x->shape, C, &T, len, a0->lo, a1->hi, &K);
            const float *const *e10 = expanded_row(in, x->shape, C, &T, len, a0->hi, a1->lo, &K);
            const float *const *e11 = expanded_row(in, x->shape, C, &T, len, a0->hi, a1->hi, &K);
            resize_row(e00, e01, e10, e11, a0, a1, &T, len, out + (size_t)r * len);
        }
    }
    free(tab[0]);
    free(offs);
    free(wts);
    free(scratch);
    return VXM_OK;
}

/* ---- adjoint ------------------------------------------------------------------------------------------------ */

/* One (output index, weight) pair that reaches an input index along one axis. */
typedef struct resize_tap {
    int o;
    float w;
} resize_tap;

/* Inverts one axis' table: the pairs reaching input index i are tap[start[i] .. start[i+1]), in increasing o and,
 * for one o, lo before hi (both when the clamp makes them coincide).  start has n+1 entries, tap 2m. */
static void resize_invert(const cpu_lin_axis *tab, int m, int n, int *start, resize_tap *tap)
{
    memset(start, 0, ((size_t)n + 1) * sizeof(int));
    for (int o = 0; o < m; o++) {
        start[tab[o].lo + 1]++;
        start[tab[o].hi + 1]++;
    }
    for (int i = 0; i < n; i++)
        start[i + 1] += start[i];
    for (int o = 0; o < m; o++) { /* start[i] runs ahead while filling and is restored below */
        tap[start[tab[o].lo]++] = (resize_tap){o, tab[o].wlo};
        tap[start[tab[o].hi]++] = (resize_tap){o, tab[o].whi};
    }
    for (int i = n; i > 0; i--)
        start[i] = start[i - 1];
    start[0] = 0;
}

/* The exact adjoint of cpu_resize_linear: dx[i] = sum over output voxels o and corners landing on i of the same
 * float32 weight ((w0*w1)*w2) the forward applies, times dy[o].  A gather per input row (the inverted tables
 * say which outputs reach it), so each dx element is summed by one thread in a fixed order. */
vxm_status cpu_resize_linear_backward(vxm_backend *be, const vxm_tensor *dy, vxm_resize_mapping map,
                                      const float factor[3], vxm_tensor *dx)
{
    vxm_status st;
    if ((st = resize_check(be, "resize_linear_backward", dx, dy, map, factor)))
        return st;
    const int *n = dx->shape, *m = dy->shape;
    cpu_lin_axis *tab[3];
    resize_tables(n, m, map, factor, tab);
    size_t nstart = (size_t)n[0] + (size_t)n[1] + (size_t)n[2] + 3, ntap = 2 * ((size_t)m[0] + (size_t)m[1] + (size_t)m[2]);
    int *start = malloc(nstart * sizeof(int));
    resize_tap *taps = malloc(ntap * sizeof(resize_tap));
    if (!tab[0] || !start || !taps) {
        free(tab[0]);
        free(start);
        free(taps);
        return cpu_nomem(be, nstart * sizeof(int) + ntap * sizeof(resize_tap));
    }
    int *st_d[3];
    resize_tap *tp_d[3];
    st_d[0] = start;
    tp_d[0] = taps;
    for (int d = 0; d < 3; d++) {
        if (d > 0) {
            st_d[d] = st_d[d - 1] + n[d - 1] + 1;
            tp_d[d] = tp_d[d - 1] + 2 * (size_t)m[d - 1];
        }
        resize_invert(tab[d], m[d], n[d], st_d[d], tp_d[d]);
    }
    const float *g = dy->buf->data;
    float *out = dx->buf->data;
    const size_t C = (size_t)dx->channels;
    long rows = (long)n[0] * n[1];
    int par = vxm_tensor_numel(dy) >= CPU_PAR_MIN;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long r = 0; r < rows; r++) {
        int i0 = (int)(r / n[1]), i1 = (int)(r % n[1]);
        float *orow = out + (size_t)r * (size_t)n[2] * C;
        memset(orow, 0, (size_t)n[2] * C * sizeof(float));
        for (int e0 = st_d[0][i0]; e0 < st_d[0][i0 + 1]; e0++)
            for (int e1 = st_d[1][i1]; e1 < st_d[1][i1 + 1]; e1++) {
                resize_tap t0 = tp_d[0][e0], t1 = tp_d[1][e1];
                float w01 = t0.w * t1.w;
                const float *grow = g + ((size_t)t0.o * (size_t)m[1] + (size_t)t1.o) * (size_t)m[2] * C;
                for (int i2 = 0; i2 < n[2]; i2++)
                    for (int e2 = st_d[2][i2]; e2 < st_d[2][i2 + 1]; e2++) {
                        float w = w01 * tp_d[2][e2].w;
                        const float *v = grow + (size_t)tp_d[2][e2].o * C;
                        float *o = orow + (size_t)i2 * C;
                        for (size_t ch = 0; ch < C; ch++)
                            o[ch] += w * v[ch];
                    }
            }
    }
    free(tab[0]);
    free(start);
    free(taps);
    return VXM_OK;
}

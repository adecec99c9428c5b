/* vxm_register: one moving/fixed pair through a model on one backend (spec §9.1). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/fuse.h"
#include "graph/split.h"
#include "model/model.h"

static vxm_status check_finite(vxm_context *ctx, const vxm_volume *v, const char *what)
{
    size_t n = vxm_volume_numel(v);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v->data[i]))
            return vxm_error(ctx, VXM_ENUMERIC, what, "contains NaN or Inf (voxel %zu)", i / (size_t)v->channels);
    return VXM_OK;
}

static vxm_status check_inputs(vxm_context *ctx, const vxm_model *m, const vxm_volume *moving,
                               const vxm_volume *fixed, const vxm_register_options *opt)
{
    const char *mname = opt->moving_name ? opt->moving_name : "moving image";
    const char *fname = opt->fixed_name ? opt->fixed_name : "fixed image";
    if (moving->ndim != fixed->ndim || memcmp(moving->shape, fixed->shape, sizeof moving->shape) != 0)
        return vxm_error(ctx, VXM_ESHAPE, mname, "shape %dx%dx%d differs from the fixed image's %dx%dx%d",
                         moving->shape[0], moving->shape[1], moving->shape[2], fixed->shape[0], fixed->shape[1],
                         fixed->shape[2]);
    if (moving->channels != m->src_feats)
        return vxm_error(ctx, VXM_ESHAPE, mname, "has %d channel(s); the model expects %d",
                         moving->channels, m->src_feats);
    if (fixed->channels != m->trg_feats)
        return vxm_error(ctx, VXM_ESHAPE, fname, "has %d channel(s); the model expects %d", fixed->channels,
                         m->trg_feats);
    vxm_status st = check_finite(ctx, moving, mname);
    return st ? st : check_finite(ctx, fixed, fname);
}

static vxm_status read_output(vxm_context *ctx, vxm_exec *ex, const vxm_graph *g, int node, const vxm_volume *like,
                              vxm_volume **out)
{
    const vxm_node *n = &g->nodes[node];
    vxm_volume *v = vxm_volume_new(g->ndim, n->shape, n->channels);
    if (!v)
        return vxm_error(ctx, VXM_ENOMEM, "output", "out of memory");
    vxm_status st = vxm_exec_read(ex, node, v->data);
    if (!st && like->geom && !(v->geom = vxm_geometry_clone(like->geom)))
        st = vxm_error(ctx, VXM_ENOMEM, "output", "out of memory");
    if (!st)
        st = check_finite(ctx, v, n->name);
    if (st) {
        vxm_volume_free(v);
        return st;
    }
    *out = v;
    return VXM_OK;
}

/* The network on inputs whose sizes it accepts. */
static vxm_status register_exact(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *moving,
                                 const vxm_volume *fixed, const vxm_register_options *opt, vxm_volume **moved,
                                 vxm_volume **warp)
{
    vxm_graph *g;
    vxm_status st = vxm_model_build_graph(ctx, m, moving->ndim, moving->shape, &g);
    if (st)
        return st;
    vxm_exec *ex = NULL;
    /* Weights go to the device once per model (the parameter table is the same for every input shape). */
    if (!m->serial || be->weights_cache_model != m->serial || be->weights_cache_ctx != m->serial_ctx) {
        vxm_weights_free(be->weights_cache);
        be->weights_cache = NULL;
        be->weights_cache_model = 0;
        st = vxm_weights_upload(be, g, &be->weights_cache);
        if (!st) {
            be->weights_cache_model = m->serial;
            be->weights_cache_ctx = m->serial_ctx;
        }
    }
    /* Tensors above the device's largest buffer (the 256-feature SynthMorph models at full size, training doc
     * §6.4) run as channel groups; their kernel slices are uploaded per run, next to the cached weights. */
    vxm_weights *w = NULL;
    if (!st)
        st = vxm_graph_split_wide(ctx, &g, vxm_backend_alloc_limit(be), m->path);
    /* Single-consumer chains (conv -> pool, upsample -> concat -> conv) run fused, without their full-resolution
     * intermediates (graph/fuse.h); VXM_FUSE=0 runs them unfused. */
    if (!st)
        st = vxm_graph_fuse(ctx, &g);
    if (!st)
        st = vxm_weights_extend(be, g, be->weights_cache, &w);
    /* HyperMorph: the hyper-parameter (vxm_model_set_hyper) is graph input 4 (graph.h in_hyper) */
    float hyper = (float)m->hyper;
    const float *in[5] = {moving->data, fixed->data, NULL, NULL, &hyper};
    if (!st)
        st = vxm_exec_begin_with(be, g, w, in, g->in_hyper >= 0 ? 5 : 2, opt->deterministic, opt->seed, &ex);
    if (!st)
        st = vxm_exec_run_all(ex);
    if (!st && moved)
        st = read_output(ctx, ex, g, g->out_moved, fixed, moved);
    if (!st && warp)
        st = read_output(ctx, ex, g, g->out_warp, fixed, warp);
    vxm_exec_end(ex);
    vxm_weights_extend_free(w, be->weights_cache);
    vxm_graph_free(g);
    return st;
}

/* Pads both images to the next valid size, registers, crops the warp back and resamples the original moving
 * image with it (clamping at the original borders, as an unpadded run would). */
static vxm_status register_padded(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *moving,
                                  const vxm_volume *fixed, const vxm_register_options *opt, const int pshape[3],
                                  vxm_volume **moved, vxm_volume **warp)
{
    vxm_volume *pm = NULL, *pf = NULL, *pw = NULL, *w = NULL;
    int off[3];
    vxm_status st = vxm_volume_pad_center(ctx, moving, pshape, off, &pm);
    if (!st)
        st = vxm_volume_pad_center(ctx, fixed, pshape, off, &pf);
    if (!st)
        st = register_exact(ctx, be, m, pm, pf, opt, NULL, &pw);
    if (!st)
        st = vxm_volume_crop(ctx, pw, off, moving->shape, &w);
    if (!st && fixed->geom && !(w->geom = vxm_geometry_clone(fixed->geom)))
        st = vxm_error(ctx, VXM_ENOMEM, "output", "out of memory");
    if (!st)
        st = vxm_warp_volume(ctx, be, moving, w, 0, moved);
    vxm_volume_free(pm);
    vxm_volume_free(pf);
    vxm_volume_free(pw);
    if (!st && warp)
        *warp = w;
    else
        vxm_volume_free(w);
    return st;
}

vxm_status vxm_register(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *moving,
                        const vxm_volume *fixed, const vxm_register_options *opt, vxm_volume **moved,
                        vxm_volume **warp)
{
    *moved = NULL;
    if (warp)
        *warp = NULL;
    vxm_register_options defaults = {1, 0, NULL, NULL};
    if (!opt)
        opt = &defaults;
    vxm_status st = check_inputs(ctx, m, moving, fixed, opt);
    if (st)
        return st;
    /* HyperMorph (training doc §5): the regularisation weight to register with (vxm_model_set_hyper) */
    if (vxm_model_hyper_params(m) && !m->hyper_set)
        return vxm_error(ctx, VXM_EINVAL, m->path, "is a HyperMorph model: give the regularisation weight (--hyper)");
    int pshape[3];
    vxm_padded_shape(m->divisor, moving->ndim, moving->shape, pshape);
    if (memcmp(pshape, moving->shape, sizeof pshape))
        st = register_padded(ctx, be, m, moving, fixed, opt, pshape, moved, warp);
    else
        st = register_exact(ctx, be, m, moving, fixed, opt, moved, warp);
    if (st) {
        vxm_volume_free(*moved);
        *moved = NULL;
        if (warp) {
            vxm_volume_free(*warp);
            *warp = NULL;
        }
    }
    return st;
}

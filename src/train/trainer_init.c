/* Keras initialisers of a new VxmDense (training doc §3.1): U-Net conv kernels he_normal (truncated normal at
 * +-2 sigma, sigma = sqrt(2/fan_in)/0.87962566103423978, fan_in = prod(kernel) * Cin), flow conv N(0, 1e-5),
 * log-sigma conv N(0, 1e-10) with bias -10, other biases zero; HyperVxmDense's Dense kernels and HyperConv weights
 * glorot_uniform.  TF's Philox stream cannot be reproduced: only the
 * distributions are (core/rng.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "train/trainer_internal.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

vxm_status vxm_trainer_init_weights(vxm_trainer *t)
{
    vxm_graph *g = t->g;
    t->init_host = calloc((size_t)(g->nparams ? g->nparams : 1), sizeof *t->init_host);
    if (!t->init_host)
        return vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
    unsigned long long rng = t->opt.seed ^ 0x5eedULL;
    for (int k = 0; k < g->nparams; k++) {
        vxm_graph_param *p = &g->params[k];
        if (p->host)
            continue; /* loaded from the model file */
        float *h = calloc(p->numel ? p->numel : 1, sizeof(float));
        if (!h)
            return vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
        t->init_host[k] = h;
        p->host = h;
        int is_kernel = !strcmp(p->kind, "kernel");
        int flow = ends_with(p->layer, "_flow"), logsig = ends_with(p->layer, "_log_sigma");
        if ((is_kernel && p->rank == 2) || !strncmp(p->kind, "hyper", 5)) {
            /* HyperMorph (§3.1): glorot_uniform for the hypernetwork's Dense kernels (in, units) and all four
             * HyperConv weights; a 1-D weight has fan_in = fan_out = its length, i.e. limit sqrt(3 / length) */
            double fans = p->rank == 2 ? (double)(p->dims[0] + p->dims[1]) : 2.0 * (double)p->numel;
            double limit = sqrt(6.0 / fans);
            for (size_t i = 0; i < p->numel; i++)
                h[i] = (float)(limit * (2.0 * vxm_rng_uniform(&rng) - 1.0));
            continue;
        }
        if (!is_kernel) {
            float v = logsig ? -10.0f : 0.0f;
            for (size_t i = 0; i < p->numel; i++)
                h[i] = v;
            continue;
        }
        if (flow || logsig) {
            double sd = flow ? 1e-5 : 1e-10;
            for (size_t i = 0; i < p->numel; i++)
                h[i] = (float)(sd * vxm_rng_normal(&rng));
            continue;
        }
        double fan_in = (double)p->numel / (double)p->dims[p->rank - 1];
        double sd = sqrt(2.0 / fan_in) / 0.87962566103423978;
        for (size_t i = 0; i < p->numel; i++) {
            double z;
            do
                z = vxm_rng_normal(&rng);
            while (fabs(z) > 2.0); /* truncated at two standard deviations, as TF's truncated_normal */
            h[i] = (float)(sd * z);
        }
    }
    return VXM_OK;
}

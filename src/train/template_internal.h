/* Internal to src/train/template*.c: the template engine's state, shared by the unconditional model (template.c,
 * training doc §4.1) and the conditional generator (template_cond.c, §4.2). */
#ifndef VXM_TRAIN_TEMPLATE_INTERNAL_H
#define VXM_TRAIN_TEMPLATE_INTERNAL_H

#include "model/keras_h5.h"
#include "model/keras_h5_write.h"
#include "train/template.h"
#include "train/template_cond.h"
#include "train/trainer_internal.h"

struct cJSON;

struct vxm_template {
    vxm_trainer *tr;     /* parameters (generator or atlas + VxmDense), gradients, Adam, checkpoints */
    vxm_meanstream ms;
    int atlas;           /* unconditional: parameter index of the atlas; conditional: -1 */
    float *atlas_host;   /* unconditional: initial atlas values (the parameter table points at them);
                          * conditional: the fixed atlas input (graph input 0) */
    float *zeros;        /* MSE target of the MeanStream (and, conditional, the deformation) term */
    float count;         /* MeanStream's n as its Keras weight 'count' (float32, shape (1,)) */
    vxm_h5_out_weight state[2]; /* 'mean_stream/mean:0' (M), 'mean_stream/count:0' saved with the weights */
    /* conditional (template_cond.c): the generator's architecture (npheno 0: unconditional), the attributes of
     * the next step (graph input 4) and the generator's initial weights when a conditional file was loaded */
    vxm_cond_arch arch;
    float *pheno;
    const float *gen_init[VXM_COND_MAX_WEIGHTS];
};

/* A weight of layer L whose name ends in "/<kind>:0" (Keras names them "<layer>/<kind>:0"), or NULL. */
const vxm_h5_weight *vxm_template_weight_named(const vxm_h5_layer *L, const char *kind);

/* Conditional: the trainer's model -- a new VxmDense, or loaded from o->train.load_weights (a conditional
 * checkpoint: its VxmDense part and generator weights; or a VxmDense / TemplateCreation file: the VxmDense part,
 * a new generator) -- and t->arch, t->pheno, t->atlas_host. */
vxm_status vxm_template_cond_model(vxm_template *t, const vxm_template_options *o);
/* Conditional: puts the generator (inputs pheno, atlas_input) in front of the VxmDense training graph t->tr->g,
 * in place of its source input (Keras layer order: generator weights first, as ConditionalTemplateCreation). */
vxm_status vxm_template_cond_graph(vxm_template *t, const vxm_template_options *o);
/* Conditional: the ConditionalTemplateCreation constructor arguments added to / removed from the config object
 * `c` made from the VxmDense config. 0 when out of memory. */
int vxm_template_cond_config(const vxm_template *t, struct cJSON *c, int cap);

#endif

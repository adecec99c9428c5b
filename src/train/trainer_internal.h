/* Internal to src/train: the trainer's state, shared by its files.
 *   trainer.c       create / free, the training graph (losses + backward), gradients and optimiser steps
 *   trainer_init.c  Keras initialisers for a new model (training doc §3.1)
 *   trainer_io.c    weights in Keras order, checkpoints and gradient files */
#ifndef VXM_TRAIN_TRAINER_INTERNAL_H
#define VXM_TRAIN_TRAINER_INTERNAL_H

#include "train/train.h"

struct vxm_trainer {
    vxm_context *ctx;
    vxm_backend *be;
    vxm_train_options opt;
    vxm_model *model;   /* config (+ the file's weights when loaded) */
    float **init_host;  /* new models: initial host values per parameter (NULL for loaded ones) */
    vxm_graph *g;       /* forward + losses + backward */
    int shape[3], ndim;
    int loss_node[VXM_MAX_LOSS_TERMS];
    vxm_weights *w;     /* device parameters, uploaded once */
    struct vxm_plan *plan; /* memory plan of the step's graph (graph/plan.h): one arena for every step's tensors */
    vxm_buffer **grad, **m, **v; /* per parameter */
    long step;          /* optimiser updates done (Adam's t of the next update is step + 1) */
    vxm_train_losses names; /* term names and weights */
    int *labels;              /* semi-supervised: copy of the label list */
    float *seg_onehot[2];     /* semi-supervised: strided one-hot source / target maps */
    double hyper;             /* HyperMorph: every sample's lambda (>= 0), or < 0: drawn per sample */
    /* Template creation (template.c) reuses the trainer with its own graph: the root model_config to save instead
     * of the VxmDense one (malloc'd, owned; NULL: VxmDense), the MeanStream mode recorded in the checkpoint's
     * state group (NULL: none), and non-trainable Keras weights saved after the parameters (MeanStream's
     * 'mean_stream/mean:0', 'count:0'; owned by the caller; their layers are listed last). */
    char *model_config;
    const char *meanstream_mode;
    const struct vxm_h5_out_weight *extra;
    int nextra;
};

/* The model of trainer.c (loaded from o->load_weights, or a new VxmDense with train.py's arguments) and the
 * device gradient / optimiser buffers of every parameter of t->g; shared with template.c. */
vxm_status vxm_trainer_make_model(vxm_trainer *t, int ndim, const int shape[3], int src_feats, int trg_feats);
vxm_status vxm_trainer_alloc_state(vxm_trainer *t);

/* Fills host values for every parameter of a new model (he_normal truncated for U-Net convs, N(0,1e-5) for the
 * flow head, zeros for biases); t->init_host receives the arrays. */
vxm_status vxm_trainer_init_weights(vxm_trainer *t);

/* --resume: after the parameters were uploaded from o->resume, restores the optimiser state (m, v, step) stored
 * by vxm_trainer_save (trainer_io.c); a file without it is an error naming the file. */
vxm_status vxm_trainer_load_optimizer(vxm_trainer *t, const char *path);

#endif

/* Internal: `vxm train` checkpoints that resume exactly.  Besides the Keras model (train.h vxm_trainer_save), a
 * checkpoint holds the group /vxm_optimizer, which Python's VxmDense.load never opens:
 *   attributes  optimizer ("adam" | "sgd"), step (int64, updates done), lr, beta1, beta2, epsilon (float64),
 *               epoch (int64, the Keras epoch the file is named after; absent when saved without one);
 *   datasets    m/<layer>/<kind>, v/<layer>/<kind> (Adam's moments, float32, Keras shapes of the weights).
 * The batch draws need no state: `vxm train` derives each step's draws from (seed, global step). */
#ifndef VXM_TRAIN_CHECKPOINT_H
#define VXM_TRAIN_CHECKPOINT_H

#include "train/train.h"

#define VXM_CKPT_GROUP "vxm_optimizer"

typedef struct vxm_checkpoint_info {
    char optimizer[16]; /* "adam" or "sgd" */
    long step;          /* optimiser updates done */
    long epoch;         /* -1 when the file stores none */
    double lr;          /* the learning rate it was trained with */
} vxm_checkpoint_info;

/* vxm_trainer_save with the Keras epoch (epoch < 0: none) recorded for --resume. */
vxm_status vxm_trainer_save_checkpoint(vxm_trainer *t, const char *path, long epoch);
/* The optimiser attributes of a checkpoint; VXM_EFORMAT naming the file when it has none (e.g. a Python
 * VoxelMorph model: start from it with --load-weights instead). */
vxm_status vxm_checkpoint_info_read(vxm_context *ctx, const char *path, vxm_checkpoint_info *info);

/* The loss terms' names and weights (values zero): the columns of a training log, known before any step. */
void vxm_trainer_loss_names(const vxm_trainer *t, vxm_train_losses *names);

#endif

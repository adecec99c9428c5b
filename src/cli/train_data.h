/* Internal to `vxm train`: the training set (every listed volume loaded once and checked) and the seeded draw
 * of each batch, following VoxelMorph's generators (training doc §1.1). */
#ifndef VXM_CLI_TRAIN_DATA_H
#define VXM_CLI_TRAIN_DATA_H

#include <stdint.h>

#include "vxm.h"

typedef enum train_data_mode {
    TRAIN_PAIRS,         /* --pairs: one listed (moving, fixed) pair per draw */
    TRAIN_SCAN_TO_SCAN,  /* --img-list: moving and fixed drawn independently (scan_to_scan) */
    TRAIN_SCAN_TO_ATLAS  /* --img-list --atlas: moving drawn, fixed = the atlas (scan_to_atlas) */
} train_data_mode;

typedef struct train_data_spec {
    const char *pairs, *img_list, *atlas; /* exactly one of pairs / img_list; atlas only with img_list */
    const char *img_prefix, *img_suffix;  /* applied to the listed names (not to the atlas, as train.py) */
    unsigned long long seed;              /* splitmix64 state of the draws */
} train_data_spec;

typedef struct train_data {
    train_data_mode mode;
    int nfiles;            /* distinct files, each loaded once */
    char **path;
    vxm_volume **vol;
    int nitems;            /* listed pairs (TRAIN_PAIRS) or scans */
    int *mov, *fix;        /* file index of each item; fix is NULL for the img-list modes */
    int atlas;             /* file index of the atlas, -1 without */
    int ndim, shape[3], channels; /* common to every file */
    uint64_t rng;
} train_data;

/* Reads the list(s) and every file they name; checks that all share one shape and channel count and hold
 * finite values.  Errors: one line "vxm: FILE: problem" printed, returns 1 (d is then empty). */
int train_data_load(vxm_context *ctx, const train_data_spec *spec, train_data *d);
void train_data_free(train_data *d);
/* Draws the next batch of `batch` pairs (pointers into the loaded volumes). */
void train_data_next(train_data *d, int batch, const float **moving, const float **fixed);
/* "16x16" or "160x192x224". */
void train_data_shape_str(int ndim, const int shape[3], char *buf, size_t n);

#endif

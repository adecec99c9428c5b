/* Internal to `vxm train`: the training set and the seeded draw of each batch, following VoxelMorph's generators
 * (training doc §1.1).  Volumes are cached in memory when they fit (every file loaded and checked once, before
 * training), else streamed from disk per batch (cli/train_prefetch.c loads them on a background thread).  The
 * draws of step k are a function of (seed, k) alone, so a resumed run, a cached or streamed one, with or without
 * prefetching, sees the same sequence. */
#ifndef VXM_CLI_TRAIN_DATA_H
#define VXM_CLI_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "train/train.h"
#include "vxm.h"

typedef enum train_data_mode {
    TRAIN_PAIRS,         /* --pairs: one listed (moving, fixed) pair per draw */
    TRAIN_SCAN_TO_SCAN,  /* --img-list: moving and fixed drawn independently (scan_to_scan) */
    TRAIN_SCAN_TO_ATLAS  /* --img-list --atlas: moving drawn, fixed = the atlas (scan_to_atlas) */
} train_data_mode;

typedef struct train_data_spec {
    const char *pairs, *img_list, *atlas; /* exactly one of pairs / img_list; atlas only with img_list */
    const char *img_prefix, *img_suffix;  /* applied to the listed names (not to the atlas, as train.py) */
    unsigned long long seed;              /* seeds the draws */
    double cache_mb;                      /* cache volumes when they need at most this many MB; < 0: default */
    /* semi-supervised (train_semisupervised_seg.py): --pairs lines "moving fixed moving_seg fixed_seg", or with
     * --img-list each scan's label map seg_prefix + name + seg_suffix */
    int semi;
    const char *seg_prefix, *seg_suffix;
} train_data_spec;

typedef struct train_data {
    train_data_mode mode;
    int nfiles;            /* distinct files */
    char **path;
    vxm_volume **vol;      /* every file when cached; all NULL when streamed */
    int cached;
    int nitems;            /* listed pairs (TRAIN_PAIRS) or scans */
    int *mov, *fix;        /* file index of each item; fix is NULL for the img-list modes */
    int atlas;             /* file index of the atlas, -1 without */
    int ndim, shape[3], channels; /* common to every file */
    uint64_t seed;
    int semi;
    int *seg_of;  /* semi-supervised: the label-map file of each image file (-1: none) */
    char *is_seg; /* per file: a label map (no intensity-range warning) */
} train_data;

/* Reads the list(s); checks that every file exists, shares one shape and channel count and holds finite values
 * (streamed files: the first one now, the others when loaded).  Cached: prints "caching N volumes (X MB)" on
 * stdout.  Errors: one line "vxm: FILE: problem" printed, returns 1 (d is then empty).  A volume outside
 * [0, 1] gets one warning on stderr. */
int train_data_load(vxm_context *ctx, const train_data_spec *spec, train_data *d);
void train_data_free(train_data *d);
/* "16x16" or "160x192x224". */
void train_data_shape_str(int ndim, const int shape[3], char *buf, size_t n);

/* The file indices of the pairs of global step `step` (0-based: the batch of update step + 1). */
void train_data_draw(const train_data *d, long step, int batch, int *mov, int *fix);

/* One batch ready for the trainer: pointers into cached volumes, or volumes this batch loaded. */
typedef struct train_batch {
    long step;
    int n;
    const float **mov, **fix;
    const float **mov_seg, **fix_seg; /* semi-supervised label maps, else NULL entries */
    const vxm_tensor *const *dev;     /* NULL, or per sample 4 tensors on the training device (moving, fixed,
                                       * moving and fixed one-hot: SynthMorph) used instead of the host arrays */
    int *mov_file, *fix_file;
    vxm_volume **own; /* streamed volumes held by this batch (up to 4n) */
    int *own_file;    /* the file of each own[] entry */
    int nown;
    int failed;       /* 1: err holds "FILE: problem" */
    char err[512];
    char warn[512];   /* the intensity-range warning of a streamed volume ("" when none) */
} train_batch;

int train_batch_init(train_batch *b, int batch); /* 1 on out of memory */
void train_batch_free(train_batch *b);
/* Draws step `step` and loads what is not cached (with its own context: this runs on the prefetch thread).
 * Returns 0, or 1 with b->failed set.  Reads d only. */
int train_batch_fill(const train_data *d, vxm_context *ctx, long step, train_batch *b);
/* The trainer's view of a batch (segmentations NULL unless semi-supervised / SynthMorph); malloc'd, NULL after
 * printing "out of memory". */
vxm_train_sample *train_batch_samples(const train_batch *b);
/* Releases the volumes a filled batch holds. */
void train_batch_clear(train_batch *b);

#endif

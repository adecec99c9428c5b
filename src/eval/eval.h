/* Internal interface of the evaluation code (src/eval): Jacobian determinant per voxel, the QC picture's
 * layout, and the "write to a temporary file, then rename" helper that the CSV and PNG writers share. */
#ifndef VXM_EVAL_EVAL_H
#define VXM_EVAL_EVAL_H

#include <stdio.h>

#include "core/context.h"

/* det J at array index (i0, i1, i2) of a warp already checked by vxm_eval_check_warp (np.gradient rules; see
 * jacobian.c).  For a 2-D warp i0 is 0. */
double vxm_eval_det_at(const vxm_volume *warp, int i0, int i1, int i2);

/* VXM_OK when `warp` is a dense 2-D (2 channels) or 3-D (3 channels) displacement with finite values; else a
 * one-line error with `subject` (NULL: "warp"). */
vxm_status vxm_eval_check_warp(vxm_context *ctx, const vxm_volume *warp, const char *subject);

/* ---- QC picture layout (qc_png.c) -------------------------------------------------------------------
 * One row per displayed slice (3-D: the middle slices across array axes 0, 1, 2, in that order; 2-D: the
 * image), one column per panel:
 *   fixed | moving | moved | checkerboard fixed/moved | |fixed - moving| | |fixed - moved|
 *   [ | deformed grid over the moving image | det J map ]        (the last two only when a warp is given)
 * A slice across axis r shows the two other array axes, the lower-numbered one downwards, the other one to
 * the right (array order, no flips).  Every cell is cell_w x cell_h pixels (the largest slice, times
 * `scale`: 2 when the largest in-plane size is below 128 voxels, else 1); a slice is centred in its cell.
 * Cells are separated by VXM_QC_GAP pixels, with a title strip of `header` pixels on top and a footer of
 * `footer` pixels (Jacobian summary) at the bottom. */
#define VXM_QC_GAP 4

typedef struct vxm_qc_layout {
    int rows, cols, scale;
    int cell_w, cell_h;
    int header, footer;
    int text_scale;
    int width, height;
} vxm_qc_layout;

void vxm_qc_layout_of(const vxm_volume *fixed, int with_warp, vxm_qc_layout *L);
/* Top-left pixel of cell (row, col). */
static inline void vxm_qc_cell_origin(const vxm_qc_layout *L, int row, int col, int *x, int *y)
{
    *x = VXM_QC_GAP + col * (L->cell_w + VXM_QC_GAP);
    *y = L->header + row * (L->cell_h + VXM_QC_GAP);
}

/* ---- atomic output files ----------------------------------------------------------------------------- */
/* Creates "<dir of path>/.<base>.tmpXXXXXX" exclusively (mode 0666 minus umask) and opens it for writing.
 * On success *tmp (malloc'd) names it.  NULL with a one-line error naming `path` on failure. */
FILE *vxm_eval_temp_open(vxm_context *ctx, const char *path, char **tmp);
/* Finishes a file from vxm_eval_temp_open: closes f and, when `ok`, renames tmp to path; any failure (or
 * !ok) removes tmp.  Frees tmp.  Returns VXM_OK only when path now holds the complete file. */
vxm_status vxm_eval_temp_finish(vxm_context *ctx, const char *path, FILE *f, char *tmp, int ok);

#endif

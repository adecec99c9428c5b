/* Volume helpers beyond the public API, for the CLI and the graph code (no NIfTI headers needed). */
#ifndef VXM_IO_VOLUME_EXT_H
#define VXM_IO_VOLUME_EXT_H

#include "vxm.h"

/* Reinterprets a 3-D single-channel volume of shape (H, W, C) with C <= 3 as the 2-D image (1, H, W) with C
 * channels: the memory layout is the same, nothing is copied.  This is how a 2-D warp saved by
 * nibabel/VoxelMorph as an (H, W, 2) array (NIfTI dim = [3, H, W, 2], or an .npy/.npz of that shape) is read
 * back, since vxm_volume_read cannot tell it from a thin 3-D volume.  Returns 1 when it reinterpreted, 0 when
 * the volume does not have that form (left unchanged). */
int vxm_volume_as_2d_channels(vxm_volume *v);

/* The voxel -> world (RAS mm) affine that a NIfTI/MGH output of `v` written with geometry `g` gets: g's
 * affine, or for g == NULL the default frame of §9.1 (rotation [[-1,0,0],[0,0,1],[0,-1,0]], translation
 * -R*(dims/2) with the disk dims (n0, n1, n2), for 2-D (n1, n2, 1)).  Voxel (i, j, k) is array index
 * (i, j, k) for 3-D and (0, i, j) for 2-D. */
void vxm_geometry_affine(const vxm_geometry *g, const vxm_volume *v, double a[4][4]);

#endif

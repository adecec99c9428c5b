/* Internal interface of the volume I/O layer (src/io): the geometry record, element decoding, the
 * Fortran <-> C layout helpers shared by the format readers/writers, and the per-format entry points.
 *
 * Shape rules (every reader ends in vxm_io_volume_alloc, so they are the same for all formats):
 *   A file holds an array with "disk" spatial dims (nx, ny, nz) and nc channels; our volume is the C-order
 *   array [nx][ny][nz][nc] (NIfTI/MGH: the on-disk voxel i + nx*(j + ny*(k + nz*c)); see §1.2 of the spec).
 *   - nz == 1                        -> ndim 2, shape {1, nx, ny}            (2-D image, possibly with channels)
 *   - nz  > 1                        -> ndim 3, shape {nx, ny, nz}
 *   NIfTI: nx, ny, nz = dim[1..3] (missing dims are 1), nc = dim[4]*...*dim[dim[0]] (so both nibabel layouts
 *          of an (X,Y,Z,C) array, dim = [4,X,Y,Z,C] and [5,X,Y,Z,1,C], give C channels; dim=[5,H,W,1,1,C] is a
 *          2-D image with C channels).
 *   MGH:   nx, ny, nz = width, height, depth, nc = nframes.
 *   npy/npz (after dropping leading singleton axes while there are more than 4 axes):
 *          (n,) -> ndim 2 shape {1,1,n};  (H,W) -> ndim 2 {1,H,W};  (X,Y,Z) -> ndim 3 (a 3-D volume, never a
 *          2-D image with channels);  (X,Y,Z,C) -> ndim 3 with C channels.
 *   A 2-D multi-channel array stored as a 3-D array (H,W,C) (e.g. nibabel/VoxelMorph saving a 2-D warp, as
 *   in shared pairs/pair2d_true_warp.nii.gz: dim=[3,192,224,2]) is read as a 3-D volume with 1 channel;
 *   the caller that expects a 2-D field calls vxm_volume_as_2d_channels() (same memory, no copy). */
#ifndef VXM_IO_IO_H
#define VXM_IO_IO_H

#include "core/context.h"
#include "io/volume_ext.h"

#include <nifti2_io.h>
#include <stddef.h>
#include <stdint.h>

typedef enum vxm_geom_kind { VXM_GEOM_NIFTI = 1, VXM_GEOM_MGH = 2 } vxm_geom_kind;

struct vxm_geometry {
    vxm_geom_kind kind;
    /* voxel (i, j, k) on disk -> world (RAS, mm).  For 3-D volumes (i, j, k) = array axes (0, 1, 2); for 2-D
     * volumes (i, j) = array axes (1, 2) and k = 0. */
    double affine[4][4];
    nifti_image *nim;     /* NIfTI sources: header copy (no data, no extensions); NULL otherwise */
    int nifti_version;    /* NIfTI sources: 1 or 2 (from the header size; nim->nifti_type is unreliable) */
    float mgh_params[4];  /* MGH sources: TR, flip angle, TE, TI (written back into MGH outputs) */
};


/* ---- element types ------------------------------------------------------------------------------- */
typedef enum vxm_dtype {
    VXM_DT_BOOL, VXM_DT_U8, VXM_DT_I8, VXM_DT_U16, VXM_DT_I16, VXM_DT_U32, VXM_DT_I32, VXM_DT_U64, VXM_DT_I64,
    VXM_DT_F16, VXM_DT_F32, VXM_DT_F64
} vxm_dtype;

size_t vxm_dtype_size(vxm_dtype dt);
int vxm_host_is_little_endian(void);
/* Converts n elements of `dt` at src (byte-swapped when `swap`) to float32; when scale != NULL applies
 * y = x*scale[0] + scale[1] in double precision before rounding. */
void vxm_io_decode(const void *src, vxm_dtype dt, int swap, const double *scale, size_t n, float *dst);

/* ---- layout -------------------------------------------------------------------------------------- */
/* Decodes a Fortran-ordered array of shape (n0, n1, n2, nc) (n0 fastest) into float32 C order
 * [n0][n1][n2][nc]. */
void vxm_io_fortran_to_c(int threads, const void *src, vxm_dtype dt, int swap, const double *scale, size_t n0, size_t n1,
                         size_t n2, size_t nc, float *dst);
/* The inverse for float32: C order [n0][n1][n2][nc] -> Fortran order (n0 fastest) in dst. */
void vxm_io_c_to_fortran(int threads, const float *src, size_t n0, size_t n1, size_t n2, size_t nc, float *dst);
/* Disk spatial dims of a volume: 3-D {n0, n1, n2}; 2-D {shape[1], shape[2], 1}. */
void vxm_io_disk_dims(const vxm_volume *v, size_t d[3]);
/* The largest volume a header may ask for, in bytes: the machine's physical memory, or VXM_MAX_ALLOC_MB (MB) when
 * set.  Checked by vxm_io_volume_alloc before anything is allocated. */
double vxm_io_alloc_ceiling(void);
/* The shape checks of vxm_io_volume_alloc without the allocation: readers call it before they read (and
 * allocate for) the voxel data. */
vxm_status vxm_io_volume_check(vxm_context *ctx, const char *path, int64_t nx, int64_t ny, int64_t nz, int64_t nc);
/* Allocates the volume for disk dims (nx, ny, nz) and nc channels following the shape rules above
 * (VXM_EFORMAT for zero/negative/too large sizes, VXM_ENOMEM). */
vxm_status vxm_io_volume_alloc(vxm_context *ctx, const char *path, int64_t nx, int64_t ny, int64_t nz, int64_t nc,
                               vxm_volume **out);

/* The bytes of an input file (src/io/gz_read.c): a file starting with the gzip magic is read whole (its size must
 * fit under the allocation ceiling) and decompressed with libdeflate member by member as data is asked for (the
 * output grows with the data, never past the ceiling; a cut stream ends the data, a corrupt one is an error);
 * any other file is read as it is.  Everything read so far stays in one buffer, so the voxel data is taken in
 * place (vxm_io_src_take / vxm_io_src_at) without a copy. */
typedef struct vxm_io_src vxm_io_src;
/* VXM_EIO when the file cannot be opened, VXM_EFORMAT/VXM_ENOMEM when a gzip file cannot be held. */
vxm_status vxm_io_src_open(vxm_context *ctx, const char *path, vxm_io_src **out);
int vxm_io_src_is_gzip(const vxm_io_src *s);
/* Copies up to n bytes; returns the count (short at the end of the data, also of a cut gzip stream), or -1 with
 * the reason in *why (a corrupt gzip stream, a read error, the ceiling). */
long long vxm_io_src_read(vxm_io_src *s, void *buf, size_t n, const char **why);
/* Moves to byte `off` of the (decompressed) file: 0, 1 when the data end before it, -1 with *why on an error. */
int vxm_io_src_seek(vxm_io_src *s, uint64_t off, const char **why);
/* Takes the next `bytes` bytes (a size from a header): *off is their offset for vxm_io_src_at.  The data are
 * produced as they arrive, so a header that lies costs only the bytes really there (issue 11).  Short data are
 * VXM_EFORMAT "truncated <what> (N of M bytes)", an error VXM_EFORMAT "cannot read <what>: why". */
vxm_status vxm_io_src_take(vxm_context *ctx, const char *path, const char *what, vxm_io_src *s, size_t bytes,
                           size_t *off);
/* Bytes taken at `off`: valid until the next read/seek/take on s, and after vxm_io_src_finish until close. */
const unsigned char *vxm_io_src_at(const vxm_io_src *s, size_t off);
/* The reader has read all it needs: frees the compressed bytes (and closes the file), keeping the data. */
void vxm_io_src_finish(vxm_io_src *s);
void vxm_io_src_close(vxm_io_src *s); /* NULL is fine */

/* A source of bytes for vxm_io_read_grow: fills up to n bytes of buf, returns the count (0 at the end), or -1
 * with a message in *why. */
typedef long long (*vxm_io_reader)(void *src, void *buf, size_t n, const char **why);
/* Reads `bytes` (a size taken from a header) from `src` into a malloc'd *out, growing the buffer as the data
 * arrives (1 MiB, then doubling), so that a header that lies about the size costs at most twice the bytes that
 * are really there (issue 11).  A short read is VXM_EFORMAT "truncated <what> (N of M bytes)"; a read error is
 * VXM_EFORMAT "cannot read <what>: why".  (npz members; NIfTI/MGH read through vxm_io_src.) */
vxm_status vxm_io_read_grow(vxm_context *ctx, const char *path, const char *what, vxm_io_reader rd, void *src,
                            size_t bytes, unsigned char **out);

/* ---- output sink: plain or gzip stream on a file descriptor -------------------------------------- */
typedef struct vxm_sink {
    int fd;       /* -1 once closed */
    int level;    /* gzip level, < 0 for a plain file */
    int threads;  /* compression threads */
    int err;      /* errno of the first failure, or -1 for a zlib error; 0 while all is well */
} vxm_sink;

/* level < 0: no compression.  Takes ownership of fd (closed by vxm_sink_close, also on failure).  A gzip sink
 * compresses each write in independent 4 MiB chunks on `threads` threads and writes them as consecutive gzip
 * members (a valid .gz that zlib, nibabel and FreeSurfer read), identical for any thread count. */
int vxm_sink_open(vxm_sink *s, int fd, int level, int threads);
int vxm_sink_write(vxm_sink *s, const void *buf, size_t n); /* 0 on success */
int vxm_sink_close(vxm_sink *s);                            /* 0 when everything was written; idempotent */
const char *vxm_sink_strerror(const vxm_sink *s);

/* ---- formats ----------------------------------------------------------------------------------- */
/* Readers: `path` exists (checked by the dispatcher). */
vxm_status vxm_nifti_read(vxm_context *ctx, const char *path, vxm_volume **out);
vxm_status vxm_mgh_read(vxm_context *ctx, const char *path, vxm_volume **out);
vxm_status vxm_npy_read(vxm_context *ctx, const char *path, vxm_volume **out);
vxm_status vxm_npz_read(vxm_context *ctx, const char *path, const char *key, vxm_volume **out);
/* Parses an in-memory .npy image (used by the npz reader); `path` names it in messages. */
vxm_status vxm_npy_parse(vxm_context *ctx, const char *path, const unsigned char *buf, size_t len,
                         vxm_volume **out);
/* Serialises vol as a float32 C-order .npy image (malloc'd; *len bytes). */
vxm_status vxm_npy_serialize(vxm_context *ctx, const char *path, const vxm_volume *vol, unsigned char **buf,
                             size_t *len);

/* Writers: write the whole file to the open descriptor fd (always consumed) of the temporary file;
 * `path` is the final name, used in messages.  g may be NULL (default frame). */
vxm_status vxm_nifti_write(vxm_context *ctx, const char *path, int fd, int gz, const vxm_volume *vol,
                           const vxm_geometry *g);
vxm_status vxm_mgh_write(vxm_context *ctx, const char *path, int fd, int gz, const vxm_volume *vol,
                         const vxm_geometry *g);
vxm_status vxm_npy_write(vxm_context *ctx, const char *path, int fd, const vxm_volume *vol);
vxm_status vxm_npz_write(vxm_context *ctx, const char *path, int fd, const vxm_volume *vol);

#endif

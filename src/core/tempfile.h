/* Internal: temporary output files (see tempfile.c). */
#ifndef VXM_CORE_TEMPFILE_H
#define VXM_CORE_TEMPFILE_H

#include "core/context.h"

/* Creates "<dir>/.<base>.tmpXXXXXX" exclusively (mode 0666 minus umask, like any new file).  On success
 * *tmp is malloc'd and *fd open for writing. */
vxm_status vxm_temp_create(vxm_context *ctx, const char *path, char **tmp, int *fd);

/* Publishes a complete temporary file: fsync (so that a crash or power loss right after cannot leave an empty or
 * partial file under the final name on file systems that reorder metadata before data), rename over `path`, and
 * fsync of the directory (so the rename itself is durable; skipped silently where directories cannot be opened).
 * On any failure the temporary file is removed and the error recorded against `path`.  st != VXM_OK: the
 * writer failed, so only the removal is done and st returned. */
vxm_status vxm_temp_commit(vxm_context *ctx, const char *tmp, const char *path, vxm_status st);

#endif

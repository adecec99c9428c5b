/* Internal: temporary output files (see tempfile.c). */
#ifndef VXM_CORE_TEMPFILE_H
#define VXM_CORE_TEMPFILE_H

#include "core/context.h"

/* Creates "<dir>/.<base>.tmpXXXXXX" exclusively (mode 0666 minus umask, like any new file).  On success
 * *tmp is malloc'd and *fd open for writing. */
vxm_status vxm_temp_create(vxm_context *ctx, const char *path, char **tmp, int *fd);

#endif

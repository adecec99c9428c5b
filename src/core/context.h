/* Internal: the library context and its uniform error path (like Lua's single error path: every failure
 * goes through vxm_error, which records "subject: problem" and returns the code). */
#ifndef VXM_CORE_CONTEXT_H
#define VXM_CORE_CONTEXT_H

#include "vxm.h"

#define VXM_ERRMSG_MAX 1024

struct vxm_context {
    char err[VXM_ERRMSG_MAX];
    vxm_status code;
    int threads; /* 0 = decide from the environment */
    unsigned long long model_serial; /* last id given to a loaded model (keys device weight caches) */
    char notes[VXM_ERRMSG_MAX]; /* non-fatal notices for the user, one per line (vxm_context_notes) */
};

/* Records the error and returns `code`.  `subject` is a file name or device name (may be NULL). */
vxm_status vxm_error(vxm_context *ctx, vxm_status code, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Adds where an error happened to the recorded message: "subject: problem" becomes "subject: <where>: problem"
 * when the message starts with subject (e.g. the device), else "<where>: message".  Used by the graph executor
 * to name the layer a device failure happened in. */
void vxm_error_annotate(vxm_context *ctx, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends one line ("warning: file: problem") to the context's notes: the library never prints, the CLI shows
 * them (e.g. a corrupt OpenCL program cache that was ignored).  A line that does not fit is dropped. */
void vxm_note(vxm_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Threads the CPU backend should use: ctx setting, else OMP_NUM_THREADS, SLURM_CPUS_PER_TASK, else cores. */
int vxm_context_effective_threads(const vxm_context *ctx);

#endif

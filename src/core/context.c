#include "core/context.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *vxm_status_name(vxm_status s)
{
    switch (s) {
    case VXM_OK: return "ok";
    case VXM_EIO: return "I/O error";
    case VXM_EFORMAT: return "bad format";
    case VXM_ESHAPE: return "shape mismatch";
    case VXM_EDEVICE: return "device error";
    case VXM_ENOMEM: return "out of memory";
    case VXM_EINVAL: return "invalid argument";
    case VXM_EUNSUPPORTED: return "unsupported";
    case VXM_ENUMERIC: return "non-finite values";
    }
    return "unknown error";
}

vxm_context *vxm_context_create(void)
{
    return calloc(1, sizeof(vxm_context));
}

void vxm_context_free(vxm_context *ctx)
{
    free(ctx);
}

const char *vxm_context_error(const vxm_context *ctx)
{
    return ctx ? ctx->err : "no context";
}

void vxm_context_clear_error(vxm_context *ctx)
{
    ctx->err[0] = '\0';
    ctx->code = VXM_OK;
}

void vxm_context_set_threads(vxm_context *ctx, int threads)
{
    ctx->threads = threads > 0 ? threads : 0;
}

static int positive_env(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end == '\0' && v > 0 && v < 4096) ? (int)v : 0;
}

int vxm_context_effective_threads(const vxm_context *ctx)
{
    if (ctx && ctx->threads > 0)
        return ctx->threads;
    int n = positive_env("OMP_NUM_THREADS");
    if (!n)
        n = positive_env("SLURM_CPUS_PER_TASK");
    if (!n) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    return n;
}

int vxm_context_threads(const vxm_context *ctx)
{
    return vxm_context_effective_threads(ctx);
}

vxm_status vxm_error(vxm_context *ctx, vxm_status code, const char *subject, const char *fmt, ...)
{
    if (!ctx)
        return code;
    char msg[VXM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keep one line: a message with a newline (e.g. an OpenCL build log) is cut at the first newline. */
    char *nl = strchr(msg, '\n');
    if (nl)
        *nl = '\0';
    size_t used = 0;
    if (subject && *subject) {
        int k = snprintf(ctx->err, sizeof ctx->err, "%s: ", subject);
        used = k < 0 ? 0 : ((size_t)k < sizeof ctx->err ? (size_t)k : sizeof ctx->err - 1);
    }
    snprintf(ctx->err + used, sizeof ctx->err - used, "%s", msg);
    ctx->code = code;
    return code;
}

void vxm_error_annotate(vxm_context *ctx, const char *subject, const char *fmt, ...)
{
    if (!ctx || !ctx->code)
        return;
    char where[256], old[VXM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", ctx->err);
    size_t sl = subject ? strlen(subject) : 0, head = 0;
    if (sl && strncmp(old, subject, sl) == 0 && old[sl] == ':' && old[sl + 1] == ' ')
        head = sl + 2;
    /* old[0..head) + where + ": " + old[head..], cut to the buffer */
    const char *parts[4] = {old, where, ": ", old + head};
    size_t lens[4] = {head, strlen(where), 2, strlen(old + head)}, used = 0;
    for (int i = 0; i < 4; i++) {
        size_t n = lens[i] < sizeof ctx->err - 1 - used ? lens[i] : sizeof ctx->err - 1 - used;
        memcpy(ctx->err + used, parts[i], n);
        used += n;
    }
    ctx->err[used] = '\0';
}

void vxm_note(vxm_context *ctx, const char *fmt, ...)
{
    if (!ctx)
        return;
    char line[VXM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    line[strcspn(line, "\n")] = '\0';
    size_t used = strlen(ctx->notes), n = strlen(line);
    if (used + n + 2 <= sizeof ctx->notes) {
        memcpy(ctx->notes + used, line, n);
        memcpy(ctx->notes + used + n, "\n", 2);
    }
}

const char *vxm_context_notes(const vxm_context *ctx)
{
    return ctx ? ctx->notes : "";
}

void vxm_context_clear_notes(vxm_context *ctx)
{
    ctx->notes[0] = '\0';
}

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

int cli_fail(vxm_context *ctx)
{
    const char *msg = vxm_context_error(ctx);
    fprintf(stderr, "vxm: %s\n", (msg && *msg) ? msg : "unknown error");
    return 1;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vxm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

void cli_args_init(cli_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->i = 0;
}

int cli_next(cli_args *a)
{
    if (++a->i >= a->argc)
        return 0;
    const char *arg = a->argv[a->i];
    const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
    if (eq && (size_t)(eq - arg) < sizeof a->name_buf) {
        memcpy(a->name_buf, arg, (size_t)(eq - arg));
        a->name_buf[eq - arg] = '\0';
        a->name = a->name_buf;
        a->value = eq + 1;
    } else {
        a->name = arg;
        a->value = NULL;
    }
    return 1;
}

int cli_is(const cli_args *a, const char *opt)
{
    return strcmp(a->name, opt) == 0;
}

const char *cli_value(cli_args *a)
{
    if (a->value)
        return a->value;
    if (a->i + 1 >= a->argc) {
        cli_usage_error("option %s needs a value", a->name);
        return NULL;
    }
    return a->argv[++a->i];
}

int cli_parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        cli_usage_error("%s: expected an integer in [%d, %d], got '%s'", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || v < lo || v > hi) {
        cli_usage_error("%s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_u64(const char *opt, const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || *s == '-' || errno) {
        cli_usage_error("%s: expected a non-negative integer, got '%s'", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_is_help(const cli_args *a)
{
    return cli_is(a, "--help") || cli_is(a, "-h");
}

int cli_values(cli_args *a, const char **out, int max)
{
    int n = 0;
    const char *opt = a->name;
    if (a->value && n < max)
        out[n++] = a->value;
    while (a->i + 1 < a->argc && strncmp(a->argv[a->i + 1], "--", 2) != 0) {
        if (n >= max) {
            cli_usage_error("option %s takes at most %d values", opt, max);
            return -1;
        }
        out[n++] = a->argv[++a->i];
    }
    if (n == 0)
        cli_usage_error("option %s needs at least one value", opt);
    return n;
}

int cli_device_option(cli_args *a, cli_device_opts *d)
{
    if (cli_is(a, "--device")) {
        d->device = cli_value(a);
        return d->device ? 1 : -1;
    }
    if (cli_is(a, "--gpu")) {
        const char *v = cli_value(a);
        int n;
        if (!v || cli_parse_int("--gpu", v, 0, 1000, &n))
            return -1;
        snprintf(d->gpu_spec, sizeof d->gpu_spec, "gpu:%d", n);
        d->device = d->gpu_spec;
        return 1;
    }
    if (cli_is(a, "--threads")) {
        const char *v = cli_value(a);
        return (v && cli_parse_int("--threads", v, 1, 4096, &d->threads) == 0) ? 1 : -1;
    }
    return 0;
}

vxm_status cli_open_backend(vxm_context *ctx, const cli_device_opts *d, vxm_backend **be)
{
    if (d->threads > 0)
        vxm_context_set_threads(ctx, d->threads);
    vxm_status st = vxm_backend_open(ctx, d->device ? d->device : "auto", be);
    /* Non-fatal notices of the backend (e.g. "warning: <file>: ignoring a corrupt OpenCL program cache (...)"):
     * one stderr line each, and the run goes on. */
    for (const char *s = vxm_context_notes(ctx); *s;) {
        size_t n = strcspn(s, "\n");
        fprintf(stderr, "vxm: %.*s\n", (int)n, s);
        s += n + (s[n] != '\0');
    }
    vxm_context_clear_notes(ctx);
    return st;
}

int cli_common_option(cli_args *a, cli_device_opts *dev, const cli_string_opt *opts, int n)
{
    if (dev) {
        int r = cli_device_option(a, dev);
        if (r)
            return r;
    }
    for (int i = 0; i < n; i++)
        if (cli_is(a, opts[i].name))
            return (*opts[i].target = cli_value(a)) ? 1 : -1;
    return 0;
}

int cli_next_option(cli_args *a, cli_device_opts *dev, const cli_string_opt *opts, int n, void (*usage)(FILE *))
{
    while (cli_next(a)) {
        int r = cli_common_option(a, dev, opts, n);
        if (r < 0)
            return -1;
        if (r > 0)
            continue;
        if (!cli_is_help(a))
            return 1;
        usage(stdout);
        return CLI_HELP;
    }
    return 0;
}

double cli_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

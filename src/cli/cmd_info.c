/* vxm info: architecture, parameters and FLOPs of a model for a given input shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static int parse_shape(const char *s, int *ndim, int shape[3])
{
    int v[3], n = 0;
    const char *p = s;
    while (*p && n < 3) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 1 || x > 100000)
            return -1;
        v[n++] = (int)x;
        p = end;
        if (*p == 'x' || *p == ',')
            p++;
        else if (*p)
            return -1;
    }
    if (*p || n < 2)
        return -1;
    *ndim = n;
    shape[0] = shape[1] = shape[2] = 1;
    for (int i = 0; i < n; i++)
        shape[3 - n + i] = v[i];
    return 0;
}

int cmd_info(int argc, char **argv)
{
    const char *model = NULL, *shape_s = NULL;
    cli_args a;
    cli_args_init(&a, argc, argv);
    while (cli_next(&a)) {
        if (cli_is(&a, "--help") || cli_is(&a, "-h")) {
            printf("usage: vxm info --model M.h5 [--shape 160x192x224]\n\nPrints the model's layers, output "
                   "shapes, parameter count and convolution FLOPs for an input shape\n(default: the shape stored "
                   "in the model).\n");
            return 0;
        } else if (cli_is(&a, "--model")) {
            if (!(model = cli_value(&a)))
                return 2;
        } else if (cli_is(&a, "--shape")) {
            if (!(shape_s = cli_value(&a)))
                return 2;
        } else {
            return cli_usage_error("info: unknown option '%s'", a.name);
        }
    }
    if (!model)
        return cli_usage_error("info: --model is required");
    vxm_context *ctx = vxm_context_create();
    vxm_model *m = NULL;
    int rc = 0, ndim = 3, shape[3] = {160, 192, 224};
    if (shape_s && parse_shape(shape_s, &ndim, shape)) {
        vxm_context_free(ctx);
        return cli_usage_error("info: bad --shape '%s' (expected e.g. 160x192x224)", shape_s);
    }
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    if (vxm_model_load(ctx, model, &m)) {
        rc = cli_fail(ctx);
    } else {
        if (!shape_s && vxm_model_stored_shape(m, &ndim, shape))
            ndim = 3;
        if (vxm_model_describe(ctx, m, ndim, shape, buf, cap))
            rc = cli_fail(ctx);
        else
            fputs(buf, stdout);
    }
    free(buf);
    vxm_model_free(m);
    vxm_context_free(ctx);
    return rc;
}

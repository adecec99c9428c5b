/* vxm devices: every backend this machine offers. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cmd_devices(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vxm devices\n\nLists the CPU backend and every OpenCL platform/device with the --device "
                   "name that selects it.\nMesa rusticl devices appear only with RUSTICL_ENABLE set (e.g. "
                   "RUSTICL_ENABLE=llvmpipe).\n");
            return 0;
        }
        return cli_usage_error("devices: unknown option '%s'", argv[i]);
    }
    vxm_context *ctx = vxm_context_create();
    char buf[8192];
    int rc = 0;
    if (vxm_devices_list(ctx, buf, sizeof buf))
        rc = cli_fail(ctx);
    else
        fputs(buf, stdout);
    vxm_context_free(ctx);
    return rc;
}

/* libFuzzer target: label files (--labels L of vxm test/train, cli_read_labels): a .npz (array "labels", or the
 * only array) when the input is a zip archive, else a .npy; then the label values are checked (integers,
 * without 0 and repeats, at most 64). */
#include "cli/cli.h"
#include "fuzz_common.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    int zip = size >= 2 && data[0] == 'P' && data[1] == 'K';
    fuzz_write(zip ? ".npz" : ".npy", data, size, 0, path, sizeof path);
    vxm_context *ctx = fuzz_context();
    int labels[64], n = 0;
    int rc = cli_read_labels(ctx, path, labels, 64, &n);
    if (rc == 0 && (n < 1 || n > 64))
        abort();
    fuzz_verbose(ctx, rc ? VXM_EFORMAT : VXM_OK);
    vxm_context_free(ctx);
    unlink(path);
    return 0;
}

/* libFuzzer target: the NumPy .npy reader (header dictionary, dtypes, shapes, truncated data). */
#include "fuzz_common.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    fuzz_write(".npy", data, size, 0, path, sizeof path);
    fuzz_read_volume(path, NULL);
    return 0;
}

/* libFuzzer target: the NumPy .npz reader (zip directory through libzip, member selection by key, the .npy
 * inside), with the default key and with the "labels" key of label files. */
#include "fuzz_common.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    fuzz_write(".npz", data, size, 0, path, sizeof path);
    fuzz_read_volume(path, NULL);
    fuzz_write(".npz", data, size, 0, path, sizeof path);
    fuzz_read_volume(path, "labels");
    return 0;
}

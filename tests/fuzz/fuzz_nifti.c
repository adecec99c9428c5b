/* libFuzzer target: the NIfTI-1/2 reader, .nii and .nii.gz (fuzz_common.h: fuzz_volume_plain_and_gz). */
#include "fuzz_common.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_volume_plain_and_gz(data, size, ".nii", ".nii.gz");
    return 0;
}

/* libFuzzer target: the FreeSurfer MGH reader, .mgh and .mgz (fuzz_common.h: fuzz_volume_plain_and_gz). */
#include "fuzz_common.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_volume_plain_and_gz(data, size, ".mgh", ".mgz");
    return 0;
}

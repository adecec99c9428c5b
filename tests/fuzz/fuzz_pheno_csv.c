/* libFuzzer target: the phenotype CSV of `vxm template --pheno` (pheno_csv.c) for 1 to 4 listed images, and the
 * same bytes as a --pheno-style number list (pheno_parse_list).  Errors print one line on stderr. */
#include "cli/pheno_csv.h"
#include "fuzz_common.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128];
    fuzz_write(".csv", data, size, 0, path, sizeof path);
    for (int rows = 1; rows <= 4; rows++) {
        float *table = NULL;
        int cols = 0;
        if (pheno_csv_read(path, rows, &table, &cols) == 0) {
            if (!table || cols < 1)
                abort();
            volatile float last = table[(size_t)rows * (size_t)cols - 1];
            (void)last;
        }
        free(table);
    }
    unlink(path);
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    float v[16];
    int n = pheno_parse_list(text, v, 16);
    if (n > 16)
        abort();
    free(text);
    return 0;
}

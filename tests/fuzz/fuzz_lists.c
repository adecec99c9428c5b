/* libFuzzer target: the list files of the command line (cli_lists.c): image lists (1 name per line), pair lists
 * (2), pairs with segmentations (2 or 4), then --img-prefix/--img-suffix applied.  Errors print one line on
 * stderr (run with -close_fd_mask=2 to hide them). */
#include "cli/cli.h"
#include "fuzz_common.h"

FUZZ_INITIALIZE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const cli_list_format formats[] = {
        {.min_names = 1, .max_names = 1, .expected = "one name", .items = "images"},
        {.min_names = 2, .max_names = 2, .expected = "two names", .items = "pairs"},
        {.min_names = 2, .max_names = 4, .expected = "2 or 4 names", .items = "pairs"},
        {.min_names = 1, .max_names = CLI_LIST_MAX_NAMES, .expected = "names", .items = "rows"},
    };
    char path[128];
    fuzz_write(".txt", data, size, 0, path, sizeof path);
    for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) {
        cli_list l;
        if (cli_list_read(path, &formats[k], &l) == 0) {
            if (l.rows < 1 || cli_list_affix(&l, "pre/", ".npz"))
                abort();
            for (int r = 0; r < l.rows; r++)
                if (!cli_list_name(&l, r, 0) || strncmp(cli_list_name(&l, r, 0), "pre/", 4) != 0)
                    abort();
            cli_list_free(&l);
        }
    }
    unlink(path);
    return 0;
}

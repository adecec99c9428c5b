/* List files of the command line: `vxm test --pairs`, `vxm register --batch`, `vxm train --pairs/--img-list`.
 *
 * One reader for every "N names per line" file, so the rules are the same everywhere: names are separated by
 * whitespace, blank lines and lines whose first name starts with '#' are skipped, and a malformed line is
 * reported with its number.  VoxelMorph's read_file_list (py/utils.py) strips each line and prepends/appends
 * --img-prefix/--img-suffix; cli_affix does the latter for every command. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define LIST_SEPARATORS " \t\r\n\v\f"

char *cli_affix(const char *prefix, const char *name, const char *suffix)
{
    prefix = prefix ? prefix : "";
    suffix = suffix ? suffix : "";
    size_t n = strlen(prefix) + strlen(name) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (!s) {
        fprintf(stderr, "vxm: out of memory\n");
        return NULL;
    }
    snprintf(s, n, "%s%s%s", prefix, name, suffix);
    return s;
}

void cli_list_free(cli_list *l)
{
    for (int i = 0; i < l->rows * l->width; i++)
        free(l->names[i]);
    free(l->names);
    free(l->lineno);
    memset(l, 0, sizeof *l);
}

/* Appends one row (names copied; missing optional names stay NULL).  Returns 0, or 1 after "out of memory". */
static int list_add(cli_list *l, char *const *tok, int ntok, int lineno, int *cap)
{
    if (l->rows == *cap) {
        int ncap = *cap ? 2 * *cap : 16;
        char **names = realloc(l->names, sizeof *names * (size_t)ncap * (size_t)l->width);
        if (names)
            l->names = names;
        int *ln = names ? realloc(l->lineno, sizeof *ln * (size_t)ncap) : NULL;
        if (!ln) {
            fprintf(stderr, "vxm: out of memory\n");
            return 1;
        }
        l->lineno = ln;
        *cap = ncap;
    }
    char **row = l->names + (size_t)l->rows * (size_t)l->width;
    for (int j = 0; j < l->width; j++)
        row[j] = NULL;
    l->lineno[l->rows++] = lineno;
    for (int j = 0; j < ntok; j++)
        if (!(row[j] = cli_affix(NULL, tok[j], NULL)))
            return 1;
    return 0;
}

int cli_list_read(const char *path, const cli_list_format *fmt, cli_list *l)
{
    memset(l, 0, sizeof *l);
    l->width = fmt->max_names;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "vxm: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL, *tok[CLI_LIST_MAX_NAMES];
    size_t linecap = 0;
    int lineno = 0, rc = 0, cap = 0;
    while (!rc && getline(&line, &linecap, f) >= 0) {
        lineno++;
        char *save = NULL;
        int nt = 0;
        for (char *t = strtok_r(line, LIST_SEPARATORS, &save); t; t = strtok_r(NULL, LIST_SEPARATORS, &save)) {
            if (nt == 0 && t[0] == '#')
                break;
            if (nt < CLI_LIST_MAX_NAMES)
                tok[nt] = t;
            nt++; /* counted beyond the maximum too: the message says how many names the line has */
        }
        if (nt == 0)
            continue;
        if (nt < fmt->min_names || nt > fmt->max_names) {
            fprintf(stderr, "vxm: %s: line %d: expected %s, found %d\n", path, lineno, fmt->expected, nt);
            rc = 1;
        } else {
            rc = list_add(l, tok, nt, lineno, &cap);
        }
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "vxm: %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    free(line);
    fclose(f);
    if (!rc && l->rows == 0) {
        fprintf(stderr, "vxm: %s: no %s in the list\n", path, fmt->items);
        rc = 1;
    }
    if (rc)
        cli_list_free(l);
    return rc;
}

int cli_list_affix(cli_list *l, const char *prefix, const char *suffix)
{
    if ((!prefix || !*prefix) && (!suffix || !*suffix))
        return 0;
    for (int i = 0; i < l->rows * l->width; i++) {
        if (!l->names[i])
            continue;
        char *s = cli_affix(prefix, l->names[i], suffix);
        if (!s)
            return 1;
        free(l->names[i]);
        l->names[i] = s;
    }
    return 0;
}

int cli_read_labels(vxm_context *ctx, const char *path, int *labels, int max, int *n)
{
    vxm_volume *l = NULL;
    if (vxm_volume_read(ctx, path, "labels", &l))
        return cli_fail(ctx);
    *n = 0;
    int rc = 0;
    for (size_t i = 0; i < vxm_volume_numel(l); i++) {
        float x = l->data[i];
        if (!isfinite(x) || fabsf(x) > 2e9f || x != rintf(x)) {
            fprintf(stderr, "vxm: %s: label %g is not an integer\n", path, (double)x);
            rc = 1;
            break;
        }
        int v = (int)lrintf(x), seen = v == 0;
        for (int j = 0; j < *n && !seen; j++)
            seen = labels[j] == v;
        if (seen)
            continue;
        if (*n >= max) {
            fprintf(stderr, "vxm: %s: more than %d labels\n", path, max);
            rc = 1;
            break;
        }
        labels[(*n)++] = v;
    }
    if (!rc && *n == 0) {
        fprintf(stderr, "vxm: %s: no non-zero labels\n", path);
        rc = 1;
    }
    vxm_volume_free(l);
    return rc;
}

/* The attribute table of conditional templates (pheno_csv.h). */
#include "cli/pheno_csv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fields of one line, split at commas in place (blanks around a field trimmed); returns the count. */
static int split(char *line, char **field, int max)
{
    int n = 0;
    for (char *p = line;; p++) {
        char *end = strchr(p, ',');
        if (end)
            *end = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strlen(p);
        while (len && strchr(" \t\r\n", p[len - 1]))
            p[--len] = '\0';
        if (n < max)
            field[n] = p;
        n++;
        if (!end)
            return n;
        p = end;
    }
}

/* A finite number filling the whole field. */
static int number(const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v) || fabs(v) > 3e38)
        return 0;
    *out = (float)v;
    return 1;
}

#define PHENO_MAX_COLS 1024

int pheno_csv_read(const char *path, int rows, float **out, int *ncols)
{
    *out = NULL;
    *ncols = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "vxm: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL, *field[PHENO_MAX_COLS];
    size_t cap = 0;
    int lineno = 0, got = 0, cols = 0, rc = 0, seen = 0;
    float *data = NULL;
    while (!rc && getline(&line, &cap, f) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue; /* blank */
        int n = split(line, field, PHENO_MAX_COLS), numeric = 1;
        float v;
        for (int k = 0; k < n && k < PHENO_MAX_COLS; k++)
            numeric &= number(field[k], &v);
        if (!seen++ && !numeric)
            continue; /* a header row */
        if (n > PHENO_MAX_COLS || (cols && n != cols)) {
            fprintf(stderr, "vxm: %s: line %d: %d values, expected %d\n", path, lineno, n,
                    cols ? cols : PHENO_MAX_COLS);
            rc = 1;
            break;
        }
        cols = n;
        if (got >= rows) {
            fprintf(stderr, "vxm: %s: line %d: more attribute rows than the %d listed images\n", path, lineno, rows);
            rc = 1;
            break;
        }
        if (!data && !(data = malloc(sizeof(float) * (size_t)rows * (size_t)cols))) {
            fprintf(stderr, "vxm: out of memory\n");
            rc = 1;
            break;
        }
        for (int k = 0; k < n && !rc; k++)
            if (!number(field[k], &data[(size_t)got * (size_t)cols + (size_t)k])) {
                fprintf(stderr, "vxm: %s: line %d: '%s' is not a finite number\n", path, lineno, field[k]);
                rc = 1;
            }
        got++;
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "vxm: %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    if (!rc && got != rows) {
        fprintf(stderr, "vxm: %s: %d rows of attributes for %d listed images\n", path, got, rows);
        rc = 1;
    }
    free(line);
    fclose(f);
    if (rc) {
        free(data);
        return 1;
    }
    *out = data;
    *ncols = cols;
    return 0;
}

int pheno_parse_list(const char *s, float *out, int max)
{
    char *copy = strdup(s), *save = NULL;
    int n = 0, ok = copy != NULL;
    for (char *tok = ok ? strtok_r(copy, ", \t", &save) : NULL; tok && ok; tok = strtok_r(NULL, ", \t", &save)) {
        float v;
        ok = n < max && number(tok, &v);
        if (ok)
            out[n++] = v;
    }
    free(copy);
    return ok && n > 0 ? n : -1;
}

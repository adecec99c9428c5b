/* Internal to `vxm template --pheno` (conditional templates, training doc §4.2): the attributes of every listed
 * image, one CSV row per image in list order. */
#ifndef VXM_CLI_PHENO_CSV_H
#define VXM_CLI_PHENO_CSV_H

/* Reads CSV `path`: comma-separated finite numbers, the same count on every row; a first row with a
 * non-numeric field is a header (skipped); blank lines are skipped.  There must be `rows` data rows.  *out gets
 * rows x *ncols floats (malloc'd, row-major).  Errors print one line "vxm: FILE: line N: problem" (or "vxm:
 * FILE: problem") and return 1. */
int pheno_csv_read(const char *path, int rows, float **out, int *ncols);
/* "a,b,c" (commas and/or blanks) into at most max finite numbers; returns how many, -1 when not such a list. */
int pheno_parse_list(const char *s, float *out, int max);

#endif

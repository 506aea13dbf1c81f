/* report.h — `poet report`: summaries and comparisons of per-iteration loss logs. */
#ifndef POET_REPORT_H
#define POET_REPORT_H

#include <stdio.h>

#include "poet/error.h"

/* Summarises each log (and compares them when n > 1) to `out`; csv = 1 for CSV. Serial. */
poet_status poet_report_run(int n, char **paths, int csv, FILE *out);

#endif

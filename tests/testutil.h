/* testutil.h — what every poet test shares: comparisons that print the largest difference, and
 * checks that make the exit code the verdict. */
#ifndef POET_TESTUTIL_H
#define POET_TESTUTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "poet/config.h"

/* Number of failed checks so far; a test's main returns test_finish(). */
extern int test_failures;

#define TEST_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            test_failures++;                                                                       \
        }                                                                                          \
    } while (0)

/* A poet call that must succeed; on failure prints poet's message and exits. */
#define TEST_OK(expr)                                                                              \
    do {                                                                                           \
        poet_status test_st_ = (expr);                                                             \
        if (test_st_ != POET_OK) {                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr,         \
                    (int)test_st_, poet_error_message());                                          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Compares got against ref element by element with |got - ref| <= atol + rtol·|ref|; prints the
 * largest violation ratio and where it is; returns 1 when all elements pass. */
int test_compare_f64(const char *what, const double *got, const double *ref, size_t n, double atol,
                     double rtol);
int test_compare_f32(const char *what, const float *got, const double *ref, size_t n, double atol,
                     double rtol);

/* calloc that ends the test with a message instead of returning NULL. */
void *xmalloc(size_t bytes);

/* Layer specs for the architectures tests build by hand. */
poet_layer_spec conv(int out, int kernel, int stride, int padding);
poet_layer_spec relu(void);
poet_layer_spec pool(poet_layer_kind kind, int kernel, int stride, int padding);
poet_layer_spec global_pool(poet_layer_kind kind);
poet_layer_spec linear(int out);
poet_layer_spec batchnorm(void);
poet_layer_spec from(poet_layer_spec s, int input); /* reads layer `input` instead */
poet_layer_spec add_of(int a, int b);               /* add of layers a and b */
poet_layer_spec no_bias(poet_layer_spec s);         /* a conv or linear with "bias": false */

/* Prints "N passed, M failed"-style verdict and returns the exit code (0 only when nothing failed).
 */
int test_finish(const char *name);

#endif

#include "testutil.h"

#include <math.h>
#include <string.h>

int test_failures;

int test_compare_f64(const char *what, const double *got, const double *ref, size_t n, double atol,
                     double rtol) {
    double worst_ratio = 0, worst_diff = 0;
    size_t worst = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs(got[i] - ref[i]);
        double ratio = diff / (atol + rtol * fabs(ref[i]));
        if (!(ratio <= 1.0))
            bad++;
        if (!(ratio <= worst_ratio)) { /* also catches NaN */
            worst_ratio = ratio;
            worst_diff = diff;
            worst = i;
        }
    }
    printf("%-40s n=%-8zu max|diff|=%.3e at %zu (got %.9g ref %.9g) tol-ratio=%.3f %s\n", what, n,
           worst_diff, worst, n ? got[worst] : 0.0, n ? ref[worst] : 0.0, worst_ratio,
           bad ? "FAIL" : "ok");
    if (bad) {
        fprintf(stderr, "FAIL %s: %zu of %zu elements outside atol=%g rtol=%g\n", what, bad, n,
                atol, rtol);
        test_failures++;
    }
    return bad == 0;
}

int test_compare_f32(const char *what, const float *got, const double *ref, size_t n, double atol,
                     double rtol) {
    double *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp) {
        fprintf(stderr, "FAIL out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        tmp[i] = got[i];
    int ok = test_compare_f64(what, tmp, ref, n, atol, rtol);
    free(tmp);
    return ok;
}

int test_finish(const char *name) {
    if (test_failures) {
        printf("%s: %d check(s) failed\n", name, test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

void *xmalloc(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FAIL out of memory\n");
        exit(1);
    }
    return p;
}

/* Layer specs for tests; a layer reads the previous one unless `from`/add_of say otherwise. */
static poet_layer_spec spec(poet_layer_kind kind, int out, int kernel, int stride, int padding,
                            int global) {
    poet_layer_spec s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.out = out;
    s.kernel = kernel;
    s.stride = stride;
    s.padding = padding;
    s.global = global;
    return s;
}
poet_layer_spec conv(int out, int kernel, int stride, int padding) {
    return spec(POET_LAYER_CONV, out, kernel, stride, padding, 0);
}
poet_layer_spec relu(void) { return spec(POET_LAYER_RELU, 0, 0, 0, 0, 0); }
poet_layer_spec pool(poet_layer_kind kind, int kernel, int stride, int padding) {
    return spec(kind, 0, kernel, stride, padding, 0);
}
poet_layer_spec global_pool(poet_layer_kind kind) { return spec(kind, 0, 0, 0, 0, 1); }
poet_layer_spec linear(int out) { return spec(POET_LAYER_LINEAR, out, 0, 0, 0, 0); }
poet_layer_spec batchnorm(void) { return spec(POET_LAYER_BATCHNORM, 0, 0, 0, 0, 0); }
poet_layer_spec from(poet_layer_spec s, int input) {
    s.n_inputs = 1;
    s.inputs[0] = input;
    return s;
}
poet_layer_spec no_bias(poet_layer_spec s) {
    s.no_bias = 1;
    return s;
}
poet_layer_spec add_of(int a, int b) {
    poet_layer_spec s = spec(POET_LAYER_ADD, 0, 0, 0, 0, 0);
    s.n_inputs = 2;
    s.inputs[0] = a;
    s.inputs[1] = b;
    return s;
}

/* torch_sgd_step.c — poet's SGD step on arrays from a file, for tests/test_torch.py (case sgd).
 *
 *   torch_sgd_step LR MOMENTUM WEIGHT_DECAY NESTEROV FILE
 *
 * FILE holds n params, n gradients and n momentum values (float32, native order, back to back);
 * poet_sgd_step runs once and the params and momentum are written back in place, so the Python
 * side can compare PyTorch's step with poet's own code bit for bit.
 */
#include <stdio.h>
#include <stdlib.h>

#include "poet/optim.h"

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: torch_sgd_step LR MOMENTUM WEIGHT_DECAY NESTEROV FILE\n");
        return 2;
    }
    poet_sgd_step_params p = {atof(argv[1]), atof(argv[2]), atof(argv[3]), atoi(argv[4])};
    FILE *f = fopen(argv[5], "r+b");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        perror(argv[5]);
        return 1;
    }
    long bytes = ftell(f);
    size_t n = (size_t)bytes / (3 * sizeof(float));
    float *buf = malloc(3 * n * sizeof(float) + 1);
    rewind(f);
    if (!buf || bytes % (3 * (long)sizeof(float)) != 0 ||
        fread(buf, sizeof(float), 3 * n, f) != 3 * n) {
        fprintf(stderr, "%s: expected 3n float32 values\n", argv[5]);
        return 1;
    }
    poet_sgd_step(buf, buf + n, buf + 2 * n, n, &p);
    rewind(f);
    int ok = fwrite(buf, sizeof(float), 3 * n, f) == 3 * n && fclose(f) == 0;
    free(buf);
    if (!ok) {
        perror(argv[5]);
        return 1;
    }
    return 0;
}

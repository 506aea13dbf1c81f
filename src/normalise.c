/* normalise.c — data.mean / data.std "auto". */
#include "poet/normalise.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/checkpoint.h"
#include "poet/data.h"
#include "poet/mpierror.h"

poet_status poet_normalise_compute(const poet_config *cfg, double *mean, double *std) {
    poet_status st = POET_OK;
    poet_dataset ds;
    poet_data_spec spec;
    float *image = NULL;
    memset(&ds, 0, sizeof ds);
    poet_config_data_spec(cfg, 0, &spec);
    /* mean 0, std 1 for every channel: the loader's values are then x/255 itself */
    spec.n_norm = 1;
    spec.mean[0] = 0.0;
    spec.std[0] = 1.0;
    POET_TRY(poet_data_load_spec(&spec, &ds));
    size_t size = (size_t)ds.channels * ds.height * ds.width, n = (size_t)ds.count * size;
    POET_ALLOC(image, size);
    /* Two passes in one fixed order (image by image, C, H, W): the same numbers on every rank and
     * every run. */
    double sum = 0, squares = 0;
    for (long i = 0; i < ds.count; i++) {
        POET_TRY(poet_data_image(&ds, i, image));
        for (size_t k = 0; k < size; k++)
            sum += image[k];
    }
    *mean = sum / (double)n;
    for (long i = 0; i < ds.count; i++) {
        POET_TRY(poet_data_image(&ds, i, image));
        for (size_t k = 0; k < size; k++) {
            double d = image[k] - *mean;
            squares += d * d;
        }
    }
    *std = sqrt(squares / (double)n);
    if (!(*std >= POET_STD_MIN))
        POET_FAIL(POET_ERR_DATA,
                  "%s: data.std \"auto\": the pixels' standard deviation is %g, "
                  "below %g (all images alike?): give data.std as a number",
                  spec.images, *std, POET_STD_MIN);
fail:
    free(image);
    poet_data_free(&ds);
    return st;
}

/* The checkpoint `latest` names in `dir`, if there is one. */
static int latest_in(const char *dir, char *out, size_t size) {
    char path[POET_PATH_MAX + 16], name[POET_PATH_MAX] = "";
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(name, sizeof name, f))
        name[0] = '\0';
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    return name[0] && !strchr(name, '/') && snprintf(out, size, "%s/%s", dir, name) < (int)size;
}

poet_status poet_normalise_resolve(MPI_Comm comm, poet_config *cfg, const char *checkpoint,
                                   int try_latest, int quiet) {
    poet_status st = POET_OK;
    poet_config *stored = NULL;
    char latest[POET_PATH_MAX];
    double mean = cfg->mean, std = cfg->std;
    const char *from = "the training set";
    int rank = 0;
    if (cfg->mean_auto != 1 && cfg->std_auto != 1)
        return POET_OK;
    POET_MPI(MPI_Comm_rank(comm, &rank));
    if (!checkpoint && try_latest && latest_in(cfg->checkpoint_dir, latest, sizeof latest))
        checkpoint = latest;
    if (checkpoint) {
        poet_shape input;
        long iteration;
        POET_ALLOC(stored, 1);
        /* A checkpoint that cannot be read is reported when it is read for real; here it only
         * means computing the values afresh. */
        if (poet_checkpoint_peek(checkpoint, stored, &input, &iteration) == POET_OK &&
            stored->mean_auto != 1 && stored->std_auto != 1) {
            mean = stored->mean;
            std = stored->std;
            from = checkpoint;
        } else
            poet_error_clear();
    }
    if (from != checkpoint)
        st = poet_normalise_compute(cfg, &mean, &std);
fail:
    st = poet_error_agree(comm, st);
    if (st == POET_OK) {
        if (cfg->mean_auto == 1)
            cfg->mean = mean, cfg->mean_auto = 2;
        if (cfg->std_auto == 1)
            cfg->std = std, cfg->std_auto = 2;
        if (rank == 0 && !quiet)
            printf("data: mean %.6f std %.6f (\"auto\", from %s)\n", cfg->mean, cfg->std, from);
    }
    free(stored);
    return st;
}

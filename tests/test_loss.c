/* test_loss.c — fixed-point logit sums (exact, order independent), the joint loss against the
 * double-precision reference, numeric failures and the per-member loss/accuracy. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poet/loss.h"
#include "poet/reference.h"
#include "poet/rng.h"
#include "testutil.h"

#define M 7
#define B 5
#define K 10

/* logits[M][B][K], values of a trained network's scale with a few large ones. */
static float logits[M][B][K];
static const uint8_t labels[B] = {3, 0, 9, 3, 7};

static void make_logits(void) {
    for (int j = 0; j < M; j++)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) {
                uint64_t c = ((uint64_t)j * B + b) * K + k;
                double u = poet_rng_uniform(11, POET_STREAM_TEST, c);
                logits[j][b][k] = (float)((u - 0.5) * (k == 3 ? 400 : 12));
            }
}

/* Adds the members listed in `order` into a fresh accumulator. */
static void sum_members(const int *order, int n, int64_t *acc) {
    memset(acc, 0, sizeof(int64_t) * B * K);
    for (int i = 0; i < n; i++)
        TEST_OK(poet_loss_add_fixed(acc, &logits[order[i]][0][0], K, B, K, order[i]));
}

static void test_fixed_order(void) {
    int64_t forward[B * K], backward[B * K], shuffled[B * K], grouped[B * K];
    int order[M], reversed[M], perm[M];
    for (int j = 0; j < M; j++) {
        order[j] = j;
        reversed[j] = M - 1 - j;
    }
    uint32_t p[M];
    poet_rng_permutation(5, 0, p, M);
    for (int j = 0; j < M; j++)
        perm[j] = (int)p[j];
    sum_members(order, M, forward);
    sum_members(reversed, M, backward);
    sum_members(perm, M, shuffled);

    /* A tree: partial sums {0,1,2}, {3,4}, {5,6} added as ({5,6} + ({3,4} + {0,1,2})). */
    int64_t a[B * K], bb[B * K], c[B * K];
    int ga[] = {2, 0, 1}, gb[] = {4, 3}, gc[] = {6, 5};
    sum_members(ga, 3, a);
    sum_members(gb, 2, bb);
    sum_members(gc, 2, c);
    for (int i = 0; i < B * K; i++)
        grouped[i] = c[i] + (bb[i] + a[i]);

    TEST_CHECK(memcmp(forward, backward, sizeof forward) == 0, "reverse order changes the sum");
    TEST_CHECK(memcmp(forward, shuffled, sizeof forward) == 0, "permuted order changes the sum");
    TEST_CHECK(memcmp(forward, grouped, sizeof forward) == 0, "grouping changes the sum");

    /* The mean agrees with the exact mean (a double sum of floats of similar scale is exact here,
     * and each rounding to 2^-32 units costs at most 2^-33 per member). */
    double mean[B * K], exact[B * K];
    poet_loss_fixed_to_mean(forward, B, K, M, mean);
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int j = 0; j < M; j++)
                s += logits[j][b][k];
            exact[b * K + k] = s / M;
        }
    test_compare_f64("fixed-point mean vs double mean", mean, exact, B * K, ldexp(1, -32), 0);

    /* Rounding: one unit is 2^-32; half a unit rounds to even. */
    int64_t one = 0;
    float tiny[1] = {(float)ldexp(1, -32)};
    TEST_OK(poet_loss_add_fixed(&one, tiny, 1, 1, 1, 0));
    TEST_CHECK(one == 1, "2^-32 gives %lld units", (long long)one);
    float big[1] = {(float)(POET_FIXED_LIMIT - 64)};
    int64_t acc_big = 0;
    TEST_OK(poet_loss_add_fixed(&acc_big, big, 1, 1, 1, 0));
    TEST_CHECK(acc_big == (int64_t)(POET_FIXED_LIMIT - 64) * ((int64_t)1 << 32),
               "%g gives %lld units", big[0], (long long)acc_big);
}

static void expect_numeric(float bad, int member, const char *what) {
    float row[2 * K];
    for (int i = 0; i < 2 * K; i++)
        row[i] = 1;
    row[K + 4] = bad; /* batch row 1, class 4 */
    int64_t acc[2 * K] = {0};
    poet_error_clear();
    poet_status st = poet_loss_add_fixed(acc, row, K, 2, K, member);
    const char *msg = poet_error_message();
    printf("%s: %s\n", what, msg);
    char name[32];
    snprintf(name, sizeof name, "member %d", member);
    TEST_CHECK(st == POET_ERR_NUMERIC, "%s: status %d, expected POET_ERR_NUMERIC", what, (int)st);
    TEST_CHECK(strstr(msg, name) != NULL, "%s: message does not name %s: %s", what, name, msg);
    TEST_CHECK(strstr(msg, "[1][4]") != NULL, "%s: message does not name the logit: %s", what, msg);
    poet_error_clear();
}

static void test_numeric_errors(void) {
    expect_numeric(NAN, 5, "NaN");
    expect_numeric(INFINITY, 6, "+Inf");
    expect_numeric(-INFINITY, 7, "-Inf");
    expect_numeric((float)POET_FIXED_LIMIT, 8, "2^20");
    expect_numeric(-1e30f, 9, "-1e30");
}

/* poet_loss_joint from the fixed-point mean against poet_ref_joint_loss on the same logits. */
static void test_joint_vs_reference(void) {
    int64_t acc[B * K] = {0};
    for (int j = 0; j < M; j++)
        TEST_OK(poet_loss_add_fixed(acc, &logits[j][0][0], K, B, K, j));
    double mean[B * K];
    poet_loss_fixed_to_mean(acc, B, K, M, mean);
    float grad[B * K];
    double loss = 0;
    long correct = -1;
    poet_loss_joint(mean, labels, B, K, M, grad, &loss, &correct);

    double *dlog = malloc(sizeof(double) * M * B * K), *lg = malloc(sizeof(double) * M * B * K);
    if (!dlog || !lg)
        exit(1);
    for (int i = 0; i < M * B * K; i++)
        lg[i] = (&logits[0][0][0])[i];
    double ref_loss = poet_ref_joint_loss(lg, M, B, K, labels, dlog);
    test_compare_f64("joint loss vs reference", &loss, &ref_loss, 1, 1e-9, 1e-9);
    for (int j = 0; j < M; j++) {
        char what[64];
        snprintf(what, sizeof what, "joint grad vs reference member %d", j);
        test_compare_f32(what, grad, dlog + (size_t)j * B * K, B * K, 1e-9, 1e-6);
    }

    long want_correct = 0;
    for (int b = 0; b < B; b++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (mean[b * K + k] > mean[b * K + best])
                best = k;
        want_correct += best == labels[b];
    }
    TEST_CHECK(correct == want_correct, "correct %ld, expected %ld", correct, want_correct);

    double loss2 = 0;
    long correct2 = -1;
    poet_loss_joint(mean, labels, B, K, M, NULL, &loss2, &correct2);
    TEST_CHECK(loss2 == loss && correct2 == correct, "grad=NULL changes loss or count");
    free(dlog);
    free(lg);
}

/* Stability at ±500 (exp(500) overflows nothing after the max shift) and ties. */
static void test_joint_extremes(void) {
    double mean[2 * 4] = {500, -500, 0, 499, /* row 0 */ 2, 7, 7, -1 /* row 1: tie 1 and 2 */};
    uint8_t lab[2] = {1, 2};
    float grad[8];
    double loss;
    long correct;
    poet_loss_joint(mean, lab, 2, 4, 3, grad, &loss, &correct);
    /* row 0: lse = 500 + log(1 + e^-1 + e^-500 + e^-1000) ; row 1: lse = 7 + log(2 + e^-5 + e^-8)
     */
    double lse0 = 500 + log1p(exp(-1.0) + exp(-500.0) + exp(-1000.0));
    double lse1 = 7 + log(2 + exp(-5.0) + exp(-8.0));
    double want = ((lse0 + 500) + (lse1 - 7)) / 2;
    test_compare_f64("joint loss at +-500", &loss, &want, 1, 1e-12, 1e-12);
    TEST_CHECK(correct == 0, "ties go to the lowest index: correct %ld, expected 0", correct);
    double want_grad[8];
    for (int k = 0; k < 4; k++) {
        want_grad[k] = (exp(mean[k] - lse0) - (k == 1)) / 6;
        want_grad[4 + k] = (exp(mean[4 + k] - lse1) - (k == 2)) / 6;
    }
    test_compare_f32("joint grad at +-500", grad, want_grad, 8, 1e-9, 1e-6);
    lab[1] = 1;
    poet_loss_joint(mean, lab, 2, 4, 3, NULL, &loss, &correct);
    TEST_CHECK(correct == 1, "tie at classes 1,2 with label 1: correct %ld, expected 1", correct);

    double probs[4], sum = 0;
    poet_softmax_row(mean, 4, probs);
    for (int k = 0; k < 4; k++)
        sum += probs[k];
    double one = 1, p0 = exp(500 - lse0);
    test_compare_f64("softmax(+-500) sums to 1", &sum, &one, 1, 1e-15, 0);
    test_compare_f64("softmax(+-500)[0]", probs, &p0, 1, 1e-15, 1e-12);
}

/* A hand example: rows [1,2,3] (label 2), [5,5,1] (label 1: tie -> class 0 -> wrong),
 * [0,0,0] (label 0: tie -> class 0 -> right). Row stride 4 with padding junk. */
static void test_member(void) {
    float rows[3 * 4] = {1, 2, 3, 1e30f, 5, 5, 1, -1e30f, 0, 0, 0, NAN};
    uint8_t lab[3] = {2, 1, 0};
    double loss;
    long correct;
    poet_loss_member(rows, 4, lab, 3, 3, &loss, &correct);
    double want =
        ((log(exp(1) + exp(2) + exp(3)) - 3) + (log(2 * exp(5) + exp(1)) - 5) + log(3.0)) / 3;
    test_compare_f64("member loss (hand)", &loss, &want, 1, 1e-12, 1e-12);
    TEST_CHECK(correct == 2, "member correct %ld, expected 2", correct);

    float far[3] = {-500, 500, 0};
    uint8_t l0 = 0;
    poet_loss_member(far, 3, &l0, 1, 3, &loss, &correct);
    want = 1000;
    test_compare_f64("member loss at +-500", &loss, &want, 1, 1e-9, 1e-12);
}

/* A member's own gradient with weight 1 over one member is a one-member ensemble's joint gradient,
 * bit for bit (what makes the independent objective equal separate one-member runs); over M
 * members and with a weight it is that gradient scaled. */
static void test_member_grad(void) {
    int64_t acc[B * K] = {0};
    double mean[B * K], loss;
    long correct;
    float joint[B * K], own[B * K], own3[B * K];
    TEST_OK(poet_loss_add_fixed(acc, &logits[2][0][0], K, B, K, 2));
    poet_loss_fixed_to_mean(acc, B, K, 1, mean);
    poet_loss_joint(mean, labels, B, K, 1, joint, &loss, &correct);
    poet_loss_member_grad(&logits[2][0][0], K, labels, B, K, 1, 1.0, own);
    TEST_CHECK(memcmp(joint, own, sizeof own) == 0, "own gradient differs from a 1-member joint");
    /* Also for logits below 2^-8, whose float bits are finer than the 2^-32 grid (the own term
     * rounds them as the fixed-point sum does; the float gradient rarely sees the difference). */
    float tiny[B * K];
    int64_t tiny_acc[B * K] = {0};
    for (int i = 0; i < B * K; i++)
        tiny[i] = (&logits[2][0][0])[i] * 1e-5f;
    TEST_OK(poet_loss_add_fixed(tiny_acc, tiny, K, B, K, 2));
    poet_loss_fixed_to_mean(tiny_acc, B, K, 1, mean);
    poet_loss_joint(mean, labels, B, K, 1, joint, &loss, &correct);
    poet_loss_member_grad(tiny, K, labels, B, K, 1, 1.0, own);
    TEST_CHECK(memcmp(joint, own, sizeof own) == 0,
               "own gradient of tiny logits differs from a 1-member joint");
    poet_loss_member_grad(&logits[2][0][0], K, labels, B, K, 1, 1.0, own);
    poet_loss_member_grad(&logits[2][0][0], K, labels, B, K, 4, 0.75, own3);
    int off = 0;
    for (int i = 0; i < B * K; i++)
        off += fabsf(own3[i] - own[i] * 0.75f / 4) > 1e-7f * fabsf(own[i]) + 1e-12f;
    TEST_CHECK(off == 0, "%d entries of the weighted own gradient are not 0.75/4 of it", off);
    /* beta = 1 keeps poet_loss_joint's bits; beta = 0.5 halves them exactly. */
    memset(acc, 0, sizeof acc);
    TEST_OK(poet_loss_add_fixed(acc, &logits[2][0][0], K, B, K, 2));
    poet_loss_fixed_to_mean(acc, B, K, 1, mean);
    poet_loss_joint(mean, labels, B, K, 1, joint, &loss, &correct);
    float w1[B * K], w5[B * K];
    poet_loss_joint_weighted(mean, labels, B, K, 1, 1.0, w1, &loss, &correct);
    poet_loss_joint_weighted(mean, labels, B, K, 1, 0.5, w5, &loss, &correct);
    TEST_CHECK(memcmp(joint, w1, sizeof w1) == 0, "beta = 1 changes the joint gradient");
    off = 0;
    for (int i = 0; i < B * K; i++)
        off += w5[i] != joint[i] / 2;
    TEST_CHECK(off == 0, "beta = 0.5: %d entries are not half the joint gradient", off);
}

/* Member dropout: a pure function of (seed, iteration), never empty, at the configured rate. */
static void test_dropout(void) {
    enum { MEMBERS = 10, ITERS = 20000 };
    unsigned char a[MEMBERS], b[MEMBERS];
    long dropped = 0;
    int empty_would_be = 0, differs = 0, bad_count = 0;
    for (long it = 0; it < ITERS; it++) {
        int n = poet_loss_dropout_draw(7, it, MEMBERS, 0.3, a);
        int m = poet_loss_dropout_draw(7, it, MEMBERS, 0.3, b);
        differs += n != m || memcmp(a, b, sizeof a) != 0;
        int count = 0;
        for (int j = 0; j < MEMBERS; j++)
            count += a[j];
        bad_count += count != n || n < 1;
        dropped += MEMBERS - n;
    }
    TEST_CHECK(differs == 0, "%d iterations drew different subsets for the same (seed, iteration)",
               differs);
    TEST_CHECK(bad_count == 0, "%d draws were empty or miscounted", bad_count);
    double rate = (double)dropped / ((double)MEMBERS * ITERS);
    printf("dropout 0.3 over %d iterations of %d members: rate %.4f\n", ITERS, MEMBERS, rate);
    TEST_CHECK(fabs(rate - 0.3) < 0.01, "dropout rate %.4f, expected 0.3", rate);
    /* Two members at 0.9: most draws would be empty; one member must always stay. */
    for (long it = 0; it < 1000; it++) {
        int n = poet_loss_dropout_draw(7, it, 2, 0.9, a);
        empty_would_be += n < 1 || a[0] + a[1] != n;
    }
    TEST_CHECK(empty_would_be == 0, "%d draws of 2 members at 0.9 were empty", empty_would_be);
    /* Another seed draws other subsets; rate 0 keeps everyone. */
    int same = 0;
    for (long it = 0; it < 100; it++) {
        poet_loss_dropout_draw(7, it, MEMBERS, 0.5, a);
        poet_loss_dropout_draw(8, it, MEMBERS, 0.5, b);
        same += memcmp(a, b, sizeof a) == 0;
    }
    TEST_CHECK(same < 10, "seeds 7 and 8 drew the same subset %d times in 100", same);
    TEST_CHECK(poet_loss_dropout_draw(7, 5, MEMBERS, 0.0, a) == MEMBERS, "rate 0 dropped members");
}

int main(void) {
    make_logits();
    test_member_grad();
    test_dropout();
    test_fixed_order();
    test_numeric_errors();
    test_joint_vs_reference();
    test_joint_extremes();
    test_member();
    return test_finish("loss");
}

/* deadline.c — when to stop so that the final checkpoint lands before a wall-clock deadline. */
#define _GNU_SOURCE /* strptime, timegm */

#include "poet/deadline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* Estimates take the larger of the new measurement and the old estimate decayed a little: a slow
 * iteration (a busy file system, a neighbour's job) raises the estimate at once, and it relaxes
 * only slowly, so the decision errs on the early side. */
#define DECAY 0.9

/* Parses an ISO-8601 time; returns 0 on success. */
static int parse_iso(const char *text, double *out) {
    static const char *const formats[] = {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                                          "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(text, formats[i], &tm);
        if (!end)
            continue;
        int utc = 0;
        if (*end == 'Z' && end[1] == '\0')
            utc = 1;
        else if (*end != '\0')
            continue;
        tm.tm_isdst = -1;
        time_t t = utc ? timegm(&tm) : mktime(&tm);
        if (t == (time_t)-1)
            return 1;
        *out = (double)t;
        return 0;
    }
    return 1;
}

int poet_deadline_valid(const char *text) {
    double t;
    return !strcmp(text, "slurm") || parse_iso(text, &t) == 0;
}

/* The first line a command prints, without its newline; "" when it prints nothing or fails. */
static void first_line(const char *command, char *out, size_t size) {
    out[0] = '\0';
    FILE *p = popen(command, "r");
    if (!p)
        return;
    if (!fgets(out, (int)size, p))
        out[0] = '\0';
    int status = pclose(p);
    if (status != 0)
        out[0] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
}

/* The job's end time from Slurm: squeue's %e, else scontrol's EndTime=. */
static poet_status slurm_end(const char *what, double *out) {
    const char *job = getenv("SLURM_JOB_ID");
    char command[256], line[4096];
    if (!job || !job[0] || strspn(job, "0123456789_") != strlen(job))
        return poet_error_set(POET_ERR_CONFIG,
                              "%s: \"slurm\" needs SLURM_JOB_ID (not inside a Slurm "
                              "job?)",
                              what);
    snprintf(command, sizeof command, "squeue -h -j %s -o %%e 2>/dev/null", job);
    first_line(command, line, sizeof line);
    if (line[0] && parse_iso(line, out) == 0)
        return POET_OK;
    snprintf(command, sizeof command,
             "scontrol show job %s 2>/dev/null | tr ' ' '\\n' | sed -n 's/^EndTime=//p'", job);
    first_line(command, line, sizeof line);
    if (line[0] && parse_iso(line, out) == 0)
        return POET_OK;
    return poet_error_set(POET_ERR_CONFIG,
                          "%s: \"slurm\": cannot read job %s's end time from squeue or scontrol "
                          "(got '%s'; no time limit?)",
                          what, job, line);
}

double poet_deadline_now(const poet_deadline *d) {
    if (d->fake_step > 0)
        return d->fake_now;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec + tv.tv_usec * 1e-6;
}

poet_status poet_deadline_init(poet_deadline *d, const char *text, const char *what) {
    memset(d, 0, sizeof *d);
    const char *fake = getenv("POET_TEST_SECONDS_PER_STEP");
    if (fake && atof(fake) > 0) {
        d->fake_step = atof(fake);
        d->fake_now = poet_deadline_now(&(poet_deadline){0});
        d->iteration = d->checkpoint = d->evaluation = d->fake_step;
    }
    if (!text || !text[0])
        return POET_OK;
    double at = 0;
    if (!strcmp(text, "slurm")) {
        poet_status st = slurm_end(what, &at);
        if (st != POET_OK)
            return st;
    } else if (parse_iso(text, &at) != 0)
        return poet_error_set(POET_ERR_CONFIG,
                              "%s: expected \"slurm\" or an ISO time such as "
                              "2026-12-02T15:40:00, got '%s'",
                              what, text);
    double now = poet_deadline_now(d);
    if (at <= now) {
        time_t t = (time_t)at;
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", localtime(&t));
        return poet_error_set(POET_ERR_CONFIG, "%s: the deadline %s is already past (%.0f s ago)",
                              what, when, now - at);
    }
    d->at = at;
    if (d->fake_step <= 0)
        d->checkpoint = POET_DEADLINE_FIRST_CHECKPOINT_SECONDS;
    return POET_OK;
}

static void note(poet_deadline *d, double *estimate, double seconds) {
    if (d->fake_step > 0) {
        d->fake_now += d->fake_step;
        return;
    }
    *estimate = fmax(seconds, *estimate * DECAY);
}

void poet_deadline_note_iteration(poet_deadline *d, double seconds) {
    note(d, &d->iteration, seconds);
}

void poet_deadline_note_checkpoint(poet_deadline *d, double seconds) {
    /* The first measured checkpoint replaces the guess outright. */
    if (d->fake_step <= 0 && d->checkpoint == POET_DEADLINE_FIRST_CHECKPOINT_SECONDS)
        d->checkpoint = 0;
    note(d, &d->checkpoint, seconds);
}

void poet_deadline_note_evaluation(poet_deadline *d, double seconds) {
    note(d, &d->evaluation, seconds);
}

int poet_deadline_stop_after_next(const poet_deadline *d, int evaluations) {
    if (d->at <= 0)
        return 0;
    /* Running this iteration and then one more, with their evaluations, and then the final
     * checkpoint must fit; if it does not, this iteration is the last. */
    double need = 2 * d->iteration + evaluations * d->evaluation + d->checkpoint +
                  POET_DEADLINE_MARGIN_SECONDS;
    return poet_deadline_now(d) + need >= d->at;
}

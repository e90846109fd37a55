/* worker: BOINC's sample worker (samples/worker/worker.cpp), ported to the boinc-guest C SDK and
 * written as any BOINC app is: the same calls, the same header, nothing VM-specific.
 *
 *     worker [N | --nsecs N]
 *
 * Burns about N CPU seconds (default 0), then copies standard input to standard output and the file
 * "in" to the file "out", converting both to upper case. It reports its progress with
 * boinc_fraction_done(), checkpoints the CPU seconds done to "worker_checkpoint.txt" whenever
 * boinc_time_to_checkpoint() says so, and resumes from that checkpoint when restarted.
 * Without a host (no shared folder) it runs standalone, like any BOINC app started by hand.
 *
 * Build: make (static: make STATIC=1), or
 *        cc worker.c $(pkg-config --cflags --libs boinc-guest) -lpthread */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "boinc_api.h"
#include "filesys.h"

#define CHECKPOINT_FILE "worker_checkpoint.txt"

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define FLOPS_PER_CALL (2.0 * 200000) /* one add and one multiply per iteration of do_some_flops */

/* A few milliseconds of floating-point work (the seed's do_a_giga_flop, scaled down). */
static double do_some_flops(int seed) {
    volatile double x = 3.14159 * seed;
    for (int i = 0; i < 200000; i++) {
        x += 5.12313123;
        x *= 0.5398394834;
    }
    return x;
}

/* CPU seconds already burned by earlier runs (0 if there is no usable checkpoint). */
static double read_checkpoint(const char* path) {
    double done = 0;
    FILE* f = boinc_fopen(path, "r");
    if (!f) return 0;
    if (fscanf(f, "%lf", &done) != 1 || !(done >= 0)) {
        fprintf(stderr, "worker: ignoring unreadable checkpoint %s\n", path);
        done = 0;
    }
    fclose(f);
    return done;
}

/* Write the checkpoint atomically: a crash leaves either the old or the new one. */
static int write_checkpoint(const char* path, double done) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = boinc_fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%.17g\n", done);
    if (fclose(f) != 0) return -1;
    return boinc_rename(tmp, path);
}

/* Copy in to out, upper-cased. */
static int copy_upper(FILE* in, FILE* out) {
    int c;
    while ((c = getc(in)) != EOF)
        if (putc(toupper(c), out) == EOF) return -1;
    return ferror(in) ? -1 : 0;
}

int main(int argc, char** argv) {
    double nsecs = 0;
    if (argc > 2 && strcmp(argv[1], "--nsecs") == 0) nsecs = atof(argv[2]);
    else if (argc > 1) nsecs = atof(argv[1]);

    int retval = boinc_init();
    if (retval) {
        fprintf(stderr, "worker: boinc_init returned %d\n", retval);
        exit(retval);
    }
    fprintf(stderr, "worker: starting (%s)\n", boinc_is_standalone() ? "standalone" : "with the host");

    char in_path[1024], out_path[1024], ckpt_path[1024];
    boinc_resolve_filename("in", in_path, sizeof(in_path));
    boinc_resolve_filename("out", out_path, sizeof(out_path));
    boinc_resolve_filename(CHECKPOINT_FILE, ckpt_path, sizeof(ckpt_path));

    double done_before = read_checkpoint(ckpt_path);
    if (done_before > 0)
        fprintf(stderr, "worker: resuming from checkpoint: %.2f of %.2f CPU seconds done\n",
                done_before, nsecs);

    double start = cpu_seconds(), done;
    int i;
    for (i = 0;; i++) {
        done = done_before + (cpu_seconds() - start);
        if (done >= nsecs) break;
        do_some_flops(i);
        boinc_fraction_done(done / nsecs);
        if (boinc_time_to_checkpoint()) {
            if (write_checkpoint(ckpt_path, done) != 0)
                fprintf(stderr, "worker: cannot write checkpoint %s\n", ckpt_path);
            boinc_ops_cumulative(FLOPS_PER_CALL * (double)i, 0);
            boinc_checkpoint_completed();
        }
    }
    boinc_ops_cumulative(FLOPS_PER_CALL * (double)(i > 0 ? i : 1), 0);

    if (copy_upper(stdin, stdout) != 0) {
        fprintf(stderr, "worker: cannot copy standard input to standard output\n");
        boinc_finish(1);
    }
    fflush(stdout);

    FILE* in = boinc_fopen(in_path, "r");
    if (!in) {
        fprintf(stderr, "worker: cannot open input file %s\n", in_path);
        boinc_finish(1);
    }
    FILE* out = boinc_fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "worker: cannot create output file %s\n", out_path);
        boinc_finish(1);
    }
    int rc = copy_upper(in, out);
    fclose(in);
    if (fclose(out) != 0 || rc != 0) {
        fprintf(stderr, "worker: cannot write output file %s\n", out_path);
        boinc_finish(1);
    }

    boinc_fraction_done(1.0);
    boinc_delete_file(ckpt_path); /* the job is done: nothing to resume from */
    fprintf(stderr, "worker: done\n");
    boinc_finish(0);
    return 0; /* not reached: boinc_finish ends the process */
}

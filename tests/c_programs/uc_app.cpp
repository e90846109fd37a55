// uc_app: an "upper case" app written the way BOINC's example app (samples/example_app/uc2.cpp) is,
// to show that such an app compiles UNCHANGED against the boinc-guest SDK: the same headers in the
// same order (BOINC's build-tree "config.h" first), MFILE output flushed at each checkpoint, resume
// through boinc_truncate() + "ab", progress from file_size(), boinc_resolve_filename_s(),
// boinc_msg_prefix(), g_sleep, boinc_crash(), boinc_get_status(), a timer callback and the graphics
// shared memory call (APP_GRAPHICS is defined below so that it is compiled).
//
//     uc_app [-sleep S] [-cpu_time S] [-early_crash] [-early_sleep]
//
// Reads "in", writes it upper-cased to "out", checkpoints the number of characters done to
// "upper_case_state". -sleep S sleeps S seconds after each character; -cpu_time S computes for S
// seconds after the copy (the second half of the progress); -early_crash calls boinc_crash() and
// -early_sleep sets g_sleep (a hung app) after 30 characters.

#define APP_GRAPHICS

#ifndef _WIN32
#include "config.h"
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#endif

#include "str_util.h"
#include "util.h"
#include "filesys.h"
#include "boinc_api.h"
#include "mfile.h"
#include "graphics2.h"

#include <string>

#define CHECKPOINT_FILE "upper_case_state"
#define INPUT_FILENAME "in"
#define OUTPUT_FILENAME "out"

#ifdef APP_GRAPHICS
// what a graphics app would read (BOINC's sample keeps this in uc2.h)
struct UC_SHMEM {
    double update_time;
    double fraction_done;
    double cpu_time;
    BOINC_STATUS status;
    int countdown;
};
static UC_SHMEM* shmem;
#endif

static volatile int timer_calls;  // update_shmem() calls: the SDK's (once a second) + the app's 2
static char app_name[32];

static int do_checkpoint(MFILE& mf, int nchars) {
    std::string resolved_name;
    FILE* f = boinc_fopen("temp", "w");
    if (!f) return 1;
    fprintf(f, "%d\n", nchars);
    fclose(f);
    int retval = mf.flush();  // the output on disk now matches the checkpoint
    if (retval) return retval;
    retval = boinc_resolve_filename_s(CHECKPOINT_FILE, resolved_name);
    if (retval) return retval;
    return boinc_rename("temp", resolved_name.c_str());
}

static void update_shmem() {
    timer_calls = timer_calls + 1;
#ifdef APP_GRAPHICS
    if (!shmem) return;
    shmem->update_time = dtime();
    shmem->fraction_done = boinc_get_fraction_done();
    shmem->cpu_time = boinc_worker_thread_cpu_time();
    boinc_get_status(&shmem->status);
#endif
}

int main(int argc, char** argv) {
    char input_path[512], output_path[512], chkpt_path[512], buf[256], line[64];
    double per_char = 0, cpu_time = 0, fsize = 0, fd;
    bool early_crash = false, early_sleep = false;
    int c, nchars = 0, retval;
    MFILE out;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-sleep") && i + 1 < argc) per_char = atof(argv[++i]);
        else if (!strcmp(argv[i], "-cpu_time") && i + 1 < argc) cpu_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "-early_crash")) early_crash = true;
        else if (!strcmp(argv[i], "-early_sleep")) early_sleep = true;
    }
    safe_strcpy(app_name, "UPPER_CASE");
    downcase_string(app_name);

    retval = boinc_init();
    if (retval) {
        fprintf(stderr, "%s boinc_init returned %d\n", boinc_msg_prefix(buf, sizeof(buf)), retval);
        exit(retval);
    }

    boinc_resolve_filename(INPUT_FILENAME, input_path, sizeof(input_path));
    FILE* infile = boinc_fopen(input_path, "r");
    if (!infile) {
        fprintf(stderr, "%s Couldn't find input file, resolved name %s.\n",
                boinc_msg_prefix(buf, sizeof(buf)), input_path);
        exit(-1);
    }
    file_size(input_path, fsize);
    boinc_resolve_filename(OUTPUT_FILENAME, output_path, sizeof(output_path));

    // a valid checkpoint: skip the input done and cut the output back to it
    boinc_resolve_filename(CHECKPOINT_FILE, chkpt_path, sizeof(chkpt_path));
    FILE* state = boinc_fopen(chkpt_path, "r");
    bool resumed = false;
    if (state) {
        if (fgets(line, sizeof(line), state)) {
            strip_whitespace(line);
            std::string s = line;
            strip_whitespace(s);
            resumed = !s.empty() && sscanf(s.c_str(), "%d", &nchars) == 1;
        }
        fclose(state);
    }
    if (resumed) {
        fprintf(stderr, "%s %s: resumed at %d\n", boinc_msg_prefix(buf, sizeof(buf)), app_name, nchars);
        fseek(infile, nchars, SEEK_SET);
        boinc_truncate(output_path, nchars);
        retval = out.open(output_path, "ab");
    } else {
        nchars = 0;
        retval = out.open(output_path, "wb");
    }
    if (retval) {
        fprintf(stderr, "%s %s: output open failed: %s, %d\n", boinc_msg_prefix(buf, sizeof(buf)),
                app_name, output_path, retval);
        exit(1);
    }

#ifdef APP_GRAPHICS
    shmem = (UC_SHMEM*)boinc_graphics_make_shmem("uppercase", sizeof(UC_SHMEM));
    if (!shmem) {
        fprintf(stderr, "%s failed to create shared mem segment\n", boinc_msg_prefix(buf, sizeof(buf)));
    }
    update_shmem();
    boinc_register_timer_callback(update_shmem);
#endif

    for (int i = 0;; i++) {
        c = fgetc(infile);
        if (c == EOF) break;
        c = toupper(c);
        out._putchar((char)c);
        nchars++;
        if (per_char > 0) boinc_sleep(per_char);
        if (early_crash && i > 30) boinc_crash();
        if (early_sleep && i > 30) {
            g_sleep = true;  // simulate a hung app: the API stops reporting
            FILE* f = fopen("asleep", "w");
            if (f) fclose(f);
            while (1) boinc_sleep(1);
        }
        if (boinc_time_to_checkpoint()) {
            retval = do_checkpoint(out, nchars);
            if (retval) {
                fprintf(stderr, "%s %s: checkpoint failed %d\n", boinc_msg_prefix(buf, sizeof(buf)),
                        app_name, retval);
                exit(retval);
            }
            boinc_checkpoint_completed();
        }
        fd = fsize > 0 ? nchars / fsize : 1;
        if (cpu_time > 0) fd /= 2;
        boinc_fraction_done(fd);
    }
    fclose(infile);

    retval = out.flush();
    if (retval) {
        fprintf(stderr, "%s %s: flush failed %d\n", boinc_msg_prefix(buf, sizeof(buf)), app_name, retval);
        exit(1);
    }

    if (cpu_time > 0) {
        double start = dtime(), x = 1;
        for (;;) {
            double e = dtime() - start;
            if (e > cpu_time) break;
            boinc_fraction_done(.5 + .5 * (e / cpu_time));
            if (boinc_time_to_checkpoint()) {
                retval = do_checkpoint(out, nchars);
                if (retval) exit(1);
                boinc_checkpoint_completed();
            }
            for (int k = 0; k < 100000; k++) x = x * 0.5398394834 + 5.12313123;
        }
        if (x < 0) fprintf(stderr, "%g\n", x);  // keep the loop
    }
    out.close();
    boinc_fraction_done(1);
#ifdef APP_GRAPHICS
    update_shmem();
#endif

    BOINC_STATUS status;
    boinc_get_status(&status);
    fprintf(stderr, "%s %s: done chars=%d fraction=%g cpu_ok=%d timer_calls=%d quit=%d abort=%d\n",
            boinc_msg_prefix(buf, sizeof(buf)), app_name, nchars, boinc_get_fraction_done(),
            boinc_worker_thread_cpu_time() >= 0, (int)timer_calls, status.quit_request,
            status.abort_request);
    boinc_finish(0);
}

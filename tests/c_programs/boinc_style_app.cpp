// An app written for BOINC's own API, in the usual BOINC style (as in BOINC's samples): it must
// compile UNCHANGED against the boinc-guest headers. Counts the lines of its input file, with
// progress, checkpoints, a resume from its checkpoint, and output through resolved names.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "boinc_api.h"
#include "diagnostics.h"
#include "error_numbers.h"
#include "filesys.h"
#include "util.h"

#define INPUT_FILENAME "in"
#define OUTPUT_FILENAME "out"
#define CHECKPOINT_FILE "app_state"

static int do_checkpoint(long nlines) {
    std::string resolved;
    int retval = boinc_resolve_filename_s(CHECKPOINT_FILE, resolved);
    if (retval) return retval;
    FILE* f = boinc_fopen("temp", "w");
    if (!f) return 1;
    fprintf(f, "%ld", nlines);
    fclose(f);
    return boinc_rename("temp", resolved.c_str());
}

int main(int argc, char** argv) {
    int retval;
    char input_path[512], output_path[512], chkpt_path[512], buf[256];
    long nlines = 0, start = 0;

    boinc_init_diagnostics(BOINC_DIAG_DEFAULTS);
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
        boinc_finish(ERR_FOPEN);
    }
    double fsize = 0;
    file_size(input_path, fsize);

    boinc_resolve_filename(CHECKPOINT_FILE, chkpt_path, sizeof(chkpt_path));
    FILE* state = boinc_fopen(chkpt_path, "r");
    if (state) {
        if (fscanf(state, "%ld", &start) != 1) start = 0;
        fclose(state);
    }

    boinc_resolve_filename(OUTPUT_FILENAME, output_path, sizeof(output_path));
    FILE* out = boinc_fopen(output_path, "w");
    if (!out) boinc_finish(ERR_FOPEN);

    int c;
    long pos = 0;
    while ((c = fgetc(infile)) != EOF) {
        pos++;
        if (c != '\n') continue;
        nlines++;
        if (nlines <= start) continue;
        if (boinc_time_to_checkpoint()) {
            retval = do_checkpoint(nlines);
            if (retval) {
                fprintf(stderr, "%s checkpoint failed %d\n", boinc_msg_prefix(buf, sizeof(buf)), retval);
                exit(retval);
            }
            boinc_checkpoint_completed();
        }
        double fd = fsize > 0 ? pos / fsize : 1;
        boinc_fraction_done(fd);
    }
    fclose(infile);
    fprintf(out, "%ld lines (resumed at %ld) after %.3f s\n", nlines, start, dtime() > 0 ? 0.0 : 1.0);
    fclose(out);
    boinc_fraction_done(1);
    (void)argc;
    (void)argv;
    boinc_finish(0);
}

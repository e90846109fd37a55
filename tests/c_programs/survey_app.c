/* survey_app: behaviours the compatibility survey (bench/csdk_survey.py) found different from BOINC
 * 7.20.5's library, checked against the SDK:
 *   - boinc_get_fraction_done() is -1 until the app reports progress (SixTrack's mod_boinc logs it);
 *   - boinc_msg_prefix() is "HH:MM:SS (pid):" (BOINC's sample apps print it on every line).
 *     survey_app [noprogress] */
#include <stdio.h>
#include <string.h>

#include "boinc_api.h"

int main(int argc, char** argv) {
    char buf[64];
    int progress = !(argc > 1 && strcmp(argv[1], "noprogress") == 0);
    double before = boinc_get_fraction_done();
    boinc_init();
    double after_init = boinc_get_fraction_done();
    if (progress) boinc_fraction_done(0.25);
    printf("before=%g init=%g now=%g\n", before, after_init, boinc_get_fraction_done());
    printf("prefix=%s\n", boinc_msg_prefix(buf, (int)sizeof(buf)));
    fflush(stdout);
    boinc_finish(0);
    return 0;
}

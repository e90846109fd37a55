// cxx_app: BOINC's C++ API (references, std::string, default arguments) against the boinc-guest SDK.
#include <cstdio>
#include <string>

#include "boinc_api.h"

int main(int argc, char** argv) {
    BOINC_OPTIONS options;
    boinc_options_defaults(options);  // C++: reference, as in BOINC
    options.multi_thread = 1;
    if (boinc_init_options(&options)) return 90;

    APP_INIT_DATA aid;
    boinc_get_init_data(aid);
    std::string path;
    boinc_resolve_filename_s("in", path);
    double cpu = -1;
    boinc_wu_cpu_time(cpu);
    std::printf("app=%s ncpus=%g resolved=%s cpu_ok=%d elapsed_ok=%d\n", aid.app_name, aid.ncpus,
                path.c_str(), cpu >= 0, boinc_elapsed_time() >= 0);

    boinc_fraction_done(0.5);
    boinc_checkpoint_completed();
    std::string name = "result.dat";
    int rc = boinc_upload_file(name);
    int st = boinc_upload_status(name);
    std::printf("upload=%d status=%d\n", rc, st);
    std::fflush(stdout);
    if (argc > 1 && std::string(argv[1]) == "temporary_exit") {
        boinc_temporary_exit(60, "waiting for the VM");  // is_notice defaults to false
        return 91;
    }
    boinc_finish_message(0, "c++ done", false);
    return 92;
}

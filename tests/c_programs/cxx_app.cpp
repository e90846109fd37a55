// cxx_app: BOINC's C++ API (references, std::string, default arguments) against the boinc-guest SDK.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "boinc_api.h"
#include "mfile.h"
#include "str_util.h"

static long size_of(const char* path) {
    double d = -1;
    return file_size(path, d) == 0 ? (long)d : -1;
}

// BOINC's MFILE: buffered in memory, on disk only at flush() / close()
static int mfile_checks() {
    MFILE m;
    int rc_open = m.open("m.txt", "wb");
    int c = m._putchar('a');
    int n_puts = m.puts("bc");
    int n_printf = m.printf("%d-%s", 42, "x");
    size_t n_write = m.write("yz", 1, 2);
    long before = size_of("m.txt"), tell0 = m.tell();
    int rc_flush = m.flush();
    long after = size_of("m.txt"), tell1 = m.tell();
    std::string big(5000, 'q');
    int n_big = m.printf("%s|", big.c_str());
    char* b = 0;
    int l = -1;
    m.get_buf(b, l);
    bool got = b && l == 5001 && std::string(b) == big + "|";
    std::free(b);
    m.get_buf(b, l);  // empty now: an empty string, still the caller's to free
    bool empty = b && l == 0 && b[0] == 0;
    std::free(b);
    m.puts("tail");
    int rc_close = m.close();
    int rc_close2 = m.close();
    std::printf("open=%d putchar=%c puts=%d printf=%d write=%zu size=%ld,%ld tell=%ld,%ld flush=%d "
                "big=%d got=%d empty=%d close=%d,%d\n",
                rc_open, c, n_puts, n_printf, n_write, before, after, tell0, tell1, rc_flush, n_big, got,
                empty, rc_close, rc_close2);
    {
        MFILE r;
        r.open("m.txt", "ab");
        r.puts("never flushed");  // dropped with the MFILE, as in BOINC
    }
    MFILE none;
    int rc_none = none.flush();
    int rc_missing = none.open("no/such/dir/x", "wb");
    FILE* f = std::fopen("m.txt", "rb");
    char text[64] = {0};
    size_t k = f ? std::fread(text, 1, sizeof(text) - 1, f) : 0;
    if (f) std::fclose(f);
    std::string s = "  Mixed Case\t";
    strip_whitespace(s);
    downcase_string(s);
    std::printf("file=%.*s none=%d missing=%d str=[%s] %d%d\n", (int)k, text, rc_none, rc_missing, s.c_str(),
                starts_with(s, std::string("mixed")), ends_with(s.c_str(), "case"));
    return 0;
}

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "mfile") return mfile_checks();
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

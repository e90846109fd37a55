/* probe: a small C app that exercises the boinc-guest C SDK for tests/test_c_sdk.py.
 *     probe MODE [args]   (BOINC_GUEST_DIR names the share) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <boinc/boinc_api.h> /* the <boinc/...> include style works too */
#include "boinc_guest.h"
/* BOINC's other app-side headers compile from C too (mfile.h declares nothing in C) */
#include "config.h"
#include "filesys.h"
#include "graphics2.h"
#include "mfile.h"
#include "str_util.h"
#include "util.h"
#include <boinc/str_util.h>

static void nap(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void touch(const char* name) {
    FILE* f = fopen(name, "w");
    if (f) fclose(f);
}

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "finish") == 0) { /* probe finish STATUS MESSAGE */
        if (boinc_init()) return 90;
        boinc_fraction_done(0.5);
        if (boinc_checkpoint_completed()) return 91;
        boinc_fraction_done(0.75);
        boinc_ops_cumulative(1e9, 2e9);
        if (boinc_send_trickle_up((char*)"progress", (char*)"half way")) return 92;
        return boinc_finish_message(atoi(argv[2]), argv[3], 1) + 93; /* not reached */
    }
    if (strcmp(mode, "plain_finish") == 0) {
        boinc_init();
        boinc_fraction_done(1.0);
        boinc_finish(atoi(argv[2]));
        return 99;
    }
    if (strcmp(mode, "hot") == 0) { /* probe hot SECONDS: progress all the time, then return */
        boinc_init();
        double secs = atof(argv[2]), t0 = boinc_elapsed_time();
        long n = 0;
        while (boinc_elapsed_time() - t0 < secs) {
            for (int i = 0; i < 1000; i++, n++) boinc_fraction_done(0.5 * (double)(n % 1000) / 1000.0);
        }
        boinc_fraction_done(0.875); /* the last value: only the atexit flush can write it */
        printf("%ld\n", n);
        return 0;
    }
    if (strcmp(mode, "return") == 0) { /* the atexit hook flushes the last progress */
        boinc_init();
        boinc_fraction_done(0.75);
        return 0;
    }
    if (strcmp(mode, "loop") == 0 || strcmp(mode, "loop_crit") == 0 || strcmp(mode, "loop_dpa0") == 0) {
        BOINC_OPTIONS o;
        boinc_options_defaults(&o);
        if (strcmp(mode, "loop_dpa0") == 0) o.direct_process_action = 0;
        boinc_init_options(&o);
        if (strcmp(mode, "loop_crit") == 0) {
            boinc_begin_critical_section();
            touch("in_crit");
            nap(1.0);
            touch("crit_done");
            boinc_end_critical_section();
        } else {
            touch("ready");
        }
        for (long i = 0; i < 3000; i++) { /* at most ~15 s */
            boinc_fraction_done((double)(i % 1000) / 1000.0);
            BOINC_STATUS st;
            boinc_get_status(&st);
            if (!o.direct_process_action && (st.quit_request || st.abort_request)) {
                printf("request quit=%d abort=%d\n", st.quit_request, st.abort_request);
                fflush(stdout);
                boinc_finish(st.abort_request ? 8 : 7);
            }
            nap(0.005);
        }
        return 98;
    }
    if (strcmp(mode, "standalone") == 0) {
        char buf[256];
        boinc_init();
        boinc_resolve_filename("in", buf, sizeof(buf));
        printf("standalone=%d resolved=%s ttc=%d\n", boinc_is_standalone(), buf,
               boinc_time_to_checkpoint());
        boinc_fraction_done(0.5);
        boinc_checkpoint_completed();
        boinc_finish(0);
    }
    if (strcmp(mode, "init_data") == 0) {
        APP_INIT_DATA aid;
        double cpu = -1;
        boinc_init();
        boinc_get_init_data_p(&aid);
        boinc_wu_cpu_time(&cpu);
        printf("app=%s wu=%s result=%s user=%s team=%s url=%s prefs=%s userid=%d hostid=%d "
               "ncpus=%g ckpt=%g wu_cpu_ge=%d elapsed_ge=%d fpops_est=%g\n",
               aid.app_name, aid.wu_name, aid.result_name, aid.user_name, aid.team_name,
               aid.master_url, aid.project_preferences, aid.userid, aid.hostid, aid.ncpus,
               aid.checkpoint_period, cpu >= aid.wu_cpu_time, boinc_elapsed_time() >= aid.starting_elapsed_time,
               aid.rsc_fpops_est);
        boinc_finish(0);
    }
    if (strcmp(mode, "trickle_down") == 0) {
        char buf[100];
        boinc_init();
        for (int i = 0; i < 500; i++) {
            if (boinc_receive_trickle_down(buf, sizeof(buf))) {
                printf("got=%s\n", buf);
                fflush(stdout);
                boinc_finish(0);
            }
            nap(0.01);
        }
        boinc_finish(1);
    }
    if (strcmp(mode, "helpers") == 0) { /* str_util.h, graphics2.h, filesys.h, util.h from C */
        char s1[] = "  \t hello world \n", s2[] = " \xc3\xa9 x \v", small[6], big[16];
        size_t n1 = strlcpy(small, "abcdefgh", sizeof(small));
        size_t n2 = safe_strcat(small, "zz");
        strip_whitespace(s1);
        strip_whitespace(s2);
        printf("strip=[%s] strip8=[%s] strlcpy=%zu,[%s] strlcat=%zu,[%s]", s1, s2, n1, small, n2, small);
        safe_strcpy(big, "ab");
        safe_strcat(big, "cd");
        printf(" safe=[%s]\n", big);
        char line[] = "prog -a 'two words'  \"x y\"\tlast ";
        char* av[8];
        int ac = parse_command_line(line, av);
        printf("argc=%d", ac);
        for (int i = 0; i <= ac; i++) printf(" [%s]", av[i] ? av[i] : "NULL");
        char d[] = "MiXeD", ov[] = "xxabc";
        downcase_string(d);
        strcpy_overlap(ov, ov + 2);
        printf("\ndown=%s overlap=%s starts=%d,%d ends=%d,%d\n", d, ov, starts_with("boinc_api", "boinc"),
               starts_with("boinc", "boinc_api"), ends_with("file.txt", ".txt"), ends_with("a", "abc"));
        printf("shmem=%p,%p gstatus=%d\n", boinc_graphics_make_shmem("uppercase", 100),
               boinc_graphics_get_shmem("uppercase"), boinc_write_graphics_status(1, 2, 0.5));
        FILE* f = fopen("t", "w");
        fputs("0123456789", f);
        fclose(f);
        double cpu = -1;
        int t1 = boinc_truncate("t", 4), t2 = boinc_truncate("missing", 1), t3 = boinc_truncate("t", -1);
        struct stat sb;
        long size = stat("t", &sb) == 0 ? (long)sb.st_size : -1;
        printf("truncate=%d,%d,%d size=%ld %s", t1, t2, t3, size, boincerror(t2));
        int rc = boinc_calling_thread_cpu_time(&cpu);
        printf(" thread_cpu=%d,%d g_sleep=%d,%d\n", rc, cpu >= 0, (int)g_sleep, (int)boinc_disable_timer_thread);
        return 0;
    }
    fprintf(stderr, "probe: unknown mode '%s'\n", mode);
    return 2;
}

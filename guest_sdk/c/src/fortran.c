/* fortran.c - BOINC's Fortran entry points (api/boinc_api_fortran.cpp): lower-case names with a
 * trailing underscore, arguments by reference, character arguments followed by hidden lengths
 * (size_t since gfortran 8; BOINC's int works on x86-64 only by accident). */
#include <stddef.h>
#include <string.h>

#include "boinc_api.h"

#define F77(name) name##_

void F77(boinc_init)(void) { boinc_init(); }
void F77(boinc_finish)(int* status) { boinc_finish(*status); }
void F77(boinc_is_standalone)(int* result) { *result = boinc_is_standalone(); }
void F77(boinc_parse_init_data_file)(void) { boinc_parse_init_data_file(); }
void F77(boinc_time_to_checkpoint)(int* result) { *result = boinc_time_to_checkpoint(); }
void F77(boinc_checkpoint_completed)(void) { boinc_checkpoint_completed(); }
void F77(boinc_fraction_done)(double* d) { boinc_fraction_done(*d); }
void F77(boinc_wu_cpu_time)(double* d) { boinc_wu_cpu_time(d); }
void F77(boinc_calling_thread_cpu_time)(double* d) { *d = boinc_worker_thread_cpu_time(); }
/* beyond BOINC's set, same conventions */
void F77(boinc_begin_critical_section)(void) { boinc_begin_critical_section(); }
void F77(boinc_end_critical_section)(void) { boinc_end_critical_section(); }
void F77(boinc_get_fraction_done)(double* d) { *d = boinc_get_fraction_done(); }
void F77(boinc_elapsed_time)(double* d) { *d = boinc_elapsed_time(); }
void F77(boinc_need_network)(void) { boinc_need_network(); }
void F77(boinc_network_done)(void) { boinc_network_done(); }
void F77(boinc_ops_per_cpu_sec)(double* fp, double* iops) { boinc_ops_per_cpu_sec(*fp, *iops); }
void F77(boinc_ops_cumulative)(double* fp, double* iops) { boinc_ops_cumulative(*fp, *iops); }

/* boincrf(virtual_name, physical_name): resolve a file name; the result is blank-padded. */
void F77(boincrf)(const char* s, char* t, size_t s_len, size_t t_len) {
    char in[MAXPATHLEN + 1], out[MAXPATHLEN + 1];
    size_t n = s_len < MAXPATHLEN ? s_len : MAXPATHLEN;
    memcpy(in, s, n);
    in[n] = 0;
    /* strip blanks on both sides, as BOINC's strip_whitespace */
    while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t' || in[n - 1] == 0)) in[--n] = 0;
    char* b = in;
    while (*b == ' ' || *b == '\t') b++;
    boinc_resolve_filename(b, out, (int)sizeof(out));
    size_t m = strlen(out);
    if (m > t_len) m = t_len;
    memcpy(t, out, m);
    if (t_len > m) memset(t + m, ' ', t_len - m);
}

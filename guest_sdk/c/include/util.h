/* util.h - the few helpers of BOINC's lib/util.h that apps commonly call (boinc-guest SDK). */
#ifndef BOINC_GUEST_UTIL_H
#define BOINC_GUEST_UTIL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Wall-clock time in seconds since the epoch, as a double. */
extern double dtime(void);
/* Sleep for the given number of seconds (fractions allowed). */
extern void boinc_sleep(double seconds);
/* Crash on purpose (to test an app's or a project's error handling), as BOINC's: abort(), i.e.
 * SIGABRT. Nothing more is written to the shared folder. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((__noreturn__))
#endif
extern void boinc_crash(void);
/* CPU time (user + system) of the calling thread, in seconds: 0, ERR_NULL or ERR_GETRUSAGE. In C++ BOINC's
 * boinc_calling_thread_cpu_time(double&) is available too. */
extern int boinc_calling_thread_cpu_time(double* cpu);

#ifdef __cplusplus
}

inline int boinc_calling_thread_cpu_time(double& cpu) { return boinc_calling_thread_cpu_time(&cpu); }
#endif

#endif /* BOINC_GUEST_UTIL_H */

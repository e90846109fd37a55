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

#ifdef __cplusplus
}
#endif

#endif /* BOINC_GUEST_UTIL_H */

/* strlcpy.c - strlcpy / strlcat for a libc without them (glibc before 2.38), as BOINC supplies them
 * (lib/str_util.cpp): the BSD semantics. With a newer libc the library leaves them to libc. */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include <string.h>

#include "str_util.h"

#if defined(__GLIBC__) && (__GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38))

/* Copies at most size - 1 bytes and NUL-terminates (if size > 0); returns strlen(src). */
size_t strlcpy(char* dst, const char* src, size_t size) {
    size_t n = strlen(src);
    if (size) {
        size_t k = n < size ? n : size - 1;
        memcpy(dst, src, k);
        dst[k] = 0;
    }
    return n;
}

/* Appends to the string in dst[0..size) as far as it fits, NUL-terminated; returns the length the
 * whole result would have had (strlen(src) + the length of dst, at most size). */
size_t strlcat(char* dst, const char* src, size_t size) {
    size_t d = strnlen(dst, size);
    if (d == size) return size + strlen(src);
    return d + strlcpy(dst + d, src, size - d);
}

#else
typedef int boinc_guest_strlcpy_from_libc; /* ISO C: a translation unit must not be empty */
#endif

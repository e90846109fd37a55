/* str_util.h - the string helpers of BOINC's lib/str_util.h (and str_replace.h) that apps commonly
 * call, for apps built against the boinc-guest SDK. Same names and signatures as BOINC's; the C
 * functions have C linkage (usable from C as well), the std::string overloads are inline C++.
 *
 * Provided:
 *   strlcpy, strlcat          only where libc lacks them (glibc before 2.38; not if HAVE_STRLCPY /
 *                             HAVE_STRLCAT is defined), in the library
 *   safe_strcpy(dst, src)     strlcpy(dst, src, sizeof(dst))  (dst must be an array)
 *   safe_strcat(dst, src)     strlcat(dst, src, sizeof(dst))
 *   strip_whitespace(char*)   removes ASCII white space at both ends, in place
 *   strip_whitespace(std::string&)   (C++)
 *   downcase_string(char*), downcase_string(std::string&)   (the latter C++)
 *   starts_with(s, prefix), ends_with(s, suffix)   const char* (and std::string in C++)
 *   parse_command_line(char* line, char** argv)   splits line in place at white space, '...' and
 *                             "..." quote a token; argv must hold every token + 1; returns argc
 *   strcpy_overlap(dst, src)  strcpy for overlapping strings
 *   boincerror(int)           the text of a BOINC error number (also in error_numbers.h)
 * Not provided (the rest of BOINC's str_util.h: time / size formatting, URL escaping, split(),
 * string_substitute(), the client's state-name tables, ...): keep BOINC's str_util.cpp in the app,
 * or use the C / C++ library. */
#ifndef BOINC_GUEST_STR_UTIL_H
#define BOINC_GUEST_STR_UTIL_H

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#ifdef __cplusplus
#include <string>
extern "C" {
#endif

/* glibc has strlcpy / strlcat from 2.38 on; Debian 12's 2.36 does not (musl and the BSDs do). */
#if defined(__GLIBC__) && (__GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38))
#ifndef HAVE_STRLCPY
extern size_t strlcpy(char* dst, const char* src, size_t size);
#endif
#ifndef HAVE_STRLCAT
extern size_t strlcat(char* dst, const char* src, size_t size);
#endif
#endif

extern void strip_whitespace(char* str);
extern int parse_command_line(char* line, char** argv);
extern void strcpy_overlap(char* dst, const char* src);
extern const char* boincerror(int which_error);

#ifdef __cplusplus
} /* extern "C" */
#endif

#ifndef safe_strcpy
#define safe_strcpy(x, y) strlcpy(x, y, sizeof(x))
#endif
#ifndef safe_strcat
#define safe_strcat(x, y) strlcat(x, y, sizeof(x))
#endif

#ifdef __cplusplus

inline void strip_whitespace(std::string& str) {
    std::string::size_type a = 0, b = str.size();
    while (a < b && (unsigned char)str[a] < 128 && isspace((unsigned char)str[a])) a++;
    while (b > a && (unsigned char)str[b - 1] < 128 && isspace((unsigned char)str[b - 1])) b--;
    str = str.substr(a, b - a);
}

inline void downcase_string(char* p) {
    for (; p && *p; p++) *p = (char)tolower((unsigned char)*p);
}
inline void downcase_string(std::string& w) {
    for (std::string::size_type i = 0; i < w.size(); i++) w[i] = (char)tolower((unsigned char)w[i]);
}

inline bool starts_with(const char* s, const char* prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}
inline bool starts_with(std::string const& s, std::string const& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}
inline bool ends_with(const char* s, const char* suffix) {
    size_t m = strlen(s), n = strlen(suffix);
    return n <= m && strcmp(s + m - n, suffix) == 0;
}
inline bool ends_with(std::string const& s, std::string const& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

#else /* C */

static inline void downcase_string(char* p) {
    for (; p && *p; p++) *p = (char)tolower((unsigned char)*p);
}
static inline _Bool starts_with(const char* s, const char* prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}
static inline _Bool ends_with(const char* s, const char* suffix) {
    size_t m = strlen(s), n = strlen(suffix);
    return n <= m && strcmp(s + m - n, suffix) == 0;
}

#endif /* __cplusplus */

#endif /* BOINC_GUEST_STR_UTIL_H */

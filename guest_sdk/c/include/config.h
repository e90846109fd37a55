/* config.h - stands in for the autoconf header of BOINC's own build tree, which BOINC's sample apps
 * include first (#include "config.h" outside _WIN32, as in samples/example_app/uc2.cpp) but which
 * the boinc-guest SDK does not need: it defines nothing.
 *
 * It never hides an app's own config.h: a quoted #include looks in the including file's folder
 * first, so a config.h next to the app's source wins; and if this one is found first on the -I
 * path, it includes the next config.h further down the path when there is one (#include_next). */
#ifndef BOINC_GUEST_CONFIG_H
#define BOINC_GUEST_CONFIG_H

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC system_header /* #include_next is a GNU extension: no -pedantic warning for it */
#if defined(__has_include_next)
#if __has_include_next("config.h")
#include_next "config.h"
#endif
#endif
#endif

#endif /* BOINC_GUEST_CONFIG_H */

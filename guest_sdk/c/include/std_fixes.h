/* std_fixes.h - BOINC's lib/std_fixes.h works around old compilers' C++ libraries; nothing is needed
 * with a current GCC or Clang, so this header only includes what BOINC's does on Linux. */
#ifndef BOINC_GUEST_STD_FIXES_H
#define BOINC_GUEST_STD_FIXES_H

#ifdef __cplusplus
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#endif

#endif /* BOINC_GUEST_STD_FIXES_H */

/* Forwarding header: lets apps write #include <boinc/std_fixes.h>. */
#include "../std_fixes.h"

/* Forwarding header: lets apps write #include <lib/std_fixes.h>. */
#include "../std_fixes.h"

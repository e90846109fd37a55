/* Forwarding header: lets apps write #include <lib/boinc_win.h>. */
#include "../boinc_win.h"

/* Forwarding header: lets apps write #include <boinc/boinc_win.h>. */
#include "../boinc_win.h"

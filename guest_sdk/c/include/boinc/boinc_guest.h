/* Forwarding header: lets apps write #include <boinc/boinc_guest.h>. */
#include "../boinc_guest.h"

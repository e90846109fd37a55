/* Forwarding header: lets apps write #include <boinc/boinc_api.h>. */
#include "../boinc_api.h"

/* Forwarding header: lets apps write #include <api/boinc_api.h>. */
#include "../boinc_api.h"

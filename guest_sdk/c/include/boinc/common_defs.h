/* Forwarding header: lets apps write #include <boinc/common_defs.h>. */
#include "../common_defs.h"

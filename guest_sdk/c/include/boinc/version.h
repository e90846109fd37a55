/* Forwarding header: lets apps write #include <boinc/version.h>. */
#include "../version.h"

/* Forwarding header: lets apps write #include <boinc/hostinfo.h>. */
#include "../hostinfo.h"

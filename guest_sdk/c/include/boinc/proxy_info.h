/* Forwarding header: lets apps write #include <boinc/proxy_info.h>. */
#include "../proxy_info.h"

/* Forwarding header: lets apps write #include <lib/proxy_info.h>. */
#include "../proxy_info.h"

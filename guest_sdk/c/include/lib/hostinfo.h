/* Forwarding header: lets apps write #include <lib/hostinfo.h>. */
#include "../hostinfo.h"

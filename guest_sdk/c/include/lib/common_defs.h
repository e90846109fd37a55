/* Forwarding header: lets apps write #include <lib/common_defs.h>. */
#include "../common_defs.h"

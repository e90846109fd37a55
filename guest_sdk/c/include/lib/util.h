/* Forwarding header: lets apps write #include <lib/util.h>. */
#include "../util.h"

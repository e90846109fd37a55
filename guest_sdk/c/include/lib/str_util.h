/* Forwarding header: lets apps write #include <lib/str_util.h>. */
#include "../str_util.h"

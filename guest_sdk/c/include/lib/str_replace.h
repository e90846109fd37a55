/* Forwarding header: lets apps write #include <lib/str_replace.h>. */
#include "../str_replace.h"

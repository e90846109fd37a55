/* Forwarding header: lets apps write #include <lib/error_numbers.h>. */
#include "../error_numbers.h"

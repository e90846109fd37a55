/* Forwarding header: lets apps write #include <boinc/error_numbers.h>. */
#include "../error_numbers.h"

/* Forwarding header: lets apps write #include <lib/miofile.h>. */
#include "../miofile.h"

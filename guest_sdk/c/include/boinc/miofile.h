/* Forwarding header: lets apps write #include <boinc/miofile.h>. */
#include "../miofile.h"

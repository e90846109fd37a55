/* Forwarding header: lets apps write #include <boinc/config.h>. */
#include "../config.h"

/* Forwarding header: lets apps write #include <boinc/util.h>. */
#include "../util.h"

/* Forwarding header: lets apps write #include <boinc/str_util.h>. */
#include "../str_util.h"

/* Forwarding header: lets apps write #include <boinc/str_replace.h>. */
#include "../str_replace.h"

/* Forwarding header: lets apps write #include <boinc/mem_usage.h>. */
#include "../mem_usage.h"

/* Forwarding header: lets apps write #include <lib/mem_usage.h>. */
#include "../mem_usage.h"

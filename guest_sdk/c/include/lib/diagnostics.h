/* Forwarding header: lets apps write #include <lib/diagnostics.h>. */
#include "../diagnostics.h"

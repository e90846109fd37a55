/* Forwarding header: lets apps write #include <boinc/diagnostics.h>. */
#include "../diagnostics.h"

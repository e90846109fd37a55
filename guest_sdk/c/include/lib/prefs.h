/* Forwarding header: lets apps write #include <lib/prefs.h>. */
#include "../prefs.h"

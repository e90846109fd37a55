/* Forwarding header: lets apps write #include <boinc/prefs.h>. */
#include "../prefs.h"

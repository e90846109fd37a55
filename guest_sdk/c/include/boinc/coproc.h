/* Forwarding header: lets apps write #include <boinc/coproc.h>. */
#include "../coproc.h"

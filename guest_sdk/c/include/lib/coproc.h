/* Forwarding header: lets apps write #include <lib/coproc.h>. */
#include "../coproc.h"

/* Forwarding header: lets apps write #include <lib/mfile.h>. */
#include "../mfile.h"

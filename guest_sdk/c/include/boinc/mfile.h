/* Forwarding header: lets apps write #include <boinc/mfile.h>. */
#include "../mfile.h"

/* Forwarding header: lets apps write #include <boinc/parse.h>. */
#include "../parse.h"

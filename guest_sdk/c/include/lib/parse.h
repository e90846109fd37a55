/* Forwarding header: lets apps write #include <lib/parse.h>. */
#include "../parse.h"

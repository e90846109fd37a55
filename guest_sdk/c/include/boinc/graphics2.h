/* Forwarding header: lets apps write #include <boinc/graphics2.h>. */
#include "../graphics2.h"

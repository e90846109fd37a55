/* Forwarding header: lets apps write #include <api/graphics2.h>. */
#include "../graphics2.h"

/* Forwarding header: lets apps write #include <lib/app_ipc.h>. */
#include "../app_ipc.h"

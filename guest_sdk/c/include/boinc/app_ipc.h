/* Forwarding header: lets apps write #include <boinc/app_ipc.h>. */
#include "../app_ipc.h"

/* Forwarding header: lets apps write #include <lib/filesys.h>. */
#include "../filesys.h"

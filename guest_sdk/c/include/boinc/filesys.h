/* Forwarding header: lets apps write #include <boinc/filesys.h>. */
#include "../filesys.h"

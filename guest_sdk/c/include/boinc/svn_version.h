/* Forwarding header: lets apps write #include <boinc/svn_version.h>. */
#include "../svn_version.h"

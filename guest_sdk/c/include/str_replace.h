/* str_replace.h - BOINC's lib/str_replace.h: strlcpy / strlcat (where libc lacks them) and
 * strcasestr, all from str_util.h / <string.h>. */
#ifndef BOINC_GUEST_STR_REPLACE_H
#define BOINC_GUEST_STR_REPLACE_H

#include <string.h>

#include "str_util.h"

#endif /* BOINC_GUEST_STR_REPLACE_H */

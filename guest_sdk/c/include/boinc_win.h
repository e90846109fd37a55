/* boinc_win.h - BOINC's Windows prelude (lib/boinc_win.h). Apps include it under #ifdef _WIN32; a
 * guest is Linux, so outside Windows this header only includes the standard headers apps then rely
 * on. Building for Windows against this SDK is not supported (the SDK talks to a Linux host bridge
 * through a shared folder). */
#ifndef BOINC_GUEST_BOINC_WIN_H
#define BOINC_GUEST_BOINC_WIN_H

#ifdef _WIN32
#error "boinc-guest SDK: boinc_win.h: Windows is not supported; build the app for Linux (the VM guest)"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#endif /* BOINC_GUEST_BOINC_WIN_H */

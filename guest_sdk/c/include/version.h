/* version.h - the BOINC version this SDK's API matches (BOINC's generated version.h). */
#ifndef BOINC_GUEST_VERSION_H
#define BOINC_GUEST_VERSION_H

#define BOINC_MAJOR_VERSION 7
#define BOINC_MINOR_VERSION 20
#define BOINC_RELEASE 5
#define WRAPPER_RELEASE 26017
#define VBOXWRAPPER_RELEASE 26204
#define BOINC_VERSION_STRING "7.20.5"
#define BOINC_PRERELEASE 1

#endif /* BOINC_GUEST_VERSION_H */

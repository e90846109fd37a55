/* internal.h - shared between the SDK's source files; not installed. */
#ifndef BOINC_GUEST_INTERNAL_H
#define BOINC_GUEST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "boinc_guest.h"

#define BG_HIDDEN __attribute__((visibility("hidden")))

/* A msgpack output buffer: growable (fixed == 0) or bounded by cap (fixed == 1). */
typedef struct bg_buf {
    unsigned char* p;
    size_t len, cap;
    int fixed;
    int failed; /* out of memory or over cap */
} bg_buf;

BG_HIDDEN void bg_buf_free(bg_buf* b);
BG_HIDDEN int bg_encode_status(bg_buf* b, const boinc_guest_status* st);

/* Reads a regular file (no symlinks, no FIFOs) of at most BOINC_GUEST_MAX_FILE bytes.
 * Returns 0 and a malloc'ed buffer, -1 if absent, -2 if refused (err says why). */
BG_HIDDEN int bg_read_file(const char* path, unsigned char** out, size_t* out_len, char* err,
                           size_t errcap);
/* Atomic write: dir/.name.tmp, fsync, rename over dir/name. 0 or -1 (errno set). */
BG_HIDDEN int bg_write_atomic(const char* dir, const char* name, const unsigned char* data,
                              size_t len);

/* static_link.c: referenced from boinc_init so that a -static link pulls in the pthread functions
 * that libgfortran / libgcc reference weakly. Returns how many are linked. */
BG_HIDDEN int bg_static_link_anchor(void);

/* hostinfo.c: the members of HOST_INFO the guest can know (CPU, memory, disk, OS, host name,
 * time zone); the rest stays as it is (zero). */
struct HOST_INFO;
BG_HIDDEN void bg_fill_host_info(struct HOST_INFO* h);

#endif

/* graphics2.h - the main-app side of BOINC's graphics API (api/graphics2.h), boinc-guest SDK.
 *
 * A VM has no display and no BOINC graphics app to talk to, so there is no shared memory segment:
 * boinc_graphics_make_shmem() and boinc_graphics_get_shmem() return NULL (what BOINC's return when
 * the segment cannot be made -- an app has to handle that anyway), and boinc_write_graphics_status()
 * writes nothing and returns 0. The graphics-app side (boinc_graphics_loop, app_graphics_render, ...)
 * is not provided: a BOINC graphics app cannot run in a VM. C linkage, usable from C too. */
#ifndef BOINC_GUEST_GRAPHICS2_H
#define BOINC_GUEST_GRAPHICS2_H

#ifdef __cplusplus
extern "C" {
#endif

/* NULL: no shared memory for a graphics app in a VM. */
extern void* boinc_graphics_make_shmem(const char* prog_name, int size);
/* NULL: no shared memory for a graphics app in a VM. */
extern void* boinc_graphics_get_shmem(const char* prog_name);
/* Nothing is written; returns 0. */
extern int boinc_write_graphics_status(double cpu_time, double elapsed_time, double fraction_done);

#ifdef __cplusplus
}
#endif

#endif /* BOINC_GUEST_GRAPHICS2_H */

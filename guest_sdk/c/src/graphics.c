/* graphics.c - the main-app side of BOINC's graphics API (include/graphics2.h): no shared memory
 * segment and no graphics app in a VM. */
#include <stddef.h>

#include "graphics2.h"

void* boinc_graphics_make_shmem(const char* prog_name, int size) {
    (void)prog_name;
    (void)size;
    return NULL;
}

void* boinc_graphics_get_shmem(const char* prog_name) {
    (void)prog_name;
    return NULL;
}

int boinc_write_graphics_status(double cpu_time, double elapsed_time, double fraction_done) {
    (void)cpu_time;
    (void)elapsed_time;
    (void)fraction_done;
    return 0;
}

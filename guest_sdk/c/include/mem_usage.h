/* mem_usage.h - BOINC's lib/mem_usage.h: this process's virtual and resident memory, in bytes, from
 * /proc/self/statm. Returns 0, or ERR_FOPEN / ERR_READ. Usable from C and C++ (C: pointers). */
#ifndef BOINC_GUEST_MEM_USAGE_H
#define BOINC_GUEST_MEM_USAGE_H

#include <stdio.h>
#include <unistd.h>

#include "error_numbers.h"

static inline int boinc_guest_mem_usage(double* vm_usage, double* resident_set) {
    FILE* f = fopen("/proc/self/statm", "r");
    unsigned long vm = 0, rss = 0;
    if (!f) return ERR_FOPEN;
    int n = fscanf(f, "%lu %lu", &vm, &rss);
    fclose(f);
    if (n != 2) return ERR_READ;
    double page = (double)sysconf(_SC_PAGESIZE);
    *vm_usage = (double)vm * page;
    *resident_set = (double)rss * page;
    return 0;
}

#ifdef __cplusplus
inline int mem_usage(double& vm_usage, double& resident_set) {
    return boinc_guest_mem_usage(&vm_usage, &resident_set);
}
#else
static inline int mem_usage(double* vm_usage, double* resident_set) {
    return boinc_guest_mem_usage(vm_usage, resident_set);
}
#endif

#endif /* BOINC_GUEST_MEM_USAGE_H */

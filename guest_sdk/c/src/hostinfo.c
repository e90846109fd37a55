/* hostinfo.c - APP_INIT_DATA::host_info in the guest: what the guest can see of its own machine
 * (the VM's CPUs, memory, disk, OS), read from sysconf, sysinfo, statvfs, uname and /proc/cpuinfo.
 * host_cpid, serial number, addresses and benchmarks stay empty: the host bridge does not send them. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "hostinfo.h"
#include "internal.h"

/* value of the first "key : value" line of /proc/cpuinfo whose key is key */
static void cpuinfo_field(const char* key, char* out, size_t cap) {
    FILE* f = fopen("/proc/cpuinfo", "r");
    char line[P_FEATURES_SIZE + 64];
    size_t klen = strlen(key);
    if (!f) return;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, klen) != 0) continue;
        char* p = line + klen;
        while (*p == ' ' || *p == '\t') p++;
        if (*p != ':') continue;
        p++;
        while (*p == ' ') p++;
        p[strcspn(p, "\n")] = 0;
        snprintf(out, cap, "%s", p);
        break;
    }
    fclose(f);
}

void bg_fill_host_info(struct HOST_INFO* h) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    h->p_ncpus = n > 0 ? (int)n : 1;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0) h->m_nbytes = (double)pages * (double)psize;
    struct sysinfo si;
    if (sysinfo(&si) == 0) h->m_swap = (double)si.totalswap * (double)si.mem_unit;
    struct statvfs vfs;
    if (statvfs(".", &vfs) == 0) {
        h->d_total = (double)vfs.f_blocks * (double)vfs.f_frsize;
        h->d_free = (double)vfs.f_bavail * (double)vfs.f_frsize;
    }
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(h->os_name, sizeof(h->os_name), "%s", u.sysname);
        snprintf(h->os_version, sizeof(h->os_version), "%s", u.release);
        snprintf(h->domain_name, sizeof(h->domain_name), "%s", u.nodename);
    }
    cpuinfo_field("vendor_id", h->p_vendor, sizeof(h->p_vendor));
    cpuinfo_field("model name", h->p_model, sizeof(h->p_model));
    cpuinfo_field("flags", h->p_features, sizeof(h->p_features));
    time_t now = time(NULL);
    struct tm lt;
    if (localtime_r(&now, &lt)) h->timezone = (int)lt.tm_gmtoff - (lt.tm_isdst > 0 ? 3600 : 0);
}

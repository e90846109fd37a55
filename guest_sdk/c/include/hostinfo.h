/* hostinfo.h - BOINC's HOST_INFO (lib/hostinfo.h) as APP_INIT_DATA::host_info carries it, for apps
 * built against the boinc-guest SDK. A plain C struct (usable from C) with BOINC's data members,
 * names and types. In the guest, boinc_get_init_data fills what the guest can see itself (p_ncpus,
 * p_vendor, p_model, p_features, m_nbytes, m_swap, d_total, d_free, os_name, os_version,
 * domain_name, timezone) -- the VM's values, which are what the app runs on -- and leaves the rest
 * (host_cpid, serialnum, ip_addr, mac_address, benchmarks p_fpops / p_iops / p_membw, product_name,
 * virtualbox_version) empty / zero: the host bridge does not send them. BOINC's coprocs member
 * (GPU descriptions) and the member functions (get_host_info, parse, write, ...) are not provided. */
#ifndef BOINC_GUEST_HOSTINFO_H
#define BOINC_GUEST_HOSTINFO_H

#include "common_defs.h"
#include "coproc.h"
#include "miofile.h"

#ifdef __cplusplus
#define BOINC_GUEST_BOOL bool
#else
#define BOINC_GUEST_BOOL _Bool
#endif

#define P_FEATURES_SIZE 1024
#define MAX_OPENCL_CPU_PLATFORMS 4

struct HOST_INFO {
    int timezone; /* local standard time - UTC, in seconds */
    char domain_name[256];
    char serialnum[256];
    char ip_addr[256];
    char host_cpid[64];
    int p_ncpus;
    char p_vendor[256];
    char p_model[256];
    char p_features[P_FEATURES_SIZE];
    double p_fpops;
    double p_iops;
    double p_membw;
    double p_calculated;
    BOINC_GUEST_BOOL p_vm_extensions_disabled;
    double m_nbytes; /* memory, bytes */
    double m_cache;
    double m_swap; /* swap, bytes */
    double d_total; /* disk of the working directory, bytes */
    double d_free;
    char os_name[256];
    char os_version[256];
    BOINC_GUEST_BOOL wsl_available;
    char product_name[256];
    char mac_address[256];
    char virtualbox_version[256];
    int num_opencl_cpu_platforms;
};
#ifndef __cplusplus
typedef struct HOST_INFO HOST_INFO;
#endif

#endif /* BOINC_GUEST_HOSTINFO_H */

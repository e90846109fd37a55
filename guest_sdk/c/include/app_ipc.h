/* app_ipc.h - BOINC's APP_INIT_DATA and slot-file names, for apps built against the boinc-guest SDK.
 *
 * APP_INIT_DATA carries BOINC's common members with BOINC's names and types, filled from the
 * init_data map of the control file the host bridge writes (docs/protocol.md); every data member of
 * BOINC 7.20's APP_INIT_DATA exists. host_info holds what the guest sees of its own machine (see
 * hostinfo.h); what neither the bridge sends nor the guest can know (authenticator, host_cpid,
 * proxy_info, global_prefs, credit figures, ...) is zero / empty (docs/guest_sdk_c.md lists which).
 * In C it is a plain struct. In C++ it is that struct plus app_files (std::vector<std::string>, empty
 * in a guest), and its constructor zeroes it, like BOINC's clear(). As BOINC's app_ipc.h, this header
 * includes hostinfo.h, proxy_info.h, prefs.h and common_defs.h (and through them parse.h,
 * miofile.h and coproc.h: XML_PARSER, MIOFILE, GPU_TYPE_*). */
#ifndef BOINC_GUEST_APP_IPC_H
#define BOINC_GUEST_APP_IPC_H

#include "common_defs.h"
#include "filesys.h" /* MAXPATHLEN, boinc_fopen */
#include "hostinfo.h"
#include "prefs.h"
#include "proxy_info.h"

#ifdef __cplusplus
#include <cstring>
#include <string>
#include <vector>
#define BOINC_GUEST_BOOL bool
#else
#define BOINC_GUEST_BOOL _Bool
#endif

#define DEFAULT_CHECKPOINT_PERIOD 300

/* file names BOINC uses in a slot directory (kept for source compatibility) */
#define INIT_DATA_FILE "init_data.xml"
#define BOINC_FINISH_CALLED_FILE "boinc_finish_called"
#define TEMPORARY_EXIT_FILE "boinc_temporary_exit"
#define TRICKLE_UP_FILENAME "trickle_up.xml"
#define STDERR_FILE "stderr.txt"
#define STDOUT_FILE "stdout.txt"
#define LOCKFILE "boinc_lockfile"
#define UPLOAD_FILE_REQ_PREFIX "boinc_ufr_"
#define UPLOAD_FILE_STATUS_PREFIX "boinc_ufs_"
#define PROJECT_DIR "projects"

typedef int SHMEM_SEG_NAME;

/* The data members, in C and C++ alike (the library fills them through boinc_get_init_data_p). */
#define BOINC_GUEST_AID_MEMBERS \
    int major_version; \
    int minor_version; \
    int release; \
    int app_version; \
    char app_name[256]; \
    char plan_class[256]; \
    char symstore[256]; \
    char acct_mgr_url[256]; \
    char* project_preferences; /* XML text; owned by the SDK (valid until the next boinc_init) */ \
    int userid; \
    int teamid; \
    int hostid; \
    char user_name[256]; \
    char team_name[256]; \
    char project_dir[256]; \
    char boinc_dir[MAXPATHLEN]; \
    char wu_name[256]; \
    char result_name[256]; \
    char authenticator[256]; \
    int slot; \
    int client_pid; \
    double user_total_credit; \
    double user_expavg_credit; \
    double host_total_credit; \
    double host_expavg_credit; \
    double resource_share_fraction; \
    struct HOST_INFO host_info; \
    struct PROXY_INFO proxy_info; \
    struct GLOBAL_PREFS global_prefs; \
    double starting_elapsed_time; \
    BOINC_GUEST_BOOL using_sandbox; \
    BOINC_GUEST_BOOL vm_extensions_disabled; \
    double rsc_fpops_est; \
    double rsc_fpops_bound; \
    double rsc_memory_bound; \
    double rsc_disk_bound; \
    double computation_deadline; \
    double fraction_done_start; \
    double fraction_done_end; \
    char gpu_type[64]; \
    int gpu_device_num; \
    int gpu_opencl_dev_index; \
    double gpu_usage; \
    double ncpus; \
    BOINC_GUEST_BOOL vbox_window; \
    BOINC_GUEST_BOOL no_priority_change; \
    int process_priority; \
    int process_priority_special; \
    double checkpoint_period; \
    SHMEM_SEG_NAME shmem_seg_name; \
    double wu_cpu_time; \
    /* boinc-guest addition: the project's master URL (BOINC keeps it elsewhere) */ \
    char master_url[256];

#ifdef __cplusplus
struct BOINC_GUEST_AID_C {
    BOINC_GUEST_AID_MEMBERS
};
struct APP_INIT_DATA : BOINC_GUEST_AID_C {
    std::vector<std::string> app_files; /* the app version's files (BOINC: for wrappers); empty here */
    APP_INIT_DATA() : BOINC_GUEST_AID_C() { clear(); }
    void clear() {
        std::memset(static_cast<void*>(static_cast<BOINC_GUEST_AID_C*>(this)), 0, sizeof(BOINC_GUEST_AID_C));
        app_files.clear();
    }
    void copy(const APP_INIT_DATA& a) { *this = a; }
};
#else
struct APP_INIT_DATA {
    BOINC_GUEST_AID_MEMBERS
};
typedef struct APP_INIT_DATA APP_INIT_DATA;
#endif

struct GRAPHICS_INFO {
    int xsize;
    int ysize;
    double refresh_period;
};
typedef struct GRAPHICS_INFO GRAPHICS_INFO;

#endif /* BOINC_GUEST_APP_IPC_H */

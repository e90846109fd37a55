/* app_ipc.h - BOINC's APP_INIT_DATA and slot-file names, for apps built against the boinc-guest SDK.
 *
 * APP_INIT_DATA carries BOINC's common members with BOINC's names and types, filled from the
 * init_data map of the control file the host bridge writes (docs/protocol.md). Members the guest
 * cannot know (authenticator, host_info, proxy_info, global_prefs, ...) are absent or zero.
 * It is a plain C struct (usable from C); in C++ its constructor zeroes it, like BOINC's clear(). */
#ifndef BOINC_GUEST_APP_IPC_H
#define BOINC_GUEST_APP_IPC_H

#include "filesys.h" /* MAXPATHLEN, boinc_fopen */

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

struct APP_INIT_DATA {
    int major_version;
    int minor_version;
    int release;
    int app_version;
    char app_name[256];
    char plan_class[256];
    char symstore[256];
    char acct_mgr_url[256];
    char* project_preferences; /* XML text; owned by the SDK (valid until the next boinc_init) */
    int userid;
    int teamid;
    int hostid;
    char user_name[256];
    char team_name[256];
    char project_dir[256];
    char boinc_dir[MAXPATHLEN];
    char wu_name[256];
    char result_name[256];
    char authenticator[256];
    int slot;
    int client_pid;
    double user_total_credit;
    double user_expavg_credit;
    double host_total_credit;
    double host_expavg_credit;
    double resource_share_fraction;
    double starting_elapsed_time;
    BOINC_GUEST_BOOL using_sandbox;
    BOINC_GUEST_BOOL vm_extensions_disabled;
    double rsc_fpops_est;
    double rsc_fpops_bound;
    double rsc_memory_bound;
    double rsc_disk_bound;
    double computation_deadline;
    double fraction_done_start;
    double fraction_done_end;
    char gpu_type[64];
    int gpu_device_num;
    int gpu_opencl_dev_index;
    double gpu_usage;
    double ncpus;
    BOINC_GUEST_BOOL vbox_window;
    BOINC_GUEST_BOOL no_priority_change;
    int process_priority;
    int process_priority_special;
    double checkpoint_period;
    SHMEM_SEG_NAME shmem_seg_name;
    double wu_cpu_time;
    /* boinc-guest addition: the project's master URL (BOINC keeps it elsewhere) */
    char master_url[256];
#ifdef __cplusplus
    APP_INIT_DATA() { clear(); }
    void clear() { std::memset(static_cast<void*>(this), 0, sizeof(*this)); }
#endif
};
#ifndef __cplusplus
typedef struct APP_INIT_DATA APP_INIT_DATA;
#endif

struct GRAPHICS_INFO {
    int xsize;
    int ysize;
    double refresh_period;
};
typedef struct GRAPHICS_INFO GRAPHICS_INFO;

#endif /* BOINC_GUEST_APP_IPC_H */

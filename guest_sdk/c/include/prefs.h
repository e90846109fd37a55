/* prefs.h - BOINC's GLOBAL_PREFS (lib/prefs.h) as APP_INIT_DATA::global_prefs carries it: a plain C
 * struct with BOINC's numeric and flag members (the weekly time schedules and the parse / write
 * member functions are not provided). In the guest it is all zero except what is noted in
 * docs/guest_sdk_c.md: the host bridge does not pass the volunteer's computing preferences (the
 * client enforces them on the VM as a whole). Includes parse.h and miofile.h, as BOINC's does. */
#ifndef BOINC_GUEST_PREFS_H
#define BOINC_GUEST_PREFS_H

#include "miofile.h"
#include "parse.h"

#ifdef __cplusplus
#define BOINC_GUEST_BOOL bool
#else
#define BOINC_GUEST_BOOL _Bool
#endif

struct GLOBAL_PREFS {
    double mod_time;
    double battery_charge_min_pct;
    double battery_max_temperature;
    BOINC_GUEST_BOOL confirm_before_connecting;
    double cpu_scheduling_period_minutes;
    double cpu_usage_limit;
    double daily_xfer_limit_mb;
    int daily_xfer_period_days;
    double disk_interval;
    double disk_max_used_gb;
    double disk_max_used_pct;
    double disk_min_free_gb;
    BOINC_GUEST_BOOL dont_verify_images;
    double end_hour;
    BOINC_GUEST_BOOL hangup_if_dialed;
    double idle_time_to_run;
    BOINC_GUEST_BOOL leave_apps_in_memory;
    double max_bytes_sec_down;
    double max_bytes_sec_up;
    double max_ncpus;
    double max_ncpus_pct;
    double net_end_hour;
    double net_start_hour;
    BOINC_GUEST_BOOL network_wifi_only;
    double ram_max_used_busy_frac;
    double ram_max_used_idle_frac;
    BOINC_GUEST_BOOL run_gpu_if_user_active;
    BOINC_GUEST_BOOL run_if_user_active;
    BOINC_GUEST_BOOL run_on_batteries;
    double start_hour;
    double suspend_cpu_usage;
    double suspend_if_no_recent_input;
    double vm_max_used_frac;
    double work_buf_additional_days;
    double work_buf_min_days;
    BOINC_GUEST_BOOL override_file_present;
    char source_project[256];
    char source_scheduler[256];
    BOINC_GUEST_BOOL host_specific;
};
#ifndef __cplusplus
typedef struct GLOBAL_PREFS GLOBAL_PREFS;
#endif

#endif /* BOINC_GUEST_PREFS_H */

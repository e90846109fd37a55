/* boinc_api.h - the BOINC application API for apps running inside a VM (boinc-guest SDK).
 *
 * Source-compatible with BOINC's api/boinc_api.h: the same names, signatures and types, with C
 * linkage for everything BOINC declares in its extern "C" block, so existing C, C++ and Fortran
 * BOINC apps compile unchanged. Instead of talking to the BOINC client through shared memory, the
 * SDK writes a status file into a folder shared with the host (see docs/protocol.md); the host
 * bridge forwards it to the real BOINC client.
 *
 * Link with -lboinc_guest -lpthread (pkg-config --libs boinc-guest). C++ users need no C++ runtime
 * from the SDK: the C++ overloads below are inline wrappers over C functions. */
#ifndef BOINC_GUEST_BOINC_API_H
#define BOINC_GUEST_BOINC_API_H

#include "app_ipc.h"
#include "error_numbers.h"
#include "filesys.h"

#ifdef __cplusplus
#include <string>
extern "C" {
#endif

/* Options for boinc_init_options() (BOINC 7 layout, ints used as booleans). In this SDK:
 * direct_process_action = 0 makes quit / abort requests only visible in boinc_get_status() instead
 * of ending the process; multi_process includes reaped children in the CPU time (always done). */
typedef struct BOINC_OPTIONS {
    int normal_thread_priority;
    int main_program;
    int check_heartbeat;
    int handle_process_control;
    int send_status_msgs;
    int direct_process_action;
    int multi_thread;
    int multi_process;
} BOINC_OPTIONS;

/* What the host asked for (from the control file). */
typedef struct BOINC_STATUS {
    int no_heartbeat;
    int suspended;
    int quit_request;
    int reread_init_data_file;
    int abort_request;
    double working_set_size;
    double max_working_set_size;
    int network_suspended;
} BOINC_STATUS;

/* Kept up to date by the SDK's background thread, like BOINC's global. */
extern volatile BOINC_STATUS boinc_status;

typedef void (*FUNC_PTR)(void);

struct APP_INIT_DATA;

extern int boinc_init(void);
extern int boinc_init_options(BOINC_OPTIONS*);
extern int boinc_init_parallel(void);
extern int boinc_finish(int status);
extern int boinc_get_init_data_p(struct APP_INIT_DATA*);
extern int boinc_parse_init_data_file(void);
extern int boinc_resolve_filename(const char* virtual_name, char* physical_name, int len);
extern int boinc_send_trickle_up(char* variety, char* text);
extern int boinc_receive_trickle_down(char* buf, int len);
extern int boinc_set_min_checkpoint_period(int);
extern int boinc_checkpoint_completed(void);
extern int boinc_time_to_checkpoint(void);
extern int boinc_fraction_done(double);
extern double boinc_get_fraction_done(void);
extern int boinc_suspend_other_activities(void);
extern int boinc_resume_other_activities(void);
extern int boinc_report_app_status(double cpu_time, double checkpoint_cpu_time, double _fraction_done);
extern void boinc_begin_critical_section(void);
extern void boinc_end_critical_section(void);
extern void boinc_need_network(void);
extern int boinc_network_poll(void);
extern void boinc_network_done(void);
extern void boinc_network_usage(double sent, double received);
extern int boinc_is_standalone(void);
extern void boinc_ops_per_cpu_sec(double fp, double integer);
extern void boinc_ops_cumulative(double fp, double integer);
extern void boinc_set_credit_claim(double credit);
extern int boinc_get_status(BOINC_STATUS*);
extern void boinc_register_timer_callback(FUNC_PTR);
extern double boinc_worker_thread_cpu_time(void);
extern void boinc_web_graphics_url(char*);
extern void boinc_remote_desktop_addr(char*);

/* C++-only in BOINC (with these signatures); C linkage here so that C apps can call them too. */
extern double boinc_elapsed_time(void);
extern char* boinc_msg_prefix(char*, int);
#ifdef __cplusplus
extern int boinc_temporary_exit(int delay, const char* reason = 0, bool is_notice = false);
extern int boinc_finish_message(int status, const char* message, bool is_notice);
#else
extern int boinc_temporary_exit(int delay, const char* reason, _Bool is_notice);
extern int boinc_finish_message(int status, const char* message, _Bool is_notice);
#endif

/* Debugging switches of BOINC's API (g_sleep in older BOINC, boinc_disable_timer_thread in newer):
 * set either to true to simulate an unresponsive app. The SDK's background thread then does nothing
 * -- no heartbeat, no status writes, no quit / abort handling, no timer callback -- so the host sees
 * a hung task. Synchronous writes (checkpoints, events, boinc_finish) still happen. */
#ifdef __cplusplus
extern bool g_sleep;
extern bool boinc_disable_timer_thread;
#else
extern _Bool g_sleep;
extern _Bool boinc_disable_timer_thread;
#endif

/* C versions of BOINC's C++ reference / std::string functions. In C++ the reference overloads
 * below are available as well, so BOINC-style calls compile unchanged. */
extern int boinc_wu_cpu_time(double* cpu_time);
extern int boinc_upload_file(const char* name);
extern int boinc_upload_status(const char* name);

#ifdef __cplusplus
} /* extern "C" */

/* BOINC's C++ API, as inline wrappers (no C++ runtime needed in the SDK library). */
inline int boinc_resolve_filename_s(const char* virtual_name, std::string& physical_name) {
    char buf[MAXPATHLEN + 1];
    int rc = boinc_resolve_filename(virtual_name, buf, (int)sizeof(buf));
    physical_name = buf;
    return rc;
}
inline int boinc_get_init_data(APP_INIT_DATA& aid) { return boinc_get_init_data_p(&aid); }
inline int boinc_wu_cpu_time(double& cpu_time) { return boinc_wu_cpu_time(&cpu_time); }
inline int boinc_upload_file(std::string& name) { return boinc_upload_file(name.c_str()); }
inline int boinc_upload_status(std::string& name) { return boinc_upload_status(name.c_str()); }
inline void boinc_options_defaults(BOINC_OPTIONS& b) {
    b.main_program = 1;
    b.check_heartbeat = 1;
    b.handle_process_control = 1;
    b.send_status_msgs = 1;
    b.direct_process_action = 1;
    b.normal_thread_priority = 0;
    b.multi_thread = 0;
    b.multi_process = 0;
}
#else
/* C has no references: the C version takes a pointer. */
static inline void boinc_options_defaults(BOINC_OPTIONS* b) {
    b->main_program = 1;
    b->check_heartbeat = 1;
    b->handle_process_control = 1;
    b->send_status_msgs = 1;
    b->direct_process_action = 1;
    b->normal_thread_priority = 0;
    b->multi_thread = 0;
    b->multi_process = 0;
}
#endif

#endif /* BOINC_GUEST_BOINC_API_H */

"""Logic-free cffi layer (ABI mode) over the real BOINC API library, ``libboinc_api.so.7``.

Only declarations live here; every decision (options, message formats, fallbacks) is in
:mod:`host_bridge.boinc.api`. Layouts were checked against BOINC 7.20.5 (``api/boinc_api.h``,
``lib/app_ipc.h``) and ``nm -D /usr/lib/x86_64-linux-gnu/libboinc_api.so.7``.

The C++-only functions whose arguments are plain C types (``boinc_temporary_exit(int, const char*,
bool)``, ``boinc_finish_message(int, const char*, bool)``) are also declared under their mangled
names: they are the fallback when the compiled C++ shim (:mod:`host_bridge.boinc._shim_build`) is
missing. ``boinc_upload_file`` / ``boinc_upload_status`` take ``std::string&`` and are only reachable
through the shim.

``APP_INIT_DATA`` is deliberately *not* declared: in 7.20.5 it embeds ``HOST_INFO`` (with coprocessor
vectors), ``GLOBAL_PREFS`` and a ``std::vector<std::string>``, so ``boinc_get_init_data_p`` cannot be
given a correctly constructed object from C. The bridge reads ``init_data.xml`` itself (see api.py).
"""

from __future__ import annotations

#: The library's soname (Debian package ``libboinc-app7``).
LIBRARY_NAME = "libboinc_api.so.7"
#: The BOINC library it links against (same package), carried next to it by the single-file bundle.
DEPENDENCY_NAME = "libboinc.so.7"

#: Exported (mangled) names of the C++-only calls in 7.20.5, as listed by ``nm -D``.
MANGLED_TEMPORARY_EXIT = "_Z20boinc_temporary_exitiPKcb"
MANGLED_FINISH_MESSAGE = "_Z20boinc_finish_messageiPKcb"
MANGLED_UPLOAD_FILE = "_Z17boinc_upload_fileRNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"
MANGLED_UPLOAD_STATUS = "_Z19boinc_upload_statusRNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"
MANGLED_WU_CPU_TIME = "_Z17boinc_wu_cpu_timeRd"
MANGLED_ELAPSED_TIME = "_Z18boinc_elapsed_timev"

MSG_CHANNEL_SIZE = 1024

CDEF = """
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

typedef struct MSG_CHANNEL {
    char buf[1024];
} MSG_CHANNEL;

typedef struct SHARED_MEM {
    MSG_CHANNEL process_control_request;
    MSG_CHANNEL process_control_reply;
    MSG_CHANNEL graphics_request;
    MSG_CHANNEL graphics_reply;
    MSG_CHANNEL heartbeat;
    MSG_CHANNEL app_status;
    MSG_CHANNEL trickle_up;
    MSG_CHANNEL trickle_down;
} SHARED_MEM;

/* class APP_CLIENT_SHM { public: SHARED_MEM* shm; ...non-virtual methods }: one pointer. */
typedef struct APP_CLIENT_SHM {
    SHARED_MEM* shm;
} APP_CLIENT_SHM;

/* C linkage (extern "C" in boinc_api.h / app_ipc.h) */
int boinc_init(void);
int boinc_init_options(BOINC_OPTIONS*);
int boinc_finish(int status);
int boinc_get_status(BOINC_STATUS*);
int boinc_is_standalone(void);
int boinc_parse_init_data_file(void);
int boinc_report_app_status(double cpu_time, double checkpoint_cpu_time, double fraction_done);
int boinc_send_trickle_up(char* variety, char* text);
int boinc_receive_trickle_down(char* buf, int len);
int boinc_resolve_filename(const char* logical, char* physical, int len);
int boinc_fraction_done(double);
double boinc_get_fraction_done(void);
int boinc_checkpoint_completed(void);
int boinc_time_to_checkpoint(void);
int boinc_set_min_checkpoint_period(int);
void boinc_begin_critical_section(void);
void boinc_end_critical_section(void);
void boinc_need_network(void);
int boinc_network_poll(void);
void boinc_network_done(void);
void boinc_network_usage(double sent, double received);
double boinc_worker_thread_cpu_time(void);
void boinc_web_graphics_url(char*);
void boinc_remote_desktop_addr(char*);

/* data */
extern APP_CLIENT_SHM* app_client_shm;
extern BOINC_STATUS boinc_status;

/* C++ linkage, plain argument types: callable by their mangled names (fallback without the shim) */
int _Z20boinc_temporary_exitiPKcb(int delay, const char* reason, _Bool is_notice);
int _Z20boinc_finish_messageiPKcb(int status, const char* message, _Bool is_notice);
int _Z17boinc_wu_cpu_timeRd(double* cpu_time);
double _Z18boinc_elapsed_timev(void);
"""

try:  # the declarations pre-parsed by _shim_build (no C parsing at start-up)
    from ._abi import ffi  # type: ignore[import-not-found]
except ImportError:  # a checkout that was not set up: parse them now
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(CDEF)


def dlopen(name: str = LIBRARY_NAME):
    """``ffi.dlopen(name)``; raises OSError when the library cannot be loaded."""
    return ffi.dlopen(name)

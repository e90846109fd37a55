/* boinc_guest.h - boinc-guest SDK extras beyond BOINC's API: test-mode hooks (used by the
 * project's tests to replay tests/vectors/sessions.json) and direct access to the protocol
 * encoder / decoder (docs/protocol.md). Apps do not need this header. */
#ifndef BOINC_GUEST_H
#define BOINC_GUEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BOINC_GUEST_PROTOCOL_VERSION 1
#define BOINC_GUEST_MAX_FILE 1048576
#define BOINC_GUEST_MAX_EVENTS 64
#define BOINC_GUEST_MAX_NAME 255          /* trickle variety, upload name */
#define BOINC_GUEST_MAX_TEXT 65536        /* trickle-up / trickle-down text */
#define BOINC_GUEST_MAX_MESSAGE 4096      /* finish message, temporary-exit reason */
#define BOINC_GUEST_MAX_INIT_STRING 65536 /* any string in init_data */
#define BOINC_GUEST_MAX_DEPTH 8

#define BOINC_GUEST_STATUS_FILE "boinc_status.msgpack"
#define BOINC_GUEST_CONTROL_FILE "boinc_control.msgpack"

/* ---- test mode ---------------------------------------------------------------------------- */

/* Test mode (call before boinc_init): no background thread, no atexit hook, clocks set by
 * boinc_guest_set_times(), boinc_finish* / boinc_temporary_exit return instead of ending the
 * process, quit / abort do not end the process. Returns the previous setting. */
int boinc_guest_test_mode(int on);
/* The test clock: CPU seconds and wall seconds of this run. */
void boinc_guest_set_times(double cpu, double elapsed);
/* Write the state now (unconditionally; hb unchanged). 0 or ERR_WRITE. */
int boinc_guest_flush(void);
/* hb + 1, then write (what the background thread does once a second). */
int boinc_guest_heartbeat(void);
/* Re-read the control file now. 0, or < 0 if it was absent or refused (the old state is kept). */
int boinc_guest_reload_control(void);
/* Forget everything (stop the background thread, drop the state) so boinc_init can run again. */
void boinc_guest_reset(void);
/* boinc_temporary_exit with a fractional delay in seconds (BOINC's C API takes an int). */
int boinc_guest_temporary_exit(double delay, const char* reason, int is_notice);
/* The share folder in use ("" in standalone mode or before boinc_init). */
const char* boinc_guest_share_dir(void);

/* ---- protocol: the status encoder ---------------------------------------------------------- */

enum {
    BOINC_GUEST_EV_TRICKLE_UP = 1,
    BOINC_GUEST_EV_UPLOAD = 2,
    BOINC_GUEST_EV_FINISH = 3,
    BOINC_GUEST_EV_TEMPORARY_EXIT = 4
};

/* A string with an explicit length (may hold NUL bytes; also NUL-terminated when decoded). */
typedef struct boinc_guest_str {
    const char* ptr;
    size_t len;
} boinc_guest_str;

typedef struct boinc_guest_event {
    uint64_t id;
    int type;          /* BOINC_GUEST_EV_* */
    int is_notice;     /* finish, temporary_exit */
    int32_t status;    /* finish */
    double delay;      /* temporary_exit */
    boinc_guest_str s1; /* trickle_up: variety; upload: name; finish: message; temporary_exit: reason */
    boinc_guest_str s2; /* trickle_up: text */
} boinc_guest_event;

typedef struct boinc_guest_status {
    int64_t v;
    uint64_t seq;
    uint64_t hb;
    double fraction_done;
    double cpu_time;
    double elapsed_time;
    double checkpoint_cpu_time;
    uint64_t checkpoint_count;
    double fpops_per_cpu_sec;
    double fpops_cumulative;
    double intops_per_cpu_sec;
    double intops_cumulative;
    int critical_section;
    int want_network;
    uint64_t td_ack;
    size_t n_events;
    const boinc_guest_event* events;
} boinc_guest_status;

/* Canonical encoding of a status map into out[0..cap). Strings are written as given (the caller
 * is responsible for valid UTF-8). Returns 0 and sets *out_len, or ERR_BUFFER_OVERFLOW (-118). */
int boinc_guest_encode_status(const boinc_guest_status* st, unsigned char* out, size_t cap,
                              size_t* out_len);

/* Strict, bounded decoding of a status file (what the host bridge does; the SDK uses it at
 * boinc_init to continue seq and event ids). Returns 0 and fills *out (free it with
 * boinc_guest_status_free), or a negative BOINC error and a reason in err. */
int boinc_guest_decode_status(const unsigned char* buf, size_t len, boinc_guest_status* out,
                              char* err, size_t errcap);
void boinc_guest_status_free(boinc_guest_status* st);

/* ---- protocol: the control decoder --------------------------------------------------------- */

typedef struct boinc_guest_init_data {
    boinc_guest_str app_name, wu_name, result_name, project_preferences, user_name, team_name,
        master_url;
    int64_t userid, teamid, hostid, app_version;
    double checkpoint_period;
    uint64_t nthreads;
    double fraction_done_start, fraction_done_end, wu_cpu_time, starting_elapsed_time,
        rsc_fpops_est, rsc_fpops_bound, rsc_memory_bound, rsc_disk_bound, computation_deadline;
} boinc_guest_init_data;

typedef struct boinc_guest_trickle_down {
    uint64_t id;
    boinc_guest_str text;
} boinc_guest_trickle_down;

typedef struct boinc_guest_upload_result {
    boinc_guest_str name;
    int64_t status;
} boinc_guest_upload_result;

typedef struct boinc_guest_control {
    int64_t v;
    uint64_t seq;
    int suspended, quit, abort, network_suspended;
    uint64_t ack;
    boinc_guest_init_data init_data;
    size_t n_trickle_down;
    boinc_guest_trickle_down* trickle_down;
    size_t n_uploads;
    boinc_guest_upload_result* uploads;
} boinc_guest_control;

/* Strict, bounded decoding of a control file. Returns 0 and fills *out (free it with
 * boinc_guest_control_free), or a negative BOINC error (ERR_FILE_TOO_BIG over 1 MiB, else
 * ERR_XML_PARSE) and writes a reason into err: "<category>: <where>: <what>", category one of
 * size, format, version, missing, type, range. Never reads outside buf[0..len). */
int boinc_guest_decode_control(const unsigned char* buf, size_t len, boinc_guest_control* out,
                               char* err, size_t errcap);
void boinc_guest_control_free(boinc_guest_control* c);

/* UTF-8 repair as the SDK does it for app strings: every byte that is not part of a well-formed
 * UTF-8 sequence becomes U+FFFD (docs/protocol.md; the same as Python's
 * bytes.decode("utf-8", "surrogateescape") followed by the SDK's lone-surrogate replacement).
 * Writes at most cap bytes (out may be NULL); returns the full length needed. */
size_t boinc_guest_utf8_repair(const char* in, size_t len, char* out, size_t cap);
/* The longest prefix of valid UTF-8 s[0..len) of at most max bytes that ends on a character
 * boundary. */
size_t boinc_guest_utf8_truncate(const char* s, size_t len, size_t max);

#ifdef __cplusplus
}
#endif

#endif /* BOINC_GUEST_H */

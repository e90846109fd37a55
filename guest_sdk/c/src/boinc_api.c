/* boinc_api.c - BOINC's application API on top of the shared-folder protocol (docs/protocol.md).
 *
 * State lives in memory; the background thread writes it (within 0.1 s when dirty; progress-only
 * changes -- fraction done, ops -- at most once a second; and once a second with hb + 1) and re-reads
 * the control file every 0.1 s. Calls that create events or
 * complete a checkpoint write synchronously. boinc_fraction_done is lock- and syscall-free. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "boinc_api.h"
#include "internal.h"
#include "util.h"

#define TICK 0.1         /* control re-read, minimum interval between state writes (s) */
#define HEARTBEAT 1.0    /* heartbeat interval (s) */
/* progress-only changes (fraction done, ops) are written at most this often (s): BOINC's API sends its
 * status once a second and the client reads it once a second; each write costs an fsync here and a
 * wake-up of the host bridge. A change after a second without one goes out within TICK. */
#define PROGRESS_INTERVAL 1.0
#define FINISH_WAIT 30.0 /* s: how long boinc_finish waits for room in a full event queue */

typedef struct ev_slot {
    boinc_guest_event e; /* s1 / s2 point to malloc'ed copies */
} ev_slot;

/* ---- state (g_lock protects everything that is not atomic) ---- */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;

/* fraction done, as the bits of a double; -1.0 (0xBFF0...) until the app reports progress, as BOINC's
 * boinc_get_fraction_done() returns -1 then (sent to the host as 0) */
#define FD_UNSET_BITS 0xBFF0000000000000ULL
static _Atomic uint64_t g_fd_bits = FD_UNSET_BITS;
static _Atomic int g_dirty;    /* a change the host should see within TICK */
static _Atomic int g_progress; /* a progress-only change: written within PROGRESS_INTERVAL */
static _Atomic int g_crit;         /* critical-section nesting count, like BOINC's */
static int g_ckpt_cs;              /* the critical section entered by boinc_time_to_checkpoint */

static int g_initialized, g_standalone, g_test_mode, g_atexit_registered;
static char g_share[MAXPATHLEN];
static BOINC_OPTIONS g_opts;
static double g_test_cpu, g_test_elapsed;
static struct timespec g_t0;
static uint64_t g_seq, g_hb, g_ckpt_count, g_td_ack, g_next_id;
static double g_ckpt_cpu, g_fpops_ps, g_fpops_cum, g_intops_ps, g_intops_cum;
static int g_want_network;
static ev_slot g_events[BOINC_GUEST_MAX_EVENTS];
static size_t g_nev;
static boinc_guest_control g_ctl;
static int g_have_ctl;
static unsigned char* g_ctl_bytes;
static size_t g_ctl_len;
static char g_ctl_err[512];
static char* g_prefs;
static pthread_t g_thread;
static int g_thread_running, g_stop;
static double g_last_write, g_last_hb, g_last_ckpt, g_last_progress_write;
static int g_min_ckpt_period;
static FUNC_PTR g_timer_cb;
static pid_t g_pid;         /* the process that called boinc_init (a forked child never writes) */
static int g_write_failing; /* warn once per run of failed writes */

volatile BOINC_STATUS boinc_status;
/* BOINC's switches to simulate an unresponsive app: the background thread idles while either is set */
_Bool g_sleep;
_Bool boinc_disable_timer_thread;

static int app_unresponsive(void) {
    return __atomic_load_n(&g_sleep, __ATOMIC_RELAXED) ||
           __atomic_load_n(&boinc_disable_timer_thread, __ATOMIC_RELAXED);
}

/* ---- clocks ---- */

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double since_init(void) {
    return mono() - ((double)g_t0.tv_sec + g_t0.tv_nsec * 1e-9);
}

static double cpu_now(void) {
    if (g_test_mode) return g_test_cpu;
    struct rusage self, kids;
    double t = 0;
    if (getrusage(RUSAGE_SELF, &self) == 0)
        t += self.ru_utime.tv_sec + self.ru_utime.tv_usec * 1e-6 + self.ru_stime.tv_sec +
             self.ru_stime.tv_usec * 1e-6;
    if (getrusage(RUSAGE_CHILDREN, &kids) == 0)
        t += kids.ru_utime.tv_sec + kids.ru_utime.tv_usec * 1e-6 + kids.ru_stime.tv_sec +
             kids.ru_stime.tv_usec * 1e-6;
    return t;
}

static double elapsed_now(void) {
    if (g_test_mode) return g_test_elapsed;
    double e = since_init();
    return e > 0 ? e : 0;
}

static double load_fd(void) {
    uint64_t bits = atomic_load_explicit(&g_fd_bits, memory_order_relaxed);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static void mark_dirty(void) { atomic_store_explicit(&g_dirty, 1, memory_order_release); }
static void mark_progress(void) { atomic_store_explicit(&g_progress, 1, memory_order_release); }

static void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("boinc-guest: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- events ---- */

static void ev_free(ev_slot* s) {
    free((void*)s->e.s1.ptr);
    free((void*)s->e.s2.ptr);
    memset(s, 0, sizeof(*s));
}

static void drop_acked_locked(uint64_t ack) {
    size_t k = 0;
    for (size_t i = 0; i < g_nev; i++) {
        if (g_events[i].e.id <= ack) {
            ev_free(&g_events[i]);
        } else {
            if (k != i) {
                g_events[k] = g_events[i];
                memset(&g_events[i], 0, sizeof(g_events[i]));
            }
            k++;
        }
    }
    if (k != g_nev) mark_dirty();
    g_nev = k;
}

/* ---- writing ---- */

static int encode_locked(bg_buf* b, uint64_t seq) {
    boinc_guest_event evs[BOINC_GUEST_MAX_EVENTS];
    for (size_t i = 0; i < g_nev; i++) evs[i] = g_events[i].e;
    boinc_guest_status st;
    memset(&st, 0, sizeof(st));
    st.v = BOINC_GUEST_PROTOCOL_VERSION;
    st.seq = seq;
    st.hb = g_hb;
    double fd = load_fd();
    st.fraction_done = fd < 0 ? 0 : fd;
    st.cpu_time = cpu_now();
    st.elapsed_time = elapsed_now();
    st.checkpoint_cpu_time = g_ckpt_cpu;
    st.checkpoint_count = g_ckpt_count;
    st.fpops_per_cpu_sec = g_fpops_ps;
    st.fpops_cumulative = g_fpops_cum;
    st.intops_per_cpu_sec = g_intops_ps;
    st.intops_cumulative = g_intops_cum;
    st.critical_section = atomic_load_explicit(&g_crit, memory_order_relaxed) > 0;
    st.want_network = g_want_network;
    st.td_ack = g_td_ack;
    st.n_events = g_nev;
    st.events = evs;
    return bg_encode_status(b, &st);
}

/* Writes the state now. 0, or ERR_WRITE. No-op in standalone mode. */
static int write_locked(void) {
    if (!g_initialized || g_standalone || getpid() != g_pid) return 0;
    int was_dirty = atomic_exchange_explicit(&g_dirty, 0, memory_order_acquire);
    int was_progress = atomic_exchange_explicit(&g_progress, 0, memory_order_acquire);
    bg_buf b = {NULL, 0, 0, 0, 0};
    int rc = encode_locked(&b, g_seq + 1);
    if (rc == 0 && bg_write_atomic(g_share, BOINC_GUEST_STATUS_FILE, b.p, b.len) == 0) {
        g_seq++;
        g_last_write = mono();
        if (was_progress) g_last_progress_write = g_last_write;
        g_write_failing = 0;
    } else {
        if (rc == 0 && !g_write_failing)
            warn("cannot write %s/%s: %s (is the shared folder writable and not full?)", g_share,
                 BOINC_GUEST_STATUS_FILE, strerror(errno));
        g_write_failing = 1;
        if (was_dirty) mark_dirty();
        if (was_progress) atomic_store_explicit(&g_progress, 1, memory_order_release);
        rc = ERR_WRITE;
    }
    bg_buf_free(&b);
    return rc;
}

/* Appends an event (its strings already checked and repaired) and writes synchronously. The event
 * is withdrawn again if the queue is full, the file would exceed its bound or cannot be written. */
static int add_event_locked(int type, const char* s1, size_t l1, const char* s2, size_t l2,
                            int32_t status, double delay, int is_notice) {
    if (g_nev >= BOINC_GUEST_MAX_EVENTS) return ERR_BUFFER_OVERFLOW;
    char* c1 = malloc(l1 + 1);
    char* c2 = s2 ? malloc(l2 + 1) : NULL;
    if (!c1 || (s2 && !c2)) {
        free(c1);
        free(c2);
        return ERR_MALLOC;
    }
    if (l1) memcpy(c1, s1, l1);
    c1[l1] = 0;
    if (c2) {
        if (l2) memcpy(c2, s2, l2);
        c2[l2] = 0;
    }
    ev_slot* s = &g_events[g_nev];
    s->e.id = g_next_id;
    s->e.type = type;
    s->e.s1.ptr = c1;
    s->e.s1.len = l1;
    s->e.s2.ptr = c2;
    s->e.s2.len = c2 ? l2 : 0;
    s->e.status = status;
    s->e.delay = delay;
    s->e.is_notice = is_notice ? 1 : 0;
    g_nev++;
    /* the whole file must stay within MAX_FILE */
    bg_buf b = {NULL, 0, 0, 0, 0};
    int rc = encode_locked(&b, g_seq + 1);
    size_t size = b.len;
    bg_buf_free(&b);
    if (rc == 0 && size > BOINC_GUEST_MAX_FILE) rc = ERR_BUFFER_OVERFLOW;
    if (rc == 0) {
        g_next_id++;
        rc = write_locked();
        if (rc == 0) return 0;
        g_next_id--;
    }
    g_nev--;
    ev_free(&g_events[g_nev]);
    return rc;
}

/* A C string made valid UTF-8 (malloc'ed; *len set). NULL on out of memory. */
static char* repaired(const char* s, size_t* len) {
    size_t n = strlen(s);
    size_t need = boinc_guest_utf8_repair(s, n, NULL, 0);
    char* out = malloc(need + 1);
    if (!out) return NULL;
    boinc_guest_utf8_repair(s, n, out, need);
    out[need] = 0;
    *len = need;
    return out;
}

/* ---- control ---- */

static void apply_control_status_locked(void) {
    boinc_status.suspended = g_have_ctl && g_ctl.suspended;
    boinc_status.quit_request = g_have_ctl && g_ctl.quit;
    boinc_status.abort_request = g_have_ctl && g_ctl.abort;
    boinc_status.network_suspended = g_have_ctl && g_ctl.network_suspended;
    boinc_status.no_heartbeat = 0;
    boinc_status.reread_init_data_file = 0;
}

/* 0: read (or unchanged); -1 absent; -2 refused (the previous control state is kept). */
static int reload_control_locked(void) {
    if (!g_initialized || g_standalone) return -1;
    char path[MAXPATHLEN + 64], err[300];
    unsigned char* buf;
    size_t len;
    snprintf(path, sizeof(path), "%s/%s", g_share, BOINC_GUEST_CONTROL_FILE);
    int rc = bg_read_file(path, &buf, &len, err, sizeof(err));
    if (rc == -1) return -1;
    if (rc == 0 && g_ctl_bytes && len == g_ctl_len && memcmp(buf, g_ctl_bytes, len) == 0) {
        free(buf);
        return g_ctl_err[0] ? -2 : 0;
    }
    boinc_guest_control c;
    if (rc == 0 && boinc_guest_decode_control(buf, len, &c, err, sizeof(err)) == 0) {
        boinc_guest_control_free(&g_ctl);
        g_ctl = c;
        g_have_ctl = 1;
        free(g_ctl_bytes);
        g_ctl_bytes = buf;
        g_ctl_len = len;
        g_ctl_err[0] = 0;
        drop_acked_locked(g_ctl.ack);
        apply_control_status_locked();
        return 0;
    }
    /* remember the refused bytes too: the same file is not decoded (nor reported) again */
    free(g_ctl_bytes);
    g_ctl_bytes = buf;
    g_ctl_len = len;
    if (rc != 0) {
        free(buf);
        g_ctl_bytes = NULL;
        g_ctl_len = 0;
    }
    if (strcmp(err, g_ctl_err) != 0) {
        snprintf(g_ctl_err, sizeof(g_ctl_err), "%s", err);
        warn("ignoring %s: %s (keeping the last good one; the host bridge must write a regular "
             "file in protocol v1: check that bridge and guest SDK versions match)", path, err);
    }
    return -2;
}

/* ---- the share ---- */

static int is_dir_path(const char* p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int has_control(const char* dir) {
    char p[MAXPATHLEN + 64];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", dir, BOINC_GUEST_CONTROL_FILE);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int find_share(char* out, size_t cap) {
    const char* env = getenv("BOINC_GUEST_DIR");
    if (env && *env) {
        if (!is_dir_path(env)) {
            warn("BOINC_GUEST_DIR=%s is not a folder: running standalone (set it to the folder "
                 "shared with the host, or unset it)", env);
            return -1;
        }
        if (env[0] == '/' || !getcwd(out, cap)) {
            snprintf(out, cap, "%s", env);
        } else {
            size_t l = strlen(out);
            snprintf(out + l, cap - l, "/%s", env);
        }
        return 0;
    }
    if (has_control(".")) {
        if (!getcwd(out, cap)) snprintf(out, cap, ".");
        return 0;
    }
    static const char* const mounts[] = {"/boinc/shared", "/shared"};
    for (size_t i = 0; i < 2; i++)
        if (has_control(mounts[i])) {
            snprintf(out, cap, "%s", mounts[i]);
            return 0;
        }
    return -1;
}

/* ---- background thread ---- */

static void exit_for_request_locked(void) {
    int code = g_ctl.abort ? EXIT_ABORTED_BY_CLIENT : 0;
    write_locked();
    g_stop = 1;
    pthread_mutex_unlock(&g_lock);
    exit(code);
}

static int should_exit_locked(void) {
    return !g_test_mode && g_have_ctl && (g_ctl.quit || g_ctl.abort) &&
           g_opts.direct_process_action && atomic_load(&g_crit) <= 0;
}

static void* bg_main(void* arg) {
    (void)arg;
    pthread_mutex_lock(&g_lock);
    while (!g_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(TICK * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_cond, &g_lock, &until);
        if (g_stop) break;
        if (app_unresponsive()) continue; /* as BOINC's timer thread: nothing at all */
        reload_control_locked();
        if (should_exit_locked()) exit_for_request_locked();
        double now = mono();
        int second = 0;
        if (now - g_last_hb >= HEARTBEAT) {
            g_hb++;
            g_last_hb = now;
            second = 1;
            write_locked();
        } else if (atomic_load(&g_dirty) && now - g_last_write >= TICK - 0.005) {
            write_locked();
        } else if (atomic_load(&g_progress) && now - g_last_progress_write >= PROGRESS_INTERVAL - 0.005) {
            write_locked();
        }
        /* the app's timer callback: once a second, as BOINC's timer thread calls it */
        FUNC_PTR cb = second ? g_timer_cb : NULL;
        if (cb) {
            pthread_mutex_unlock(&g_lock);
            cb();
            pthread_mutex_lock(&g_lock);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static void stop_thread(void) {
    pthread_mutex_lock(&g_lock);
    int running = g_thread_running;
    g_stop = 1;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
    if (running && !pthread_equal(pthread_self(), g_thread)) {
        pthread_join(g_thread, NULL);
        g_thread_running = 0;
    }
}

static void at_exit(void) {
    if (g_test_mode) return;
    pthread_mutex_lock(&g_lock);
    g_stop = 1;
    pthread_cond_broadcast(&g_cond);
    if (g_initialized && (atomic_load(&g_dirty) || atomic_load(&g_progress))) write_locked();
    pthread_mutex_unlock(&g_lock);
}

/* ---- init ---- */

int boinc_init_options(BOINC_OPTIONS* opts) {
    int rc = 0;
    pthread_mutex_lock(&g_lock);
    if (g_initialized) {
        pthread_mutex_unlock(&g_lock);
        return 0;
    }
    (void)bg_static_link_anchor(); /* see static_link.c */
    if (opts) {
        g_opts = *opts;
    } else {
        boinc_options_defaults(&g_opts);
    }
    clock_gettime(CLOCK_MONOTONIC, &g_t0);
    g_pid = getpid();
    g_seq = g_hb = g_ckpt_count = g_td_ack = 0;
    g_ckpt_cpu = g_fpops_ps = g_fpops_cum = g_intops_ps = g_intops_cum = 0;
    g_want_network = 0;
    g_next_id = 1;
    g_stop = 0;
    g_share[0] = 0;
    g_standalone = find_share(g_share, sizeof(g_share)) != 0;
    if (g_standalone) g_share[0] = 0;
    g_initialized = 1;
    double now = mono();
    g_last_write = g_last_hb = now;
    g_last_ckpt = 0;
    uint64_t ack = 0;
    if (!g_standalone) {
        reload_control_locked();
        if (g_have_ctl) ack = g_ctl.ack;
        char path[MAXPATHLEN + 64], err[300];
        unsigned char* buf;
        size_t len;
        uint64_t max_id = 0;
        snprintf(path, sizeof(path), "%s/%s", g_share, BOINC_GUEST_STATUS_FILE);
        int frc = bg_read_file(path, &buf, &len, err, sizeof(err));
        if (frc == 0) {
            boinc_guest_status old;
            if (boinc_guest_decode_status(buf, len, &old, err, sizeof(err)) == 0) {
                g_seq = old.seq < ((uint64_t)1 << 63) ? old.seq : 0;
                max_id = old.n_events ? old.events[old.n_events - 1].id : 0;
                boinc_guest_status_free(&old);
            } else {
                warn("ignoring the old %s: %s", path, err);
            }
            free(buf);
        } else if (frc == -2) {
            warn("ignoring the old %s: %s", path, err);
        }
        g_next_id = (ack > max_id ? ack : max_id) + 1;
        rc = write_locked();
    }
    apply_control_status_locked();
    /* standalone too (it then writes nothing): BOINC's timer thread calls the app's timer callback
     * in standalone mode as well */
    if (!g_test_mode) {
        if (!g_atexit_registered) {
            atexit(at_exit);
            g_atexit_registered = 1;
        }
        if (pthread_create(&g_thread, NULL, bg_main, NULL) == 0) {
            g_thread_running = 1;
        } else {
            warn("cannot start the status thread: progress is only written at checkpoints");
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

int boinc_init(void) { return boinc_init_options(NULL); }

int boinc_init_parallel(void) {
    BOINC_OPTIONS o;
    boinc_options_defaults(&o);
    o.multi_thread = 1;
    o.multi_process = 1;
    return boinc_init_options(&o);
}

int boinc_is_standalone(void) { return !g_initialized || g_standalone; }

/* ---- progress (hot path: no locks, no syscalls) ---- */

int boinc_fraction_done(double x) {
    if (x != x) return 0; /* NaN: ignored */
    if (x < 0) x = 0;
    else if (x > 1) x = 1;
    uint64_t bits;
    memcpy(&bits, &x, sizeof(bits));
    atomic_store_explicit(&g_fd_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&g_progress, 1, memory_order_release);
    return 0;
}

double boinc_get_fraction_done(void) { return load_fd(); }

int boinc_report_app_status(double cpu_time, double checkpoint_cpu_time, double fraction_done) {
    (void)cpu_time;
    (void)checkpoint_cpu_time;
    return boinc_fraction_done(fraction_done);
}

/* non-finite values are ignored (the old value stays), negative ones become 0 */
static double nonneg(double v, double old) {
    if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) return old;
    return v > 0 ? v : 0;
}

void boinc_ops_per_cpu_sec(double fp, double integer) {
    pthread_mutex_lock(&g_lock);
    g_fpops_ps = nonneg(fp, g_fpops_ps);
    g_intops_ps = nonneg(integer, g_intops_ps);
    mark_progress();
    pthread_mutex_unlock(&g_lock);
}

void boinc_ops_cumulative(double fp, double integer) {
    pthread_mutex_lock(&g_lock);
    g_fpops_cum = nonneg(fp, g_fpops_cum);
    g_intops_cum = nonneg(integer, g_intops_cum);
    mark_progress();
    pthread_mutex_unlock(&g_lock);
}

void boinc_set_credit_claim(double credit) { (void)credit; }

/* ---- checkpoints and critical sections ---- */

/* the host's checkpoint period (300 s without a control file), at least the app's minimum */
static double ckpt_period_locked(void) {
    double p = g_have_ctl ? g_ctl.init_data.checkpoint_period : DEFAULT_CHECKPOINT_PERIOD;
    return g_min_ckpt_period > p ? g_min_ckpt_period : p;
}

int boinc_set_min_checkpoint_period(int x) {
    pthread_mutex_lock(&g_lock);
    g_min_ckpt_period = x > 0 ? x : 0;
    pthread_mutex_unlock(&g_lock);
    return 0;
}

static void crit_leave(void) {
    int c = atomic_load(&g_crit);
    while (c > 0 && !atomic_compare_exchange_weak(&g_crit, &c, c - 1)) {
    }
}

/* Like BOINC, returning 1 enters a critical section that boinc_checkpoint_completed leaves. */
int boinc_time_to_checkpoint(void) {
    pthread_mutex_lock(&g_lock);
    int due = elapsed_now() - g_last_ckpt >= ckpt_period_locked();
    if (due && !g_ckpt_cs) {
        g_ckpt_cs = 1;
        atomic_fetch_add(&g_crit, 1);
        mark_dirty();
    }
    pthread_mutex_unlock(&g_lock);
    return due;
}

int boinc_checkpoint_completed(void) {
    pthread_mutex_lock(&g_lock);
    g_ckpt_cpu = cpu_now();
    g_ckpt_count++;
    g_last_ckpt = elapsed_now();
    g_ckpt_cs = 0;
    crit_leave();
    int rc = write_locked();
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void boinc_begin_critical_section(void) {
    atomic_fetch_add(&g_crit, 1);
    mark_dirty();
}

void boinc_end_critical_section(void) {
    crit_leave();
    mark_dirty();
}

int boinc_suspend_other_activities(void) { return 0; }
int boinc_resume_other_activities(void) { return 0; }

/* ---- network ---- */

void boinc_need_network(void) {
    pthread_mutex_lock(&g_lock);
    g_want_network = 1;
    mark_dirty();
    pthread_mutex_unlock(&g_lock);
}

void boinc_network_done(void) {
    pthread_mutex_lock(&g_lock);
    g_want_network = 0;
    mark_dirty();
    pthread_mutex_unlock(&g_lock);
}

int boinc_network_poll(void) {
    pthread_mutex_lock(&g_lock);
    int suspended = g_have_ctl && g_ctl.network_suspended;
    pthread_mutex_unlock(&g_lock);
    return suspended ? 1 : 0;
}

void boinc_network_usage(double sent, double received) {
    (void)sent;
    (void)received;
}

/* ---- trickles and uploads ---- */

int boinc_send_trickle_up(char* variety, char* text) {
    if (!variety || !*variety || !text) return ERR_NULL;
    size_t lv, lt;
    char* v = repaired(variety, &lv);
    char* t = repaired(text, &lt);
    int rc = 0;
    if (!v || !t) rc = ERR_MALLOC;
    else if (lv > BOINC_GUEST_MAX_NAME || lt > BOINC_GUEST_MAX_TEXT) rc = ERR_BUFFER_OVERFLOW;
    if (rc == 0) {
        pthread_mutex_lock(&g_lock);
        if (g_initialized && !g_standalone)
            rc = add_event_locked(BOINC_GUEST_EV_TRICKLE_UP, v, lv, t, lt, 0, 0, 0);
        pthread_mutex_unlock(&g_lock);
    }
    free(v);
    free(t);
    return rc;
}

int boinc_receive_trickle_down(char* buf, int len) {
    if (!buf || len <= 0) return 0;
    int got = 0;
    pthread_mutex_lock(&g_lock);
    if (g_have_ctl) {
        for (size_t i = 0; i < g_ctl.n_trickle_down; i++) {
            const boinc_guest_trickle_down* t = &g_ctl.trickle_down[i];
            if (t->id <= g_td_ack) continue;
            size_t n = boinc_guest_utf8_truncate(t->text.ptr, t->text.len, (size_t)len - 1);
            memcpy(buf, t->text.ptr, n);
            buf[n] = 0;
            g_td_ack = t->id;
            mark_dirty();
            got = 1;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return got;
}

/* 0 if name (already valid UTF-8) is a plain file name allowed for an upload, else the error */
static int check_upload_name(const char* name, size_t n) {
    if (n == 0) return ERR_NULL;
    if (n > BOINC_GUEST_MAX_NAME) return ERR_BUFFER_OVERFLOW;
    if (memchr(name, '/', n) || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return ERR_INVALID_PARAM;
    return 0;
}

int boinc_upload_file(const char* name) {
    if (!name) return ERR_NULL;
    size_t n;
    char* clean = repaired(name, &n);
    if (!clean) return ERR_MALLOC;
    int rc = check_upload_name(clean, n);
    if (rc == 0) {
        pthread_mutex_lock(&g_lock);
        if (g_initialized && !g_standalone)
            rc = add_event_locked(BOINC_GUEST_EV_UPLOAD, clean, n, NULL, 0, 0, 0, 0);
        pthread_mutex_unlock(&g_lock);
    }
    free(clean);
    return rc;
}

int boinc_upload_status(const char* name) {
    if (!name || !*name) return ERR_NULL;
    int rc = ERR_NOT_FOUND;
    size_t n = strlen(name);
    pthread_mutex_lock(&g_lock);
    if (g_have_ctl)
        for (size_t i = 0; i < g_ctl.n_uploads; i++) {
            const boinc_guest_upload_result* u = &g_ctl.uploads[i];
            if (u->name.len == n && memcmp(u->name.ptr, name, n) == 0) {
                int64_t s = u->status;
                rc = s > INT_MAX ? INT_MAX : s < INT_MIN ? INT_MIN : (int)s;
            }
        }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

/* ---- finishing ---- */

static void end_process(int code) {
    stop_thread();
    exit(code);
}

static int finish_event(int type, int status, double delay, const char* text, int is_notice) {
    size_t l = 0;
    char* m = repaired(text ? text : "", &l);
    if (!m) return ERR_MALLOC;
    l = boinc_guest_utf8_truncate(m, l, BOINC_GUEST_MAX_MESSAGE);
    int rc = 0;
    pthread_mutex_lock(&g_lock);
    if (g_initialized && !g_standalone) {
        rc = add_event_locked(type, m, l, NULL, 0, status, delay, is_notice);
        if (rc == ERR_BUFFER_OVERFLOW && !g_test_mode) {
            /* the queue is full: give the host time to acknowledge older events */
            for (int i = 0; i < (int)(FINISH_WAIT / TICK) && rc == ERR_BUFFER_OVERFLOW; i++) {
                pthread_mutex_unlock(&g_lock);
                boinc_sleep(TICK);
                pthread_mutex_lock(&g_lock);
                reload_control_locked();
                rc = add_event_locked(type, m, l, NULL, 0, status, delay, is_notice);
            }
        }
    }
    pthread_mutex_unlock(&g_lock);
    free(m);
    return rc;
}

int boinc_finish_message(int status, const char* message, _Bool is_notice) {
    int rc = finish_event(BOINC_GUEST_EV_FINISH, status, 0, message, is_notice);
    if (g_test_mode) return rc;
    if (rc) warn("could not report the end of the task to the host (error %d)", rc);
    end_process(status);
    return rc; /* not reached */
}

int boinc_finish(int status) { return boinc_finish_message(status, NULL, 0); }

int boinc_temporary_exit(int delay, const char* reason, _Bool is_notice) {
    return boinc_guest_temporary_exit((double)delay, reason, is_notice);
}

int boinc_guest_temporary_exit(double delay, const char* reason, int is_notice) {
    /* a NaN, infinite or negative delay becomes 0 */
    double d = (delay > 0 && delay <= 1.7976931348623157e308) ? delay : 0;
    int rc = finish_event(BOINC_GUEST_EV_TEMPORARY_EXIT, 0, d, reason, is_notice);
    if (g_test_mode) return rc;
    if (rc) warn("could not report the temporary exit to the host (error %d)", rc);
    end_process(0);
    return rc;
}

/* ---- status, init data, names, times ---- */

int boinc_get_status(BOINC_STATUS* s) {
    if (!s) return ERR_NULL;
    pthread_mutex_lock(&g_lock);
    apply_control_status_locked();
    s->no_heartbeat = boinc_status.no_heartbeat;
    s->suspended = boinc_status.suspended;
    s->quit_request = boinc_status.quit_request;
    s->reread_init_data_file = boinc_status.reread_init_data_file;
    s->abort_request = boinc_status.abort_request;
    s->working_set_size = 0;
    s->max_working_set_size = 0;
    s->network_suspended = boinc_status.network_suspended;
    pthread_mutex_unlock(&g_lock);
    return 0;
}

static void copy_field(char* dst, size_t cap, const boinc_guest_str* s) {
    size_t n = s->ptr ? boinc_guest_utf8_truncate(s->ptr, s->len, cap - 1) : 0;
    /* a NUL inside the string ends it anyway */
    if (n) memcpy(dst, s->ptr, n);
    dst[n] = 0;
}

int boinc_get_init_data_p(struct APP_INIT_DATA* aid) {
    if (!aid) return ERR_NULL;
    pthread_mutex_lock(&g_lock);
    memset(aid, 0, sizeof(*aid));
    aid->checkpoint_period = DEFAULT_CHECKPOINT_PERIOD;
    aid->ncpus = 1;
    aid->fraction_done_end = 1;
    bg_fill_host_info(&aid->host_info); /* hostinfo.c: what the guest sees of its own machine */
    if (g_have_ctl) {
        const boinc_guest_init_data* d = &g_ctl.init_data;
        copy_field(aid->app_name, sizeof(aid->app_name), &d->app_name);
        copy_field(aid->wu_name, sizeof(aid->wu_name), &d->wu_name);
        copy_field(aid->result_name, sizeof(aid->result_name), &d->result_name);
        copy_field(aid->user_name, sizeof(aid->user_name), &d->user_name);
        copy_field(aid->team_name, sizeof(aid->team_name), &d->team_name);
        copy_field(aid->master_url, sizeof(aid->master_url), &d->master_url);
        /* earlier APP_INIT_DATA copies keep pointing at the old text: it is not freed */
        const char* p = d->project_preferences.ptr ? d->project_preferences.ptr : "";
        if (!g_prefs || strcmp(g_prefs, p) != 0) g_prefs = strdup(p);
        aid->project_preferences = g_prefs;
        aid->userid = (int)d->userid;
        aid->teamid = (int)d->teamid;
        aid->hostid = (int)d->hostid;
        aid->app_version = (int)d->app_version;
        aid->checkpoint_period = d->checkpoint_period;
        aid->ncpus = (double)d->nthreads;
        aid->fraction_done_start = d->fraction_done_start;
        aid->fraction_done_end = d->fraction_done_end;
        aid->wu_cpu_time = d->wu_cpu_time;
        aid->starting_elapsed_time = d->starting_elapsed_time;
        aid->rsc_fpops_est = d->rsc_fpops_est;
        aid->rsc_fpops_bound = d->rsc_fpops_bound;
        aid->rsc_memory_bound = d->rsc_memory_bound;
        aid->rsc_disk_bound = d->rsc_disk_bound;
        aid->computation_deadline = d->computation_deadline;
    }
    pthread_mutex_unlock(&g_lock);
    return 0;
}

int boinc_parse_init_data_file(void) {
    pthread_mutex_lock(&g_lock);
    reload_control_locked();
    pthread_mutex_unlock(&g_lock);
    return 0;
}

/* As BOINC: a name resolves to itself, except a regular file whose first line holds
 * <soft_link>path</soft_link> (what the BOINC client puts in slot directories): then to path. */
int boinc_resolve_filename(const char* virtual_name, char* physical_name, int len) {
    if (!virtual_name || !physical_name || len <= 0) return ERR_NULL;
    const char* result = virtual_name;
    size_t rlen = strlen(virtual_name);
    char line[513];
    struct stat sb;
    if (lstat(virtual_name, &sb) == 0 && S_ISREG(sb.st_mode)) {
        FILE* f = fopen(virtual_name, "rb");
        if (f) {
            size_t n = 0;
            int c;
            while (n < 512 && (c = fgetc(f)) != EOF) {
                line[n++] = (char)c;
                if (c == '\n') break;
            }
            fclose(f);
            line[n] = 0;
            char* a = strstr(line, "<soft_link>");
            char* b = a ? strstr(a + 11, "</soft_link>") : NULL;
            if (a && b) {
                a += 11;
                while (a < b && (*a == ' ' || (*a >= '\t' && *a <= '\r'))) a++;
                while (b > a && (b[-1] == ' ' || (b[-1] >= '\t' && b[-1] <= '\r'))) b--;
                if (b > a) {
                    result = a;
                    rlen = (size_t)(b - a);
                }
            }
        }
    }
    if (rlen >= (size_t)len) {
        memcpy(physical_name, result, (size_t)len - 1);
        physical_name[len - 1] = 0;
        return ERR_BUFFER_OVERFLOW;
    }
    memmove(physical_name, result, rlen);
    physical_name[rlen] = 0;
    return 0;
}

int boinc_wu_cpu_time(double* cpu_time) {
    if (!cpu_time) return ERR_NULL;
    pthread_mutex_lock(&g_lock);
    double base = g_have_ctl ? g_ctl.init_data.wu_cpu_time : 0;
    *cpu_time = base + cpu_now();
    pthread_mutex_unlock(&g_lock);
    return 0;
}

double boinc_elapsed_time(void) {
    pthread_mutex_lock(&g_lock);
    double base = g_have_ctl ? g_ctl.init_data.starting_elapsed_time : 0;
    double e = base + (g_initialized ? elapsed_now() : 0);
    pthread_mutex_unlock(&g_lock);
    return e;
}

double boinc_worker_thread_cpu_time(void) {
    pthread_mutex_lock(&g_lock);
    double c = cpu_now();
    pthread_mutex_unlock(&g_lock);
    return c;
}

void boinc_register_timer_callback(FUNC_PTR f) {
    pthread_mutex_lock(&g_lock);
    g_timer_cb = f;
    pthread_mutex_unlock(&g_lock);
}

void boinc_web_graphics_url(char* url) { (void)url; }
void boinc_remote_desktop_addr(char* addr) { (void)addr; }

char* boinc_msg_prefix(char* buf, int len) {
    if (!buf || len <= 0) return buf;
    time_t t = time(NULL);
    struct tm tm;
    char tb[64];
    if (localtime_r(&t, &tm) && strftime(tb, sizeof(tb), "%H:%M:%S", &tm)) /* BOINC 7.20.5: "HH:MM:SS (pid):" */
        snprintf(buf, (size_t)len, "%s (%d):", tb, (int)getpid());
    else
        snprintf(buf, (size_t)len, "(%d):", (int)getpid());
    return buf;
}

/* ---- test-mode hooks (boinc_guest.h) ---- */

int boinc_guest_test_mode(int on) {
    pthread_mutex_lock(&g_lock);
    int old = g_test_mode;
    g_test_mode = on ? 1 : 0;
    pthread_mutex_unlock(&g_lock);
    return old;
}

void boinc_guest_set_times(double cpu, double elapsed) {
    pthread_mutex_lock(&g_lock);
    g_test_cpu = cpu;
    g_test_elapsed = elapsed;
    pthread_mutex_unlock(&g_lock);
}

int boinc_guest_flush(void) {
    pthread_mutex_lock(&g_lock);
    int rc = write_locked();
    pthread_mutex_unlock(&g_lock);
    return rc;
}

int boinc_guest_heartbeat(void) {
    pthread_mutex_lock(&g_lock);
    if (g_initialized && !g_standalone) g_hb++;
    g_last_hb = mono();
    int rc = write_locked();
    pthread_mutex_unlock(&g_lock);
    return rc;
}

int boinc_guest_reload_control(void) {
    pthread_mutex_lock(&g_lock);
    int rc = reload_control_locked();
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void boinc_guest_reset(void) {
    stop_thread();
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_nev; i++) ev_free(&g_events[i]);
    g_nev = 0;
    boinc_guest_control_free(&g_ctl);
    g_have_ctl = 0;
    free(g_ctl_bytes);
    g_ctl_bytes = NULL;
    g_ctl_len = 0;
    g_ctl_err[0] = 0;
    g_prefs = NULL; /* may still be referenced by an app's APP_INIT_DATA */
    g_initialized = 0;
    g_standalone = 0;
    g_share[0] = 0;
    g_seq = g_hb = g_ckpt_count = g_td_ack = 0;
    g_next_id = 1;
    g_ckpt_cpu = g_fpops_ps = g_fpops_cum = g_intops_ps = g_intops_cum = 0;
    g_want_network = 0;
    g_test_cpu = g_test_elapsed = 0;
    g_min_ckpt_period = 0;
    g_ckpt_cs = 0;
    g_last_ckpt = 0;
    g_timer_cb = NULL;
    g_stop = 0;
    atomic_store(&g_crit, 0);
    atomic_store(&g_dirty, 0);
    atomic_store(&g_progress, 0);
    g_last_progress_write = 0;
    atomic_store(&g_fd_bits, FD_UNSET_BITS);
    memset((void*)&boinc_status, 0, sizeof(boinc_status));
    pthread_mutex_unlock(&g_lock);
}

const char* boinc_guest_share_dir(void) { return g_share; }

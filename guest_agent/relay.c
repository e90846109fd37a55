/*
 * The agent's file relay (relay mode, see agent.c and docs/qemu.md): the app works in a guest-local
 * tmpfs; its files and the host's files in the 9p share are kept equal, file by file.
 *
 * Each relayed path has a record: the local and the host file as last synced (inode, mtime, size) and
 * who wrote it last (guest or host). A pass compares both sides with the record:
 *   - the local file changed (or appeared, or went): copied to the host (or removed there), owner guest;
 *   - else the host file changed: a guest-owned file is pushed again (the host's copy is from a later
 *     state of a VM that was then restored from an earlier save: the guest's state wins), a host-owned
 *     or new one is copied in (the control file, new inputs), and one the host removed goes here too.
 * Copies into the share are atomic (temporary file + fsync + rename), as the guest SDK's own writes are;
 * files over 1 MiB are copied at most every 2 s unless the pass is a full one (exit, save, poweroff).
 * Regular files and folders only (links, FIFOs and devices are neither copied nor followed), at most
 * MAX_REC paths, MAX_DEPTH folders deep.
 */
#define _GNU_SOURCE
#include "relay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"

#define MAX_REC 4096
#define MAX_DEPTH 8
#define BIG_FILE (1L << 20)
#define BIG_EVERY_NS 2000000000LL

typedef struct {
    int exists;
    ino_t ino;
    long long mtime_ns;
    off_t size;
} sig_t_;

typedef struct {
    char *rel;
    sig_t_ local, host;
    int guest_owned;
    long long copied_at;
    int seen;
} rec_t;

static const char *work_dir, *host_dir;
static const char *const *skip_names;
static rec_t recs[MAX_REC];
static int nrec;
static int mounted = 1;
static long long unmounted_at; /* the share is mounted again no sooner than REMOUNT_AFTER_NS after */
/* The host starts the migration (or stops the VM) within milliseconds of our "saving" answer; until then
 * a mount would add QEMU's migration blocker back. During the migration a mount fails (EBUSY). */
#define REMOUNT_AFTER_NS 150000000LL
/* The wake-up line: the VM's second serial port, on which the host writes a line once the migration is
 * over (after a periodic checkpoint, or in a VM restored from a save): the share is mounted at once, not
 * REMOUNT_AFTER_NS after the unmount (in guest time, which a restored VM spends again). */
#define WAKE_TTY "/dev/ttyS1"
static int wake_fd = -1;
static int woken = 0;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int skipped(const char *rel) {
    if (strchr(rel, '/') == NULL) {
        for (const char *const *n = skip_names; n && *n; n++) {
            char tmp[300];
            snprintf(tmp, sizeof tmp, ".%s.tmp", *n);
            if (strcmp(rel, *n) == 0 || strcmp(rel, tmp) == 0) return 1;
        }
    }
    const char *slash = strrchr(rel, '/');
    const char *base = slash ? slash + 1 : rel;
    return strncmp(rel, ".virtfs_metadata", 16) == 0 || strncmp(base, ".relay.", 7) == 0;
}

static sig_t_ sig_of(const char *base, const char *rel, int *is_dir) {
    char path[4200];
    struct stat st;
    sig_t_ s = {0, 0, 0, 0};
    snprintf(path, sizeof path, "%s/%s", base, rel);
    if (is_dir) *is_dir = 0;
    if (lstat(path, &st) != 0) return s;
    if (S_ISDIR(st.st_mode)) {
        if (is_dir) *is_dir = 1;
        return s;
    }
    if (!S_ISREG(st.st_mode)) return s;
    s.exists = 1;
    s.ino = st.st_ino;
    s.mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    s.size = st.st_size;
    return s;
}

static int same(sig_t_ a, sig_t_ b) {
    if (!a.exists && !b.exists) return 1;
    return a.exists == b.exists && a.ino == b.ino && a.mtime_ns == b.mtime_ns && a.size == b.size;
}

static rec_t *find(const char *rel, int create) {
    for (int i = 0; i < nrec; i++)
        if (strcmp(recs[i].rel, rel) == 0) return &recs[i];
    if (!create) return NULL;
    rec_t *r = NULL;
    for (int i = 0; i < nrec && r == NULL; i++) /* a path gone from both sides: its record is free */
        if (!recs[i].local.exists && !recs[i].host.exists && !recs[i].seen) r = &recs[i];
    if (r == NULL && nrec >= MAX_REC) return NULL;
    if (r == NULL) r = &recs[nrec++];
    else free(r->rel);
    memset(r, 0, sizeof *r);
    r->rel = strdup(rel);
    return r;
}

static void mkparents(const char *base, const char *rel) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    for (char *c = path + strlen(base) + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        mkdir(path, 0755);
        *c = '/';
    }
}

/* Copy base_from/rel to base_to/rel through a temporary file and a rename; keeps the mode's x bits. */
static int copy_file(const char *from_base, const char *to_base, const char *rel) {
    char from[4200], to[4200], tmp[4200];
    snprintf(from, sizeof from, "%s/%s", from_base, rel);
    snprintf(to, sizeof to, "%s/%s", to_base, rel);
    const char *slash = strrchr(rel, '/');
    if (slash)
        snprintf(tmp, sizeof tmp, "%s/%.*s/.relay.%s", to_base, (int)(slash - rel), rel, slash + 1);
    else
        snprintf(tmp, sizeof tmp, "%s/.relay.%s", to_base, rel);
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) return -1;
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return -1;
    }
    mkparents(to_base, rel);
    unlink(tmp);
    int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 0755);
    if (out < 0) {
        close(in);
        return -1;
    }
    static char buf[1 << 16];
    int ok = 1;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { ok = 0; break; }
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { ok = 0; break; }
            off += w;
        }
        if (!ok) break;
    }
    close(in);
    fchmod(out, st.st_mode & 0755);
    if (ok && to_base == host_dir) fsync(out);
    close(out);
    if (!ok || rename(tmp, to) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void push(rec_t *r) {
    char path[4200];
    r->guest_owned = 1;
    if (!r->local.exists) {
        snprintf(path, sizeof path, "%s/%s", host_dir, r->rel);
        unlink(path);
    } else if (copy_file(work_dir, host_dir, r->rel) != 0) {
        return; /* tried again at the next pass */
    }
    r->copied_at = now_ns();
    r->host = sig_of(host_dir, r->rel, NULL);
}

static void pull(rec_t *r, sig_t_ host) {
    char path[4200];
    r->guest_owned = 0;
    if (!host.exists) {
        snprintf(path, sizeof path, "%s/%s", work_dir, r->rel);
        unlink(path);
    } else if (copy_file(host_dir, work_dir, r->rel) != 0) {
        return;
    }
    r->host = host;
    r->local = sig_of(work_dir, r->rel, NULL);
}

static void visit(const char *rel, int mode) {
    if (skipped(rel)) return;
    int ldir = 0, hdir = 0;
    sig_t_ l = sig_of(work_dir, rel, &ldir);
    sig_t_ h = mode >= 0 ? sig_of(host_dir, rel, &hdir) : (sig_t_){0, 0, 0, 0};
    if (ldir || hdir) return; /* folders are walked, not copied */
    rec_t *r = find(rel, l.exists || (mode >= 0 && h.exists));
    if (r == NULL) return;
    r->seen = 1;
    if (!same(l, r->local)) {
        if (l.exists && l.size > BIG_FILE && mode != 1 && now_ns() - r->copied_at < BIG_EVERY_NS) return;
        r->local = l;
        push(r);
        return;
    }
    if (mode < 0 || same(h, r->host)) return;
    if (r->guest_owned && l.exists) push(r);
    else pull(r, h);
}

static void walk(const char *base, const char *rel, int depth, int mode) {
    if (depth > MAX_DEPTH) return;
    char path[4200];
    snprintf(path, sizeof path, "%s%s%s", base, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char sub[4200];
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        if (skipped(sub)) continue;
        if (e->d_type == DT_DIR) {
            walk(base, sub, depth + 1, mode); /* the other side's folders are made as files arrive */
        } else if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN) {
            visit(sub, mode);
        }
    }
    closedir(d);
}

void relay_sync(int mode) {
    if (!mounted) return;
    for (int i = 0; i < nrec; i++) recs[i].seen = 0;
    walk(work_dir, "", 0, mode);
    if (mode >= 0) walk(host_dir, "", 0, mode);
    for (int i = 0; i < nrec; i++) /* gone from the walks: removed on the side that removed it */
        if (!recs[i].seen) visit(recs[i].rel, mode);
}

int relay_mounted(void) { return mounted; }

static void open_wake(void) {
    wake_fd = open(WAKE_TTY, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (wake_fd < 0) return; /* no such port (an older host): the delay alone */
    struct termios t;
    if (tcgetattr(wake_fd, &t) == 0) {
        cfmakeraw(&t); /* bytes as they come, no echo back to the host */
        tcsetattr(wake_fd, TCSANOW, &t);
    }
}

void relay_poll_wake(void) {
    char buf[64];
    if (wake_fd < 0) return;
    int got = 0;
    while (read(wake_fd, buf, sizeof buf) > 0) got = 1; /* drained: a line while mounted is forgotten */
    if (got && !mounted) woken = 1;
}

void relay_unmount(void) {
    relay_poll_wake(); /* a stale line must not end the next wait */
    woken = 0;
    if (umount2(host_dir, 0) == 0) {
        mounted = 0;
        unmounted_at = now_ns();
    }
    else fprintf(stderr, "boinc-agent: cannot unmount the share for a save: %s\n", strerror(errno));
}

void relay_try_mount(void) {
    if (mounted || (!woken && now_ns() - unmounted_at < REMOUNT_AFTER_NS)) return;
    if (mount(SHARE_TAG, host_dir, "9p", 0, V9P_OPTS) == 0) {
        mounted = 1;
        fprintf(stderr, "boinc-agent: share mounted again (%s)\n", woken ? "wake-up line" : "after the delay");
        woken = 0;
        relay_sync(0);
    }
}

int relay_setup(const char *work, const char *host, const char *const *skip) {
    work_dir = work;
    host_dir = host;
    skip_names = skip;
    mkdir("/boinc", 0755);
    mkdir(host, 0755);
    if (mount(work, host, NULL, MS_MOVE, NULL) != 0) {
        fprintf(stderr, "boinc-agent: no relay (cannot move the share to %s: %s)\n", host, strerror(errno));
        return -1;
    }
    if (mount("relay", work, "tmpfs", 0, "mode=0755") != 0) {
        fprintf(stderr, "boinc-agent: no relay (cannot mount a tmpfs at %s: %s)\n", work, strerror(errno));
        mount(host, work, NULL, MS_MOVE, NULL);
        return -1;
    }
    mounted = 1;
    open_wake();
    relay_sync(1);
    return 0;
}

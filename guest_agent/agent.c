/*
 * boinc-agent: the in-VM agent of the QEMU backend (boinc-vm-bridge). Static, libc only.
 *
 * It is the image's /init: the kernel starts it as PID 1 without arguments, and boot.c does the early boot
 * (modules, the share, the network) and chooses the app's root: the image's root disk, which the agent
 * mounts (mount_root_disk), a host tree over 9p, or none. An image whose own /init mounts the share can
 * start it as `boinc-agent SHARE [ROOT [disk]]` instead (ROOT: a folder the app runs chrooted into, the
 * share bound into it at the same path; "disk": the agent mounts the root disk there first). It
 *   1. reads the task description the host wrote into the share, boinc_task.json:
 *        {"v": 1, "argv": ["prog", "arg", ...], "stdin": "in.txt" | null,
 *         "stdout": "out.txt" | null, "stderr": "err.txt" | null, "env": {"NAME": "value", ...}}
 *   2. writes boinc_agent_started (atomically) and runs the app with the share as its working
 *      directory, BOINC_GUEST_DIR set to the share, stdin/stdout/stderr opened relative to the share
 *      (stdout/stderr appended), argv[0] looked up in the share first, then in PATH;
 *   3. reaps every process (it is PID 1); when the app ends it writes boinc_agent_exit atomically
 *      ("exit N\n" or "signal N\n"), kills what is left, syncs, unmounts the share, powers off;
 *   4. polls boinc_agent_request every 50 ms: "poweroff" ends the app (SIGTERM, SIGKILL after the grace
 *      period, default 3 s, or "poweroff SECONDS") and powers off without an exit file.
 * Errors before the app starts (no / bad task file, exec failure) are reported as "error TEXT\n" in
 * boinc_agent_exit.
 *
 * Relay mode (the default without a root folder): QEMU refuses to save or migrate a VM while a 9p export
 * is mounted, so the app must not hold the share. The agent moves the 9p mount to /boinc/.host, mounts a
 * tmpfs at the share's path (the app's working directory: its files are guest RAM, saved with the VM),
 * copies the share's files in, and from then on relays every file both ways (relay.c): the app's changes
 * to the host within ~10 ms, the host's (the control file) within ~50 ms. "save NONCE" in
 * boinc_agent_request: push everything, write boinc_agent_saving ("saving NONCE"), unmount the 9p share,
 * and mount it again as soon as QEMU allows (after the host's migration finished, or in a VM restored from
 * that migration). See docs/qemu.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"
#include "relay.h"

#define TASK_FILE "boinc_task.json"
#define EXIT_FILE "boinc_agent_exit"
#define STARTED_FILE "boinc_agent_started"
#define REQUEST_FILE "boinc_agent_request"
#define SAVING_FILE "boinc_agent_saving"
#define RELAY_HOSTDIR "/boinc/.host"
static const char *const AGENT_NAMES[] = {TASK_FILE, EXIT_FILE, STARTED_FILE, REQUEST_FILE, SAVING_FILE, NULL};
#define MAX_TASK (1 << 20)
#define MAX_ITEMS 4096

static const char *share = SHARE_DIR; /* the app's folder (a tmpfs in relay mode) */
static const char *hostdir = SHARE_DIR; /* the 9p share: the agent's files (/boinc/.host in relay mode) */
static int relay = 0;

#define V9FS_MAGIC 0x01021997
static int on_9p(const char *path) { /* whether path is on a 9p (virtfs) mount */
    struct statfs st;
    return statfs(path, &st) == 0 && (unsigned long)st.f_type == V9FS_MAGIC;
}
static const char *root = NULL; /* optional: the app runs chrooted here (the Python root, docs/qemu.md) */

/* ------------------------------------------------------------------ atomic write into the share */

static int write_atomic(const char *name, const char *text) {
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/%s", hostdir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", hostdir, name);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        logmsg("cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    fsync(fd);
    close(fd);
    if (rename(tmp, path) != 0) {
        logmsg("cannot rename %s: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------ tiny JSON reader */
/* Enough JSON for boinc_task.json: objects, arrays, strings (all escapes, \u incl. surrogates),
 * numbers, true / false / null. Values are kept as strings; strings cannot contain NUL. */

typedef struct {
    const char *p, *end;
    int err;
} jp;

static void ws(jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int put_utf8(char *out, size_t *n, size_t cap, unsigned cp) {
    char b[4];
    size_t k;
    if (cp == 0) return -1;
    if (cp < 0x80) { b[0] = (char)cp; k = 1; }
    else if (cp < 0x800) { b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
    else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F)); k = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F)); k = 4;
    }
    if (*n + k >= cap) return -1;
    memcpy(out + *n, b, k);
    *n += k;
    return 0;
}

static int hex4(jp *j, unsigned *v) {
    if (j->end - j->p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        *v <<= 4;
        if (c >= '0' && c <= '9') *v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') *v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') *v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    return 0;
}

/* Parses a string at j->p (which is at '"'); returns malloc'd text or NULL. */
static char *jstring(jp *j) {
    if (j->p >= j->end || *j->p != '"') { j->err = 1; return NULL; }
    j->p++;
    size_t cap = (size_t)(j->end - j->p) + 1, n = 0;
    char *out = malloc(cap);
    if (!out) { j->err = 1; return NULL; }
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20) goto bad;
        if (c != '\\') { out[n++] = (char)c; continue; }
        if (j->p >= j->end) goto bad;
        char e = *j->p++;
        unsigned cp;
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u':
            if (hex4(j, &cp)) goto bad;
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') goto bad;
                j->p += 2;
                if (hex4(j, &lo) || lo < 0xDC00 || lo >= 0xE000) goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) goto bad;
            if (put_utf8(out, &n, cap, cp)) goto bad;
            break;
        default: goto bad;
        }
    }
    if (j->p >= j->end) goto bad;
    j->p++;
    out[n] = 0;
    return out;
bad:
    free(out);
    j->err = 1;
    return NULL;
}

static void jskip(jp *j, int depth);

static void jskip_scalar(jp *j) {
    static const char *words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(words[i]);
        if ((size_t)(j->end - j->p) >= l && memcmp(j->p, words[i], l) == 0) { j->p += l; return; }
    }
    const char *s = j->p;
    while (j->p < j->end && strchr("+-0123456789.eE", *j->p)) j->p++;
    if (j->p == s) j->err = 1;
}

static void jskip(jp *j, int depth) {
    if (depth > 16) { j->err = 1; return; }
    ws(j);
    if (j->p >= j->end) { j->err = 1; return; }
    if (*j->p == '"') { free(jstring(j)); return; }
    if (*j->p == '[' || *j->p == '{') {
        char close = *j->p == '[' ? ']' : '}';
        int obj = *j->p == '{';
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == close) { j->p++; return; }
        for (;;) {
            if (obj) {
                ws(j);
                free(jstring(j));
                ws(j);
                if (j->err || j->p >= j->end || *j->p != ':') { j->err = 1; return; }
                j->p++;
            }
            jskip(j, depth + 1);
            if (j->err) return;
            ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == close) { j->p++; return; }
            j->err = 1;
            return;
        }
    }
    jskip_scalar(j);
}

static int jnull(jp *j) {
    ws(j);
    if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) { j->p += 4; return 1; }
    return 0;
}

typedef struct {
    char **argv;
    int argc;
    char *in, *out, *err;
    char **env; /* "NAME=value" */
    int nenv;
} task_t;

static int parse_task(const char *text, size_t len, task_t *t, char *why, size_t whylen) {
    jp j = {text, text + len, 0};
    memset(t, 0, sizeof *t);
    t->argv = calloc(MAX_ITEMS + 1, sizeof(char *));
    t->env = calloc(MAX_ITEMS + 1, sizeof(char *));
    int version = 0;
    ws(&j);
    if (j.p >= j.end || *j.p != '{') { snprintf(why, whylen, "not a JSON object"); return -1; }
    j.p++;
    ws(&j);
    if (j.p < j.end && *j.p == '}') j.p++;
    else for (;;) {
        ws(&j);
        char *key = jstring(&j);
        ws(&j);
        if (j.err || j.p >= j.end || *j.p != ':') { free(key); snprintf(why, whylen, "bad key"); return -1; }
        j.p++;
        ws(&j);
        if (strcmp(key, "v") == 0) {
            version = atoi(j.p);
            jskip(&j, 0);
        } else if (strcmp(key, "argv") == 0) {
            if (j.p >= j.end || *j.p != '[') { j.err = 1; }
            else {
                j.p++;
                ws(&j);
                if (j.p < j.end && *j.p == ']') j.p++;
                else for (;;) {
                    ws(&j);
                    char *a = jstring(&j);
                    if (j.err || t->argc >= MAX_ITEMS) { free(a); j.err = 1; break; }
                    t->argv[t->argc++] = a;
                    ws(&j);
                    if (j.p < j.end && *j.p == ',') { j.p++; continue; }
                    if (j.p < j.end && *j.p == ']') { j.p++; break; }
                    j.err = 1;
                    break;
                }
            }
        } else if (strcmp(key, "stdin") == 0 || strcmp(key, "stdout") == 0 || strcmp(key, "stderr") == 0) {
            char *v = jnull(&j) ? NULL : jstring(&j);
            if (key[3] == 'i') t->in = v;
            else if (key[3] == 'o') t->out = v;
            else t->err = v;
        } else if (strcmp(key, "env") == 0) {
            if (j.p >= j.end || *j.p != '{') { j.err = 1; }
            else {
                j.p++;
                ws(&j);
                if (j.p < j.end && *j.p == '}') j.p++;
                else for (;;) {
                    ws(&j);
                    char *k = jstring(&j);
                    ws(&j);
                    if (j.err || j.p >= j.end || *j.p != ':') { free(k); j.err = 1; break; }
                    j.p++;
                    ws(&j);
                    char *v = jstring(&j);
                    if (j.err || t->nenv >= MAX_ITEMS || !k[0] || strchr(k, '=')) {
                        free(k); free(v); j.err = 1; break;
                    }
                    char *kv = malloc(strlen(k) + strlen(v) + 2);
                    sprintf(kv, "%s=%s", k, v);
                    free(k); free(v);
                    t->env[t->nenv++] = kv;
                    ws(&j);
                    if (j.p < j.end && *j.p == ',') { j.p++; continue; }
                    if (j.p < j.end && *j.p == '}') { j.p++; break; }
                    j.err = 1;
                    break;
                }
            }
        } else {
            jskip(&j, 0);
        }
        free(key);
        if (j.err) { snprintf(why, whylen, "bad value"); return -1; }
        ws(&j);
        if (j.p < j.end && *j.p == ',') { j.p++; continue; }
        if (j.p < j.end && *j.p == '}') { j.p++; break; }
        snprintf(why, whylen, "expected , or }");
        return -1;
    }
    if (version != 1) { snprintf(why, whylen, "\"v\" must be 1"); return -1; }
    if (t->argc < 1 || !t->argv[0][0]) { snprintf(why, whylen, "\"argv\" must name a program"); return -1; }
    return 0;
}

/* -------------------------------------------------------------------------------------- running */

static void power_off(void) {
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (relay && relay_mounted()) relay_sync(1); /* the app's last files (its checkpoint) reach the host */
    sync();
    if (relay) {
        umount2(hostdir, MNT_DETACH);
        umount2(share, MNT_DETACH);
    }
    if (root) {
        char inner[4200];
        snprintf(inner, sizeof inner, "%s%s", root, share);
        umount2(inner, MNT_DETACH);
    }
    umount2(share, MNT_DETACH);
    sync();
    reboot(RB_POWER_OFF);
    reboot(RB_AUTOBOOT); /* QEMU runs with -no-reboot: a reboot ends it too */
    for (;;) pause();
}

static void fail(const char *fmt, ...) {
    char msg[1024], text[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if (*c == '\n') *c = ' ';
    logmsg("%s", msg);
    snprintf(text, sizeof text, "error %s\n", msg);
    write_atomic(EXIT_FILE, text);
    power_off();
}

static void mount_in(const char *src, const char *root_, const char *sub, const char *type, unsigned long fl,
                     const char *opts) {
    char target[4200];
    snprintf(target, sizeof target, "%s%s", root_, sub);
    mkdirs(target);
    if (mount(src, target, type, fl, opts) != 0)
        logmsg("cannot mount %s at %s: %s", src, target, strerror(errno));
}

/* The image's root disk (host_bridge.images, argv[3] "disk"): /dev/vda, a read-only squashfs shared by
 * every task of the host, under a tmpfs overlay (the task's writes stay in its VM), with the share, proc,
 * sys, dev, dev/shm and a tmpfs tmp inside. Done here rather than in /init's shell, where each mount was a
 * busybox process (~0.1 s of a C app's first status write under TCG). */
static void mount_root_disk(void) {
    mkdirs("/lower");
    mkdirs("/rw");
    mkdirs(root);
    for (int i = 0; i < 500 && access("/dev/vda", F_OK) != 0; i++) sleep_ms(20); /* up to 10 s */
    if (mount("/dev/vda", "/lower", "squashfs", MS_RDONLY, NULL) != 0)
        fail("cannot mount the image's root disk /dev/vda (vm_disk_image: a squashfs made by host-bridge image "
             "build): %s", strerror(errno));
    if (mount("rw", "/rw", "tmpfs", 0, "mode=0755") != 0) fail("cannot mount a tmpfs at /rw: %s", strerror(errno));
    mkdirs("/rw/upper");
    mkdirs("/rw/work");
    if (mount("overlay", root, "overlay", 0, "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work") != 0) {
        logmsg("no overlay over the root disk (%s): the root is read-only", strerror(errno));
        if (mount("/lower", root, NULL, MS_BIND, NULL) != 0)
            fail("cannot mount the image's root at %s: %s", root, strerror(errno));
    }
}

/* Inside the app's root: the share at its own path, proc, sys, dev, dev/shm and a tmpfs tmp. */
static void mount_inside_root(void) {
    mount_in(share, root, share, NULL, MS_BIND, NULL);
    mount_in("proc", root, "/proc", "proc", 0, NULL);
    mount_in("sys", root, "/sys", "sysfs", 0, NULL);
    mkdirs("/dev/shm");
    mkdirs("/dev/pts");
    if (mount("shm", "/dev/shm", "tmpfs", 0, "mode=1777") != 0) logmsg("cannot mount /dev/shm: %s", strerror(errno));
    mount_in("/dev", root, "/dev", NULL, MS_BIND, NULL);
    mount_in("/dev/shm", root, "/dev/shm", NULL, MS_BIND, NULL);
    mount_in("tmp", root, "/tmp", "tmpfs", 0, "mode=1777");
}

static int open_in_share(const char *name, int flags) {
    int fd = open(name, flags | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "boinc-agent: cannot open %s: %s\n", name, strerror(errno));
        _exit(127);
    }
    return fd;
}

static void child(task_t *t) {
    setsid();
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (root && (chroot(root) != 0 || chdir("/") != 0)) {
        fprintf(stderr, "boinc-agent: cannot chroot into %s: %s\n", root, strerror(errno));
        _exit(127);
    }
    if (chdir(share) != 0) _exit(127);
    char pathbuf[4200];
    snprintf(pathbuf, sizeof pathbuf, "PATH=%s:/bin:/sbin:/usr/bin", share);
    char guestdir[4200];
    snprintf(guestdir, sizeof guestdir, "BOINC_GUEST_DIR=%s", share);
    char **envp = calloc((size_t)t->nenv + 8, sizeof(char *));
    int n = 0;
    envp[n++] = pathbuf;
    envp[n++] = "HOME=/tmp";
    envp[n++] = "TERM=dumb";
    for (int i = 0; i < t->nenv; i++)
        if (strncmp(t->env[i], "BOINC_GUEST_DIR=", 16) != 0) envp[n++] = t->env[i];
    envp[n++] = guestdir;
    envp[n] = NULL;
    int fd = t->in ? open_in_share(t->in, O_RDONLY) : open("/dev/null", O_RDONLY);
    if (fd >= 0 && fd != 0) { dup2(fd, 0); close(fd); }
    if (t->out) { fd = open_in_share(t->out, O_WRONLY | O_CREAT | O_APPEND); dup2(fd, 1); close(fd); }
    if (t->err) { fd = open_in_share(t->err, O_WRONLY | O_CREAT | O_APPEND); dup2(fd, 2); close(fd); }
    const char *prog = t->argv[0];
    if (!strchr(prog, '/')) {
        char local[4200];
        snprintf(local, sizeof local, "%s/%s", share, prog);
        if (access(local, X_OK) == 0) execve(local, t->argv, envp);
    }
    environ = envp;
    execvp(prog, t->argv);
    fprintf(stderr, "boinc-agent: cannot run %s: %s\n", prog, strerror(errno));
    _exit(127);
}

static char save_nonce[64] = ""; /* the last "save NONCE" handled (kept in RAM: restored with the VM) */

/* Returns the grace period in ms if a poweroff was requested, else -1. A "save NONCE" request (relay mode)
 * is handled here: everything pushed, the share unmounted until QEMU lets it be mounted again. */
static long poll_request(void) {
    char path[4200], buf[128];
    snprintf(path, sizeof path, "%s/%s", hostdir, REQUEST_FILE);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    if (strncmp(buf, "save ", 5) == 0) {
        char *nonce = buf + 5;
        nonce[strcspn(nonce, "\n")] = 0;
        if (!nonce[0] || strlen(nonce) >= sizeof save_nonce || strcmp(nonce, save_nonce) == 0) return -1;
        snprintf(save_nonce, sizeof save_nonce, "%s", nonce);
        char text[200];
        if (!relay) {
            snprintf(text, sizeof text, "failed %s the app works in the share (no relay): no VM save\n", nonce);
            write_atomic(SAVING_FILE, text);
            return -1;
        }
        relay_sync(1);
        sync();
        snprintf(text, sizeof text, "saving %s\n", nonce);
        write_atomic(SAVING_FILE, text);
        relay_unmount();
        return -1;
    }
    if (strncmp(buf, "poweroff", 8) != 0) return -1;
    double secs = 3.0;
    if (buf[8] == ' ') secs = atof(buf + 9);
    if (!(secs >= 0 && secs <= 3600)) secs = 3.0;
    return (long)(secs * 1000);
}

int main(int argc, char **argv) {
    const char *how = NULL;
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    if (getpid() == 1 && argc <= 1) {
        boot_init(&root, &how); /* the kernel started the agent as /init (boot.c) */
    } else { /* started by an image's own /init: SHARE [ROOT [disk]] (see the top of this file) */
        if (argc > 1) share = hostdir = argv[1];
        if (argc > 2 && argv[2][0]) root = argv[2];
        if (root && argc > 3) how = argv[3];
    }
    if (root && how && strcmp(how, "disk") == 0) mount_root_disk();
    if (root && how) mount_inside_root();
    boot_resolv(root);

    char path[4200];
    snprintf(path, sizeof path, "%s/%s", share, TASK_FILE);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) fail("cannot open %s: %s", TASK_FILE, strerror(errno));
    char *text = malloc(MAX_TASK + 1);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, MAX_TASK + 1 - len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
        if (len > MAX_TASK) fail("%s is larger than 1 MiB", TASK_FILE);
    }
    close(fd);
    task_t task;
    char why[200];
    if (parse_task(text, len, &task, why, sizeof why) != 0) fail("bad %s: %s", TASK_FILE, why);
    if (root) { /* the share must be visible inside the root, at the same path */
        char inner[4200];
        struct stat a, b;
        snprintf(inner, sizeof inner, "%s%s/%s", root, share, TASK_FILE);
        snprintf(path, sizeof path, "%s/%s", share, TASK_FILE);
        if (stat(inner, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino)
            fail("the guest root %s is not usable (not mounted, or the share is not bound into it at %s%s): "
                 "check the vm_pyroot tree and that the image's /init mounts the 9p tag pyroot",
                 root, root, share);
    }

    /* The relay (the agent alone holds the share, so that a VM save can let go of it): without a root,
     * and with an image's root disk (squashfs + overlay); not with the Python root, itself a 9p export
     * that pins the VM (no save). In a root, the share's bind is replaced by the relayed folder's. */
    if ((!root || !on_9p(root)) && relay_setup(share, RELAY_HOSTDIR, AGENT_NAMES) == 0) {
        relay = 1;
        hostdir = RELAY_HOSTDIR;
        if (root) {
            char inner[4200];
            snprintf(inner, sizeof inner, "%s%s", root, share);
            if (umount2(inner, MNT_DETACH) != 0 || mount(share, inner, NULL, MS_BIND, NULL) != 0)
                fail("cannot bind the relayed share into the guest root at %s: %s", inner, strerror(errno));
        }
    }

    pid_t pid = fork();
    if (pid < 0) fail("fork: %s", strerror(errno));
    if (pid == 0) child(&task);
    char started[64];
    snprintf(started, sizeof started, relay ? "started %d relay\n" : "started %d\n", (int)pid);
    write_atomic(STARTED_FILE, started);

    long grace = -1;
    struct timespec deadline = {0, 0};
    unsigned tick = 0;
    for (;;) {
        int st;
        pid_t r;
        while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
            if (r != pid) continue;
            if (grace >= 0) power_off(); /* ended on request: no exit file */
            if (relay) {
                while (!relay_mounted()) {
                    relay_poll_wake();
                    relay_try_mount();
                    if (!relay_mounted()) sleep_ms(20);
                }
                relay_sync(1); /* the app's outputs are in the share before its exit is */
            }
            char res[64];
            if (WIFEXITED(st)) snprintf(res, sizeof res, "exit %d\n", WEXITSTATUS(st));
            else snprintf(res, sizeof res, "signal %d\n", WTERMSIG(st));
            logmsg("app ended: %s", res);
            write_atomic(EXIT_FILE, res);
            power_off();
        }
        tick++;
        if (relay) { /* local changes every 10 ms, the host's every 50 ms; while unmounted: try to remount */
            relay_poll_wake();
            if (!relay_mounted()) relay_try_mount();
            if (relay_mounted()) relay_sync(tick % 5 == 0 ? 0 : -1);
            if (!relay_mounted() || tick % 5 != 0) { sleep_ms(10); continue; }
        }
        if (grace < 0) {
            grace = poll_request();
            if (grace >= 0) {
                logmsg("poweroff requested (grace %ld ms)", grace);
                kill(-pid, SIGTERM);
                kill(pid, SIGTERM);
                clock_gettime(CLOCK_MONOTONIC, &deadline);
                deadline.tv_sec += grace / 1000;
                deadline.tv_nsec += (grace % 1000) * 1000000L;
                if (deadline.tv_nsec >= 1000000000L) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000L; }
            }
        } else {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec > deadline.tv_sec || (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
                power_off();
        }
        sleep_ms(relay ? 10 : 50);
    }
}

/*
 * boot.c: the early boot of a boinc-vm-bridge image, done by the agent itself as the initramfs's /init
 * (the kernel starts /init -> /sbin/boinc-agent with no arguments, as PID 1). Before, /init was a busybox
 * shell script: a process per module and per mount, ~0.1-0.2 s of every boot under TCG.
 *
 *   1. mounts proc, sys and devtmpfs;
 *   2. loads the kernel modules listed in /lib/modules/boot.list (one name per line, dependencies first:
 *      written by host_bridge/images/boot.py) with finit_module(2);
 *   3. mounts the share (9p tag "shared") at /boinc/shared, retrying while the virtio device appears;
 *   4. with "boinc.network=1" on the kernel command line: loads /lib/modules/net.list and configures eth0
 *      from "boinc.net=ADDR/PREFIX,GATEWAY,DNS" (the host's user-mode network, whose addresses the host
 *      chooses: host_bridge/backends/qemu/backend.py), and lo;
 *   5. chooses the app's root: the image's root disk when /boinc/root-disk exists (the agent mounts it:
 *      agent.c, mount_root_disk), else the 9p tag "pyroot" with "boinc.pyroot=1" (a read-only host tree),
 *      else none (the app runs in the initramfs, whose busybox applets are installed for it).
 * Libc only, like the rest of the agent.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"

#define MODULE_DIR "/lib/modules"
#define ROOT_DISK_MARK "/boinc/root-disk"
#define PYROOT_DIR "/pyroot"
#define MOUNT_TRIES 100 /* x 50 ms: the virtio devices can appear after the modules' load returns */

static char net_dns[64] = ""; /* the DNS server of boinc.net, for resolv.conf */

void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Like mkdir -p (no error if it exists). */
void mkdirs(const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *c = tmp + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        mkdir(tmp, 0755);
        *c = '/';
    }
    mkdir(tmp, 0755);
}

void logmsg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("boinc-agent: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Whether the kernel command line has "key" or "key=VALUE" (VALUE into out). */
static int cmdline_value(const char *key, char *out, size_t outlen) {
    static char line[4096];
    static int have = 0;
    if (!have) {
        int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, line, sizeof line - 1) : -1;
        if (fd >= 0) close(fd);
        line[n > 0 ? n : 0] = 0;
        have = 1;
    }
    size_t klen = strlen(key);
    for (const char *p = line; *p;) {
        while (*p == ' ' || *p == '\n') p++;
        const char *end = p + strcspn(p, " \n");
        if ((size_t)(end - p) >= klen && strncmp(p, key, klen) == 0 && (p[klen] == '=' || p + klen == end)) {
            if (out && outlen) {
                const char *v = p[klen] == '=' ? p + klen + 1 : end;
                size_t vlen = (size_t)(end - v) < outlen - 1 ? (size_t)(end - v) : outlen - 1;
                memcpy(out, v, vlen);
                out[vlen] = 0;
            }
            return 1;
        }
        p = end;
    }
    return 0;
}

static int cmdline_is(const char *key, const char *value) {
    char v[64];
    return cmdline_value(key, v, sizeof v) && strcmp(v, value) == 0;
}

static void load_modules(const char *list) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", MODULE_DIR, list);
    FILE *f = fopen(path, "re");
    if (!f) return;
    char name[128];
    while (fgets(name, sizeof name, f)) {
        name[strcspn(name, "\r\n")] = 0;
        if (!name[0]) continue;
        snprintf(path, sizeof path, "%s/%s.ko", MODULE_DIR, name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            logmsg("cannot open the module %s: %s", path, strerror(errno));
            continue;
        }
        if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
            logmsg("cannot load the module %s: %s", name, strerror(errno));
        close(fd);
    }
    fclose(f);
}

static int mount_9p(const char *tag, const char *dir, unsigned long flags, const char *extra) {
    char opts[256];
    snprintf(opts, sizeof opts, "%s%s%s", V9P_OPTS, extra ? "," : "", extra ? extra : "");
    mkdirs(dir);
    for (int i = 0; i < MOUNT_TRIES; i++) {
        if (mount(tag, dir, "9p", flags, opts) == 0) return 0;
        sleep_ms(50);
    }
    return -1;
}

/* A program of the initramfs (busybox), waited for; its output goes to the console. */
static int run(char *const argv[]) {
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int if_up(int s, const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return -1;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(s, SIOCSIFFLAGS, &ifr);
}

static int set_addr(int s, const char *name, unsigned long req, in_addr_t addr) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = addr;
    return ioctl(s, req, &ifr);
}

/* eth0 from "ADDR/PREFIX,GATEWAY,DNS" (boinc.net=): address, netmask, default route; lo up. */
static void network_up(void) {
    load_modules("net.list");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        logmsg("no network: socket: %s", strerror(errno));
        return;
    }
    if_up(s, "lo");
    char spec[160] = "", *fields[3] = {0};
    cmdline_value("boinc.net", spec, sizeof spec);
    char *save = NULL, *p = spec;
    for (int i = 0; i < 3; i++, p = NULL) fields[i] = strtok_r(p, ",", &save);
    char *slash = fields[0] ? strchr(fields[0], '/') : NULL;
    struct in_addr addr, gw;
    int prefix = slash ? atoi(slash + 1) : -1;
    if (slash) *slash = 0;
    if (!fields[0] || !fields[1] || prefix < 1 || prefix > 32 || inet_pton(AF_INET, fields[0], &addr) != 1 ||
        inet_pton(AF_INET, fields[1], &gw) != 1) {
        logmsg("no network: the kernel command line's boinc.net=%s is not ADDR/PREFIX,GATEWAY,DNS", spec);
        close(s);
        return;
    }
    in_addr_t mask = htonl(prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix));
    for (int i = 0; i < MOUNT_TRIES && if_up(s, "eth0") != 0; i++) sleep_ms(50); /* eth0 may come late */
    if (set_addr(s, "eth0", SIOCSIFADDR, addr.s_addr) != 0 || set_addr(s, "eth0", SIOCSIFNETMASK, mask) != 0 ||
        if_up(s, "eth0") != 0) {
        logmsg("no network: cannot configure eth0: %s", strerror(errno));
        close(s);
        return;
    }
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst, *gwa = (struct sockaddr_in *)&rt.rt_gateway,
                       *msk = (struct sockaddr_in *)&rt.rt_genmask;
    dst->sin_family = gwa->sin_family = msk->sin_family = AF_INET;
    gwa->sin_addr = gw;
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = "eth0";
    if (ioctl(s, SIOCADDRT, &rt) != 0) logmsg("no default route via %s: %s", fields[1], strerror(errno));
    close(s);
    if (fields[2]) snprintf(net_dns, sizeof net_dns, "%s", fields[2]);
}

void boot_resolv(const char *root) {
    if (!net_dns[0]) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/etc", root ? root : "");
    mkdirs(path);
    snprintf(path, sizeof path, "%s/etc/resolv.conf", root ? root : "");
    unlink(path); /* a link (e.g. to systemd-resolved's file) in the image: replaced, not written through */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        logmsg("cannot write %s: %s", path, strerror(errno));
        return;
    }
    char text[128];
    int n = snprintf(text, sizeof text, "nameserver %s\n", net_dns);
    if (write(fd, text, (size_t)n) != n) logmsg("cannot write %s: %s", path, strerror(errno));
    close(fd);
}

void boot_init(const char **root, const char **how) {
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sys", "/sys", "sysfs", 0, NULL);
    mount("dev", "/dev", "devtmpfs", 0, NULL);
    mkdirs("/tmp");
    load_modules("boot.list");
    if (mount_9p(SHARE_TAG, SHARE_DIR, 0, NULL) != 0) {
        logmsg("cannot mount the share (9p tag %s) at %s: %s", SHARE_TAG, SHARE_DIR, strerror(errno));
        sync();
        reboot(RB_POWER_OFF);
        reboot(RB_AUTOBOOT);
    }
    if (cmdline_is("boinc.network", "1")) network_up();
    *root = NULL;
    *how = NULL;
    if (access(ROOT_DISK_MARK, F_OK) == 0) {
        *root = PYROOT_DIR;
        *how = "disk";
    } else if (cmdline_is("boinc.pyroot", "1")) {
        *root = PYROOT_DIR;
        *how = "9p";
        if (mount_9p("pyroot", PYROOT_DIR, MS_RDONLY, "cache=loose") != 0) {
            logmsg("cannot mount the host's root tree (9p tag pyroot) at %s: %s", PYROOT_DIR, strerror(errno));
            *how = NULL; /* nothing bound into it: the agent reports the root as unusable (agent.c) */
        }
    } else {
        char *install[] = {"/bin/busybox", "--install", "-s", "/bin", NULL};
        run(install); /* the app runs in the initramfs: its shell tools */
    }
}

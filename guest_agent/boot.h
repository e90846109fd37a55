#ifndef BOINC_AGENT_BOOT_H
#define BOINC_AGENT_BOOT_H
/* The agent as the initramfs's /init (boot.c): the early boot, and helpers the agent shares. */

/* The share: the host's 9p export (QemuBackend: -virtfs ...,mount_tag=shared), where the guest mounts it
 * (docs/protocol.md), and the 9p options of every mount of it (boot.c; relay.c mounts it again after a save) */
#define SHARE_TAG "shared"
#define SHARE_DIR "/boinc/shared"
#define V9P_OPTS "trans=virtio,version=9p2000.L,msize=262144"

/* Mounts, modules, the share, the network; *root / *how: the app's root ("/pyroot") and how to make it
 * ("disk": the agent mounts the root disk; "9p": mounted, the agent binds the share etc. into it), or NULL. */
void boot_init(const char **root, const char **how);
/* With the network up: the app's /etc/resolv.conf (inside root, or the initramfs's without one). */
void boot_resolv(const char *root);
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* "boinc-agent: ..." on stderr */
void sleep_ms(long ms);
void mkdirs(const char *path);

#endif

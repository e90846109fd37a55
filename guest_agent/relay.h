/* The agent's file relay between the app's guest-local folder and the 9p share (relay.c, docs/qemu.md). */
#ifndef BOINC_AGENT_RELAY_H
#define BOINC_AGENT_RELAY_H

/* Move the 9p mount at `work` to `host`, mount a tmpfs at `work` and copy the share's files in (the
 * agent's own files, `skip`, stay out). 0 on success; on failure the share is left mounted at `work`. */
int relay_setup(const char *work, const char *host, const char *const *skip);
/* One pass: full (1: both sides, every file, large ones too; 0: both sides) or local only (-1). */
void relay_sync(int mode);
int relay_mounted(void);
/* Unmount the share (for a save); relay_try_mount mounts it again when QEMU allows: once the host's
 * wake-up line arrived (relay_poll_wake, every pass), else REMOUNT_AFTER_NS after the unmount. */
void relay_unmount(void);
void relay_try_mount(void);
void relay_poll_wake(void);

#endif

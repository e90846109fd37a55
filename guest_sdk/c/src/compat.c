/* compat.c - the small BOINC helpers apps commonly call besides the API proper: boinc_fopen and
 * friends (lib/filesys.h), dtime / boinc_sleep / boinc_crash (lib/util.h), diagnostics
 * (lib/diagnostics.h) and boincerror (lib/str_util.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "diagnostics.h"
#include "error_numbers.h"
#include "filesys.h"
#include "util.h"

FILE* boinc_fopen(const char* path, const char* mode) {
    if (!path || !mode) return NULL;
    FILE* f;
    do {
        f = fopen(path, mode);
    } while (!f && errno == EINTR);
    if (f) {
        int fd = fileno(f);
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
    }
    return f;
}

int boinc_delete_file(const char* path) {
    if (!path) return ERR_NULL;
    if (unlink(path) != 0) return errno == ENOENT ? 0 : ERR_UNLINK;
    return 0;
}

int boinc_touch_file(const char* path) {
    FILE* f = boinc_fopen(path, "a");
    if (!f) return ERR_FOPEN;
    fclose(f);
    return 0;
}

int boinc_copy(const char* orig, const char* newf) {
    FILE* in = boinc_fopen(orig, "rb");
    if (!in) return ERR_FOPEN;
    FILE* out = boinc_fopen(newf, "wb");
    if (!out) {
        fclose(in);
        return ERR_FOPEN;
    }
    char buf[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            rc = ERR_FWRITE;
            break;
        }
    if (ferror(in)) rc = ERR_FREAD;
    fclose(in);
    if (fclose(out) != 0 && rc == 0) rc = ERR_FWRITE;
    return rc;
}

int boinc_rename(const char* old, const char* newf) {
    if (!old || !newf) return ERR_NULL;
    return rename(old, newf) == 0 ? 0 : ERR_RENAME;
}

int boinc_mkdir(const char* path) {
    if (!path) return ERR_NULL;
    if (mkdir(path, 0777) == 0 || (errno == EEXIST && is_dir(path))) return 0;
    return ERR_MKDIR;
}

int boinc_rmdir(const char* path) {
    if (!path) return ERR_NULL;
    return rmdir(path) == 0 ? 0 : ERR_RMDIR;
}

void boinc_getcwd(char* path) {
    if (path && !getcwd(path, MAXPATHLEN)) path[0] = 0;
}

void relative_to_absolute(const char* relname, char* path) {
    char cwd[MAXPATHLEN];
    if (!path) return;
    if (!getcwd(cwd, sizeof(cwd))) cwd[0] = 0;
    if (relname && *relname)
        snprintf(path, MAXPATHLEN, "%s/%s", cwd, relname);
    else
        snprintf(path, MAXPATHLEN, "%s", cwd);
}

int is_file(const char* path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int is_dir(const char* path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int is_symlink(const char* path) {
    struct stat sb;
    return path && lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode);
}

int boinc_file_exists(const char* path) {
    struct stat sb;
    return path && stat(path, &sb) == 0;
}

int boinc_file_or_symlink_exists(const char* path) {
    struct stat sb;
    return path && lstat(path, &sb) == 0;
}

int boinc_truncate(const char* path, double size) {
    /* NaN, negative or beyond off_t: refused (truncate() would be given garbage) */
    if (!path || !(size >= 0) || size >= 9.2233720368547758e18) return ERR_TRUNCATE;
    return truncate(path, (off_t)size) == 0 ? 0 : ERR_TRUNCATE;
}

double dtime(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

void boinc_sleep(double seconds) {
    if (!(seconds > 0)) return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void boinc_crash(void) { abort(); }

int boinc_calling_thread_cpu_time(double* cpu) {
    if (!cpu) return ERR_NULL;
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return ERR_GETRUSAGE;
    *cpu = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    return 0;
}

int boinc_init_diagnostics(int flags) {
    (void)flags;
    return 0;
}
int boinc_init_graphics_diagnostics(int flags) {
    (void)flags;
    return 0;
}
int boinc_install_signal_handlers(void) { return 0; }
int boinc_finish_diag(void) { return 0; }

const char* boincerror(int which_error) {
    switch (which_error) {
    case BOINC_SUCCESS: return "success";
    case ERR_MALLOC: return "out of memory";
    case ERR_READ: return "read error";
    case ERR_WRITE: return "write error";
    case ERR_FREAD: return "fread() failed";
    case ERR_FWRITE: return "fwrite() failed";
    case ERR_FOPEN: return "fopen() failed";
    case ERR_RENAME: return "rename() failed";
    case ERR_UNLINK: return "unlink() failed";
    case ERR_NULL: return "unexpected null pointer";
    case ERR_NEG: return "unexpected negative value";
    case ERR_BUFFER_OVERFLOW: return "buffer overflow";
    case ERR_NOT_FOUND: return "not found";
    case ERR_INVALID_PARAM: return "invalid argument";
    case ERR_NOT_IMPLEMENTED: return "not implemented";
    case ERR_MKDIR: return "mkdir() failed";
    case ERR_FILE_TOO_BIG: return "file too big";
    case ERR_XML_PARSE: return "unexpected format";
    case ERR_FFLUSH: return "fflush() failed";
    case ERR_FSYNC: return "fsync() failed";
    case ERR_TRUNCATE: return "truncate() failed";
    default: return "unknown error";
    }
}

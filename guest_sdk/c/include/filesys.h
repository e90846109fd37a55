/* filesys.h - the file helpers of BOINC's lib/filesys.h that apps commonly use (boinc-guest SDK).
 * Same names, signatures and C linkage as BOINC's. */
#ifndef BOINC_GUEST_FILESYS_H
#define BOINC_GUEST_FILESYS_H

#include <stdio.h>
#include <sys/types.h>
#include <sys/param.h>

#ifndef MAXPATHLEN
#define MAXPATHLEN 1024
#endif

#define FILE_RETRY_INTERVAL 5

#ifdef __cplusplus
extern "C" {
#endif

extern FILE* boinc_fopen(const char* path, const char* mode);
extern int boinc_delete_file(const char* path);
extern int boinc_touch_file(const char* path);
extern int boinc_copy(const char* orig, const char* newf);
extern int boinc_rename(const char* old, const char* newf);
extern int boinc_mkdir(const char* path);
extern int boinc_rmdir(const char* path);
extern void boinc_getcwd(char* path);
extern void relative_to_absolute(const char* relname, char* path);
extern int is_file(const char* path);
extern int is_dir(const char* path);
extern int is_symlink(const char* path);
extern int boinc_file_exists(const char* path);
extern int boinc_file_or_symlink_exists(const char* path);
/* Cut (or extend with zeros) the file to size bytes: 0, or ERR_TRUNCATE (-218). */
extern int boinc_truncate(const char* path, double size);

#ifdef __cplusplus
}

#include <sys/stat.h>

/* BOINC's C++ file_size(const char*, double&): 0 on success, ERR_NOT_FOUND (-161) if absent. */
inline int file_size(const char* path, double& size) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -161;
    size = (double)sb.st_size;
    return 0;
}
#endif

#endif /* BOINC_GUEST_FILESYS_H */

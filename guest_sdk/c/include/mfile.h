/* mfile.h - BOINC's MFILE (lib/mfile.h) for apps built against the boinc-guest SDK.
 *
 * MFILE is memory-buffered output with a FILE-like interface: everything written goes into a buffer
 * in memory and reaches the file only on flush() or close(). BOINC apps use it for a simple form of
 * checkpointing: write the output to an MFILE, and flush it when the checkpoint is written, so the
 * output file on disk always matches the last checkpoint.
 *
 * Header-only C++ (inline, on <cstdio>), so the SDK library needs no C++ runtime. From C this header
 * declares nothing (BOINC's MFILE is a C++ class).
 *
 * As in BOINC: open() takes any fopen() mode ("wb" truncates, "ab" appends -- after boinc_truncate()
 * to the checkpointed length when resuming) and returns 0 or ERR_FOPEN; _putchar() returns the
 * character, puts() the number of bytes (no newline is added), printf() / vprintf() what vsnprintf
 * returns, write() nitems; flush() writes the buffer, fflush()es and fsync()s the file and returns 0,
 * ERR_FWRITE, ERR_FFLUSH or ERR_FSYNC (the buffer is emptied either way, as BOINC's); tell() is the
 * file's position (ftell: what has been flushed) or -1; get_buf() hands the buffer (malloc'ed,
 * NUL-terminated) and its length to the caller, who free()s it, and leaves the MFILE empty.
 * Out of memory: a message on stderr and exit(1), as BOINC's.
 *
 * Differences from BOINC's, deliberately: close() returns flush()'s or fclose()'s error instead of
 * always 0; flush() / close() without an open file return ERR_NULL (BOINC's would crash); printf()
 * has no 100000-byte limit; the destructor closes the file (BOINC's leaks it) but, as BOINC's, does
 * not write what was never flushed; an MFILE cannot be copied (BOINC's copy would free twice). */
#ifndef BOINC_GUEST_MFILE_H
#define BOINC_GUEST_MFILE_H

#ifdef __cplusplus

#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "error_numbers.h"
#include "filesys.h"

class MFILE {
    char* buf;  // malloc'ed, NUL-terminated when not NULL
    size_t len; // bytes in buf
    size_t cap; // bytes allocated
    FILE* f;

    MFILE(const MFILE&);            // not copyable
    MFILE& operator=(const MFILE&); // not assignable

    // room for n more bytes and the terminating NUL
    void reserve(size_t n) {
        if (n > (size_t)-1 - len - 1) no_memory();
        size_t need = len + n + 1;
        if (need <= cap) return;
        size_t c = cap ? cap : 4096;
        while (c < need) c = c > (size_t)-1 / 2 ? need : c * 2;
        char* p = static_cast<char*>(std::realloc(buf, c));
        if (!p) no_memory();
        buf = p;
        cap = c;
    }
    void no_memory() {
        std::fprintf(stderr, "ERROR: out of memory in MFILE (%lu bytes buffered)\n", (unsigned long)len);
        std::exit(1);
    }
    void append(const void* p, size_t n) {
        reserve(n);
        if (n) std::memcpy(buf + len, p, n);
        len += n;
        buf[len] = 0;
    }

public:
    MFILE() : buf(0), len(0), cap(0), f(0) {}
    ~MFILE() {
        if (f) std::fclose(f);
        std::free(buf);
    }

    int open(const char* path, const char* mode) {
        FILE* nf = boinc_fopen(path, mode);
        if (!nf) return ERR_FOPEN;
        if (f) std::fclose(f); // what is buffered stays, and goes to the new file
        f = nf;
        return 0;
    }

    int _putchar(char c) {
        append(&c, 1);
        return c;
    }

    int puts(const char* p) {
        size_t n = p ? std::strlen(p) : 0;
        append(p, n);
        return (int)n;
    }

    int vprintf(const char* format, va_list ap) {
        va_list aq;
        va_copy(aq, ap);
        char small[256];
        int k = std::vsnprintf(small, sizeof(small), format, aq);
        va_end(aq);
        if (k < 0) return -1;
        if ((size_t)k < sizeof(small)) {
            append(small, (size_t)k);
            return k;
        }
        reserve((size_t)k);
        std::vsnprintf(buf + len, (size_t)k + 1, format, ap);
        len += (size_t)k;
        return k;
    }

    int printf(const char* format, ...) {
        va_list ap;
        va_start(ap, format);
        int n = vprintf(format, ap);
        va_end(ap);
        return n;
    }

    size_t write(const void* ptr, size_t size, size_t nitems) {
        if (size && nitems > (size_t)-1 / size) no_memory();
        append(ptr, size * nitems);
        return nitems;
    }

    int flush() {
        if (!f) return ERR_NULL;
        size_t n = len ? std::fwrite(buf, 1, len, f) : 0;
        size_t want = len;
        len = 0;
        if (buf) buf[0] = 0;
        if (n != want) return ERR_FWRITE;
        if (std::fflush(f)) return ERR_FFLUSH;
        // a pipe or terminal cannot be synced: that is not a failure
        if (fsync(fileno(f)) < 0 && errno != EINVAL && errno != EROFS) return ERR_FSYNC;
        return 0;
    }

    int close() {
        int rc = 0;
        if (f) {
            rc = flush();
            if (std::fclose(f) != 0 && rc == 0) rc = ERR_FWRITE;
            f = 0;
        }
        std::free(buf);
        buf = 0;
        len = cap = 0;
        return rc;
    }

    long tell() const { return f ? std::ftell(f) : -1; }

    // The caller owns the buffer (free() it); the MFILE is left empty.
    void get_buf(char*& b, int& l) {
        if (!buf) {
            reserve(0);
            buf[0] = 0;
        }
        b = buf;
        l = (int)len;
        buf = 0;
        len = cap = 0;
    }
};

#endif /* __cplusplus */

#endif /* BOINC_GUEST_MFILE_H */

/* miofile.h - BOINC's MIOFILE (lib/miofile.h) for apps built against the boinc-guest SDK.
 *
 * A MIOFILE reads from or writes to one of: a FILE*, an MFILE, or a memory buffer (init_buf_read:
 * a NUL-terminated string, e.g. APP_INIT_DATA::project_preferences; init_buf_write: a char array of
 * a given size, always NUL-terminated, output beyond it is cut off). XML_PARSER (parse.h) reads
 * through one. Header-only C++ (inline), so the SDK library needs no C++ runtime; from C this header
 * declares nothing (BOINC's MIOFILE is a C++ class). */
#ifndef BOINC_GUEST_MIOFILE_H
#define BOINC_GUEST_MIOFILE_H

#ifdef __cplusplus

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "error_numbers.h"
#include "mfile.h"

class MIOFILE {
    MFILE* mf;
    FILE* f;
    char* wbuf;      // init_buf_write: the caller's buffer
    int len;         // its size
    const char* buf; // init_buf_read: the next byte to read

  public:
    MIOFILE() : mf(0), f(0), wbuf(0), len(0), buf(0) {}
    ~MIOFILE() {}
    void init_mfile(MFILE* m) {
        mf = m;
        f = 0;
        wbuf = 0;
        buf = 0;
    }
    void init_file(FILE* fp) {
        f = fp;
        mf = 0;
        wbuf = 0;
        buf = 0;
    }
    void init_buf_read(const char* b) {
        buf = b ? b : "";
        f = 0;
        mf = 0;
        wbuf = 0;
    }
    void init_buf_write(char* b, int n) {
        wbuf = b;
        len = n;
        if (wbuf && len > 0) wbuf[0] = 0;
        f = 0;
        mf = 0;
        buf = 0;
    }
    bool eof() {
        if (f) return std::feof(f) != 0;
        if (buf) return *buf == 0;
        return true;
    }
    int vprintf(const char* format, va_list ap) {
        if (mf) return mf->vprintf(format, ap);
        if (f) return std::vfprintf(f, format, ap);
        if (wbuf && len > 0) {
            size_t cur = std::strlen(wbuf);
            if (cur + 1 >= (size_t)len) return 0;
            int n = std::vsnprintf(wbuf + cur, (size_t)len - cur, format, ap);
            return n;
        }
        return ERR_NULL;
    }
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    int printf(const char* format, ...) {
        va_list ap;
        va_start(ap, format);
        int n = this->vprintf(format, ap);
        va_end(ap);
        return n;
    }
    // reads a line (as fgets) from the FILE or the read buffer; NULL at the end
    char* fgets(char* dst, int n) {
        if (f) return std::fgets(dst, n, f);
        if (!buf || n <= 0) return 0;
        if (!*buf) return 0;
        int i = 0;
        while (i < n - 1 && *buf) {
            char c = *buf++;
            dst[i++] = c;
            if (c == '\n') break;
        }
        dst[i] = 0;
        return dst;
    }
    int _ungetc(int c) {
        if (f) return std::ungetc(c, f);
        if (buf) {
            --buf; // only ever after _getc() read this byte (XML_PARSER's use)
            return c;
        }
        return EOF;
    }
    int _getc() {
        if (f) return std::getc(f);
        if (buf) {
            if (!*buf) return EOF;
            return (unsigned char)*buf++;
        }
        return EOF;
    }
    // what init_buf_write wrote so far
    const char* get_write_buf() const { return wbuf; }
};

// Copies what precedes end_tag (e.g. "</project_preferences>") into p (at most len - 1 bytes);
// 0, or ERR_XML_PARSE if end_tag was not found or the text does not fit.
inline int copy_element_contents(MIOFILE& in, const char* end_tag, char* p, int len) {
    size_t n = 0, elen = std::strlen(end_tag);
    int c;
    if (len <= 0) return ERR_XML_PARSE;
    while ((c = in._getc()) != EOF) {
        if (n + 1 >= (size_t)len) {
            p[n] = 0;
            return ERR_XML_PARSE;
        }
        p[n++] = (char)c;
        if (n >= elen && !std::memcmp(p + n - elen, end_tag, elen)) {
            p[n - elen] = 0;
            return 0;
        }
    }
    p[n] = 0;
    return ERR_XML_PARSE;
}

inline int copy_element_contents(MIOFILE& in, const char* end_tag, std::string& str) {
    size_t elen = std::strlen(end_tag);
    int c;
    str.clear();
    while ((c = in._getc()) != EOF) {
        str += (char)c;
        if (str.size() >= elen && !str.compare(str.size() - elen, elen, end_tag)) {
            str.erase(str.size() - elen);
            return 0;
        }
    }
    return ERR_XML_PARSE;
}

#endif /* __cplusplus */

#endif /* BOINC_GUEST_MIOFILE_H */

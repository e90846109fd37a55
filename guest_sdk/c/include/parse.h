/* parse.h - BOINC's XML parsing (lib/parse.h) for apps built against the boinc-guest SDK.
 *
 * XML_PARSER reads tags and values through a MIOFILE, as BOINC's does; the usual way to read project
 * preferences (APP_INIT_DATA::project_preferences):
 *
 *     MIOFILE mf; XML_PARSER xp(&mf);
 *     mf.init_buf_read(aid.project_preferences);
 *     while (!xp.get_tag()) {
 *         if (xp.parse_int("max_iter", max_iter)) continue;
 *         if (xp.parse_str("color", color, sizeof(color))) continue;
 *         if (xp.parse_bool("fast", fast)) continue;
 *     }
 *
 * Tag names passed to XML_PARSER have no angle brackets ("max_iter"; an end tag is "/max_iter");
 * the free functions (parse_int(buf, "<max_iter>", n), parse_str, ...) take them with brackets, as in
 * BOINC. Comments are skipped (the <?xml ...?> line is a tag, "?xml", as in BOINC), CDATA sections
 * are data, values are XML-unescaped (&lt; &gt; &amp; &quot; &apos; &#N;). Header-only C++ (inline): the SDK
 * library needs no C++ runtime; from C this header gives boinc_is_finite() only. */
#ifndef BOINC_GUEST_PARSE_H
#define BOINC_GUEST_PARSE_H

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error_numbers.h"
#include "miofile.h"
#include "str_util.h"

#define XML_PARSE_COMMENT 1
#define XML_PARSE_EOF 2
#define XML_PARSE_CDATA 3
#define XML_PARSE_TAG 4
#define XML_PARSE_DATA 5
#define XML_PARSE_OVERFLOW 6

#define TAG_BUF_LEN 4096
#define ELEMENT_BUF_LEN 65536

#ifdef __cplusplus

#include <cstdio>
#include <string>

inline bool boinc_is_finite(double x) { return std::isfinite(x); }

// ---- escaping ----

// xml_unescape in place, as BOINC's: &lt; &gt; &amp; &quot; &apos; and &#N; (decimal, N < 256: that
// byte); anything else (&#x..;, &#300;, unknown entities) is kept as it is; one pass (&amp;lt; is &lt;)
inline void xml_unescape(char* buf) {
    char* in = buf;
    char* out = buf;
    static const char* const names[] = {"&lt;", "&gt;", "&amp;", "&quot;", "&apos;"};
    static const char chars[] = {'<', '>', '&', '"', '\''};
    while (*in) {
        if (*in != '&') {
            *out++ = *in++;
            continue;
        }
        bool done = false;
        for (int i = 0; i < 5 && !done; i++) {
            size_t n = strlen(names[i]);
            if (!strncmp(in, names[i], n)) {
                *out++ = chars[i];
                in += n;
                done = true;
            }
        }
        if (!done && in[1] == '#' && isdigit((unsigned char)in[2])) {
            char* end = 0;
            long v = strtol(in + 2, &end, 10);
            if (end && *end == ';' && v < 256) {
                *out++ = (char)v;
                in = end + 1;
                done = true;
            }
        }
        if (!done) *out++ = *in++;
    }
    *out = 0;
}

inline void xml_unescape(std::string& s) {
    std::string t(s);
    if (t.empty()) return;
    xml_unescape(&t[0]);
    s = t.c_str();
}

// xml_escape, as BOINC's: '<' and '&' as entities, bytes over 127 and tab / newline / carriage
// return as &#N;, other control characters dropped; stops before what does not fit in len - 1 bytes
inline void xml_escape(const char* in, char* out, int len) {
    if (len <= 0) return;
    char* p = out;
    char* end = out + len - 1;
    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;
        char ent[16];
        const char* rep = 0;
        if (c == '<') rep = "&lt;";
        else if (c == '&') rep = "&amp;";
        else if (c > 127 || c == 9 || c == 10 || c == 13) {
            snprintf(ent, sizeof(ent), "&#%d;", c);
            rep = ent;
        } else if (c < 32) {
            continue;
        }
        if (rep) {
            size_t n = strlen(rep);
            if (p + n > end) break;
            memcpy(p, rep, n);
            p += n;
        } else {
            if (p >= end) break;
            *p++ = (char)c;
        }
    }
    *p = 0;
}

// non-ASCII bytes as &#N; (BOINC: for text that must stay 7-bit)
inline void non_ascii_escape(const char* in, char* out, int len) {
    if (len <= 0) return;
    char* p = out;
    char* end = out + len - 1;
    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;
        if (c >= 0x80 || (c < 0x20 && c != '\n' && c != '\t' && c != '\r')) {
            char ent[16];
            int n = snprintf(ent, sizeof(ent), "&#%d;", c);
            if (p + n > end) break;
            memcpy(p, ent, (size_t)n);
            p += n;
        } else {
            if (p >= end) break;
            *p++ = (char)c;
        }
    }
    *p = 0;
}

// ---- free functions on a buffer holding XML (tags with angle brackets) ----

inline bool match_tag(const char* buf, const char* tag) { return strstr(buf, tag) != 0; }
inline bool match_tag(const std::string& s, const char* tag) { return match_tag(s.c_str(), tag); }

inline unsigned long long boinc_strtoull(const char* s, char** end, int base) {
    return strtoull(s, end, base);
}

inline bool parse_int(const char* buf, const char* tag, int& x) {
    const char* p = strstr(buf, tag);
    if (!p) return false;
    errno = 0;
    long y = strtol(p + strlen(tag), 0, 0);
    if (errno || y > 2147483647L || y < -2147483647L - 1) return false;
    x = (int)y;
    return true;
}

inline bool parse_double(const char* buf, const char* tag, double& x) {
    const char* p = strstr(buf, tag);
    if (!p) return false;
    errno = 0;
    double y = strtod(p + strlen(tag), 0);
    if (errno || !boinc_is_finite(y)) return false;
    x = y;
    return true;
}

// the text between tag ("<name>") and the next "</", whitespace-stripped and unescaped
inline bool parse_str(const char* buf, const char* tag, std::string& dest) {
    const char* p = strstr(buf, tag);
    if (!p) return false;
    p += strlen(tag);
    const char* q = strstr(p, "</");
    if (!q) return false;
    std::string s(p, (size_t)(q - p));
    strip_whitespace(s);
    xml_unescape(s);
    dest = s;
    return true;
}

inline bool parse_str(const char* buf, const char* tag, char* dest, int destlen) {
    std::string s;
    if (destlen <= 0 || !parse_str(buf, tag, s)) return false;
    strlcpy(dest, s.c_str(), (size_t)destlen);
    return true;
}

// <name/> or <name>N</name> (N != 0 is true); name without brackets, as in BOINC
inline bool parse_bool(const char* buf, const char* tag, bool& result) {
    std::string t1 = std::string("<") + tag + "/>", t2 = std::string("<") + tag + " />";
    if (match_tag(buf, t1.c_str()) || match_tag(buf, t2.c_str())) {
        result = true;
        return true;
    }
    int x;
    std::string t3 = std::string("<") + tag + ">";
    if (parse_int(buf, t3.c_str(), x)) {
        result = x != 0;
        return true;
    }
    return false;
}

// the value of attribute attrname in buf (name="value" or name='value'); "" if absent
inline void parse_attr(const char* buf, const char* attrname, char* out, int len) {
    if (len <= 0) return;
    *out = 0;
    size_t n = strlen(attrname);
    for (const char* p = strstr(buf, attrname); p; p = strstr(p + 1, attrname)) {
        if (p != buf && !isspace((unsigned char)p[-1])) continue;
        const char* q = p + n;
        while (isspace((unsigned char)*q)) q++;
        if (*q != '=') continue;
        q++;
        while (isspace((unsigned char)*q)) q++;
        char quote = *q;
        if (quote != '"' && quote != '\'') continue;
        const char* e = strchr(q + 1, quote);
        if (!e) return;
        size_t m = (size_t)(e - q - 1);
        if (m >= (size_t)len) m = (size_t)len - 1;
        memcpy(out, q + 1, m);
        out[m] = 0;
        return;
    }
}

// copy_element_contents on a FILE*: see miofile.h
inline int copy_element_contents(FILE* in, const char* end_tag, char* p, size_t len) {
    MIOFILE mf;
    mf.init_file(in);
    return copy_element_contents(mf, end_tag, p, (int)len);
}
inline int copy_element_contents(FILE* in, const char* end_tag, std::string& s) {
    MIOFILE mf;
    mf.init_file(in);
    return copy_element_contents(mf, end_tag, s);
}

// replaces every occurrence of old in str by neww (str must have room); true if any was replaced
inline bool str_replace(char* str, const char* old, const char* neww) {
    size_t ol = strlen(old), nl = strlen(neww);
    if (!ol) return false;
    bool any = false;
    char* p = str;
    while ((p = strstr(p, old)) != 0) {
        memmove(p + nl, p + ol, strlen(p + ol) + 1);
        memcpy(p, neww, nl);
        p += nl;
        any = true;
    }
    return any;
}

// replaces what lies between start and end in buf (buf must have room)
inline void replace_element_contents(char* buf, const char* start, const char* end, const char* replacement) {
    char* p = strstr(buf, start);
    if (!p) return;
    p += strlen(start);
    char* q = strstr(p, end);
    if (!q) return;
    size_t rl = strlen(replacement);
    memmove(p + rl, q, strlen(q) + 1);
    memcpy(p, replacement, rl);
}

// removes start...end (inclusive) from buf; true if found
inline bool remove_element(char* buf, const char* start, const char* end) {
    char* p = strstr(buf, start);
    if (!p) return false;
    char* q = strstr(p + strlen(start), end);
    if (!q) return false;
    q += strlen(end);
    memmove(p, q, strlen(q) + 1);
    return true;
}

// fgets on a string: the next line of in (advanced past it) into buf; NULL at the end
inline char* sgets(char* buf, int len, char*& in) {
    if (!in || !*in || len <= 0) return 0;
    int i = 0;
    while (*in && i < len - 1) {
        char c = *in++;
        buf[i++] = c;
        if (c == '\n') break;
    }
    buf[i] = 0;
    return buf;
}

// ---- XML_PARSER ----

struct XML_PARSER {
    char parsed_tag[TAG_BUF_LEN];
    bool is_tag;
    MIOFILE* f;

    XML_PARSER(MIOFILE* mf) : is_tag(false), f(mf) { parsed_tag[0] = 0; }
    void init(MIOFILE* mf) { f = mf; }

    // skips to the end of a comment ("<!--" already read)
    int scan_comment() {
        int c, dashes = 0;
        while ((c = f->_getc()) != EOF) {
            if (c == '>' && dashes >= 2) return XML_PARSE_COMMENT;
            dashes = c == '-' ? dashes + 1 : 0;
        }
        return XML_PARSE_EOF;
    }
    // copies a CDATA section ("<![CDATA[" already read) into buf
    int scan_cdata(char* buf, int len) {
        int c, n = 0;
        while ((c = f->_getc()) != EOF) {
            if (n + 1 >= len) return XML_PARSE_OVERFLOW;
            buf[n++] = (char)c;
            if (n >= 3 && !strncmp(buf + n - 3, "]]>", 3)) {
                buf[n - 3] = 0;
                return XML_PARSE_CDATA;
            }
        }
        return XML_PARSE_EOF;
    }
    int copy_until_tag(char* buf, int len) {
        int c;
        while (1) {
            c = f->_getc();
            if (c == 0 || c == EOF) {
                *buf = 0;
                return XML_PARSE_DATA;
            }
            if (c == '<') {
                f->_ungetc(c);
                *buf = 0;
                return XML_PARSE_DATA;
            }
            if (--len <= 0) return XML_PARSE_OVERFLOW;
            *buf++ = (char)c;
        }
    }
    bool scan_nonws(int& first_char) {
        int c;
        while (1) {
            c = f->_getc();
            if (c == 0 || c == EOF) return true;
            if (isascii(c) && isspace(c)) continue;
            first_char = c;
            return false;
        }
    }
    // "<" already read: the tag's name (with a leading '/' for an end tag, a trailing '/' for <x/>)
    // into buf, its attributes into attr_buf
    int scan_tag(char* buf, int tag_len, char* attr_buf = 0, int attr_len = 0) {
        int c, n = 0, an = 0;
        bool in_attrs = false;
        while (1) {
            c = f->_getc();
            if (c == 0 || c == EOF) return XML_PARSE_EOF;
            if (c == '>') {
                buf[n] = 0;
                if (attr_buf && attr_len > 0) {
                    while (an > 0 && attr_buf[an - 1] == '/') an--;
                    attr_buf[an] = 0;
                }
                if (in_attrs && n < tag_len - 1 && an_ends_with_slash) {
                    buf[n++] = '/';
                    buf[n] = 0;
                }
                an_ends_with_slash = false;
                return XML_PARSE_TAG;
            }
            if (in_attrs) {
                an_ends_with_slash = c == '/';
                if (attr_buf && an < attr_len - 1) attr_buf[an++] = (char)c;
                continue;
            }
            if (isascii(c) && isspace(c)) {
                in_attrs = true;
                an_ends_with_slash = false;
                continue;
            }
            if (n >= tag_len - 1) return XML_PARSE_OVERFLOW;
            buf[n++] = (char)c;
            if (n == 3 && !strncmp(buf, "!--", 3)) return scan_comment();
            if (n == 8 && !strncmp(buf, "![CDATA[", 8)) return scan_cdata(buf, tag_len);
        }
    }
    int get_aux(char* buf, int len, char* attr_buf, int attr_len) {
        int c, retval;
        while (1) {
            if (scan_nonws(c)) return XML_PARSE_EOF;
            if (c == '<') {
                retval = scan_tag(buf, len, attr_buf, attr_len);
                if (retval == XML_PARSE_COMMENT) continue;
                if (retval == XML_PARSE_CDATA) return retval;
                if (retval != XML_PARSE_TAG) return retval;
            } else {
                buf[0] = (char)c;
                retval = copy_until_tag(buf + 1, len - 1);
                if (retval != XML_PARSE_DATA) return retval;
            }
            strip_whitespace(buf);
            return retval;
        }
    }
    // the next tag or data into buf; true at the end of input (or on overflow)
    bool get(char* buf, int len, bool& _is_tag, char* attr_buf = 0, int attr_len = 0) {
        switch (get_aux(buf, len, attr_buf, attr_len)) {
        case XML_PARSE_EOF:
        case XML_PARSE_OVERFLOW:
            return true;
        case XML_PARSE_TAG:
            _is_tag = true;
            break;
        default:
            _is_tag = false;
            break;
        }
        return false;
    }
    // the next tag into parsed_tag (data between tags is skipped by callers' loops); true at the end
    bool get_tag(char* attr_buf = 0, int attr_len = 0) {
        return get(parsed_tag, sizeof(parsed_tag), is_tag, attr_buf, attr_len);
    }
    bool match_tag(const char* tag) { return !strcmp(parsed_tag, tag); }

    // reads up to end_tag ("</name>") into buf
    int element_contents(const char* end_tag, char* buf, int buflen) {
        int rc = copy_element_contents(*f, end_tag, buf, buflen);
        strip_whitespace(buf);
        return rc;
    }

    bool parse_start(const char* start_tag) {
        char tag[TAG_BUF_LEN];
        if (get(tag, sizeof(tag), is_tag)) return false;
        return is_tag && !strcmp(tag, start_tag);
    }

    // the value of <start_tag>value</start_tag> when parsed_tag is start_tag (<start_tag/>: "")
    bool parse_str_aux(const char* start_tag, char* buf, int len) {
        size_t n = strlen(parsed_tag), sl = strlen(start_tag);
        if (n == sl + 1 && parsed_tag[n - 1] == '/' && !strncmp(parsed_tag, start_tag, sl)) {
            *buf = 0;
            return true;
        }
        if (strcmp(parsed_tag, start_tag)) return false;
        char tag[TAG_BUF_LEN];
        if (get(buf, len, is_tag)) return false;
        if (is_tag) {
            if (buf[0] == '/' && !strcmp(buf + 1, start_tag)) {
                *buf = 0;
                return true;
            }
            return false;
        }
        bool t;
        if (get(tag, sizeof(tag), t)) return false;
        return t && tag[0] == '/' && !strcmp(tag + 1, start_tag);
    }
    bool parse_str(const char* start_tag, char* buf, int len) {
        if (!parse_str_aux(start_tag, buf, len)) return false;
        xml_unescape(buf);
        return true;
    }
    bool parse_string(const char* start_tag, std::string& str) {
        char buf[ELEMENT_BUF_LEN];
        if (!parse_str(start_tag, buf, sizeof(buf))) return false;
        str = buf;
        return true;
    }
    bool parse_int(const char* start_tag, int& x) {
        long y;
        if (!parse_long(start_tag, y) || y > 2147483647L || y < -2147483647L - 1) return false;
        x = (int)y;
        return true;
    }
    bool parse_long(const char* start_tag, long& x) {
        char buf[256], *end;
        if (!parse_str_aux(start_tag, buf, sizeof(buf))) return false;
        errno = 0;
        long y = strtol(buf, &end, 0);
        if (errno || end == buf) return false;
        x = y;
        return true;
    }
    bool parse_ulong(const char* start_tag, unsigned long& x) {
        char buf[256], *end;
        if (!parse_str_aux(start_tag, buf, sizeof(buf))) return false;
        errno = 0;
        unsigned long y = strtoul(buf, &end, 0);
        if (errno || end == buf) return false;
        x = y;
        return true;
    }
    bool parse_ulonglong(const char* start_tag, unsigned long long& x) {
        char buf[256], *end;
        if (!parse_str_aux(start_tag, buf, sizeof(buf))) return false;
        errno = 0;
        unsigned long long y = strtoull(buf, &end, 0);
        if (errno || end == buf) return false;
        x = y;
        return true;
    }
    bool parse_double(const char* start_tag, double& x) {
        char buf[256], *end;
        if (!parse_str_aux(start_tag, buf, sizeof(buf))) return false;
        errno = 0;
        double y = strtod(buf, &end);
        if (errno || end == buf || !boinc_is_finite(y)) return false;
        x = y;
        return true;
    }
    // <name/> is true; <name>N</name> is N != 0
    bool parse_bool(const char* start_tag, bool& b) {
        char buf[256];
        size_t n = strlen(parsed_tag), sl = strlen(start_tag);
        if (n == sl + 1 && parsed_tag[n - 1] == '/' && !strncmp(parsed_tag, start_tag, sl)) {
            b = true;
            return true;
        }
        if (!parse_str_aux(start_tag, buf, sizeof(buf))) return false;
        b = atoi(buf) != 0 || !strcmp(buf, "true");
        return true;
    }
    // the whole element whose start tag is parsed_tag, tags included, into str
    int copy_element(std::string& str) {
        char end_tag[TAG_BUF_LEN + 8];
        str = std::string("<") + parsed_tag + ">";
        size_t n = strlen(parsed_tag);
        if (n && parsed_tag[n - 1] == '/') return 0;
        snprintf(end_tag, sizeof(end_tag), "</%s>", parsed_tag);
        std::string body;
        int rc = copy_element_contents(*f, end_tag, body);
        if (rc) return rc;
        str += body + end_tag;
        return 0;
    }
    // skips the element that start_tag opened (nested ones too); verbose: says so on stderr
    void skip_unexpected(const char* start_tag, bool verbose, const char* where) {
        char tag[TAG_BUF_LEN], end_tag[TAG_BUF_LEN + 2];
        size_t n = strlen(start_tag);
        if (verbose) fprintf(stderr, "%s: unrecognized XML tag <%s>\n", where ? where : "", start_tag);
        if (!n || start_tag[0] == '/' || start_tag[n - 1] == '/') return;
        snprintf(end_tag, sizeof(end_tag), "/%s", start_tag);
        int depth = 0;
        bool t;
        while (!get(tag, sizeof(tag), t)) {
            if (!t) continue;
            if (!strcmp(tag, start_tag)) depth++;
            else if (!strcmp(tag, end_tag)) {
                if (depth-- == 0) return;
            }
        }
    }
    void skip_unexpected(bool verbose = false, const char* msg = "") {
        char tag[TAG_BUF_LEN];
        strlcpy(tag, parsed_tag, sizeof(tag));
        skip_unexpected(tag, verbose, msg);
    }

  private:
    bool an_ends_with_slash = false;
};

#else /* C */

static inline int boinc_is_finite(double x) { return isfinite(x); }

#endif /* __cplusplus */

#endif /* BOINC_GUEST_PARSE_H */

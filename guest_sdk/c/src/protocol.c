/* protocol.c - the shared-folder protocol v1 in C (docs/protocol.md): the canonical msgpack encoder
 * for the status file, a strict bounded decoder for the control file, UTF-8 repair, bounded file
 * reads and atomic writes. libc only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_numbers.h"
#include "internal.h"

#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* ==== UTF-8 ==================================================================================== */

/* Length of the well-formed sequence at s[i..n), or 0 if ill-formed; *sub gets the length of the
 * maximal subpart (>= 1) to replace when ill-formed (Unicode's recommended practice, as CPython). */
static size_t utf8_seq(const unsigned char* s, size_t n, size_t i, size_t* sub) {
    unsigned char c = s[i];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *sub = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    size_t k;
    for (k = 1; k <= need; k++) {
        if (i + k >= n) {
            *sub = k;
            return 0;
        }
        unsigned char d = s[i + k];
        unsigned char l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xBF;
        if (d < l || d > h) {
            *sub = k;
            return 0;
        }
    }
    return need + 1;
}

static int utf8_valid(const unsigned char* s, size_t n) {
    size_t i = 0, sub;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_seq(s, n, i, &sub);
        if (!l) return 0;
        i += l;
    }
    return 1;
}

size_t boinc_guest_utf8_repair(const char* in, size_t len, char* out, size_t cap) {
    const unsigned char* s = (const unsigned char*)in;
    size_t i = 0, o = 0, sub;
    while (i < len) {
        size_t l = (s[i] < 0x80) ? 1 : utf8_seq(s, len, i, &sub);
        if (l) {
            if (out && o + l <= cap) memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else {
            /* each byte of the ill-formed subsequence becomes one U+FFFD */
            for (size_t k = 0; k < sub; k++) {
                if (out && o + 3 <= cap) memcpy(out + o, "\xEF\xBF\xBD", 3);
                o += 3;
            }
            i += sub;
        }
    }
    return o;
}

size_t boinc_guest_utf8_truncate(const char* s, size_t len, size_t max) {
    if (len <= max) return len;
    size_t n = max;
    /* back off over continuation bytes so that the cut is on a character boundary */
    while (n > 0 && (((const unsigned char*)s)[n] & 0xC0) == 0x80) n--;
    return n;
}

/* ==== encoder ================================================================================== */

void bg_buf_free(bg_buf* b) {
    if (!b->fixed) free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int buf_reserve(bg_buf* b, size_t more) {
    if (b->failed) return -1;
    if (b->len + more <= b->cap) return 0;
    if (b->fixed || more > ((size_t)1 << 40)) {
        b->failed = 1;
        return -1;
    }
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + more) nc *= 2;
    unsigned char* np = realloc(b->p, nc);
    if (!np) {
        b->failed = 1;
        return -1;
    }
    b->p = np;
    b->cap = nc;
    return 0;
}

static void put(bg_buf* b, const void* d, size_t n) {
    if (buf_reserve(b, n)) return;
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_be(bg_buf* b, unsigned char tag, uint64_t v, int bytes) {
    unsigned char t[9];
    t[0] = tag;
    for (int i = 0; i < bytes; i++) t[1 + i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    put(b, t, (size_t)bytes + 1);
}

static void enc_uint(bg_buf* b, uint64_t v) {
    if (v < 128) {
        unsigned char c = (unsigned char)v;
        put(b, &c, 1);
    } else if (v <= 0xFF) {
        put_be(b, 0xCC, v, 1);
    } else if (v <= 0xFFFF) {
        put_be(b, 0xCD, v, 2);
    } else if (v <= 0xFFFFFFFFu) {
        put_be(b, 0xCE, v, 4);
    } else {
        put_be(b, 0xCF, v, 8);
    }
}

static void enc_int(bg_buf* b, int64_t v) {
    if (v >= 0) {
        enc_uint(b, (uint64_t)v);
    } else if (v >= -32) {
        unsigned char c = (unsigned char)(0xE0 | (v + 32));
        put(b, &c, 1);
    } else if (v >= -128) {
        put_be(b, 0xD0, (uint64_t)v & 0xFF, 1);
    } else if (v >= -32768) {
        put_be(b, 0xD1, (uint64_t)v & 0xFFFF, 2);
    } else if (v >= -2147483648LL) {
        put_be(b, 0xD2, (uint64_t)v & 0xFFFFFFFFu, 4);
    } else {
        put_be(b, 0xD3, (uint64_t)v, 8);
    }
}

static void enc_double(bg_buf* b, double d) {
    uint64_t bits;
    memcpy(&bits, &d, 8);
    put_be(b, 0xCB, bits, 8);
}

static void enc_bool(bg_buf* b, int v) {
    unsigned char c = v ? 0xC3 : 0xC2;
    put(b, &c, 1);
}

static void enc_str(bg_buf* b, const char* s, size_t n) {
    if (n < 32) {
        unsigned char c = (unsigned char)(0xA0 | n);
        put(b, &c, 1);
    } else if (n <= 0xFF) {
        put_be(b, 0xD9, n, 1);
    } else if (n <= 0xFFFF) {
        put_be(b, 0xDA, n, 2);
    } else {
        put_be(b, 0xDB, n, 4);
    }
    if (n) put(b, s, n);
}

static void enc_key(bg_buf* b, const char* k) { enc_str(b, k, strlen(k)); }

static void enc_hdr(bg_buf* b, int map, size_t n) {
    if (n < 16) {
        unsigned char c = (unsigned char)((map ? 0x80 : 0x90) | n);
        put(b, &c, 1);
    } else if (n <= 0xFFFF) {
        put_be(b, map ? 0xDE : 0xDC, n, 2);
    } else {
        put_be(b, map ? 0xDF : 0xDD, n, 4);
    }
}

int bg_encode_status(bg_buf* b, const boinc_guest_status* st) {
    enc_hdr(b, 1, 16);
    enc_key(b, "v");
    enc_int(b, st->v);
    enc_key(b, "seq");
    enc_uint(b, st->seq);
    enc_key(b, "hb");
    enc_uint(b, st->hb);
    enc_key(b, "fraction_done");
    enc_double(b, st->fraction_done);
    enc_key(b, "cpu_time");
    enc_double(b, st->cpu_time);
    enc_key(b, "elapsed_time");
    enc_double(b, st->elapsed_time);
    enc_key(b, "checkpoint_cpu_time");
    enc_double(b, st->checkpoint_cpu_time);
    enc_key(b, "checkpoint_count");
    enc_uint(b, st->checkpoint_count);
    enc_key(b, "fpops_per_cpu_sec");
    enc_double(b, st->fpops_per_cpu_sec);
    enc_key(b, "fpops_cumulative");
    enc_double(b, st->fpops_cumulative);
    enc_key(b, "intops_per_cpu_sec");
    enc_double(b, st->intops_per_cpu_sec);
    enc_key(b, "intops_cumulative");
    enc_double(b, st->intops_cumulative);
    enc_key(b, "critical_section");
    enc_bool(b, st->critical_section);
    enc_key(b, "want_network");
    enc_bool(b, st->want_network);
    enc_key(b, "td_ack");
    enc_uint(b, st->td_ack);
    enc_key(b, "events");
    enc_hdr(b, 0, st->n_events);
    for (size_t i = 0; i < st->n_events; i++) {
        const boinc_guest_event* e = &st->events[i];
        switch (e->type) {
        case BOINC_GUEST_EV_TRICKLE_UP:
            enc_hdr(b, 1, 4);
            enc_key(b, "id");
            enc_uint(b, e->id);
            enc_key(b, "type");
            enc_key(b, "trickle_up");
            enc_key(b, "variety");
            enc_str(b, e->s1.ptr, e->s1.len);
            enc_key(b, "text");
            enc_str(b, e->s2.ptr, e->s2.len);
            break;
        case BOINC_GUEST_EV_UPLOAD:
            enc_hdr(b, 1, 3);
            enc_key(b, "id");
            enc_uint(b, e->id);
            enc_key(b, "type");
            enc_key(b, "upload");
            enc_key(b, "name");
            enc_str(b, e->s1.ptr, e->s1.len);
            break;
        case BOINC_GUEST_EV_FINISH:
            enc_hdr(b, 1, 5);
            enc_key(b, "id");
            enc_uint(b, e->id);
            enc_key(b, "type");
            enc_key(b, "finish");
            enc_key(b, "status");
            enc_int(b, e->status);
            enc_key(b, "message");
            enc_str(b, e->s1.ptr, e->s1.len);
            enc_key(b, "is_notice");
            enc_bool(b, e->is_notice);
            break;
        case BOINC_GUEST_EV_TEMPORARY_EXIT:
            enc_hdr(b, 1, 5);
            enc_key(b, "id");
            enc_uint(b, e->id);
            enc_key(b, "type");
            enc_key(b, "temporary_exit");
            enc_key(b, "delay");
            enc_double(b, e->delay);
            enc_key(b, "reason");
            enc_str(b, e->s1.ptr, e->s1.len);
            enc_key(b, "is_notice");
            enc_bool(b, e->is_notice);
            break;
        default:
            b->failed = 1;
            return ERR_INVALID_PARAM;
        }
    }
    return b->failed ? ERR_BUFFER_OVERFLOW : 0;
}

int boinc_guest_encode_status(const boinc_guest_status* st, unsigned char* out, size_t cap,
                              size_t* out_len) {
    if (!st || !out) return ERR_NULL;
    bg_buf b = {out, 0, cap, 1, 0};
    int rc = bg_encode_status(&b, st);
    if (rc) return rc;
    if (out_len) *out_len = b.len;
    return 0;
}

/* ==== decoder ==================================================================================
 * Two phases, as the Python reference (protocol.py) checks a file:
 *  1. a structural pass over the whole buffer: valid msgpack, nothing past the end, no trailing
 *     bytes, no ext types, UTF-8 strings, str/bin map keys, nesting depth (the top level is at depth 1;
 *     nothing may be deeper than 8), then no NaN / infinity anywhere;
 *  2. the schema: each map is indexed once (a repeated key: the last one counts), then the known
 *     fields are checked in the documented order (missing / type / range).
 * Errors are "<category>: <where>: <what>" with category size, format, version, missing, type or
 * range (the categories of tests/vectors/invalid.json). */

enum { T_NIL, T_BOOL, T_UINT, T_NINT, T_FLOAT, T_STR, T_BIN, T_ARRAY, T_MAP };

typedef struct obj {
    int t;
    int b;
    uint64_t u;             /* T_UINT */
    int64_t i;              /* T_NINT (< 0) */
    double f;               /* T_FLOAT */
    const unsigned char* s; /* T_STR / T_BIN */
    size_t n;               /* string length, or item count of T_ARRAY / T_MAP */
} obj;

typedef struct rd {
    const unsigned char* p;
    size_t n, pos;
    char* err;
    size_t errcap;
    int failed;
    int nonfinite; /* phase 1: a NaN / infinity was seen */
    const char* kind; /* "status" / "control" */
} rd;

static int fail(rd* r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(rd* r, const char* fmt, ...) {
    if (!r->failed && r->err && r->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errcap, fmt, ap);
        va_end(ap);
    }
    r->failed = 1;
    return -1;
}

static int need(rd* r, size_t k) {
    if (r->n - r->pos < k)
        return fail(r, "format: %s file: truncated (a value at byte %zu runs past the end)", r->kind, r->pos);
    return 0;
}

static uint64_t be(const unsigned char* p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | p[i];
    return v;
}

/* Reads one value's header (and a string's bytes). Containers: o->n items follow. */
static int rd_obj(rd* r, obj* o) {
    if (need(r, 1)) return -1;
    unsigned char c = r->p[r->pos++];
    size_t len = 0;
    int lb = 0;
    memset(o, 0, sizeof(*o));
    if (c <= 0x7F) {
        o->t = T_UINT;
        o->u = c;
        return 0;
    }
    if (c >= 0xE0) {
        o->t = T_NINT;
        o->i = (int8_t)c;
        return 0;
    }
    if ((c & 0xF0) == 0x80 || (c & 0xF0) == 0x90) {
        o->t = (c & 0xF0) == 0x80 ? T_MAP : T_ARRAY;
        o->n = c & 0x0F;
        goto container;
    }
    if ((c & 0xE0) == 0xA0) {
        o->t = T_STR;
        len = c & 0x1F;
        goto bytes;
    }
    switch (c) {
    case 0xC0:
        o->t = T_NIL;
        return 0;
    case 0xC2:
    case 0xC3:
        o->t = T_BOOL;
        o->b = c == 0xC3;
        return 0;
    case 0xC4: case 0xC5: case 0xC6:
        o->t = T_BIN;
        lb = 1 << (c - 0xC4);
        break;
    case 0xD9: case 0xDA: case 0xDB:
        o->t = T_STR;
        lb = 1 << (c - 0xD9);
        break;
    case 0xCA:
        if (need(r, 4)) return -1;
        {
            uint32_t bits = (uint32_t)be(r->p + r->pos, 4);
            float f;
            memcpy(&f, &bits, 4);
            o->t = T_FLOAT;
            o->f = f;
        }
        r->pos += 4;
        return 0;
    case 0xCB:
        if (need(r, 8)) return -1;
        {
            uint64_t bits = be(r->p + r->pos, 8);
            memcpy(&o->f, &bits, 8);
            o->t = T_FLOAT;
        }
        r->pos += 8;
        return 0;
    case 0xCC: case 0xCD: case 0xCE: case 0xCF: {
        int k = 1 << (c - 0xCC);
        if (need(r, (size_t)k)) return -1;
        o->t = T_UINT;
        o->u = be(r->p + r->pos, k);
        r->pos += (size_t)k;
        return 0;
    }
    case 0xD0: case 0xD1: case 0xD2: case 0xD3: {
        int k = 1 << (c - 0xD0);
        if (need(r, (size_t)k)) return -1;
        uint64_t u = be(r->p + r->pos, k);
        int64_t v;
        if (k == 1) v = (int8_t)u;
        else if (k == 2) v = (int16_t)u;
        else if (k == 4) v = (int32_t)u;
        else v = (int64_t)u;
        r->pos += (size_t)k;
        if (v >= 0) {
            o->t = T_UINT;
            o->u = (uint64_t)v;
        } else {
            o->t = T_NINT;
            o->i = v;
        }
        return 0;
    }
    case 0xDC: case 0xDD:
        o->t = T_ARRAY;
        lb = c == 0xDC ? 2 : 4;
        if (need(r, (size_t)lb)) return -1;
        o->n = (size_t)be(r->p + r->pos, lb);
        r->pos += (size_t)lb;
        goto container;
    case 0xDE: case 0xDF:
        o->t = T_MAP;
        lb = c == 0xDE ? 2 : 4;
        if (need(r, (size_t)lb)) return -1;
        o->n = (size_t)be(r->p + r->pos, lb);
        r->pos += (size_t)lb;
        goto container;
    case 0xC7: case 0xC8: case 0xC9:
    case 0xD4: case 0xD5: case 0xD6: case 0xD7: case 0xD8:
        return fail(r, "format: %s file: msgpack ext types are not allowed (byte %zu)", r->kind, r->pos - 1);
    default:
        return fail(r, "format: %s file: 0x%02x is not a msgpack type (byte %zu)", r->kind, c, r->pos - 1);
    }
    /* str8/16/32, bin8/16/32 */
    if (need(r, (size_t)lb)) return -1;
    len = (size_t)be(r->p + r->pos, lb);
    r->pos += (size_t)lb;
bytes:
    if (need(r, len)) return -1;
    o->s = r->p + r->pos;
    o->n = len;
    r->pos += len;
    if (o->t == T_STR && !utf8_valid(o->s, len))
        return fail(r, "format: %s file: a string is not valid UTF-8 (byte %zu)", r->kind, r->pos - len);
    return 0;
container:
    /* every item takes at least one byte: a count larger than what is left is a lie */
    if (o->n > (r->n - r->pos) / (o->t == T_MAP ? 2 : 1))
        return fail(r, "format: %s file: truncated (a container announces %zu items)", r->kind, o->n);
    return 0;
}

/* Phase 1: one value at depth `depth`, recursively. */
static int scan(rd* r, int depth) {
    obj o;
    if (rd_obj(r, &o)) return -1;
    if (o.t == T_FLOAT && (isnan(o.f) || isinf(o.f))) r->nonfinite = 1;
    if (o.t != T_ARRAY && o.t != T_MAP) return 0;
    if (o.n > 0 && depth >= BOINC_GUEST_MAX_DEPTH)
        return fail(r, "format: %s file: nested deeper than %d levels", r->kind, BOINC_GUEST_MAX_DEPTH);
    for (size_t i = 0; i < o.n; i++) {
        if (o.t == T_MAP) {
            obj k;
            if (rd_obj(r, &k)) return -1;
            if (k.t != T_STR && k.t != T_BIN)
                return fail(r, "format: %s file: a map key is not a string (byte %zu)", r->kind, r->pos);
        }
        if (scan(r, depth + 1)) return -1;
    }
    return 0;
}

static int structure(rd* r) {
    if (r->n > BOINC_GUEST_MAX_FILE)
        return fail(r, "size: %s file: %zu bytes, more than %d", r->kind, r->n, BOINC_GUEST_MAX_FILE);
    if (r->n == 0) return fail(r, "format: %s file: empty", r->kind);
    if (scan(r, 1)) return -1;
    if (r->pos != r->n)
        return fail(r, "format: %s file: %zu trailing bytes after the top-level value", r->kind, r->n - r->pos);
    if (r->nonfinite) return fail(r, "range: %s file: NaN or infinity is not allowed", r->kind);
    r->pos = 0;
    return 0;
}

/* Skips one (structurally valid) value. */
static void skip(rd* r) {
    obj o;
    if (rd_obj(r, &o)) return;
    if (o.t == T_ARRAY || o.t == T_MAP)
        for (size_t i = 0; i < o.n * (o.t == T_MAP ? 2 : 1); i++) skip(r);
}

#define ABSENT ((size_t)-1)

/* Phase 2: the map at the reader's position, indexed: offs[j] = offset of the value of keys[j]
 * (the last one if repeated) or ABSENT. On return the reader is past the map. */
static int index_map(rd* r, const char* where, const char* const* keys, int nkeys, size_t* offs) {
    obj m;
    if (rd_obj(r, &m)) return -1;
    if (m.t != T_MAP) return fail(r, "type: %s: a map is required", where);
    for (int j = 0; j < nkeys; j++) offs[j] = ABSENT;
    for (size_t i = 0; i < m.n; i++) {
        obj k;
        rd_obj(r, &k);
        for (int j = 0; j < nkeys; j++) {
            size_t l = strlen(keys[j]);
            if (k.t == T_STR && k.n == l && memcmp(k.s, keys[j], l) == 0) offs[j] = r->pos;
        }
        skip(r);
    }
    return 0;
}

typedef enum { K_UINT, K_INT, K_INT32, K_NTHREADS, K_FRAC, K_NNFLOAT, K_BOOL, K_STR, K_NAME } kind_t;

typedef struct field {
    const char* name;
    kind_t kind;
    size_t maxlen; /* K_STR */
    size_t minlen; /* K_STR */
} field;

typedef union value {
    uint64_t u;
    int64_t i;
    double f;
    int b;
    boinc_guest_str s;
} value;

static int dup_str(rd* r, const char* where, const obj* o, boinc_guest_str* out) {
    char* p = malloc(o->n + 1);
    if (!p) return fail(r, "memory: %s: out of memory", where);
    if (o->n) memcpy(p, o->s, o->n);
    p[o->n] = 0;
    out->ptr = p;
    out->len = o->n;
    return 0;
}

/* Checks the value at offset off against kind; where = "<kind> field '<path>'". */
static int check(rd* r, size_t off, const field* f, const char* where, value* out) {
    obj o;
    r->pos = off;
    rd_obj(r, &o);
    switch (f->kind) {
    case K_UINT: case K_INT: case K_INT32: case K_NTHREADS:
        if (o.t != T_UINT && o.t != T_NINT) return fail(r, "type: %s: not an integer", where);
        if (f->kind == K_UINT || f->kind == K_NTHREADS) {
            if (o.t == T_NINT) return fail(r, "range: %s: %lld is negative", where, (long long)o.i);
            if (f->kind == K_NTHREADS && o.u < 1) return fail(r, "range: %s: must be at least 1", where);
            out->u = o.u;
            return 0;
        }
        if (o.t == T_UINT && o.u > (uint64_t)INT64_MAX)
            return fail(r, "range: %s: %llu is too large", where, (unsigned long long)o.u);
        out->i = o.t == T_UINT ? (int64_t)o.u : o.i;
        if (f->kind == K_INT32 && (out->i < INT32_MIN || out->i > INT32_MAX))
            return fail(r, "range: %s: %lld is outside int32", where, (long long)out->i);
        return 0;
    case K_FRAC: case K_NNFLOAT: {
        double v;
        if (o.t == T_FLOAT) v = o.f;
        else if (o.t == T_UINT) v = (double)o.u;
        else if (o.t == T_NINT) v = (double)o.i;
        else return fail(r, "type: %s: not a number", where);
        if (isnan(v) || isinf(v)) return fail(r, "range: %s: not a finite number", where);
        if (f->kind == K_FRAC && !(v >= 0.0 && v <= 1.0))
            return fail(r, "range: %s: %.17g is outside [0, 1]", where, v);
        if (f->kind == K_NNFLOAT && v < 0.0) return fail(r, "range: %s: %.17g is negative", where, v);
        out->f = v;
        return 0;
    }
    case K_BOOL:
        if (o.t != T_BOOL) return fail(r, "type: %s: not a boolean", where);
        out->b = o.b;
        return 0;
    case K_STR:
        if (o.t != T_STR) return fail(r, "type: %s: not a string", where);
        if (o.n > f->maxlen) return fail(r, "range: %s: %zu bytes, more than %zu", where, o.n, f->maxlen);
        if (o.n < f->minlen) return fail(r, "range: %s: empty string", where);
        return dup_str(r, where, &o, &out->s);
    case K_NAME:
        if (o.t != T_STR) return fail(r, "type: %s: not a string", where);
        if (o.n > BOINC_GUEST_MAX_NAME)
            return fail(r, "range: %s: %zu bytes, more than %d", where, o.n, BOINC_GUEST_MAX_NAME);
        if (o.n == 0 || memchr(o.s, '/', o.n) || memchr(o.s, 0, o.n) ||
            (o.n == 1 && o.s[0] == '.') || (o.n == 2 && o.s[0] == '.' && o.s[1] == '.'))
            return fail(r, "range: %s: not a plain file name (empty, '/', NUL, . or ..)", where);
        return dup_str(r, where, &o, &out->s);
    }
    return fail(r, "format: %s: unknown field kind", where);
}

#define MAXF 24

/* Checks the fields `spec` of the map at the reader's position; values[j] gets field j. */
static int fields(rd* r, const char* mapwhere, const char* path, const field* spec, int nf, value* values) {
    const char* keys[MAXF];
    size_t offs[MAXF];
    char where[128];
    for (int j = 0; j < nf; j++) keys[j] = spec[j].name;
    size_t start = r->pos;
    if (index_map(r, mapwhere, keys, nf, offs)) return -1;
    size_t end = r->pos;
    (void)start;
    for (int j = 0; j < nf; j++) {
        snprintf(where, sizeof(where), "%s field '%s%s%s'", r->kind, path, *path ? "." : "", spec[j].name);
        if (offs[j] == ABSENT) return fail(r, "missing: %s: required key is missing", where);
        if (check(r, offs[j], &spec[j], where, &values[j])) return -1;
    }
    r->pos = end;
    return 0;
}

static void free_values(const field* spec, int nf, value* values) {
    for (int j = 0; j < nf; j++)
        if (spec[j].kind == K_STR || spec[j].kind == K_NAME) free((void*)values[j].s.ptr);
}

/* v: present, an integer (not a boolean), equal to 1; else a "version" error. */
static int version(rd* r, size_t off) {
    if (off == ABSENT) return fail(r, "version: %s file: key 'v' (schema version) is missing", r->kind);
    obj o;
    r->pos = off;
    rd_obj(r, &o);
    if (!(o.t == T_UINT && o.u == BOINC_GUEST_PROTOCOL_VERSION))
        return fail(r, "version: %s file: unknown schema version (this program speaks version %d)", r->kind,
                    BOINC_GUEST_PROTOCOL_VERSION);
    return 0;
}

/* The top map indexed for v plus `extra` keys; leaves the reader at the array/map of key j via
 * offs. */
static int top(rd* r, const char* const* keys, int nkeys, size_t* offs) {
    char where[64];
    snprintf(where, sizeof(where), "%s file", r->kind);
    r->pos = 0;
    return index_map(r, where, keys, nkeys, offs);
}

/* An array at off (bound maxn); sets *n and leaves the reader at its first item. */
static int array_at(rd* r, size_t off, const char* where, size_t maxn, size_t* n) {
    obj a;
    r->pos = off;
    rd_obj(r, &a);
    if (a.t != T_ARRAY) return fail(r, "type: %s: an array is required", where);
    if (a.n > maxn) return fail(r, "range: %s: %zu items, more than %zu", where, a.n, maxn);
    *n = a.n;
    return 0;
}

/* ---- control ---- */

static const field control_fields[] = {
    {"seq", K_UINT, 0, 0},          {"suspended", K_BOOL, 0, 0}, {"quit", K_BOOL, 0, 0},
    {"abort", K_BOOL, 0, 0},        {"network_suspended", K_BOOL, 0, 0}, {"ack", K_UINT, 0, 0},
};
#define S_INIT BOINC_GUEST_MAX_INIT_STRING
static const field init_fields[] = {
    {"app_name", K_STR, S_INIT, 0},  {"wu_name", K_STR, S_INIT, 0},   {"result_name", K_STR, S_INIT, 0},
    {"project_preferences", K_STR, S_INIT, 0}, {"user_name", K_STR, S_INIT, 0},
    {"team_name", K_STR, S_INIT, 0}, {"master_url", K_STR, S_INIT, 0}, {"userid", K_INT, 0, 0},
    {"teamid", K_INT, 0, 0},         {"hostid", K_INT, 0, 0},         {"app_version", K_INT, 0, 0},
    {"checkpoint_period", K_NNFLOAT, 0, 0}, {"nthreads", K_NTHREADS, 0, 0},
    {"fraction_done_start", K_FRAC, 0, 0},  {"fraction_done_end", K_FRAC, 0, 0},
    {"wu_cpu_time", K_NNFLOAT, 0, 0},       {"starting_elapsed_time", K_NNFLOAT, 0, 0},
    {"rsc_fpops_est", K_NNFLOAT, 0, 0},     {"rsc_fpops_bound", K_NNFLOAT, 0, 0},
    {"rsc_memory_bound", K_NNFLOAT, 0, 0},  {"rsc_disk_bound", K_NNFLOAT, 0, 0},
    {"computation_deadline", K_NNFLOAT, 0, 0},
};
#define N_INIT ((int)(sizeof(init_fields) / sizeof(init_fields[0])))
static const field td_fields[] = {{"id", K_UINT, 0, 0}, {"text", K_STR, BOINC_GUEST_MAX_TEXT, 0}};
static const field up_fields[] = {{"name", K_NAME, 0, 0}, {"status", K_INT32, 0, 0}};

void boinc_guest_control_free(boinc_guest_control* c) {
    if (!c) return;
    boinc_guest_init_data* d = &c->init_data;
    boinc_guest_str* strs[] = {&d->app_name, &d->wu_name, &d->result_name, &d->project_preferences,
                               &d->user_name, &d->team_name, &d->master_url};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) free((void*)strs[i]->ptr);
    for (size_t i = 0; i < c->n_trickle_down; i++) free((void*)c->trickle_down[i].text.ptr);
    free(c->trickle_down);
    for (size_t i = 0; i < c->n_uploads; i++) free((void*)c->uploads[i].name.ptr);
    free(c->uploads);
    memset(c, 0, sizeof(*c));
}

static int decode_control(rd* r, boinc_guest_control* c) {
    static const char* const keys[] = {"v", "seq", "suspended", "quit", "abort", "network_suspended",
                                       "ack", "init_data", "trickle_down", "uploads"};
    size_t offs[10];
    value v[N_INIT];
    if (structure(r)) return -1;
    if (top(r, keys, 10, offs)) return -1;
    if (version(r, offs[0])) return -1;
    r->pos = 0;
    if (fields(r, "control file", "", control_fields, 6, v)) return -1;
    c->v = 1;
    c->seq = v[0].u;
    c->suspended = v[1].b;
    c->quit = v[2].b;
    c->abort = v[3].b;
    c->network_suspended = v[4].b;
    c->ack = v[5].u;
    static const char* const later[] = {"init_data", "trickle_down", "uploads"};
    for (int j = 0; j < 3; j++)
        if (offs[7 + j] == ABSENT)
            return fail(r, "missing: control file: required key '%s' is missing", later[j]);
    /* init_data */
    r->pos = offs[7];
    memset(v, 0, sizeof(v));
    if (fields(r, "control field 'init_data'", "init_data", init_fields, N_INIT, v)) {
        free_values(init_fields, N_INIT, v);
        return -1;
    }
    boinc_guest_init_data* d = &c->init_data;
    d->app_name = v[0].s;
    d->wu_name = v[1].s;
    d->result_name = v[2].s;
    d->project_preferences = v[3].s;
    d->user_name = v[4].s;
    d->team_name = v[5].s;
    d->master_url = v[6].s;
    d->userid = v[7].i;
    d->teamid = v[8].i;
    d->hostid = v[9].i;
    d->app_version = v[10].i;
    d->checkpoint_period = v[11].f;
    d->nthreads = v[12].u;
    d->fraction_done_start = v[13].f;
    d->fraction_done_end = v[14].f;
    d->wu_cpu_time = v[15].f;
    d->starting_elapsed_time = v[16].f;
    d->rsc_fpops_est = v[17].f;
    d->rsc_fpops_bound = v[18].f;
    d->rsc_memory_bound = v[19].f;
    d->rsc_disk_bound = v[20].f;
    d->computation_deadline = v[21].f;
    /* trickle_down */
    size_t n;
    char where[96];
    if (array_at(r, offs[8], "control field 'trickle_down'", BOINC_GUEST_MAX_EVENTS, &n)) return -1;
    if (n) {
        c->trickle_down = calloc(n, sizeof(*c->trickle_down));
        if (!c->trickle_down) return fail(r, "memory: out of memory");
    }
    uint64_t last = 0;
    for (size_t i = 0; i < n; i++) {
        char path[48];
        snprintf(where, sizeof(where), "control field 'trickle_down[%zu]'", i);
        snprintf(path, sizeof(path), "trickle_down[%zu]", i);
        value tv[2] = {{0}, {0}};
        if (fields(r, where, path, td_fields, 2, tv)) {
            free_values(td_fields, 2, tv);
            return -1;
        }
        c->trickle_down[i].id = tv[0].u;
        c->trickle_down[i].text = tv[1].s;
        c->n_trickle_down = i + 1;
        if (tv[0].u < 1 || tv[0].u <= last)
            return fail(r, "range: control field 'trickle_down[%zu].id': %llu does not follow %llu", i,
                        (unsigned long long)tv[0].u, (unsigned long long)last);
        last = tv[0].u;
    }
    /* uploads */
    if (array_at(r, offs[9], "control field 'uploads'", BOINC_GUEST_MAX_EVENTS, &n)) return -1;
    if (n) {
        c->uploads = calloc(n, sizeof(*c->uploads));
        if (!c->uploads) return fail(r, "memory: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char path[48];
        snprintf(where, sizeof(where), "control field 'uploads[%zu]'", i);
        snprintf(path, sizeof(path), "uploads[%zu]", i);
        value uv[2] = {{0}, {0}};
        if (fields(r, where, path, up_fields, 2, uv)) {
            free_values(up_fields, 2, uv);
            return -1;
        }
        c->uploads[i].name = uv[0].s;
        c->uploads[i].status = uv[1].i;
        c->n_uploads = i + 1;
    }
    return 0;
}

int boinc_guest_decode_control(const unsigned char* buf, size_t len, boinc_guest_control* out,
                               char* err, size_t errcap) {
    rd r = {buf, len, 0, err, errcap, 0, 0, "control"};
    if (err && errcap) err[0] = 0;
    if (!out || (!buf && len)) return ERR_NULL;
    memset(out, 0, sizeof(*out));
    if (decode_control(&r, out) == 0) return 0;
    boinc_guest_control_free(out);
    return len > BOINC_GUEST_MAX_FILE ? ERR_FILE_TOO_BIG : ERR_XML_PARSE;
}

/* ---- status ---- */

static const field status_fields[] = {
    {"seq", K_UINT, 0, 0},
    {"hb", K_UINT, 0, 0},
    {"fraction_done", K_FRAC, 0, 0},
    {"cpu_time", K_NNFLOAT, 0, 0},
    {"elapsed_time", K_NNFLOAT, 0, 0},
    {"checkpoint_cpu_time", K_NNFLOAT, 0, 0},
    {"checkpoint_count", K_UINT, 0, 0},
    {"fpops_per_cpu_sec", K_NNFLOAT, 0, 0},
    {"fpops_cumulative", K_NNFLOAT, 0, 0},
    {"intops_per_cpu_sec", K_NNFLOAT, 0, 0},
    {"intops_cumulative", K_NNFLOAT, 0, 0},
    {"critical_section", K_BOOL, 0, 0},
    {"want_network", K_BOOL, 0, 0},
    {"td_ack", K_UINT, 0, 0},
};
static const field ev_trickle[] = {{"variety", K_STR, BOINC_GUEST_MAX_NAME, 1},
                                   {"text", K_STR, BOINC_GUEST_MAX_TEXT, 0}};
static const field ev_upload[] = {{"name", K_NAME, 0, 0}};
static const field ev_finish[] = {{"status", K_INT32, 0, 0},
                                  {"message", K_STR, BOINC_GUEST_MAX_MESSAGE, 0},
                                  {"is_notice", K_BOOL, 0, 0}};
static const field ev_temp[] = {{"delay", K_NNFLOAT, 0, 0},
                                {"reason", K_STR, BOINC_GUEST_MAX_MESSAGE, 0},
                                {"is_notice", K_BOOL, 0, 0}};

void boinc_guest_status_free(boinc_guest_status* st) {
    if (!st) return;
    boinc_guest_event* evs = (boinc_guest_event*)st->events;
    for (size_t i = 0; i < st->n_events; i++) {
        free((void*)evs[i].s1.ptr);
        free((void*)evs[i].s2.ptr);
    }
    free(evs);
    memset(st, 0, sizeof(*st));
}

static int decode_status(rd* r, boinc_guest_status* st) {
    static const char* const keys[] = {"v", "events"};
    size_t offs[2];
    value v[14];
    if (structure(r)) return -1;
    if (top(r, keys, 2, offs)) return -1;
    if (version(r, offs[0])) return -1;
    r->pos = 0;
    if (fields(r, "status file", "", status_fields, 14, v)) return -1;
    st->v = 1;
    st->seq = v[0].u;
    st->hb = v[1].u;
    st->fraction_done = v[2].f;
    st->cpu_time = v[3].f;
    st->elapsed_time = v[4].f;
    st->checkpoint_cpu_time = v[5].f;
    st->checkpoint_count = v[6].u;
    st->fpops_per_cpu_sec = v[7].f;
    st->fpops_cumulative = v[8].f;
    st->intops_per_cpu_sec = v[9].f;
    st->intops_cumulative = v[10].f;
    st->critical_section = v[11].b;
    st->want_network = v[12].b;
    st->td_ack = v[13].u;
    if (offs[1] == ABSENT) return fail(r, "missing: status file: required key 'events' is missing");
    size_t n;
    if (array_at(r, offs[1], "status field 'events'", BOINC_GUEST_MAX_EVENTS, &n)) return -1;
    boinc_guest_event* evs = n ? calloc(n, sizeof(*evs)) : NULL;
    if (n && !evs) return fail(r, "memory: out of memory");
    st->events = evs;
    uint64_t last = 0;
    for (size_t i = 0; i < n; i++) {
        static const char* const ekeys[] = {"id", "type"};
        size_t eoffs[2];
        char where[96], path[48];
        snprintf(where, sizeof(where), "status field 'events[%zu]'", i);
        snprintf(path, sizeof(path), "events[%zu]", i);
        size_t item = r->pos;
        if (index_map(r, where, ekeys, 2, eoffs)) return -1;
        size_t next = r->pos;
        if (eoffs[0] == ABSENT) return fail(r, "missing: %s: required key 'id' is missing", where);
        if (eoffs[1] == ABSENT) return fail(r, "missing: %s: required key 'type' is missing", where);
        field fid = {"id", K_UINT, 0, 0};
        value idv;
        char fw[112];
        snprintf(fw, sizeof(fw), "status field 'events[%zu].id'", i);
        if (check(r, eoffs[0], &fid, fw, &idv)) return -1;
        if (idv.u < 1) return fail(r, "range: %s: event ids start at 1", fw);
        if (idv.u <= last)
            return fail(r, "range: %s: %llu does not follow %llu (ids must increase)", fw,
                        (unsigned long long)idv.u, (unsigned long long)last);
        last = idv.u;
        obj t;
        r->pos = eoffs[1];
        rd_obj(r, &t);
        snprintf(fw, sizeof(fw), "status field 'events[%zu].type'", i);
        if (t.t != T_STR) return fail(r, "type: %s: not a string", fw);
        const field* spec;
        int nf, type;
#define IS(name) (t.n == strlen(name) && memcmp(t.s, name, t.n) == 0)
        if (IS("trickle_up")) { spec = ev_trickle; nf = 2; type = BOINC_GUEST_EV_TRICKLE_UP; }
        else if (IS("upload")) { spec = ev_upload; nf = 1; type = BOINC_GUEST_EV_UPLOAD; }
        else if (IS("finish")) { spec = ev_finish; nf = 3; type = BOINC_GUEST_EV_FINISH; }
        else if (IS("temporary_exit")) { spec = ev_temp; nf = 3; type = BOINC_GUEST_EV_TEMPORARY_EXIT; }
        else return fail(r, "range: %s: unknown event type", fw);
#undef IS
        value ev[3];
        memset(ev, 0, sizeof(ev));
        r->pos = item;
        if (fields(r, where, path, spec, nf, ev)) {
            free_values(spec, nf, ev);
            return -1;
        }
        boinc_guest_event* e = &evs[i];
        e->id = idv.u;
        e->type = type;
        switch (type) {
        case BOINC_GUEST_EV_TRICKLE_UP: e->s1 = ev[0].s; e->s2 = ev[1].s; break;
        case BOINC_GUEST_EV_UPLOAD: e->s1 = ev[0].s; break;
        case BOINC_GUEST_EV_FINISH:
            e->status = (int32_t)ev[0].i; e->s1 = ev[1].s; e->is_notice = ev[2].b; break;
        default: e->delay = ev[0].f; e->s1 = ev[1].s; e->is_notice = ev[2].b; break;
        }
        st->n_events = i + 1;
        r->pos = next;
    }
    return 0;
}

int boinc_guest_decode_status(const unsigned char* buf, size_t len, boinc_guest_status* out,
                              char* err, size_t errcap) {
    rd r = {buf, len, 0, err, errcap, 0, 0, "status"};
    if (err && errcap) err[0] = 0;
    if (!out || (!buf && len)) return ERR_NULL;
    memset(out, 0, sizeof(*out));
    if (decode_status(&r, out) == 0) return 0;
    boinc_guest_status_free(out);
    return len > BOINC_GUEST_MAX_FILE ? ERR_FILE_TOO_BIG : ERR_XML_PARSE;
}

/* ==== files ==================================================================================== */

int bg_read_file(const char* path, unsigned char** out, size_t* out_len, char* err, size_t errcap) {
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) return -1;
        snprintf(err, errcap, "cannot open it (%s; a symbolic link is refused)", strerror(errno));
        return -2;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        snprintf(err, errcap, "not a regular file");
        return -2;
    }
    size_t cap = BOINC_GUEST_MAX_FILE + 1;
    size_t want = (sb.st_size >= 0 && (size_t)sb.st_size < cap) ? (size_t)sb.st_size + 1 : cap;
    unsigned char* b = malloc(want ? want : 1);
    if (!b) {
        close(fd);
        snprintf(err, errcap, "out of memory");
        return -2;
    }
    size_t n = 0;
    for (;;) {
        if (n == want) {
            if (want >= cap) break;
            size_t nw = want * 2 < cap ? want * 2 : cap;
            unsigned char* nb = realloc(b, nw);
            if (!nb) {
                free(b);
                close(fd);
                snprintf(err, errcap, "out of memory");
                return -2;
            }
            b = nb;
            want = nw;
        }
        ssize_t k = read(fd, b + n, want - n);
        if (k < 0) {
            if (errno == EINTR) continue;
            free(b);
            close(fd);
            snprintf(err, errcap, "read error (%s)", strerror(errno));
            return -2;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    close(fd);
    if (n > BOINC_GUEST_MAX_FILE) {
        free(b);
        snprintf(err, errcap, "size: larger than the %d-byte bound", BOINC_GUEST_MAX_FILE);
        return -2;
    }
    *out = b;
    *out_len = n;
    return 0;
}

int bg_write_atomic(const char* dir, const char* name, const unsigned char* data, size_t len) {
    char tmp[MAXPATHLEN + 64], dst[MAXPATHLEN + 64];
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= (int)sizeof(tmp) ||
        snprintf(dst, sizeof(dst), "%s/%s", dir, name) >= (int)sizeof(dst)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* O_NOFOLLOW: a symlink planted at the temp name is not followed */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0) {
            if (errno == EINTR) continue;
            goto bad;
        }
        off += (size_t)k;
    }
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) goto bad;
    if (close(fd) != 0) {
        fd = -1;
        goto bad;
    }
    fd = -1;
    if (rename(tmp, dst) != 0) goto bad;
    /* make the rename durable where the file system allows it (some shares refuse: ignored) */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
bad: {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    errno = e;
    return -1;
}
}

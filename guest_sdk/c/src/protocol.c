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
            if (out && o + 3 <= cap) memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
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

/* ==== decoder ================================================================================== */

enum { T_NIL, T_BOOL, T_UINT, T_NINT, T_FLOAT, T_STR, T_BIN, T_ARRAY, T_MAP };

typedef struct obj {
    int t;
    int b;
    uint64_t u;  /* T_UINT */
    int64_t i;   /* T_NINT (< 0) */
    double f;    /* T_FLOAT */
    const unsigned char* s; /* T_STR / T_BIN */
    size_t n;    /* string length, or item count of T_ARRAY / T_MAP */
} obj;

typedef struct rd {
    const unsigned char* p;
    size_t n, pos;
    char* err;
    size_t errcap;
    int failed;
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
    if (r->n - r->pos < k) return fail(r, "truncated: the data ends inside a value at byte %zu", r->pos);
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
        return fail(r, "ext type: msgpack ext types are not allowed (byte %zu)", r->pos - 1);
    default:
        return fail(r, "format: 0x%02x is not a msgpack type (byte %zu)", c, r->pos - 1);
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
        return fail(r, "format: a string is not valid UTF-8 (byte %zu)", r->pos - len);
    return 0;
container:
    /* every item takes at least one byte: a count larger than what is left is a lie */
    if (o->n > (r->n - r->pos) / (o->t == T_MAP ? 2 : 1))
        return fail(r, "truncated: a container announces %zu items but the data ends first", o->n);
    return 0;
}

static int rd_skip_items(rd* r, const obj* o, int depth);

/* Reads and discards one value; depth is the depth a container value would have. */
static int rd_skip(rd* r, int depth) {
    obj o;
    if (rd_obj(r, &o)) return -1;
    if (o.t == T_ARRAY || o.t == T_MAP) return rd_skip_items(r, &o, depth);
    return 0;
}

static int rd_key(rd* r, obj* k) {
    if (rd_obj(r, k)) return -1;
    if (k->t != T_STR && k->t != T_BIN) return fail(r, "format: a map key is not a string");
    return 0;
}

static int rd_skip_items(rd* r, const obj* o, int depth) {
    if (depth > BOINC_GUEST_MAX_DEPTH)
        return fail(r, "depth: nesting deeper than %d levels", BOINC_GUEST_MAX_DEPTH);
    for (size_t i = 0; i < o->n; i++) {
        if (o->t == T_MAP) {
            obj k;
            if (rd_key(r, &k)) return -1;
        }
        if (rd_skip(r, depth + 1)) return -1;
    }
    return 0;
}

static int key_is(const obj* k, const char* name) {
    size_t l = strlen(name);
    return k->t == T_STR && k->n == l && memcmp(k->s, name, l) == 0;
}

/* --- typed field readers (path names the field in errors) --- */

static int get_bool(rd* r, const char* path, int* out) {
    obj o;
    if (rd_obj(r, &o)) return -1;
    if (o.t != T_BOOL) return fail(r, "type: %s: expected a boolean", path);
    *out = o.b;
    return 0;
}

static int get_uint(rd* r, const char* path, uint64_t* out) {
    obj o;
    if (rd_obj(r, &o)) return -1;
    if (o.t == T_NINT) return fail(r, "range: %s: must not be negative", path);
    if (o.t != T_UINT) return fail(r, "type: %s: expected an integer", path);
    *out = o.u;
    return 0;
}

static int get_int(rd* r, const char* path, int64_t* out) {
    obj o;
    if (rd_obj(r, &o)) return -1;
    if (o.t == T_NINT) {
        *out = o.i;
        return 0;
    }
    if (o.t != T_UINT) return fail(r, "type: %s: expected an integer", path);
    if (o.u > (uint64_t)INT64_MAX) return fail(r, "range: %s: integer too large", path);
    *out = (int64_t)o.u;
    return 0;
}

/* A float field (integers accepted); lo..hi inclusive range (hi < 0: no upper bound). */
static int get_float(rd* r, const char* path, double lo, double hi, double* out) {
    obj o;
    double v;
    if (rd_obj(r, &o)) return -1;
    if (o.t == T_FLOAT) v = o.f;
    else if (o.t == T_UINT) v = (double)o.u;
    else if (o.t == T_NINT) v = (double)o.i;
    else return fail(r, "type: %s: expected a number", path);
    if (isnan(v) || isinf(v)) return fail(r, "range: %s: NaN or infinity", path);
    if (v < lo || (hi >= 0 && v > hi)) return fail(r, "range: %s: %g is out of range", path, v);
    *out = v;
    return 0;
}

static int get_str(rd* r, const char* path, size_t minlen, size_t maxlen, boinc_guest_str* out) {
    obj o;
    if (rd_obj(r, &o)) return -1;
    if (o.t != T_STR) return fail(r, "type: %s: expected a string", path);
    if (o.n > maxlen) return fail(r, "range: %s: %zu bytes, more than the bound %zu", path, o.n, maxlen);
    if (o.n < minlen) return fail(r, "range: %s: empty", path);
    char* p = malloc(o.n + 1);
    if (!p) return fail(r, "memory: %s: out of memory", path);
    memcpy(p, o.s, o.n);
    p[o.n] = 0;
    free((void*)out->ptr);
    out->ptr = p;
    out->len = o.n;
    return 0;
}

static int get_map(rd* r, const char* path, int depth, obj* o) {
    if (rd_obj(r, o)) return -1;
    if (o->t != T_MAP) return fail(r, "type: %s: expected a map", path);
    if (depth > BOINC_GUEST_MAX_DEPTH) return fail(r, "depth: nesting deeper than %d levels", BOINC_GUEST_MAX_DEPTH);
    return 0;
}

static int get_array(rd* r, const char* path, int depth, size_t maxn, obj* o) {
    if (rd_obj(r, o)) return -1;
    if (o->t != T_ARRAY) return fail(r, "type: %s: expected an array", path);
    if (depth > BOINC_GUEST_MAX_DEPTH) return fail(r, "depth: nesting deeper than %d levels", BOINC_GUEST_MAX_DEPTH);
    if (o->n > maxn) return fail(r, "range: %s: %zu items, more than the bound %zu", path, o->n, maxn);
    return 0;
}

#define NINIT 22
static const char* const init_keys[NINIT] = {
    "app_name", "wu_name", "result_name", "project_preferences", "user_name", "team_name",
    "master_url", "userid", "teamid", "hostid", "app_version", "checkpoint_period", "nthreads",
    "fraction_done_start", "fraction_done_end", "wu_cpu_time", "starting_elapsed_time",
    "rsc_fpops_est", "rsc_fpops_bound", "rsc_memory_bound", "rsc_disk_bound",
    "computation_deadline"};

static int dec_init_data(rd* r, int depth, boinc_guest_init_data* d) {
    obj m;
    unsigned seen = 0;
    char path[64];
    if (get_map(r, "init_data", depth, &m)) return -1;
    for (size_t i = 0; i < m.n; i++) {
        obj k;
        int idx = -1;
        if (rd_key(r, &k)) return -1;
        for (int j = 0; j < NINIT; j++)
            if (key_is(&k, init_keys[j])) idx = j;
        if (idx < 0) {
            if (rd_skip(r, depth + 1)) return -1;
            continue;
        }
        snprintf(path, sizeof(path), "init_data.%s", init_keys[idx]);
        seen |= 1u << idx;
        int rc;
        const size_t S = BOINC_GUEST_MAX_INIT_STRING;
        switch (idx) {
        case 0: rc = get_str(r, path, 0, S, &d->app_name); break;
        case 1: rc = get_str(r, path, 0, S, &d->wu_name); break;
        case 2: rc = get_str(r, path, 0, S, &d->result_name); break;
        case 3: rc = get_str(r, path, 0, S, &d->project_preferences); break;
        case 4: rc = get_str(r, path, 0, S, &d->user_name); break;
        case 5: rc = get_str(r, path, 0, S, &d->team_name); break;
        case 6: rc = get_str(r, path, 0, S, &d->master_url); break;
        case 7: rc = get_int(r, path, &d->userid); break;
        case 8: rc = get_int(r, path, &d->teamid); break;
        case 9: rc = get_int(r, path, &d->hostid); break;
        case 10: rc = get_int(r, path, &d->app_version); break;
        case 11: rc = get_float(r, path, 0, -1, &d->checkpoint_period); break;
        case 12:
            rc = get_uint(r, path, &d->nthreads);
            if (!rc && d->nthreads < 1) rc = fail(r, "range: %s: must be at least 1", path);
            break;
        case 13: rc = get_float(r, path, 0, 1, &d->fraction_done_start); break;
        case 14: rc = get_float(r, path, 0, 1, &d->fraction_done_end); break;
        case 15: rc = get_float(r, path, 0, -1, &d->wu_cpu_time); break;
        case 16: rc = get_float(r, path, 0, -1, &d->starting_elapsed_time); break;
        case 17: rc = get_float(r, path, 0, -1, &d->rsc_fpops_est); break;
        case 18: rc = get_float(r, path, 0, -1, &d->rsc_fpops_bound); break;
        case 19: rc = get_float(r, path, 0, -1, &d->rsc_memory_bound); break;
        case 20: rc = get_float(r, path, 0, -1, &d->rsc_disk_bound); break;
        default: rc = get_float(r, path, 0, -1, &d->computation_deadline); break;
        }
        if (rc) return -1;
    }
    for (int j = 0; j < NINIT; j++)
        if (!(seen & (1u << j))) return fail(r, "missing: init_data.%s: required key absent", init_keys[j]);
    return 0;
}

static int dec_trickle_downs(rd* r, int depth, boinc_guest_control* c) {
    obj a;
    if (get_array(r, "trickle_down", depth, BOINC_GUEST_MAX_EVENTS, &a)) return -1;
    for (size_t i = 0; i < c->n_trickle_down; i++) free((void*)c->trickle_down[i].text.ptr);
    free(c->trickle_down);
    c->trickle_down = NULL;
    c->n_trickle_down = 0;
    if (a.n) {
        c->trickle_down = calloc(a.n, sizeof(*c->trickle_down));
        if (!c->trickle_down) return fail(r, "memory: trickle_down: out of memory");
    }
    for (size_t i = 0; i < a.n; i++) {
        boinc_guest_trickle_down* t = &c->trickle_down[i];
        obj m;
        int have_id = 0, have_text = 0;
        char path[64];
        snprintf(path, sizeof(path), "trickle_down[%zu]", i);
        if (get_map(r, path, depth + 1, &m)) return -1;
        c->n_trickle_down = i + 1;
        for (size_t j = 0; j < m.n; j++) {
            obj k;
            if (rd_key(r, &k)) return -1;
            if (key_is(&k, "id")) {
                snprintf(path, sizeof(path), "trickle_down[%zu].id", i);
                if (get_uint(r, path, &t->id)) return -1;
                have_id = 1;
            } else if (key_is(&k, "text")) {
                snprintf(path, sizeof(path), "trickle_down[%zu].text", i);
                if (get_str(r, path, 0, BOINC_GUEST_MAX_TEXT, &t->text)) return -1;
                have_text = 1;
            } else if (rd_skip(r, depth + 2)) {
                return -1;
            }
        }
        if (!have_id) return fail(r, "missing: trickle_down[%zu].id: required key absent", i);
        if (!have_text) return fail(r, "missing: trickle_down[%zu].text: required key absent", i);
        if (i > 0 && t->id <= c->trickle_down[i - 1].id)
            return fail(r, "order: trickle_down[%zu].id: ids must be strictly increasing", i);
    }
    return 0;
}

static int dec_uploads(rd* r, int depth, boinc_guest_control* c) {
    obj a;
    if (get_array(r, "uploads", depth, BOINC_GUEST_MAX_EVENTS, &a)) return -1;
    for (size_t i = 0; i < c->n_uploads; i++) free((void*)c->uploads[i].name.ptr);
    free(c->uploads);
    c->uploads = NULL;
    c->n_uploads = 0;
    if (a.n) {
        c->uploads = calloc(a.n, sizeof(*c->uploads));
        if (!c->uploads) return fail(r, "memory: uploads: out of memory");
    }
    for (size_t i = 0; i < a.n; i++) {
        boinc_guest_upload_result* u = &c->uploads[i];
        obj m;
        int have_name = 0, have_status = 0;
        char path[64];
        snprintf(path, sizeof(path), "uploads[%zu]", i);
        if (get_map(r, path, depth + 1, &m)) return -1;
        c->n_uploads = i + 1;
        for (size_t j = 0; j < m.n; j++) {
            obj k;
            if (rd_key(r, &k)) return -1;
            if (key_is(&k, "name")) {
                snprintf(path, sizeof(path), "uploads[%zu].name", i);
                if (get_str(r, path, 1, BOINC_GUEST_MAX_NAME, &u->name)) return -1;
                have_name = 1;
            } else if (key_is(&k, "status")) {
                snprintf(path, sizeof(path), "uploads[%zu].status", i);
                if (get_int(r, path, &u->status)) return -1;
                have_status = 1;
            } else if (rd_skip(r, depth + 2)) {
                return -1;
            }
        }
        if (!have_name) return fail(r, "missing: uploads[%zu].name: required key absent", i);
        if (!have_status) return fail(r, "missing: uploads[%zu].status: required key absent", i);
    }
    return 0;
}

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

#define NTOP 10
static const char* const top_keys[NTOP] = {"v", "seq", "suspended", "quit", "abort",
                                           "network_suspended", "ack", "init_data",
                                           "trickle_down", "uploads"};

int boinc_guest_decode_control(const unsigned char* buf, size_t len, boinc_guest_control* out,
                               char* err, size_t errcap) {
    rd r = {buf, len, 0, err, errcap, 0};
    boinc_guest_control c;
    obj m;
    unsigned seen = 0;
    memset(&c, 0, sizeof(c));
    if (err && errcap) err[0] = 0;
    if (!out) return ERR_NULL;
    memset(out, 0, sizeof(*out));
    if (!buf && len) return ERR_NULL;
    if (len > BOINC_GUEST_MAX_FILE) {
        fail(&r, "size: %zu bytes, more than the %d-byte bound", len, BOINC_GUEST_MAX_FILE);
        return ERR_FILE_TOO_BIG;
    }
    if (len == 0) {
        fail(&r, "truncated: empty file");
        return ERR_XML_PARSE;
    }
    if (get_map(&r, "(top level)", 1, &m)) goto bad;
    for (size_t i = 0; i < m.n; i++) {
        obj k;
        int idx = -1;
        if (rd_key(&r, &k)) goto bad;
        for (int j = 0; j < NTOP; j++)
            if (key_is(&k, top_keys[j])) idx = j;
        if (idx < 0) {
            if (rd_skip(&r, 2)) goto bad;
            continue;
        }
        seen |= 1u << idx;
        int rc;
        switch (idx) {
        case 0:
            rc = get_int(&r, "v", &c.v);
            if (!rc && c.v != BOINC_GUEST_PROTOCOL_VERSION)
                rc = fail(&r, "version: v: unknown schema version %lld (this SDK reads version 1)",
                          (long long)c.v);
            break;
        case 1: rc = get_uint(&r, "seq", &c.seq); break;
        case 2: rc = get_bool(&r, "suspended", &c.suspended); break;
        case 3: rc = get_bool(&r, "quit", &c.quit); break;
        case 4: rc = get_bool(&r, "abort", &c.abort); break;
        case 5: rc = get_bool(&r, "network_suspended", &c.network_suspended); break;
        case 6: rc = get_uint(&r, "ack", &c.ack); break;
        case 7: rc = dec_init_data(&r, 2, &c.init_data); break;
        case 8: rc = dec_trickle_downs(&r, 2, &c); break;
        default: rc = dec_uploads(&r, 2, &c); break;
        }
        if (rc) goto bad;
    }
    for (int j = 0; j < NTOP; j++)
        if (!(seen & (1u << j))) {
            fail(&r, "missing: %s: required key absent", top_keys[j]);
            goto bad;
        }
    if (r.pos != r.n) {
        fail(&r, "format: %zu bytes of extra data after the map", r.n - r.pos);
        goto bad;
    }
    *out = c;
    return 0;
bad:
    boinc_guest_control_free(&c);
    return ERR_XML_PARSE;
}

/* Lenient scan of an existing status file for seq, the largest event id and td_ack. */
int bg_scan_status(const unsigned char* buf, size_t len, uint64_t* seq, uint64_t* max_id,
                   uint64_t* td_ack) {
    rd r = {buf, len, 0, NULL, 0, 0};
    obj m;
    *seq = *max_id = *td_ack = 0;
    if (get_map(&r, "(top level)", 1, &m)) return -1;
    for (size_t i = 0; i < m.n; i++) {
        obj k;
        if (rd_key(&r, &k)) return -1;
        if (key_is(&k, "seq")) {
            if (get_uint(&r, "seq", seq)) return -1;
        } else if (key_is(&k, "td_ack")) {
            if (get_uint(&r, "td_ack", td_ack)) return -1;
        } else if (key_is(&k, "events")) {
            obj a;
            if (get_array(&r, "events", 2, BOINC_GUEST_MAX_EVENTS, &a)) return -1;
            for (size_t j = 0; j < a.n; j++) {
                obj em;
                if (get_map(&r, "events[]", 3, &em)) return -1;
                for (size_t q = 0; q < em.n; q++) {
                    obj ek;
                    if (rd_key(&r, &ek)) return -1;
                    if (key_is(&ek, "id")) {
                        uint64_t id;
                        if (get_uint(&r, "events[].id", &id)) return -1;
                        if (id > *max_id) *max_id = id;
                    } else if (rd_skip(&r, 4)) {
                        return -1;
                    }
                }
            }
        } else if (rd_skip(&r, 2)) {
            return -1;
        }
    }
    return r.pos == r.n ? 0 : -1;
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
    return 0;
bad: {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    errno = e;
    return -1;
}
}

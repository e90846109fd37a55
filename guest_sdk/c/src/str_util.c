/* str_util.c - the C string helpers of BOINC's lib/str_util.h (see include/str_util.h). Kept in its
 * own object file so that a static link pulls it in only for an app that calls them. */
#include <ctype.h>
#include <string.h>

#include "str_util.h"

static int ascii_space(char c) { return (unsigned char)c < 128 && isspace((unsigned char)c); }

/* As BOINC's: ASCII white space at both ends goes; a non-ASCII byte stops the stripping. */
void strip_whitespace(char* str) {
    if (!str) return;
    size_t n = strlen(str), a = 0;
    while (a < n && ascii_space(str[a])) a++;
    while (n > a && ascii_space(str[n - 1])) n--;
    memmove(str, str + a, n - a);
    str[n - a] = 0;
}

/* As BOINC's: tokens are separated by white space; a token that starts with ' or " runs to the next
 * same quote (the quotes are dropped, white space inside is kept). The line is cut up in place;
 * argv gets a pointer to each token and a NULL after the last. Returns the number of tokens. */
int parse_command_line(char* p, char** argv) {
    enum { OUT, SINGLE, DOUBLE, PLAIN } state = OUT;
    int argc = 0;
    if (!p || !argv) return 0;
    for (; *p; p++) {
        switch (state) {
        case OUT:
            if (isspace((unsigned char)*p)) break;
            if (*p == '\'' || *p == '"') {
                state = *p == '\'' ? SINGLE : DOUBLE;
                argv[argc++] = p + 1;
            } else {
                state = PLAIN;
                argv[argc++] = p;
            }
            break;
        case SINGLE:
        case DOUBLE:
            if (*p == (state == SINGLE ? '\'' : '"')) {
                *p = 0;
                state = OUT;
            }
            break;
        case PLAIN:
            if (isspace((unsigned char)*p)) {
                *p = 0;
                state = OUT;
            }
            break;
        }
    }
    argv[argc] = 0;
    return argc;
}

void strcpy_overlap(char* dst, const char* src) {
    if (dst && src) memmove(dst, src, strlen(src) + 1);
}

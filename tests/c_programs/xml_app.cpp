// xml_app: BOINC's XML helpers on awkward input. Prints one line per check; the same source built
// against BOINC 7.20.5's own headers and libboinc must print the same lines (tests/test_c_sdk_headers.py).
#include "parse.h"
#include "miofile.h"
#include "str_util.h"
#include <cstdio>
#include <cstring>
#include <string>

static const char* DOC =
    "<?xml version=\"1.0\"?>\n"
    "<!-- a comment <with> tags -->\n"
    "<prefs>\n"
    "  <n>  42 </n>\n"
    "  <hex>0x1f</hex>\n"
    "  <x>2.5e3</x>\n"
    "  <name>a &lt;b&gt; &amp; c</name>\n"
    "  <empty></empty>\n"
    "  <flag/>\n"
    "  <off>0</off>\n"
    "  <nested><n>7</n><deep><n>8</n></deep></nested>\n"
    "  <big>18446744073709551615</big>\n"
    "  <after>yes</after>\n"
    "</prefs>\n";

int main() {
    MIOFILE mf;
    XML_PARSER xp(&mf);
    mf.init_buf_read(DOC);
    int n = 0, hex = 0;
    double x = 0;
    char name[64] = "", empty[8] = "?", after[16] = "";
    bool flag = false, off = true;
    unsigned long long big = 0;
    int tags = 0;
    while (!xp.get_tag()) {
        if (!xp.is_tag) continue;
        tags++;
        if (xp.parse_int("n", n)) continue;
        if (xp.parse_int("hex", hex)) continue;
        if (xp.parse_double("x", x)) continue;
        if (xp.parse_str("name", name, sizeof(name))) continue;
        if (xp.parse_str("empty", empty, sizeof(empty))) continue;
        if (xp.parse_bool("flag", flag)) continue;
        if (xp.parse_bool("off", off)) continue;
        if (xp.parse_ulonglong("big", big)) continue;
        if (xp.parse_str("after", after, sizeof(after))) continue;
        if (xp.match_tag("nested")) {
            xp.skip_unexpected(false, "xml_app");
            continue;
        }
    }
    printf("n=%d hex=%d x=%g name=[%s] empty=[%s] flag=%d off=%d big=%llu after=[%s] tags=%d\n", n, hex, x,
           name, empty, flag, off, big, after, tags);

    const char* buf = "<a>  hello &amp; bye </a><b>12</b><c>3.5</c><d/><e>1</e>";
    char s[64] = "";
    std::string ss;
    int b = 0;
    double c = 0;
    bool d = false, e = false, f = true;
    bool r1 = parse_str(buf, "<a>", s, sizeof(s));
    bool r2 = parse_str(buf, "<a>", ss);
    bool r3 = parse_int(buf, "<b>", b);
    bool r4 = parse_double(buf, "<c>", c);
    bool r5 = parse_bool(buf, "d", d);
    bool r6 = parse_bool(buf, "e", e);
    bool r7 = parse_bool(buf, "zz", f);
    printf("free: %d[%s] %d[%s] %d=%d %d=%g %d=%d %d=%d %d=%d match=%d\n", r1, s, r2, ss.c_str(), r3, b, r4, c, r5,
           d, r6, e, r7, f, (int)match_tag(buf, "<c>"));

    char esc[128];
    xml_escape("1 < 2 & \"q\" 'a' > 0", esc, sizeof(esc));
    char unesc[64];
    strcpy(unesc, "&lt;x&gt; &amp;amp; &quot;&apos; &#65;&#x42;");
    xml_unescape(unesc);
    printf("escape=[%s] unescape=[%s]\n", esc, unesc);
    char esc2[64], small[6];
    xml_escape("t\tn\nr\r\x01 \xc3\xa9", esc2, sizeof(esc2));
    xml_escape("a&b&c", small, sizeof(small));
    char u2[64] = "&#233;|&#10;|&#300;|&#xx;|&amp;lt;";
    xml_unescape(u2);
    printf("escape2=[%s] small=[%s] unescape2=", esc2, small);
    for (char* p = u2; *p; p++) printf("%02x", (unsigned char)*p);
    printf("\n");

    char out[32];
    MIOFILE w;
    w.init_buf_write(out, sizeof(out));
    w.printf("<v>%d</v>", 5);
    w.printf("<w>%s</w>", "x");
    MIOFILE r;
    r.init_buf_read("line one\nline two\n");
    char line[64];
    int lines = 0;
    while (r.fgets(line, sizeof(line))) lines++;
    printf("write=[%s] lines=%d\n", out, lines);
    return 0;
}

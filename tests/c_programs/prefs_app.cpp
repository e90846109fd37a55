// prefs_app: reads its project preferences with BOINC's XML_PARSER + MIOFILE (reached through boinc_api.h,
// as with BOINC), compares APP_INIT_DATA::gpu_type with GPU_TYPE_NVIDIA and reads host_info fields.
#include "boinc_api.h"
#include "svn_version.h"
#include <cstdio>
#include <cstring>
#include <string>

int main() {
    int rc = boinc_init();
    if (rc) return rc;
    APP_INIT_DATA aid;
    boinc_get_init_data(aid);
    MIOFILE mf;
    XML_PARSER xp(&mf);
    mf.init_buf_read(aid.project_preferences);
    int iters = 10;
    double scale = 1.0;
    bool fast = false, verbose = false;
    char color[64] = "none";
    std::string label;
    while (!xp.get_tag()) {
        if (!xp.is_tag) continue;
        // BOINC's project_preferences is the whole element (the bridge passes BOINC's text on)
        if (xp.match_tag("project_preferences")) continue;
        if (xp.match_tag("/project_preferences")) break;
        if (xp.parse_int("iters", iters)) continue;
        if (xp.parse_double("scale", scale)) continue;
        if (xp.parse_bool("fast", fast)) continue;
        if (xp.parse_bool("verbose", verbose)) continue;
        if (xp.parse_str("color", color, sizeof(color))) continue;
        if (xp.parse_string("label", label)) continue;
        xp.skip_unexpected(false, "prefs_app");
    }
    bool nvidia = !strcmp(aid.gpu_type, GPU_TYPE_NVIDIA);
    printf("iters=%d scale=%g fast=%d verbose=%d color=%s label=[%s] gpu_nvidia=%d ati=%s svn=%s\n", iters, scale,
           fast, verbose, color, label.c_str(), nvidia, GPU_TYPE_ATI, SVN_VERSION);
    printf("app=%s cpid=[%s] ncpus=%d os=%s mem_ok=%d files=%zu\n", aid.app_name, aid.host_info.host_cpid,
           aid.host_info.p_ncpus, aid.host_info.os_name, aid.host_info.m_nbytes > 0, aid.app_files.size());
    boinc_finish(0);
}

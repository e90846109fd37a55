/* diagnostics.h - BOINC's diagnostics flags and entry points (boinc-guest SDK).
 * In a guest there is no slot directory to archive into: boinc_init_diagnostics() only records the
 * flags and returns 0; stderr / stdout stay where the guest's launcher put them. */
#ifndef BOINC_GUEST_DIAGNOSTICS_H
#define BOINC_GUEST_DIAGNOSTICS_H

#define BOINC_DIAG_DUMPCALLSTACKENABLED     0x00000001L
#define BOINC_DIAG_HEAPCHECKENABLED         0x00000002L
#define BOINC_DIAG_MEMORYLEAKCHECKENABLED   0x00000004L
#define BOINC_DIAG_ARCHIVESTDERR            0x00000008L
#define BOINC_DIAG_ARCHIVESTDOUT            0x00000010L
#define BOINC_DIAG_REDIRECTSTDERR           0x00000020L
#define BOINC_DIAG_REDIRECTSTDOUT           0x00000040L
#define BOINC_DIAG_REDIRECTSTDERROVERWRITE  0x00000080L
#define BOINC_DIAG_REDIRECTSTDOUTOVERWRITE  0x00000100L
#define BOINC_DIAG_TRACETOSTDERR            0x00000200L
#define BOINC_DIAG_TRACETOSTDOUT            0x00000400L
#define BOINC_DIAG_HEAPCHECKEVERYALLOC      0x00000800L
#define BOINC_DIAG_BOINCAPPLICATION         0x00001000L
#define BOINC_DIAG_PERUSERLOGFILES          0x00002000L
#define BOINC_DIAG_DEFAULTS \
    (BOINC_DIAG_DUMPCALLSTACKENABLED | BOINC_DIAG_HEAPCHECKENABLED | \
     BOINC_DIAG_MEMORYLEAKCHECKENABLED | BOINC_DIAG_REDIRECTSTDERR | BOINC_DIAG_TRACETOSTDERR)

#ifdef __cplusplus
extern "C" {
#endif

extern int boinc_init_diagnostics(int flags);
extern int boinc_init_graphics_diagnostics(int flags);
extern int boinc_install_signal_handlers(void);
extern int boinc_finish_diag(void);

#ifdef __cplusplus
}
#endif

#endif /* BOINC_GUEST_DIAGNOSTICS_H */

/* static_link.c - makes a -static link of an app with libboinc_guest.a safe.
 *
 * libgfortran, libgcc and libgcc_eh call pthread functions through *weak* references and take their
 * threaded path once the process has more than one thread. In a -static link a weak reference does
 * not pull the defining object out of libc.a (glibc >= 2.34 has libpthread inside libc), so those
 * functions stay NULL; once boinc_init has started the SDK's thread, the runtime calls them anyway:
 * a Fortran program that closes a unit jumped to address 0 (SIGSEGV in close_unit_1 ->
 * pthread_mutex_destroy). This table references every function those runtimes reference weakly
 * (GCC 12's libgfortran.a, libgcc.a, libgcc_eh.a; `nm LIB | awk '$1=="w"'`), strongly, from an
 * object that boinc_init always pulls in, so the plain line `gfortran app.f90 libboinc_guest.a
 * -static` links them. With an older glibc (separate libpthread.a) the same table makes a link
 * without -lpthread fail at link time ("undefined reference to pthread_...") instead of at run time. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stddef.h>

#include "internal.h"

typedef void (*bg_fn)(void);

static bg_fn const volatile bg_pthread_refs[] = {
    (bg_fn)pthread_create,        (bg_fn)pthread_join,          (bg_fn)pthread_self,
    (bg_fn)pthread_once,          (bg_fn)pthread_sigmask,       (bg_fn)pthread_key_create,
    (bg_fn)pthread_key_delete,    (bg_fn)pthread_getspecific,   (bg_fn)pthread_setspecific,
    (bg_fn)pthread_mutex_init,    (bg_fn)pthread_mutex_destroy, (bg_fn)pthread_mutex_lock,
    (bg_fn)pthread_mutex_trylock, (bg_fn)pthread_mutex_unlock,  (bg_fn)pthread_cond_init,
    (bg_fn)pthread_cond_destroy,  (bg_fn)pthread_cond_wait,     (bg_fn)pthread_cond_broadcast,
    (bg_fn)pthread_cond_signal,   (bg_fn)pthread_cond_timedwait,
};

int bg_static_link_anchor(void) {
    size_t n = 0;
    for (size_t i = 0; i < sizeof(bg_pthread_refs) / sizeof(bg_pthread_refs[0]); i++)
        n += bg_pthread_refs[i] != NULL;
    return (int)n;
}

! fortran_app: BOINC's Fortran entry points (boinc_api_fortran.cpp names) against the boinc-guest SDK.
program fortran_app
  implicit none
  integer :: standalone, due, status, u, n
  double precision :: frac, cpu
  character(len=256) :: resolved

  call boinc_init()
  call boinc_is_standalone(standalone)
  call boincrf('in', resolved)
  ! unit I/O after boinc_init: the SDK's thread runs, so libgfortran takes its threaded path (its locks
  ! through weak pthread references: a -static link used to jump to NULL at the close)
  open(newunit=u, file='fortran_out.txt', status='replace', action='write')
  write(u, '(A)') 'written after boinc_init'
  close(u)
  open(newunit=u, file='fortran_out.txt', status='old', action='read')
  read(u, '(A)') resolved
  close(u)
  n = len_trim(resolved)
  call boincrf('in', resolved)
  frac = 0.25d0
  call boinc_fraction_done(frac)
  call boinc_time_to_checkpoint(due)
  call boinc_begin_critical_section()
  call boinc_end_critical_section()
  call boinc_checkpoint_completed()
  call boinc_wu_cpu_time(cpu)
  frac = 0.5d0
  call boinc_fraction_done(frac)
  print '(A,I0,A,A,A,I0,A,I0)', 'standalone=', standalone, ' resolved=', trim(resolved), ' due=', due, &
    ' readback=', n
  status = 5
  call boinc_finish(status)
end program fortran_app

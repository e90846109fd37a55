! fortran_app: BOINC's Fortran entry points (boinc_api_fortran.cpp names) against the boinc-guest SDK.
program fortran_app
  implicit none
  integer :: standalone, due, status
  double precision :: frac, cpu
  character(len=256) :: resolved

  call boinc_init()
  call boinc_is_standalone(standalone)
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
  print '(A,I0,A,A,A,I0)', 'standalone=', standalone, ' resolved=', trim(resolved), ' due=', due
  status = 5
  call boinc_finish(status)
end program fortran_app

"""FAKES of parts that cannot run on the development machine (VirtualBox). Test-only code: nothing in
``host_bridge`` imports this package. Each fake says what it was written from and where it is unsure."""

# The only reason for a setup.py: cffi builds the small C++ shim for BOINC's C++-only API calls
# (host_bridge/boinc/_shim_build.py) at install time.
from setuptools import setup

setup(cffi_modules=["host_bridge/boinc/_shim_build.py:ffibuilder"])

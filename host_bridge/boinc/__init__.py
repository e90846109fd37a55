"""The bridge's binding to the real BOINC API library (libboinc_api.so.7): use
``host_bridge.boinc.api`` (``load_api``, ``BoincApi``, ``StandaloneApi``). See
docs/boinc_api_binding.md."""

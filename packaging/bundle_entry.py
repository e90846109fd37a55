"""Entry point of the single-file app version (scripts/build_app_version.sh, docs/shipping.md)."""

from host_bridge.bundle_main import main

main()

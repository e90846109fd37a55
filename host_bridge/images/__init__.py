"""VM images a project can ship (``host-bridge image build`` / ``image check``, docs/images.md).

- ``build``: the builder (``BuildSpec`` -> an output folder with kernel, initramfs, root disk,
  job_tags.xml, version.xml, image.json);
- ``boot``: the kernel + initramfs part (also ``builtin:test``'s image);
- ``debian``: Debian trees made with debootstrap (also ``<vm_python/>``'s root);
- ``rootfs``: root file systems from tarballs / image archives, strictly checked;
- ``sdk``: the guest SDKs in a root;
- ``check``: boot a built image once and report what an admin needs to know.
"""

from __future__ import annotations

from host_bridge.images.parts import ImageError

__all__ = ["ImageError"]

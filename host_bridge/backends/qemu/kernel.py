"""Linux kernel images for the QEMU backend: what kind of kernel a file is, and the least memory that
can boot it (docs/qemu.md, "Memory")."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

# The smallest vm_memory_mb create() accepts for a kernel (+ initrd): the RAM the kernel is loaded into
# (an ELF's highest physical PT_LOAD end, a bzImage's init_size, else the file's size), twice the initrd
# (it is held in RAM while it is unpacked), and this much for the kernel's own start (page tables,
# struct pages, slabs). A floor below which the VM cannot boot, not a promise that it boots above it.
MEMORY_MARGIN_MB = 8


def kernel_format(head: bytes) -> str | None:
    """The kind of kernel a file is, from its first 0x210 bytes or more: "elf" (a vmlinux, booted with
    PVH), "bzimage" (its setup header's "HdrS" at 0x202) or None (anything else)."""
    if head[:4] == b"\x7fELF":
        return "elf"
    if head[0x202:0x206] == b"HdrS":
        return "bzimage"
    return None


def is_kernel(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(0x210)
    except OSError:
        return False
    return kernel_format(head) is not None


def kernel_memory_bytes(path: Path) -> tuple[int, str]:
    """A lower bound of the RAM a kernel needs to be loaded, and how it was found: an ELF (PVH) kernel is
    loaded at its physical addresses (the end of its highest PT_LOAD segment: a vmlinux loaded at 16 MiB
    needs RAM up to there); a bzImage needs its setup header's ``init_size`` (boot protocol 2.10+) to
    decompress and start in; anything else its file size."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(0x270)
            kind = kernel_format(head)
            if kind == "elf" and len(head) >= 64:
                top = _elf_load_end(f, head)
                if top:
                    return top, "its ELF segments are loaded at physical addresses up to there"
            if kind == "bzimage" and len(head) >= 0x264:
                (version,) = struct.unpack_from("<H", head, 0x206)
                (init_size,) = struct.unpack_from("<I", head, 0x260)
                if version >= 0x020A and 0 < init_size < 1 << 36:
                    return init_size, "its bzImage init_size: the memory it decompresses and starts in"
    except (OSError, struct.error):
        pass
    return size, "its file size"


def _elf_load_end(f: Any, head: bytes) -> int:
    """The end of the highest PT_LOAD segment's physical range of an ELF file (0: unknown)."""
    if head[4] not in (1, 2) or head[5] not in (1, 2):
        return 0
    e = "<" if head[5] == 1 else ">"
    if head[4] == 2:  # ELF64: e_phoff, e_phentsize, e_phnum; p_type, p_paddr, p_memsz offsets
        (phoff,) = struct.unpack_from(e + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(e + "HH", head, 0x36)
        word, paddr_at, memsz_at = "Q", 0x18, 0x28
    else:
        (phoff,) = struct.unpack_from(e + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(e + "HH", head, 0x2A)
        word, paddr_at, memsz_at = "I", 0x0C, 0x14
    if phentsize < memsz_at + struct.calcsize(word) or not 0 < phnum <= 256:
        return 0
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    top = 0
    for off in range(0, len(table) - phentsize + 1, phentsize):
        (ptype,) = struct.unpack_from(e + "I", table, off)
        if ptype == 1:  # PT_LOAD
            (paddr,) = struct.unpack_from(e + word, table, off + paddr_at)
            (memsz,) = struct.unpack_from(e + word, table, off + memsz_at)
            top = max(top, paddr + memsz)
    return top if top < 1 << 40 else 0


def minimum_memory_mb(kernel: Path, initrd: Path | None) -> tuple[int, str]:
    """The smallest ``vm_memory_mb`` that can boot ``kernel`` (+ ``initrd``), and the reckoning in words.
    The rule (docs/qemu.md): the kernel's load size (``kernel_memory_bytes``) + twice the initrd's size
    (held in RAM while unpacked) + MEMORY_MARGIN_MB, rounded up to MiB. A floor, not a guarantee."""
    mib = 1 << 20
    k, how = kernel_memory_bytes(kernel)
    i = initrd.stat().st_size if initrd is not None else 0
    need = -(-(k + 2 * i) // mib) + MEMORY_MARGIN_MB
    why = f"the kernel {kernel} needs {k / mib:.1f} MiB ({how})"
    if initrd is not None:
        why += f", the initrd {initrd} is {i / mib:.1f} MiB (held in memory and unpacked: twice that)"
    why += f", plus {MEMORY_MARGIN_MB} MiB for the kernel's start"
    return need, why

"""The `awsvpc` sandbox ("pause") image, built locally from nothing.

An `awsvpc` task owns one network namespace. Galley holds it with a sandbox container whose only
job is to exist: the task's containers join it with `network_mode="container:<sandbox id>"`. No
registry is reachable and the host may have no compiler, so the sandbox's single binary, `/pause`,
is a tiny static ELF64 executable assembled right here (bytes + struct) for x86_64 and aarch64, and
the image is a one-file tar stream imported into the engine.

`/pause` behaves like Kubernetes' pause as PID 1: it installs SIGTERM and SIGINT handlers that call
`exit_group(0)` (PID 1 of a PID namespace ignores signals it has no handler for, so without them
`docker stop` would wait its whole timeout and then SIGKILL), then sleeps forever in `pause`
(x86_64) or `ppoll(NULL, 0, NULL, NULL)` (aarch64, which has no `pause` syscall).
"""

from __future__ import annotations

import functools
import io
import json
import struct
import tarfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

import docker
import docker.errors

__all__ = [
    "SANDBOX_IMAGE",
    "SANDBOX_LABEL",
    "SANDBOX_VERSION",
    "SandboxImageError",
    "ensure_sandbox_image",
    "normalize_machine",
    "pause_binary",
    "sandbox_tar",
]

SANDBOX_VERSION = 1
"""Content version of the image: bump it whenever the binary or the image config changes."""

SANDBOX_IMAGE = f"galley/sandbox:{SANDBOX_VERSION}"
"""Tag of the sandbox image in the local engine."""

SANDBOX_LABEL = "galley.sandbox"
"""Image label whose value is `SANDBOX_VERSION`; an image lacking it under our tag is rebuilt."""

# `docker import` accepts no STOPSIGNAL change; the default, SIGTERM, is what /pause handles.
_IMAGE_CHANGES = (
    'ENTRYPOINT ["/pause"]',
    f"LABEL {SANDBOX_LABEL}={SANDBOX_VERSION}",
)

_LOCK = threading.Lock()


class SandboxImageError(RuntimeError):
    """The engine refused to import the sandbox image, or lost it right after."""


# --------------------------------------------------------------------------------------------
# A two-pass assembler just big enough for the pause program.
#
# A program is a sequence of items: a `str` is a label (the address of the next byte), an `int`
# aligns the next byte to that many bytes (padding with zeros), and a callable
# `(pc, labels) -> bytes` emits one instruction or datum at address `pc`. Every encoder has a
# fixed size, so the first pass (labels still unknown, read as `pc`) fixes every address and the
# second pass emits the real bytes.
# --------------------------------------------------------------------------------------------

_Labels = dict[str, int]
_Emit = Callable[[int, _Labels], bytes]
_Item = str | int | _Emit

_LOAD_ADDRESS = 0x400000  # virtual address of file offset 0 (the classic static-binary base)
_EHDR_SIZE = 64  # sizeof(Elf64_Ehdr)
_PHDR_SIZE = 56  # sizeof(Elf64_Phdr)
_CODE_OFFSET = _EHDR_SIZE + _PHDR_SIZE  # the program follows the single program header

_SIGINT = 2
_SIGTERM = 15
_SA_RESTORER = 0x04000000  # x86_64 refuses to deliver a signal without a restorer
_SIGSET_SIZE = 8  # the kernel's sigset_t is 64 bits on both architectures


def _target(labels: _Labels, name: str, pc: int) -> int:
    """Address of `name`, or `pc` during the first pass when it is not known yet."""
    return labels.get(name, pc)


def _assemble(program: Sequence[_Item], origin: int) -> tuple[bytes, _Labels]:
    """Assemble `program` placed at virtual address `origin`; return its bytes and labels."""
    labels: _Labels = {}
    sizes: list[int] = []
    out = bytearray()
    for final in (False, True):
        out = bytearray()
        for item in program:
            pc = origin + len(out)
            if isinstance(item, str):
                labels[item] = pc
            elif isinstance(item, int):
                out += bytes(-pc % item)
            else:
                code = item(pc, labels)
                if final and len(code) != sizes.pop(0):
                    raise AssertionError("instruction size changed between passes")
                if not final:
                    sizes.append(len(code))
                out += code
    return bytes(out), labels


def _quad(name: str) -> _Emit:
    """A 64-bit little-endian datum holding the address of label `name`."""
    return lambda pc, labels: struct.pack("<Q", _target(labels, name, pc))


def _quad_value(value: int) -> _Emit:
    """A 64-bit little-endian constant."""
    return lambda pc, labels: struct.pack("<Q", value)


def _sigaction(handler: str) -> list[_Item]:
    """The kernel's `struct sigaction` (same layout on x86_64 and arm64) for `handler`."""
    return [
        8,  # 8-byte aligned
        "act",
        _quad(handler),  # sa_handler
        _quad_value(_SA_RESTORER),  # sa_flags: SA_RESTORER, nothing else (no SA_RESTART needed)
        _quad(handler),  # sa_restorer: never used, the handler does not return
        _quad_value(0),  # sa_mask: block nothing extra while the handler runs
    ]


# ---- x86_64 ---------------------------------------------------------------------------------
# Syscall number in eax, arguments in rdi, rsi, rdx, r10; `syscall` clobbers rcx and r11.

_X86_RT_SIGACTION = 13
_X86_PAUSE = 34
_X86_EXIT_GROUP = 231


def _x86_bytes(*code: int) -> _Emit:
    """Fixed instruction bytes."""
    return lambda pc, labels: bytes(code)


def _x86_mov_imm32(opcode: int, value: int) -> _Emit:
    """`mov r32, imm32` (opcode B8+r; zero-extends into the 64-bit register)."""
    return lambda pc, labels: bytes([opcode]) + struct.pack("<I", value)


def _x86_mov_label32(opcode: int, name: str) -> _Emit:
    """`mov r32, imm32` loading the address of a label (the image sits below 4 GiB)."""
    return lambda pc, labels: bytes([opcode]) + struct.pack("<I", _target(labels, name, pc))


def _x86_call(name: str) -> _Emit:
    """`call rel32` (E8), relative to the end of the 5-byte instruction."""
    return lambda pc, labels: b"\xe8" + struct.pack("<i", _target(labels, name, pc) - (pc + 5))


def _x86_jmp_short(name: str) -> _Emit:
    """`jmp rel8` (EB), relative to the end of the 2-byte instruction."""
    return lambda pc, labels: b"\xeb" + struct.pack("<b", _target(labels, name, pc) - (pc + 2))


_EAX, _ESI, _EDI = 0xB8, 0xBE, 0xBF  # B8+r opcodes of `mov r32, imm32`

_X86_64_PROGRAM: list[_Item] = [
    "_start",
    _x86_mov_imm32(_EDI, _SIGTERM),  # mov edi, 15           ; signum = SIGTERM
    _x86_call("install"),  # call install                 ; rt_sigaction(SIGTERM, &act, NULL, 8)
    _x86_mov_imm32(_EDI, _SIGINT),  # mov edi, 2             ; signum = SIGINT
    _x86_call("install"),  # call install                 ; rt_sigaction(SIGINT, &act, NULL, 8)
    "sleep",
    _x86_mov_imm32(_EAX, _X86_PAUSE),  # mov eax, 34         ; __NR_pause
    _x86_bytes(0x0F, 0x05),  # syscall                      ; sleep until a signal arrives
    _x86_jmp_short("sleep"),  # jmp sleep                   ; (only reached for ignored signals)
    "install",  # edi = signal number
    _x86_mov_label32(_ESI, "act"),  # mov esi, act           ; act = &struct sigaction
    _x86_bytes(0x31, 0xD2),  # xor edx, edx                 ; oldact = NULL
    _x86_bytes(0x41, 0xBA, _SIGSET_SIZE, 0, 0, 0),  # mov r10d, 8  ; sigsetsize = 8
    _x86_mov_imm32(_EAX, _X86_RT_SIGACTION),  # mov eax, 13  ; __NR_rt_sigaction
    _x86_bytes(0x0F, 0x05),  # syscall
    _x86_bytes(0xC3),  # ret
    "handler",  # the signal handler: exit at once, status 0
    _x86_bytes(0x31, 0xFF),  # xor edi, edi                 ; status = 0
    _x86_mov_imm32(_EAX, _X86_EXIT_GROUP),  # mov eax, 231   ; __NR_exit_group
    _x86_bytes(0x0F, 0x05),  # syscall                      ; never returns
    *_sigaction("handler"),  # act: { handler, SA_RESTORER, handler, 0 }
]

# ---- aarch64 --------------------------------------------------------------------------------
# Syscall number in x8, arguments in x0..x5, `svc #0`. Every instruction is 4 bytes.

_A64_PPOLL = 73
_A64_EXIT_GROUP = 94
_A64_RT_SIGACTION = 134


def _a64(word: int) -> bytes:
    """One little-endian instruction word."""
    return struct.pack("<I", word)


def _a64_movz(rd: int, imm16: int) -> _Emit:
    """`movz xRd, #imm16` (`mov xRd, #imm16`)."""
    return lambda pc, labels: _a64(0xD2800000 | (imm16 << 5) | rd)


def _a64_branch(opcode: int, name: str) -> _Emit:
    """`b`/`bl` to a label: imm26 = word offset from this instruction."""
    return lambda pc, labels: _a64(opcode | (((_target(labels, name, pc) - pc) >> 2) & 0x3FFFFFF))


def _a64_adr(rd: int, name: str) -> _Emit:
    """`adr xRd, label`: immlo in bits 29-30, immhi in bits 5-23, byte offset from pc."""

    def emit(pc: int, labels: _Labels) -> bytes:
        offset = (_target(labels, name, pc) - pc) & 0x1FFFFF
        return _a64(0x10000000 | ((offset & 3) << 29) | ((offset >> 2) << 5) | rd)

    return emit


def _a64_word(word: int) -> _Emit:
    """A fixed instruction word."""
    return lambda pc, labels: _a64(word)


_A64_B, _A64_BL = 0x14000000, 0x94000000
_A64_SVC_0 = 0xD4000001  # svc #0
_A64_RET = 0xD65F03C0  # ret (x30)

_AARCH64_PROGRAM: list[_Item] = [
    "_start",
    _a64_movz(0, _SIGTERM),  # mov x0, #15                 ; signum = SIGTERM
    _a64_branch(_A64_BL, "install"),  # bl install         ; rt_sigaction(SIGTERM, &act, NULL, 8)
    _a64_movz(0, _SIGINT),  # mov x0, #2                   ; signum = SIGINT
    _a64_branch(_A64_BL, "install"),  # bl install         ; rt_sigaction(SIGINT, &act, NULL, 8)
    "sleep",
    _a64_movz(0, 0),  # mov x0, #0                         ; fds = NULL
    _a64_movz(1, 0),  # mov x1, #0                         ; nfds = 0
    _a64_movz(2, 0),  # mov x2, #0                         ; tmo_p = NULL (wait forever)
    _a64_movz(3, 0),  # mov x3, #0                         ; sigmask = NULL (keep the mask)
    _a64_movz(4, 0),  # mov x4, #0                         ; sigsetsize = 0
    _a64_movz(8, _A64_PPOLL),  # mov x8, #73               ; __NR_ppoll
    _a64_word(_A64_SVC_0),  # svc #0                       ; sleep until a signal arrives
    _a64_branch(_A64_B, "sleep"),  # b sleep               ; (only reached for ignored signals)
    "install",  # x0 = signal number
    _a64_adr(1, "act"),  # adr x1, act                     ; act = &struct sigaction
    _a64_movz(2, 0),  # mov x2, #0                         ; oldact = NULL
    _a64_movz(3, _SIGSET_SIZE),  # mov x3, #8              ; sigsetsize = 8
    _a64_movz(8, _A64_RT_SIGACTION),  # mov x8, #134       ; __NR_rt_sigaction
    _a64_word(_A64_SVC_0),  # svc #0
    _a64_word(_A64_RET),  # ret                            ; back to x30 (set by bl)
    "handler",  # the signal handler: exit at once, status 0
    _a64_movz(0, 0),  # mov x0, #0                         ; status = 0
    _a64_movz(8, _A64_EXIT_GROUP),  # mov x8, #94          ; __NR_exit_group
    _a64_word(_A64_SVC_0),  # svc #0                       ; never returns
    *_sigaction("handler"),  # act: { handler, SA_RESTORER, handler, 0 }
]

# ---- ELF ------------------------------------------------------------------------------------

_EM_X86_64 = 62
_EM_AARCH64 = 183

# canonical machine -> (e_machine, program, p_align); 64 KiB alignment suits arm64 kernels
# built with 64 KiB pages.
_TARGETS: dict[str, tuple[int, list[_Item], int]] = {
    "x86_64": (_EM_X86_64, _X86_64_PROGRAM, 0x1000),
    "aarch64": (_EM_AARCH64, _AARCH64_PROGRAM, 0x10000),
}

_MACHINE_ALIASES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "arm64/v8": "aarch64",
    "armv8": "aarch64",
    "armv8l": "aarch64",
}


def normalize_machine(machine: str) -> str:
    """Canonical name ("x86_64" or "aarch64") of a `platform.machine()`/Docker architecture."""
    canonical = _MACHINE_ALIASES.get(machine.strip().lower())
    if canonical is None:
        raise ValueError(f"no sandbox pause binary for architecture {machine!r}")
    return canonical


@functools.cache
def _build(machine: str) -> bytes:
    """Assemble the pause program for a canonical machine and wrap it in an ELF64 file."""
    e_machine, program, align = _TARGETS[machine]
    code, labels = _assemble(program, _LOAD_ADDRESS + _CODE_OFFSET)
    size = _CODE_OFFSET + len(code)
    ehdr = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF",
        2,  # EI_CLASS: ELFCLASS64
        1,  # EI_DATA: ELFDATA2LSB (little endian)
        1,  # EI_VERSION: EV_CURRENT
        0,  # EI_OSABI: System V
        0,  # EI_ABIVERSION
        2,  # e_type: ET_EXEC
        e_machine,
        1,  # e_version: EV_CURRENT
        labels["_start"],  # e_entry
        _EHDR_SIZE,  # e_phoff: program header right after this header
        0,  # e_shoff: no section headers
        0,  # e_flags
        _EHDR_SIZE,  # e_ehsize
        _PHDR_SIZE,  # e_phentsize
        1,  # e_phnum
        64,  # e_shentsize (sizeof(Elf64_Shdr), even with none)
        0,  # e_shnum
        0,  # e_shstrndx: SHN_UNDEF
    )
    phdr = struct.pack(
        "<IIQQQQQQ",
        1,  # p_type: PT_LOAD, the whole file
        5,  # p_flags: PF_R | PF_X (the sigaction struct is only read, by the kernel)
        0,  # p_offset
        _LOAD_ADDRESS,  # p_vaddr
        _LOAD_ADDRESS,  # p_paddr
        size,  # p_filesz
        size,  # p_memsz
        align,  # p_align
    )
    binary = ehdr + phdr + code
    assert len(ehdr) == _EHDR_SIZE and len(phdr) == _PHDR_SIZE and len(binary) == size
    return binary


def pause_binary(machine: str) -> bytes:
    """A static ELF64 pause executable for `machine` (x86_64/amd64 or aarch64/arm64)."""
    return _build(normalize_machine(machine))


def sandbox_tar(binary: bytes) -> bytes:
    """An uncompressed tar holding only `/pause` (root-owned, mode 0755) with `binary`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size = len(binary)
        info.mode = 0o755
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0  # reproducible layer content
        tar.addfile(info, io.BytesIO(binary))
    return buffer.getvalue()


# ---- the image ------------------------------------------------------------------------------


def _image_ready(client: docker.DockerClient) -> bool:
    """True when our tag exists and carries this version's label (a single inspect)."""
    try:
        attrs: dict[str, Any] = client.api.inspect_image(SANDBOX_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return labels.get(SANDBOX_LABEL) == str(SANDBOX_VERSION)


def _import_errors(response: Any) -> list[str]:
    """The `error` messages of an image import's JSON-lines response."""
    errors: list[str] = []
    for line in str(response or "").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("error"):
            errors.append(str(message["error"]))
    return errors


def ensure_sandbox_image(client: docker.DockerClient) -> str:
    """Return `SANDBOX_IMAGE`, importing it for the engine's architecture when missing."""
    if _image_ready(client):
        return SANDBOX_IMAGE
    with _LOCK:
        if _image_ready(client):  # another thread imported it while we waited
            return SANDBOX_IMAGE
        architecture = str(client.info().get("Architecture") or "")
        data = sandbox_tar(pause_binary(architecture))
        repository, tag = SANDBOX_IMAGE.rsplit(":", 1)
        try:
            response = client.api.import_image_from_data(
                data, repository=repository, tag=tag, changes=list(_IMAGE_CHANGES)
            )
        except docker.errors.APIError as exc:
            raise SandboxImageError(f"cannot import {SANDBOX_IMAGE}: {exc}") from exc
        errors = _import_errors(response)
        if errors:
            raise SandboxImageError(f"cannot import {SANDBOX_IMAGE}: {'; '.join(errors)}")
        if not _image_ready(client):
            raise SandboxImageError(f"{SANDBOX_IMAGE} is missing right after its import")
    return SANDBOX_IMAGE

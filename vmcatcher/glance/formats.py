"""What a cached image really is, and turning it into what Glance should get (qemu-img).

Why not trust ``hv:format``: the list's word is remote input, and Glance itself
refuses data that does not match the declared ``disk_format``. So the format
is always probed with ``qemu-img info --output=json`` (under CPU, memory and
time limits, as OpenStack does), images that point at other files (a backing
file or an external data file) are refused, and an OVA (a tar archive) is
unpacked by us, never by ``tar``: regular members only, names without ``/`` or
``..``, a bounded member count and size, exactly one disk, written to a file
name of our choosing inside the work directory (docs/glance.md, "Formats").
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from vmcatcher.errors import ImageFormatError

#: qemu-img's format names -> Glance's disk_format names.
QEMU_TO_GLANCE = {
    "raw": "raw",
    "qcow2": "qcow2",
    "vmdk": "vmdk",
    "vdi": "vdi",
    "vpc": "vhd",
    "vhdx": "vhdx",
}
GLANCE_TO_QEMU = {glance: qemu for qemu, glance in QEMU_TO_GLANCE.items()}
#: Formats ``--disk-format`` may ask for.
TARGET_FORMATS = tuple(GLANCE_TO_QEMU)
#: The format an OVA's disk is converted to when ``--disk-format`` is not given.
DEFAULT_OVA_TARGET = "qcow2"
INFO_TIMEOUT = 60.0
INFO_CPU_SECONDS = 30
INFO_ADDRESS_SPACE = 1 << 30
#: OVA limits: an OVF, a manifest, a certificate and a disk are what appliances hold.
MAX_OVA_MEMBERS = 16
MAX_MEMBER_NAME = 255
DISK_SUFFIXES = (".vmdk", ".img", ".qcow2", ".raw", ".vhd", ".vhdx", ".vdi")
COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Probe:
    """What qemu-img found: Glance's format name and the virtual disk size."""

    disk_format: str
    virtual_size: int


def _limit_info() -> None:  # runs in the child, before exec (only without prlimit)
    resource.setrlimit(resource.RLIMIT_CPU, (INFO_CPU_SECONDS, INFO_CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_AS, (INFO_ADDRESS_SPACE, INFO_ADDRESS_SPACE))


def _limited(command: list[str]) -> tuple[list[str], bool]:
    """The command under ``prlimit`` (util-linux) when there is one: no Python code runs
    between fork and exec (progress bars start threads); else a pre-exec hook does it."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return command, True
    return [prlimit, f"--cpu={INFO_CPU_SECONDS}", f"--as={INFO_ADDRESS_SPACE}", "--",
            *command], False  # fmt: skip


def _run(command: list[str], timeout: float, what: str, limit: bool = False,
         pass_fds: tuple[int, ...] = ()) -> str:  # fmt: skip
    qemu = shutil.which(command[0])
    if qemu is None:
        raise ImageFormatError(f"{command[0]} not found: install qemu-utils (docs/glance.md)")
    argv, hook = [qemu, *command[1:]], False
    if limit:
        argv, hook = _limited(argv)
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=_limit_info if hook else None,
        pass_fds=pass_fds,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as error:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise ImageFormatError(f"{what}: qemu-img took longer than {timeout:g} s") from error
    if process.returncode != 0:
        last = (err.strip().splitlines() or ["(no message)"])[-1][:200]
        raise ImageFormatError(f"{what}: qemu-img failed: {last}")
    return out


def probe(path: Path, what: str, pass_fds: tuple[int, ...] = ()) -> Probe:
    """The real format of ``path``; refuses unknown formats and images naming other files.

    ``pass_fds``: descriptors the path needs (``/proc/self/fd/N`` of an open cache file).
    """
    out = _run(["qemu-img", "info", "--output=json", "-U", str(path)], INFO_TIMEOUT,
               f"{what}: probing the format", limit=True, pass_fds=pass_fds)  # fmt: skip
    try:
        info = json.loads(out)
    except ValueError as error:
        raise ImageFormatError(f"{what}: qemu-img info gave no JSON") from error
    if not isinstance(info, dict):
        raise ImageFormatError(f"{what}: qemu-img info gave no JSON object")
    fmt = info.get("format")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageFormatError(f"{what}: refused: a {fmt} image with a backing file")
    specific = info.get("format-specific") or {}
    data = specific.get("data") if isinstance(specific, dict) else None
    if isinstance(data, dict) and data.get("data-file"):
        raise ImageFormatError(f"{what}: refused: a {fmt} image with an external data file")
    if fmt not in QEMU_TO_GLANCE:
        raise ImageFormatError(f"{what}: refused: unsupported image format {str(fmt)[:40]!r}")
    size = info.get("virtual-size")
    return Probe(QEMU_TO_GLANCE[fmt], size if isinstance(size, int) else 0)


def is_tar(path: Path) -> bool:
    """A POSIX/GNU tar header at the start (``ustar`` magic at offset 257): an OVA."""
    with open(path, "rb") as handle:
        handle.seek(257)
        return handle.read(5) == b"ustar"


def convert(source: Path, source_format: str, target_format: str, target: Path,
            timeout: float, what: str, pass_fds: tuple[int, ...] = ()) -> None:  # fmt: skip
    """``qemu-img convert`` with explicit formats (no probing of a hostile file)."""
    _run(["qemu-img", "convert", "-f", GLANCE_TO_QEMU[source_format], "-O",
          GLANCE_TO_QEMU[target_format], str(source), str(target)], timeout,
         f"{what}: converting {source_format} to {target_format}", pass_fds=pass_fds)  # fmt: skip


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if not member.isreg():
        return f"member {name[:60]!r} is not a regular file"
    if member.issparse():
        return f"member {name[:60]!r} is a sparse file"
    if (not name or len(name) > MAX_MEMBER_NAME or "/" in name or "\\" in name or "\0" in name
            or name in (".", "..") or name.startswith("-")):  # fmt: skip
        return f"member name {name[:60]!r} is not a plain file name"
    return None


def unpack_ova(path: Path, work_dir: Path, what: str) -> Path:
    """Copy the OVA's one disk to ``work_dir/ova-disk``; refuse anything unusual."""
    archive_size = path.stat().st_size
    try:
        with tarfile.open(path, "r:") as archive:
            disks: list[tarfile.TarInfo] = []
            total = 0
            count = 0
            while True:
                member = archive.next()
                if member is None:
                    break
                count += 1
                if count > MAX_OVA_MEMBERS:
                    raise ImageFormatError(f"{what}: OVA refused: more than "
                                           f"{MAX_OVA_MEMBERS} members")  # fmt: skip
                problem = _member_problem(member)
                if problem:
                    raise ImageFormatError(f"{what}: OVA refused: {problem}")
                total += member.size
                if total > archive_size:
                    raise ImageFormatError(f"{what}: OVA refused: members larger than the file")
                if member.name.lower().endswith(DISK_SUFFIXES):
                    disks.append(member)
            if len(disks) != 1:
                raise ImageFormatError(
                    f"{what}: OVA refused: {len(disks)} disks (exactly one is supported)"
                )
            disk = disks[0]
            target = work_dir / "ova-disk"
            source = archive.extractfile(disk)
            if source is None:
                raise ImageFormatError(f"{what}: OVA refused: the disk cannot be read")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with source, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                left = disk.size
                while left > 0:
                    block = source.read(min(COPY_CHUNK, left))
                    if not block:
                        raise ImageFormatError(f"{what}: OVA refused: the disk is truncated")
                    out.write(block)
                    left -= len(block)
            return target
    except (tarfile.TarError, EOFError) as error:
        raise ImageFormatError(f"{what}: OVA refused: not a readable tar archive") from error

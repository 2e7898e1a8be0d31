"""``vmcatcher_cache`` on a disk that is, or becomes, full.

The cache directories live on a small file system made for the test: a 2 MiB
``tmpfs`` (we run as root), or else a loop-mounted ext4 image; only when
neither can be mounted is the test skipped, with the reason. The disk is
filled with hidden filler files (never touched by vmcatcher's sweep), so the
same tests work on either kind.

For every case: the run ends with a clear error line and the documented exit
code (a failed download does not change it: 0), no half-written file is left
behind that the next run cannot use, the images already cached are untouched,
every ``cache.index`` parses, and once space is freed the next normal run
finishes the job without downloading anything twice.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.consistency import image_files, read_index
from tests.robustness.sitekit import Site, image_path, seeded, uuids
from tests.support.commands import Result, clean_env, command_path

pytestmark = pytest.mark.robustness

KiB = 1024
MiB = 1024 * KiB


class SmallDisk:
    """A small mounted file system, with helpers to fill it up and free it again."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._fillers: list[Path] = []

    def free(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Write a hidden filler file until at most ``leave`` bytes are free."""
        filler = self.path / f".filler-{len(self._fillers)}"
        self._fillers.append(filler)
        block = b"\0" * (4 * KiB)
        with open(filler, "wb", buffering=0) as handle:
            try:
                while self.free() > leave:
                    handle.write(block[: max(1, min(len(block), self.free() - leave))])
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise

    def unfill(self) -> None:
        for filler in self._fillers:
            filler.unlink(missing_ok=True)
        self._fillers.clear()


def _mount(mountpoint: Path, size: int, work: Path) -> str | None:
    """Mount a file system of ``size`` bytes at ``mountpoint``; its kind, or None."""
    tmpfs = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint)]
    if subprocess.run(tmpfs, capture_output=True).returncode == 0:
        return "tmpfs"
    image = work / "disk.img"
    with open(image, "wb") as handle:
        handle.truncate(max(size, 4 * MiB))
    mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(image)]
    if subprocess.run(mkfs, capture_output=True).returncode != 0:
        return None
    loop = ["mount", "-o", "loop", str(image), str(mountpoint)]
    if subprocess.run(loop, capture_output=True).returncode == 0:
        return "ext4 on a loop device"
    return None


@pytest.fixture
def small_disk(site: Site, tmp_path: Path) -> Iterator[SmallDisk]:
    """The site's whole cache directory (with partial/ and expired/) on a 2 MiB disk."""
    mountpoint = site.cache_dir
    kind = _mount(mountpoint, 2 * MiB, tmp_path)
    if kind is None:
        pytest.skip("cannot mount a small file system here (needs root: tmpfs or a loop device)")
    try:
        site.partial_dir.mkdir()
        site.expired_dir.mkdir()
        yield SmallDisk(mountpoint, kind)
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            time.sleep(0.5)
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def _sha(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def _cached_state(site: Site) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every cached image, to prove they were not touched."""
    return {
        name: (path.read_bytes(), path.stat().st_mtime_ns)
        for name, path in image_files(site.cache_dir).items()
    }


def _errors(result: Result) -> list[str]:
    print(result)  # shown with -rP: what an operator would read
    text = result.stdout + result.stderr
    assert "Traceback" not in text, result
    return [line for line in text.splitlines() if "ERROR" in line or "CRITICAL" in line]


def _ready(site: Site, rng, sizes: dict[str, int]) -> dict[str, bytes]:
    """Subscribe to a first version of small images and cache them (normal run)."""
    images = {uuid: rng.randbytes(size) for uuid, size in sizes.items()}
    site.publish(images)
    site.subscribe()
    site.check(site.command("vmcatcher_cache"))
    site.assert_consistent(strict=True)
    return images


def test_image_larger_than_free_space_is_refused_before_downloading(
    site: Site, small_disk: SmallDisk
) -> None:
    seed, rng = seeded("free-space check")
    _ready(site, rng, dict.fromkeys(uuids(2, rng), 64 * KiB))
    before = _cached_state(site)
    big = next(iter(uuids(1, rng)))
    site.publish({**site.images, big: rng.randbytes(512 * KiB)})
    site.check(site.command("vmcatcher_subscribe", "-U"))
    small_disk.fill(leave=256 * KiB)

    result = site.command("vmcatcher_cache")
    assert result.returncode == 0, result  # a failed download does not change the exit code
    errors = "\n".join(_errors(result))
    assert "too large" in errors and big in errors, result
    assert site.image_requests().get(image_path(big, site.images[big])) is None
    assert not (site.partial_dir / big).exists()
    assert _cached_state(site) == before
    site.assert_consistent()

    small_disk.unfill()
    site.check(site.command("vmcatcher_cache"))
    site.assert_consistent(strict=True)
    assert len(site.image_requests()[image_path(big, site.images[big])]) == 1, f"seed {seed}"


def test_disk_filling_up_during_a_download(site: Site, small_disk: SmallDisk) -> None:
    seed, rng = seeded("disk fills mid-download")
    _ready(site, rng, dict.fromkeys(uuids(2, rng), 64 * KiB))
    before = _cached_state(site)
    big = next(iter(uuids(1, rng)))
    site.drip = (0.005, 8 * KiB)  # at least 0.6 s for the whole image
    site.publish({**site.images, big: rng.randbytes(1 * MiB)})
    site.check(site.command("vmcatcher_subscribe", "-U"))

    proc = subprocess.Popen(
        [command_path("vmcatcher_cache")],
        cwd=site.root,
        env=clean_env(site.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = site.partial_dir / big
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size >= 128 * KiB):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    small_disk.fill(leave=0)  # the free-space estimate was right a moment ago; now it lies
    out, err = proc.communicate(timeout=60)
    result = Result(proc.returncode, out, err)

    assert result.returncode == 0, result
    errors = "\n".join(_errors(result))
    assert "No space left on device" in errors and big in errors, result
    assert _cached_state(site) == before
    for directory in (site.cache_dir, site.partial_dir, site.expired_dir):
        read_index(directory)
        assert not [p for p in directory.iterdir() if p.name.startswith(".vmcatcher-tmp-")]
    site.assert_consistent()
    kept = partial.stat().st_size if partial.exists() else 0

    small_disk.unfill()
    mark = len(site.server.requests)
    site.check(site.command("vmcatcher_cache"))
    site.assert_consistent(strict=True)
    retry = site.image_requests(mark)[image_path(big, site.images[big])]
    assert len(retry) == 1, f"seed {seed}: {retry}"
    assert retry[0].range == (f"bytes={kept}-" if kept else None), f"seed {seed}: kept {kept}"


def test_disk_already_full_when_the_run_starts(site: Site, small_disk: SmallDisk) -> None:
    """Nothing can be recorded: exit 1 with one line; the next run (with space) recovers."""
    seed, rng = seeded("disk full at start")
    _ready(site, rng, dict.fromkeys(uuids(3, rng), 64 * KiB))
    doomed = sorted(site.images)[0]
    doomed_bytes = site.images[doomed]
    new = next(iter(uuids(1, rng)))
    kept = {uuid: data for uuid, data in site.images.items() if uuid != doomed}
    site.publish({**kept, new: rng.randbytes(32 * KiB)})
    site.check(site.command("vmcatcher_subscribe", "-U"))
    before = {name: state for name, state in _cached_state(site).items() if name != doomed}
    indexes = {d: (d / "cache.index").read_bytes() for d in (site.cache_dir, site.partial_dir)}
    small_disk.fill(leave=0)

    result = site.command("vmcatcher_cache")
    errors = _errors(result)
    assert result.returncode == 1, result
    assert len(errors) == 1 and "No space left on device" in errors[0], result
    after = _cached_state(site)
    assert {name: state for name, state in after.items() if name != doomed} == before
    moved = [p for p in image_files(site.expired_dir).values() if p.name.startswith(doomed)]
    assert doomed in after or [p.read_bytes() for p in moved] == [doomed_bytes]
    for directory, content in indexes.items():
        assert (directory / "cache.index").read_bytes() == content  # old index intact
        assert not [p for p in directory.iterdir() if p.name.startswith(".vmcatcher-tmp-")]
    assert not (site.partial_dir / new).exists()
    site.assert_consistent()

    small_disk.unfill()
    site.check(site.command("vmcatcher_cache"))
    site.assert_consistent(strict=True)
    assert [entry["dc:identifier"] for entry in read_index(site.expired_dir).values()] == [doomed]
    assert len(site.image_requests()[image_path(new, site.images[new])]) == 1, f"seed {seed}"

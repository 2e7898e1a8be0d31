"""Formats on a real Glance: probing, qcow2, conversion, OVA, and hostile archives refused."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.glance.conftest import GlanceSite, member, qcow2_bytes, tar_bytes, vmdk_bytes

A = "3c6e8a5c-0000-4000-8000-00000000000a"
OVF = b"<?xml version='1.0'?><Envelope/>"


def publish(gsite: GlanceSite, data: bytes, fmt: str) -> None:
    gsite.site.add_image(A, data=data, extra={"hv:format": fmt})
    gsite.site.ready()
    gsite.site.cache(events=False)


def work_files(gsite: GlanceSite) -> list[Path]:
    work = gsite.site.cache_dir / ".vmcatcher-glance"
    return [p for p in work.rglob("*") if p.is_file()] if work.exists() else []


def test_qcow2_is_uploaded_as_qcow2(gsite: GlanceSite, tmp_path: Path) -> None:
    data = qcow2_bytes(tmp_path)
    publish(gsite, data, "qcow2")
    gsite.run()
    (image,) = gsite.by_identifier()[A]
    assert image["disk_format"] == "qcow2" and image["status"] == "active"
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()


def test_the_real_format_wins_over_the_list(gsite: GlanceSite, tmp_path: Path) -> None:
    publish(gsite, qcow2_bytes(tmp_path), "raw")  # the list lies: it is qcow2
    result = gsite.run()
    (image,) = gsite.by_identifier()[A]
    assert image["disk_format"] == "qcow2"
    assert "the list says 'raw'" in result.stderr


def test_raw_converted_to_qcow2_records_the_original(gsite: GlanceSite) -> None:
    data = bytes(2 * 1024 * 1024)
    publish(gsite, data, "raw")
    gsite.run("--disk-format", "qcow2")
    (image,) = gsite.by_identifier()[A]
    assert image["disk_format"] == "qcow2" and image["status"] == "active"
    assert image["vmcatcher_event_sl_checksum_sha512"] == hashlib.sha512(data).hexdigest()
    assert image["os_hash_value"] != image["vmcatcher_event_sl_checksum_sha512"]
    assert image["vmcatcher_source_format"] == "raw"
    assert work_files(gsite) == []
    assert gsite.run("--disk-format", "qcow2", "--dry-run").stdout.strip() == "nothing to do"


def test_ova_with_one_vmdk_is_unpacked_and_converted(gsite: GlanceSite, tmp_path: Path) -> None:
    ova = tar_bytes([(member("appliance.ovf"), OVF), (member("disk1.vmdk"), vmdk_bytes(tmp_path))])
    publish(gsite, ova, "ova")
    gsite.run()
    (image,) = gsite.by_identifier()[A]
    assert image["disk_format"] == "qcow2" and image["status"] == "active"
    assert image["vmcatcher_source_format"] == "ova"
    assert image["vmcatcher_event_sl_checksum_sha512"] == hashlib.sha512(ova).hexdigest()
    assert work_files(gsite) == []


HOSTILE = {
    "traversal": lambda d: [(member("../evil.vmdk"), d)],
    "absolute": lambda d: [(member("/tmp/evil.vmdk"), d)],
    "symlink": lambda d: [(member("disk.vmdk", tarfile.SYMTYPE, "/etc/passwd"), None)],
    "hardlink": lambda d: [(member("a.ovf"), OVF), (member("d.vmdk", tarfile.LNKTYPE, "a"), None)],
    "device": lambda d: [(member("disk.vmdk", tarfile.CHRTYPE), None)],
    "two disks": lambda d: [(member("a.vmdk"), d), (member("b.vmdk"), d)],
    "no disk": lambda d: [(member("a.ovf"), OVF)],
    "too many members": lambda d: [(member(f"m{i}.txt"), b"x") for i in range(40)],
    "directory": lambda d: [(member("sub", tarfile.DIRTYPE), None), (member("a.vmdk"), d)],
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_ova_is_refused_with_one_line(gsite: GlanceSite, tmp_path: Path, kind: str) -> None:
    publish(gsite, tar_bytes(HOSTILE[kind](vmdk_bytes(tmp_path))), "ova")
    result = gsite.run(expect=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "OVA refused" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert gsite.images() == []
    assert work_files(gsite) == []
    assert not (tmp_path.parent / "evil.vmdk").exists()


def test_qcow2_with_a_backing_file_is_refused(gsite: GlanceSite, tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(bytes(1024 * 1024))
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                    str(top)], check=True)  # fmt: skip
    publish(gsite, top.read_bytes(), "qcow2")
    result = gsite.run(expect=1)
    assert "backing file" in result.stderr
    assert gsite.images() == []

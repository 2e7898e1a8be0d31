"""Fast checks without Glance: property names, the projects map, OVA refusals, probing."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.glance.conftest import member, qcow2_bytes, tar_bytes
from vmcatcher.errors import ConfigError, ImageFormatError
from vmcatcher.glance import formats
from vmcatcher.glance.metadata import image_name, image_properties
from vmcatcher.services.glance import load_project_map

ENTRY = {
    "dc:identifier": "u-1",
    "uuid": "u-1",
    "sha512": "ab" * 64,
    "sl:checksum:sha512": "ab" * 64,
    "hv:size": 10,
    "dc:title": "Title\x1b[31m red",
    "hv:version": "2.0",
    "sl:arch": "X86_64",
    "sl:os": "Linux",
    "sl:osversion": "None",
    "hv:image.ad:mpuri": "https://mp/x",
    "hv:image.sl:osname": "Alma Linux",
    "hv:image.dc:identifier": "u-1",
    "hv:imagelist.dc:identifier": "sub-1",
    "filename": "u-1",
}


def test_properties_are_the_lower_cased_event_variables() -> None:
    properties = image_properties(ENTRY)
    assert properties["vmcatcher_event_dc_identifier"] == "u-1"
    assert properties["vmcatcher_event_sl_checksum_sha512"] == "ab" * 64
    assert properties["vmcatcher_event_ad_mpuri"] == "https://mp/x"
    assert properties["vmcatcher_event_hv_version"] == "2.0"
    assert properties["vmcatcher_event_il_dc_identifier"] == "sub-1"
    assert json.loads(properties["APPLIANCE_ATTRIBUTES"]) == {
        "ad:mpuri": "https://mp/x", "sl:osname": "Alma Linux", "dc:identifier": "u-1"}  # fmt: skip
    assert properties["os_distro"] == "almalinux"
    assert properties["architecture"] == "x86_64"
    assert "os_version" not in properties  # "None" from the index: not given
    assert all("\x1b" not in value for value in properties.values())


def test_name_has_no_control_characters_and_a_bounded_length() -> None:
    assert image_name(ENTRY, "EGI ") == "EGI Title [31m red"
    assert len(image_name({"dc:title": "x" * 1000})) == 255
    assert image_name({"dc:title": "None", "dc:identifier": "u-2"}) == "u-2"


def test_projects_map(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"subscriptions": {"s": "p1"}, "vos": {"vo": ["p2", "p3"]}}))
    mapping = load_project_map(path)
    assert mapping.projects("s", "vo") == {"p1", "p2", "p3"}
    assert mapping.projects("other", None) == set()


@pytest.mark.parametrize(
    "text",
    ["[]", "{", '{"projects": {}}', '{"vos": {"x": [1]}}', '{"vos": []}', '{"vos": {"x": [""]}}'],
)
def test_bad_projects_maps_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_project_map(path)


def test_missing_projects_map(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cannot read"):
        load_project_map(tmp_path / "nope.json")


def test_ova_disk_is_copied_under_our_name(tmp_path: Path) -> None:
    disk = qcow2_bytes(tmp_path)
    ova = tmp_path / "a.ova"
    ova.write_bytes(tar_bytes([(member("a.ovf"), b"<x/>"), (member("disk.qcow2"), disk)]))
    work = tmp_path / "work"
    work.mkdir()
    out = formats.unpack_ova(ova, work, "t")
    assert out == work / "ova-disk" and out.read_bytes() == disk
    assert formats.probe(out, "t").disk_format == "qcow2"


@pytest.mark.parametrize(
    "members",
    [
        [(member("../x.vmdk"), b"x")],
        [(member("d.vmdk", tarfile.SYMTYPE, "/etc/shadow"), None)],
        [(member("d.vmdk", tarfile.FIFOTYPE), None)],
        [(member(f"f{i}"), b"") for i in range(17)],
        [(member("a.img"), b"1"), (member("b.img"), b"2")],
    ],
    ids=["traversal", "symlink", "fifo", "too-many", "two-disks"],
)
def test_hostile_ova_refused(tmp_path: Path, members: list) -> None:
    ova = tmp_path / "a.ova"
    ova.write_bytes(tar_bytes(members))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ImageFormatError, match="OVA refused"):
        formats.unpack_ova(ova, work, "t")
    assert list(work.iterdir()) == []


def test_not_a_tar_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "a.ova"
    fake.write_bytes(b"\0" * 257 + b"ustar" + b"\xff" * 300)
    with pytest.raises(ImageFormatError):
        formats.unpack_ova(fake, tmp_path, "t")


def test_probe_refuses_backing_files(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.write_bytes(bytes(4096))
    top = tmp_path / "top"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                    str(top)], check=True)  # fmt: skip
    with pytest.raises(ImageFormatError, match="backing file"):
        formats.probe(top, "t")


def test_convert_timeout_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    source.write_bytes(bytes(64 * 1024 * 1024))
    with pytest.raises(ImageFormatError, match="took longer than"):
        formats.convert(source, "raw", "qcow2", tmp_path / "out", 0.001, "t")

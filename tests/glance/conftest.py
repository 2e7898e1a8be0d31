"""End-to-end tests of the installed ``vmcatcher_glance`` against a real Glance.

Why real: the status machine (queued → saving → active, deactivated), Glance's
own sha512 (``os_hash_value``), its format inspection and its refusals (403 on
a protected image) are what the command must cope with; a fake would only
repeat our assumptions. Each xdist worker starts its own Glance
(:mod:`tests.support.glance`); each test uses its own tag, so tests never see
each other's images. The site (list, subscription, cache) comes from the cache
end-to-end fixtures (:mod:`tests.cache_e2e.conftest`).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cache_e2e.conftest import CacheSite, ca_dir, pki, site  # noqa: F401 - fixtures
from tests.support import glance as glance_support
from tests.support.commands import Result


@pytest.fixture(scope="session")
def glance_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[glance_support.GlanceState]:
    """One Glance per worker; failing to start it fails the tests (never skips)."""
    state_file = tmp_path_factory.mktemp("glance-state") / "server.json"
    state = glance_support.start(state_file)
    try:
        yield state
    finally:
        glance_support.stop(state_file)


@dataclass
class GlanceSite:
    """A cache site plus a clouds.yaml for the test Glance and a tag of its own."""

    site: CacheSite
    endpoint: str
    tag: str

    def run(self, *args: str, expect: int | None = 0, **kwargs: Any) -> Result:
        return self.site.command("vmcatcher_glance", "--tag", self.tag, *args, expect=expect,
                                 **kwargs)  # fmt: skip

    def start(self, *args: str) -> subprocess.Popen[str]:
        from tests.support.commands import clean_env, command_path

        return subprocess.Popen(
            [command_path("vmcatcher_glance"), "--tag", self.tag, *args],
            cwd=self.site.root, env=clean_env(self.site.env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def images(self) -> list[dict[str, Any]]:
        """Our images, straight from the API (no vmcatcher code involved)."""
        found: dict[str, dict[str, Any]] = {}
        for visibility in ("all", "community"):
            answer = requests.get(f"{self.endpoint}/v2/images", params={
                "tag": self.tag, "limit": 1000, "visibility": visibility}, timeout=30)  # fmt: skip
            answer.raise_for_status()
            for image in answer.json()["images"]:
                found.setdefault(image["id"], image)
        return list(found.values())

    def by_identifier(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for image in self.images():
            found.setdefault(image.get("vmcatcher_event_dc_identifier"), []).append(image)
        return found

    def patch(self, image_id: str, operations: list[dict[str, Any]]) -> None:
        answer = requests.patch(
            f"{self.endpoint}/v2/images/{image_id}", data=json.dumps(operations),
            headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}, timeout=30,
        )  # fmt: skip
        answer.raise_for_status()

    def create_foreign(self, name: str, tags: list[str]) -> str:
        answer = requests.post(f"{self.endpoint}/v2/images", json={
            "name": name, "disk_format": "raw", "container_format": "bare", "tags": tags},
            timeout=30)  # fmt: skip
        answer.raise_for_status()
        return answer.json()["id"]


@pytest.fixture
def gsite(site: CacheSite, glance_server: glance_support.GlanceState) -> GlanceSite:  # noqa: F811
    glance_support.clouds_yaml(glance_server.endpoint, site.root)
    site.env.update(
        OS_CLIENT_CONFIG_FILE=str(site.root / "clouds.yaml"),
        OS_CLOUD="testglance",
        PATH=site.env["PATH"],
    )
    return GlanceSite(site, glance_server.endpoint, f"vmc-{uuid.uuid4().hex[:12]}")


def qcow2_bytes(tmp: Path, size: str = "1M", name: str = "disk.qcow2") -> bytes:
    """A small valid qcow2 (what lists in the tests publish as qcow2)."""
    path = tmp / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path.read_bytes()


def vmdk_bytes(tmp: Path, size: str = "1M") -> bytes:
    path = tmp / "disk.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(path), size], check=True)
    return path.read_bytes()


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar archive built member by member (hostile ones included)."""
    out = BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                archive.addfile(info, BytesIO(data))
            else:
                archive.addfile(info)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


class SlowProxy:
    """A TCP proxy to Glance that forwards uploads at ``rate`` bytes/s.

    Why: an upload to a local Glance ends in a blink; tests that kill a run
    mid-upload, or start a second run during one, need it to last seconds.
    """

    def __init__(self, port: int, rate: int) -> None:
        import socket
        import threading

        self.target = ("127.0.0.1", port)
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        import socket
        import threading

        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: Any, sink: Any, slow: bool) -> None:
        import time

        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()


@pytest.fixture
def slow_cloud(gsite: GlanceSite, glance_server: glance_support.GlanceState) -> Iterator[str]:
    """The name of a second cloud in the site's clouds.yaml, reaching Glance slowly."""
    proxy = SlowProxy(glance_server.port, 4 * 1024 * 1024)
    path = gsite.site.root / "clouds.yaml"
    path.write_text(
        path.read_text()
        + f"  slowglance:\n    auth_type: none\n    auth:\n      endpoint: {proxy.endpoint}\n"
    )
    yield "slowglance"
    proxy.close()

"""A throw-away OpenStack Glance (image service) for the test run: install, start, stop.

Why: ``vmcatcher_glance`` is only proven against the real image service, with
its real status machine (queued, saving, active, deactivated), its own hashing
(``os_hash_value``) and its format inspection. CI machines are fresh Debian
boxes, so the test run itself brings the server, as
:mod:`tests.support.postgres` does for PostgreSQL.

``python -m tests.support.glance start`` (``make glance-start``):

1. installs Glance and gunicorn with pip into their own virtualenv,
   ``.glance-venv`` at the repository root (git-ignored; about 25 s once), and
   ``qemu-utils`` with ``apt-get`` when ``qemu-img`` is missing; concurrent
   callers (pytest-xdist workers) serialise on a file lock;
2. writes a configuration without Keystone (``[paste_deploy] flavor =`` empty),
   with the file store, an SQLite database and a policy making every caller an
   admin (``"context_is_admin": ""``: without it every create is refused),
   all in a fresh ``/tmp/vmcatcher-glance-*`` directory; runs
   ``glance-manage db_sync``;
3. serves ``glance.wsgi.api:application`` with gunicorn on 127.0.0.1 and a
   free port (``glance-api`` no longer runs standalone), waits for
   ``/versions``, and records the state in ``.glancetest/server.json`` (or
   ``--state FILE``); it prints the endpoint URL.

``stop`` kills the server's process group and removes its directory and the
state file; it is safe when nothing was started. The pytest fixture
:func:`glance_server` starts one server per xdist worker and stops it at the
end of the session; a server that cannot start makes the tests fail, never
skip.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".glance-venv"
STATE_DIR = REPO / ".glancetest"
STATE_FILE = STATE_DIR / "server.json"
INSTALL_LOCK = REPO / ".glance-venv.lock"
PACKAGES = ("glance", "gunicorn")
START_TIMEOUT = 60.0

API_CONF = """\
[DEFAULT]
bind_host = 127.0.0.1
enabled_backends = fs:file
image_cache_dir = {root}/image-cache
log_file = {root}/glance-api.log
debug = false

[database]
connection = sqlite:///{root}/glance.sqlite

[paste_deploy]
flavor =

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {root}/images

[os_glance_staging_store]
filesystem_store_datadir = {root}/staging

[os_glance_tasks_store]
filesystem_store_datadir = {root}/tasks


[oslo_concurrency]
lock_path = {root}/locks
"""

# Every caller is an admin (no Keystone): creating, publicising and sharing images.
POLICY = """\
"context_is_admin": ""
"publicize_image": ""
"communitize_image": ""
"""


class GlanceSetupError(RuntimeError):
    """The test Glance could not be installed, configured or started."""


@dataclass
class GlanceState:
    endpoint: str
    port: int
    pid: int
    root: str


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-15:]
        raise GlanceSetupError(f"{what} failed ({completed.returncode}):\n" + "\n".join(tail))


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    with open(INSTALL_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _glance_installed() -> bool:
    return (VENV / "bin" / "gunicorn").exists() and (VENV / "bin" / "glance-manage").exists()


def ensure_qemu_img() -> str:
    """The path of ``qemu-img``, installing Debian's ``qemu-utils`` when it is missing."""
    found = shutil.which("qemu-img")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    _run([*sudo, "apt-get", "update", "-qq"], "apt-get update")
    _run([*sudo, "apt-get", "install", "-y", "-qq", "qemu-utils"], "apt-get install qemu-utils")
    found = shutil.which("qemu-img")
    if not found:
        raise GlanceSetupError("qemu-utils installed but qemu-img is not on PATH")
    return found


def ensure_installed() -> Path:
    """The Glance virtualenv, created on first use (pip install glance gunicorn)."""
    with _install_lock():
        ensure_qemu_img()
        if not _glance_installed():
            if not (VENV / "bin" / "python").exists():
                _run([sys.executable, "-m", "venv", str(VENV)], "creating .glance-venv")
            _run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES], "pip install glance")
        if not _glance_installed():
            raise GlanceSetupError("pip installed Glance, but gunicorn/glance-manage are missing")
    return VENV


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _paste_ini() -> Path:
    for candidate in (VENV / "etc" / "glance" / "glance-api-paste.ini",):
        if candidate.is_file():
            return candidate
    found = list(VENV.rglob("glance-api-paste.ini"))
    if not found:
        raise GlanceSetupError("glance-api-paste.ini not found in .glance-venv")
    return found[0]


def _configure(root: Path) -> Path:
    conf_dir = root / "etc"
    conf_dir.mkdir()
    for name in ("images", "staging", "tasks", "locks", "image-cache"):
        (root / name).mkdir()
    (conf_dir / "glance-api.conf").write_text(API_CONF.format(root=root))
    (conf_dir / "policy.yaml").write_text(POLICY)
    shutil.copy(_paste_ini(), conf_dir / "glance-api-paste.ini")
    return conf_dir


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GlanceSetupError(f"Glance exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{endpoint}/versions", timeout=2) as answer:
                if answer.status in (200, 300):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise GlanceSetupError(f"Glance did not answer within {START_TIMEOUT:.0f} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(state_file: Path = STATE_FILE) -> GlanceState:
    """Install if needed, configure and start one Glance; record and return its state."""
    venv = ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="vmcatcher-glance-"))
    try:
        conf_dir = _configure(root)
        env = dict(os.environ, OS_GLANCE_CONFIG_DIR=str(conf_dir))
        _run(
            [str(venv / "bin" / "glance-manage"), "--config-dir", str(conf_dir), "db_sync"],
            "glance-manage db_sync",
            env=env,
        )
        port = free_port()
        log = root / "gunicorn.log"
        with open(log, "ab") as output:
            proc = subprocess.Popen(
                [str(venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                 "--workers", "1", "--threads", "4", "--worker-class", "gthread",
                 "--no-control-socket", "--timeout", "600", "glance.wsgi.api:application"],
                env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=root,
            )  # fmt: skip
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(endpoint, proc, log)
        except BaseException:
            _kill(proc.pid)
            raise
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    state = GlanceState(endpoint, port, proc.pid, str(root))
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(asdict(state)))
    return state


def _kill(pid: int) -> None:
    """Kill the server's whole process group (gunicorn's master and worker) at once.

    A graceful stop waits for idle keep-alive connections; the data is thrown away anyway.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


def stop_state(state: GlanceState) -> None:
    _kill(state.pid)
    root = Path(state.root)
    if root.name.startswith("vmcatcher-glance-"):
        shutil.rmtree(root, ignore_errors=True)


def stop(state_file: Path = STATE_FILE) -> bool:
    """Stop the recorded server; False when there was none."""
    if not state_file.exists():
        return False
    state = GlanceState(**json.loads(state_file.read_text()))
    stop_state(state)
    state_file.unlink(missing_ok=True)
    return True


def clouds_yaml(endpoint: str, directory: Path, cloud: str = "testglance") -> Path:
    """A clouds.yaml reaching this Glance without Keystone (``auth_type: none``)."""
    path = directory / "clouds.yaml"
    path.write_text(
        "clouds:\n"
        f"  {cloud}:\n"
        "    auth_type: none\n"
        "    auth:\n"
        f"      endpoint: {endpoint}\n"
        "    image_api_version: '2'\n"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.glance")
    parser.add_argument("action", choices=("start", "stop", "install"))
    parser.add_argument("--state", type=Path, default=STATE_FILE)
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            ensure_installed()
            print(VENV)
        elif args.action == "start":
            print(start(args.state).endpoint)
        else:
            stop(args.state)
    except GlanceSetupError as error:
        print(f"test Glance: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

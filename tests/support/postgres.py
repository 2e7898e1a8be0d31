"""A throw-away PostgreSQL server for the test run: install, start, stop.

Why: sites that share one cache database between hosts run vmcatcher on
PostgreSQL, so ``make test`` repeats the database tests there. CI machines are
fresh Debian boxes, so the test run itself must bring the server: nothing may
rely on a PostgreSQL someone started by hand.

``python -m tests.support.postgres start`` (what ``make test`` runs):

1. finds ``initdb``/``pg_ctl`` under ``/usr/lib/postgresql/<version>/bin``
   (newest version first) or on ``PATH``; when there are none, installs
   Debian's ``postgresql`` package with ``apt-get`` (through ``sudo`` when not
   root);
2. creates a new cluster in a fresh temporary directory (``/tmp/vmcatcher-
   pgtest-*``, reachable by the ``postgres`` user whatever the repository's
   own permissions). As root the cluster belongs to the ``postgres`` user and
   every server command runs through ``runuser -u postgres --``, because
   ``initdb`` and ``postgres`` refuse to run as root; otherwise it belongs to
   the current user;
3. configures it for tests only: listening on 127.0.0.1 on a free port, no
   Unix socket, password (scram-sha-256) authentication, durability off
   (``fsync``, ``synchronous_commit``, ``full_page_writes``) because the data
   is thrown away anyway;
4. starts it, creates a login role that may create databases plus a database
   of the same name, writes the state to ``.pgtest/server.json`` at the
   repository root (ignored by git) and prints the role's URL, e.g.
   ``postgresql+psycopg://vmcatcher:<pw>@127.0.0.1:<port>/vmcatcher``, which is
   what ``VMCATCHER_TEST_DATABASE`` expects (see :mod:`tests.support.databases`).

``python -m tests.support.postgres stop`` stops that server and deletes the
cluster directory and the state file. It is safe to run when nothing was
started (``make`` calls it from a trap, also after failures). ``url`` prints
the recorded URL again. ``--state FILE`` records elsewhere, so that several
servers (e.g. ``make test-postgresql`` beside one started by hand) coexist.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = REPO / ".pgtest"
STATE_FILE = STATE_DIR / "server.json"

#: The login role (and its database) the tests use.
ROLE = "vmcatcher"
#: The OS account owning the cluster when the test run is root.
OS_USER = "postgres"

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
    "logging_collector": "off",
}


class PostgresSetupError(RuntimeError):
    """The test server could not be installed, created or started."""


@dataclass
class ServerState:
    """What ``stop`` needs to find the server again (kept in ``.pgtest/server.json``)."""

    bindir: str
    datadir: str
    port: int
    url: str
    run_as: str | None


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``; the newest Debian version first."""

    def version_key(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)

    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True):
        if all(os.access(Path(bindir, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
            return Path(bindir)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def install_postgresql() -> Path:
    """Install Debian's ``postgresql`` package and return its binary directory."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("PostgreSQL server not found: installing Debian's 'postgresql' package", file=sys.stderr)
    for command in (
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        # stdout is the URL channel of ``start``: apt's progress goes to stderr.
        completed = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr)
        if completed.returncode != 0:
            raise PostgresSetupError(f"'{' '.join(command)}' failed ({completed.returncode})")
    bindir = find_bindir()
    if bindir is None:
        raise PostgresSetupError("installed 'postgresql' but found no initdb/pg_ctl")
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_owner(run_as: str | None, command: list[str]) -> list[str]:
    return ["runuser", "-u", run_as, "--", *command] if run_as else command


def _run(command: list[str], what: str) -> None:
    completed = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd="/"
    )
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()
        raise PostgresSetupError(f"{what} failed ({completed.returncode}): {output}")


def _owner() -> str | None:
    """The OS user that must own the cluster: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresSetupError(
            f"running as root but there is no '{OS_USER}' user to own the cluster"
        ) from None
    return OS_USER


def start(bindir: Path | None = None, state_file: Path = STATE_FILE) -> ServerState:
    """Create and start a new test cluster; return its state (also written to *state_file*).

    A server still recorded in *state_file* (a run that was killed) is stopped first.
    """
    if state_file.exists():
        stop(state_file)
    bindir = bindir or find_bindir() or install_postgresql()
    run_as = _owner()
    datadir = Path(tempfile.mkdtemp(prefix="vmcatcher-pgtest-"))
    try:
        state = _create_and_start(bindir, datadir, run_as)
    except BaseException:
        _stop_server(bindir, datadir, run_as)
        shutil.rmtree(datadir, ignore_errors=True)
        raise
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
    state_file.chmod(0o600)
    return state


def _create_and_start(bindir: Path, datadir: Path, run_as: str | None) -> ServerState:
    superuser_password = secrets.token_hex(16)
    pwfile = datadir / "pwfile"
    cluster = datadir / "data"
    pwfile.write_text(superuser_password + "\n")
    if run_as:
        shutil.chown(datadir, run_as, run_as)
        shutil.chown(pwfile, run_as, run_as)
    pwfile.chmod(0o600)
    _run(
        _as_owner(run_as, [
            str(bindir / "initdb"), "-D", str(cluster), "-U", "postgres",
            f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=peer",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        ]),
        "initdb",
    )  # fmt: skip
    pwfile.unlink()

    last_error: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        settings = {**SERVER_SETTINGS, "port": str(port)}
        conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
        _write_as(run_as, cluster / "postgresql.auto.conf", conf)
        try:
            _run(
                _as_owner(run_as, [
                    str(bindir / "pg_ctl"), "-D", str(cluster), "-l", str(datadir / "server.log"),
                    "-w", "-t", "60", "start",
                ]),
                "pg_ctl start",
            )  # fmt: skip
            break
        except PostgresSetupError as error:
            last_error = error
            log = datadir / "server.log"
            if not log.exists() or "could not bind" not in log.read_text(errors="replace"):
                raise PostgresSetupError(f"{error}\n{_tail(log)}") from None
    else:
        raise PostgresSetupError(f"could not start on a free port: {last_error}")

    role_password = secrets.token_hex(16)
    _create_role_and_database(port, superuser_password, role_password)
    url = f"postgresql+psycopg://{ROLE}:{role_password}@127.0.0.1:{port}/{ROLE}"
    return ServerState(str(bindir), str(datadir), port, url, run_as)


def _write_as(run_as: str | None, path: Path, text: str) -> None:
    path.write_text(text)
    if run_as:
        shutil.chown(path, run_as, run_as)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _create_role_and_database(port: int, superuser_password: str, role_password: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        password=superuser_password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as connection:
        connection.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(role_password)
            )
        )
        connection.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(ROLE), sql.Identifier(ROLE)
            )
        )


def _stop_server(bindir: Path, datadir: Path, run_as: str | None) -> None:
    cluster = datadir / "data"
    if not (cluster / "postmaster.pid").exists():
        return
    subprocess.run(
        _as_owner(run_as, [str(bindir / "pg_ctl"), "-D", str(cluster), "-m", "immediate",
                           "-w", "-t", "30", "stop"]),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        cwd="/",
    )  # fmt: skip


def stop(state_file: Path = STATE_FILE) -> bool:
    """Stop the server named in *state_file* and delete its cluster; False if there was none."""
    try:
        state = ServerState(**json.loads(state_file.read_text()))
    except (OSError, ValueError, TypeError):
        return False
    datadir = Path(state.datadir)
    _stop_server(Path(state.bindir), datadir, state.run_as)
    if datadir.name.startswith("vmcatcher-pgtest-"):
        shutil.rmtree(datadir, ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return True


def recorded_url(state_file: Path = STATE_FILE) -> str | None:
    """The URL of the running test server, if ``start`` recorded one."""
    try:
        return json.loads(state_file.read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.postgres",
        description="Start or stop the throw-away PostgreSQL server of the test run.",
    )
    parser.add_argument("action", choices=["start", "stop", "url"])
    parser.add_argument(
        "--state",
        type=Path,
        default=STATE_FILE,
        help=f"where start records the server for stop (default {STATE_FILE})",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            began = time.monotonic()
            state = start(state_file=args.state)
            print(
                f"PostgreSQL test server: {Path(state.bindir).parent.name} on 127.0.0.1:"
                f"{state.port}, cluster {state.datadir} (started in "
                f"{time.monotonic() - began:.1f} s)",
                file=sys.stderr,
            )
            print(state.url)
        elif args.action == "stop":
            if stop(args.state):
                print("PostgreSQL test server stopped and removed", file=sys.stderr)
        else:
            url = recorded_url(args.state)
            if url is None:
                return 1
            print(url)
    except PostgresSetupError as error:
        print(f"postgres test server: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

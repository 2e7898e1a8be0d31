"""Run the operator's event handler command for cache and subscription events.

Why this module exists (docs/events.md, docs/compatibility.md):

* The handler is an operator-supplied shell command line, run as
  ``/bin/sh -c <command>`` so that ``$VMCATCHER_EVENT_*`` references in it are
  expanded by the event's own shell, as the original documented.
* Values taken from signed lists reach the handler **only through environment
  variables**, never by interpolation into the command string.
  Handlers must quote them (``"$VMCATCHER_EVENT_DC_TITLE"``).
* Every event gets a fresh copy of the base environment, so variables never
  bleed from one event to the next, and this process's own ``os.environ`` is
  never modified (the original aliased and mutated it). Any
  password inside ``VMCATCHER_RDBMS`` is removed before it is exported.
* The promised 10 s limit is really enforced, on the handler's whole process
  group: SIGTERM, then SIGKILL after a grace period; the result counts as
  exit code -9. A handler that leaves a background child holding our pipes,
  or floods its output, cannot hang or exhaust vmcatcher: output is drained
  continuously and only the first :data:`OUTPUT_CAP` bytes of each stream are
  kept.
* A handler's failure or timeout is logged and never changes vmcatcher's
  processing or exit code; events are not retried.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmcatcher.monitoring import RunStats

from vmcatcher.uri import redact_password
from vmcatcher.vocabulary import EventType

log = logging.getLogger("vmcatcher.events")

# Event types: vmcatcher.vocabulary.EventType (exact strings emitted, docs/events.md).

# --- environment given to the handler (docs/events.md) -------------------------

ENV_EVENT_TYPE = "VMCATCHER_EVENT_TYPE"
ENV_SESSION_UUID = "VMCATCHER_EVENT_UUID_SESSION"
ENV_EVENT_PREFIX = "VMCATCHER_EVENT_"
ENV_RDBMS = "VMCATCHER_RDBMS"

#: (variable, metadata keys in order of preference). The first key that is
#: present with a non-empty ``str()`` wins; later keys are the legacy aliases.
EVENT_VARIABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("VMCATCHER_EVENT_FILENAME", ("filename",)),
    ("VMCATCHER_EVENT_DC_IDENTIFIER", ("dc:identifier", "uuid")),
    ("VMCATCHER_EVENT_HV_URI", ("hv:uri",)),
    ("VMCATCHER_EVENT_HV_SIZE", ("hv:size", "size")),
    ("VMCATCHER_EVENT_DC_DESCRIPTION", ("dc:description",)),
    ("VMCATCHER_EVENT_IL_DC_IDENTIFIER", ("hv:imagelist.dc:identifier",)),
    ("VMCATCHER_EVENT_DC_TITLE", ("dc:title",)),
    ("VMCATCHER_EVENT_HV_HYPERVISOR", ("hv:hypervisor",)),
    ("VMCATCHER_EVENT_HV_FORMAT", ("hv:image.hv:format",)),
    ("VMCATCHER_EVENT_HV_VERSION", ("hv:version",)),
    ("VMCATCHER_EVENT_SL_ARCH", ("sl:arch",)),
    ("VMCATCHER_EVENT_SL_COMMENTS", ("sl:comments",)),
    ("VMCATCHER_EVENT_SL_OS", ("sl:os",)),
    ("VMCATCHER_EVENT_SL_OSVERSION", ("sl:osversion",)),
    ("VMCATCHER_EVENT_AD_MPURI", ("hv:image.ad:mpuri",)),
    ("VMCATCHER_EVENT_SL_CHECKSUM_SHA512", ("sl:checksum:sha512", "sha512")),
    ("VMCATCHER_EVENT_VO", ("hv:imagelist.ad:vo",)),
)

#: Bytes of stdout and of stderr kept per event; the rest is read and dropped.
OUTPUT_CAP = 64 * 1024
_READ_CHUNK = 64 * 1024
_POLL_INTERVAL = 0.05
_IDLE_POLL = 0.005
_TIMEOUT_RC = -9
_ABANDON_AFTER_KILL = 1.0
_REAP_LIMIT = 5.0


def redact_database_url(url: str) -> str:
    """Return an SQLAlchemy URL without its password (userinfo or ``password=`` query).

    ``postgresql://user:secret@host/db?sslmode=require`` becomes
    ``postgresql://user@host/db?sslmode=require``. The password is taken to end
    at the *last* ``@`` before the query string, so an unencoded ``@`` inside it
    cannot leak the rest of the secret. URLs without credentials are unchanged.
    """
    base, sep, query = url.partition("?")
    base = redact_password(base, None)
    if sep:
        kept = [
            part
            for part in query.split("&")
            if part.split("=", 1)[0].lower() not in {"password", "passwd"}
        ]
        query = "&".join(kept)
        return f"{base}?{query}" if query else base
    return base


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def event_variables(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Map event metadata to ``VMCATCHER_EVENT_*`` variables (docs/events.md).

    A variable is set when one of its keys is present and ``str(value)`` is not
    empty. ``None`` becomes the text ``None`` as in the original (the cache
    index stores DB NULLs that way).
    """
    variables: dict[str, str] = {}
    if not metadata:
        return variables
    for variable, keys in EVENT_VARIABLES:
        for key in keys:
            if key in metadata:
                text = _text(metadata[key])
                if text:
                    variables[variable] = text
                    break
    return variables


def build_event_env(
    base_env: Mapping[str, str],
    event_type: EventType | str,
    session_uuid: str,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Build the complete, fresh environment for one handler invocation.

    Starts from a copy of ``base_env`` minus any stale ``VMCATCHER_EVENT_*``
    variables (e.g. when vmcatcher itself runs inside a handler), with the DB
    password removed from ``VMCATCHER_RDBMS``, then adds the session uuid, the
    event type and the metadata variables.
    """
    env = {k: v for k, v in base_env.items() if not k.startswith(ENV_EVENT_PREFIX)}
    if ENV_RDBMS in env:
        env[ENV_RDBMS] = redact_database_url(env[ENV_RDBMS])
    env[ENV_SESSION_UUID] = session_uuid
    env[ENV_EVENT_TYPE] = str(event_type)
    env.update(event_variables(metadata))
    return env


def _encode_env(env: Mapping[str, str]) -> dict[bytes, bytes]:
    """Encode for execve: UTF-8 text, inherited undecodable bytes round-trip, NULs dropped."""
    encoded: dict[bytes, bytes] = {}
    for key, value in env.items():
        try:
            raw_key = os.fsencode(key)
        except UnicodeError:
            raw_key = key.encode("utf-8", "replace")
        if not raw_key or b"=" in raw_key or b"\0" in raw_key:
            continue
        try:
            raw_value = os.fsencode(value)
        except UnicodeError:
            raw_value = value.encode("utf-8", "replace")
        encoded[raw_key] = raw_value.replace(b"\0", b"")
    return encoded


@dataclass(frozen=True)
class EventResult:
    """Outcome of one event: exit code (-9 after a timeout kill) and captured output."""

    rc: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0


class _Capture:
    """Keep the first ``cap`` bytes of a stream, count (and drop) the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    def text(self) -> str:
        text = bytes(self.kept).decode("utf-8", "replace")
        if self.total > len(self.kept):
            text += f"\n[output truncated: {self.total} bytes in total, first {self.cap} kept]"
        return text


class EventRunner:
    """Fire events at one handler command; one instance per vmcatcher process.

    ``command`` None (or blank) makes every :meth:`fire` a no-op returning rc 0,
    as the original did. ``base_env`` is copied for every event (pass the
    resolved ``VMCATCHER_CACHE_DIR_*``/``VMCATCHER_RDBMS`` values in it; it is
    never written back). ``timeout`` is the limit for the whole handler run;
    ``kill_grace`` is both the time between SIGTERM and SIGKILL and the time we
    wait for the output pipes to close after the shell itself has exited.
    :meth:`fire` keeps no shared mutable state, so it may be called from
    several threads at once.
    """

    def __init__(
        self,
        command: str | None,
        *,
        base_env: Mapping[str, str],
        timeout: float = 10.0,
        kill_grace: float = 2.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError("event timeout must be positive")
        if kill_grace < 0:
            raise ValueError("event kill grace must not be negative")
        self.command = command if command and command.strip() else None
        self.base_env: dict[str, str] = dict(base_env)
        self.timeout = float(timeout)
        self.kill_grace = float(kill_grace)
        self.session_uuid = str(uuid.uuid1())
        #: Counts failures and timeouts when set (docs/monitoring.md).
        self.stats: RunStats | None = None

    def environment(
        self, event_type: EventType | str, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """The exact environment :meth:`fire` would give the handler."""
        return build_event_env(self.base_env, event_type, self.session_uuid, metadata)

    def fire(
        self, event_type: EventType | str, metadata: Mapping[str, Any] | None = None
    ) -> EventResult:
        """Run the handler for one event, log the outcome (docs/events.md), never raise."""
        if self.command is None:
            return EventResult(rc=0)
        env = _encode_env(self.environment(event_type, metadata))
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            log.error("Event '%s' could not start '%s': %s", event_type, self.command, exc)
            result = EventResult(rc=127, stderr=str(exc))
            if self.stats is not None:
                self.stats.event_done(result.rc, result.timed_out)
            return result
        try:
            result = self._supervise(proc)
        except Exception as exc:  # never let a handler problem stop the run
            _signal_group(proc.pid, signal.SIGKILL)
            log.error("Event '%s' handler '%s' failed: %s", event_type, self.command, exc)
            result = EventResult(rc=_TIMEOUT_RC, stderr=str(exc))
        self._log(event_type, result)
        if self.stats is not None:
            self.stats.event_done(result.rc, result.timed_out)
        return result

    # -- internals -----------------------------------------------------------

    def _supervise(self, proc: subprocess.Popen[bytes]) -> EventResult:
        """Drain both pipes until the handler is done, enforcing every time limit."""
        assert proc.stdout is not None and proc.stderr is not None
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        captures = {out_fd: _Capture(OUTPUT_CAP), err_fd: _Capture(OUTPUT_CAP)}
        selector = selectors.DefaultSelector()
        for fd in captures:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + self.timeout
        timed_out = False
        term_sent_at: float | None = None
        kill_sent_at: float | None = None
        shell_exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if shell_exited_at is None and _has_exited(proc.pid):
                    shell_exited_at = now
                if shell_exited_at is not None and not selector.get_map():
                    break  # the normal end: shell gone, both pipes at EOF
                if shell_exited_at is None and term_sent_at is None and now >= deadline:
                    timed_out = True
                    term_sent_at = now
                    _signal_group(proc.pid, signal.SIGTERM)
                if (
                    term_sent_at is not None
                    and kill_sent_at is None
                    and now >= term_sent_at + self.kill_grace
                ):
                    kill_sent_at = now
                    _signal_group(proc.pid, signal.SIGKILL)
                if (
                    shell_exited_at is not None
                    and term_sent_at is None
                    and kill_sent_at is None
                    and now >= min(shell_exited_at + self.kill_grace, deadline)
                ):
                    # The shell is gone but something it started still holds our
                    # pipes open: end the whole group rather than wait for it.
                    log.warning(
                        "Event handler '%s' exited but left processes holding its output;"
                        " killing them.",
                        self.command,
                    )
                    kill_sent_at = now
                    _signal_group(proc.pid, signal.SIGKILL)
                if kill_sent_at is not None and now >= kill_sent_at + _ABANDON_AFTER_KILL:
                    # Only a process that left the group (setsid) can still hold a
                    # pipe open now; stop reading and abandon it.
                    break
                if not selector.get_map():
                    time.sleep(_IDLE_POLL)  # only the exit status is still awaited
                    continue
                for key, _ in selector.select(_POLL_INTERVAL):
                    fd = int(key.fd)
                    try:
                        data = os.read(fd, _READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if data:
                        captures[fd].feed(data)
                    else:
                        selector.unregister(fd)
        finally:
            selector.close()
            proc.stdout.close()
            proc.stderr.close()
            rc = _reap(proc)
        if timed_out:
            rc = _TIMEOUT_RC
        return EventResult(
            rc=rc,
            stdout=captures[out_fd].text(),
            stderr=captures[err_fd].text(),
            timed_out=timed_out,
        )

    def _log(self, event_type: EventType | str, result: EventResult) -> None:
        if result.timed_out:
            log.error(
                "Event '%s' timed out after %s seconds executing '%s'; its process group was"
                " killed.",
                event_type,
                _seconds(self.timeout),
                self.command,
            )
        if result.rc == 0:
            log.debug("event '%s' executed '%s'", event_type, self.command)
            log.debug("stdout=%s", result.stdout)
            log.debug("stderr=%s", result.stderr)
        else:
            first = next((line.strip() for line in result.stderr.splitlines() if line.strip()), "")
            log.error(
                "Event '%s' executed '%s' with exit code '%s'.%s",
                event_type,
                self.command,
                result.rc,
                f" stderr: {first[:500]}" if first else "",
            )
            log.info("stdout=%s", result.stdout)
            log.info("stderr=%s", result.stderr)


def _has_exited(pid: int) -> bool:
    """True once the shell has exited, *without reaping it*.

    Leaving the zombie in place keeps its pid (which is also the process group
    id) reserved, so signalling the group can never hit an unrelated process.
    """
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _reap(proc: subprocess.Popen[bytes]) -> int:
    """Collect the shell's exit status; give up (rc -9) if even SIGKILL did not end it."""
    try:
        return proc.wait(timeout=_REAP_LIMIT)
    except subprocess.TimeoutExpired:
        log.error("Event handler process %s did not exit after SIGKILL; abandoning it.", proc.pid)
        return _TIMEOUT_RC


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _seconds(value: float) -> str:
    return f"{value:g}"

"""Run a vmcatcher command in a real child process that a test can SIGKILL at any moment.

Why not just the console scripts: a crash trial kills a command after a random
delay in ``[0, typical runtime]``. Started as a console script, half of that
runtime is the interpreter importing SQLAlchemy, M2Crypto and requests, so half
of the kills would land before the command touched anything. Here the commands
run in processes forked from a ``multiprocessing`` *forkserver* that imported
the vmcatcher modules once: each child is a separate process with its own
working directory, environment and output file, running the same ``main(argv)``
the console script calls, and ``SIGKILL`` ends it exactly as it would end the
installed command. Nearly the whole delay range then lands in real work
(download, import, expiry, index writes).

The forkserver is a clean single-threaded process, so forking it is safe even
though the test process runs server threads. The end-to-end tests elsewhere
(and the disk-full and concurrency tests here) run the real console scripts.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

COMMANDS = {
    "vmcatcher_subscribe": "vmcatcher.cli.subscribe",
    "vmcatcher_image": "vmcatcher.cli.image",
    "vmcatcher_cache": "vmcatcher.cli.cache",
}

_PRELOAD = [
    "__main__",  # so children do not re-import the test runner's main script
    *COMMANDS.values(),
    "vmcatcher.services.cache",
    "vmcatcher.services.update",
    "vmcatcher.services.subscribe",
    "vmcatcher.cache.download",
    "vmcatcher.cache.layout",
    "vmcatcher.cache.lock",
    "vmcatcher.events",
    "vmcatcher.fetch",
    "vmcatcher.trust",
    "vmcatcher.imagelist",
    "vmcatcher.db.engine",
    "vmcatcher.db.migrate",
    "vmcatcher.db.models",
    "vmcatcher.cli.database",
    "sqlalchemy.dialects.sqlite",
    "requests",
]

_context: multiprocessing.context.ForkServerContext | None = None


def _forkserver() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        _context = context
    return _context


def _child(command: str, argv: list[str], cwd: str, env: dict[str, str], output: str) -> None:
    """Body of the child: become the command (cwd, env, stdio) and run its main()."""
    import atexit
    import importlib
    import logging
    import sys
    import tempfile

    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # follow the child's TMPDIR
    logging.root.handlers.clear()
    sys.argv = [command, *argv]
    rc = 1
    try:
        rc = int(importlib.import_module(COMMANDS[command]).main(argv))
    except SystemExit as exit_:  # argparse usage errors
        rc = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()  # what the console script's interpreter would run
    os._exit(rc)


@dataclass
class Outcome:
    """How one child run ended."""

    returncode: int | None  # None when it was killed
    killed: bool
    duration: float
    output: str

    def __str__(self) -> str:
        state = "killed" if self.killed else f"rc={self.returncode}"
        return f"{state} after {self.duration:.3f}s\n--- output\n{self.output}"


class Child:
    """One started command; :meth:`kill` sends SIGKILL, :meth:`wait` collects it."""

    def __init__(
        self, command: str, argv: list[str], cwd: Path, env: dict[str, str], output: Path
    ) -> None:
        self.output = output
        output.write_bytes(b"")
        self.started = time.monotonic()
        self.process = _forkserver().Process(
            target=_child, args=(command, list(argv), str(cwd), dict(env), str(output))
        )
        self.process.start()
        self.ended: float | None = None
        self.killed = False

    def kill_after(self, delay: float) -> bool:
        """SIGKILL the child ``delay`` seconds after it started; False if it ended first."""
        self.process.join(max(0.0, self.started + delay - time.monotonic()))
        if self.process.exitcode is not None:
            return False
        os.kill(self.process.pid, signal.SIGKILL)
        self.killed = True
        return True

    def wait(self, timeout: float = 60) -> Outcome:
        self.process.join(timeout)
        if self.process.exitcode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(5)
            raise AssertionError(f"command did not end within {timeout}s:\n{self.read()}")
        self.ended = time.monotonic()
        code = self.process.exitcode
        killed = code == -signal.SIGKILL
        return Outcome(None if killed else code, killed, self.ended - self.started, self.read())

    def read(self) -> str:
        return self.output.read_text(errors="replace")


def start(command: str, argv: list[str], cwd: Path, env: dict[str, str], output: Path) -> Child:
    return Child(command, argv, cwd, env, output)


def run(command: str, argv: list[str], cwd: Path, env: dict[str, str], output: Path) -> Outcome:
    return start(command, argv, cwd, env, output).wait()

"""Shared helpers for the event-runner tests: real /bin/sh handlers, real processes."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

DUMP_ENV = """
import json, os, sys
env = {k.decode('latin-1'): v.hex() for k, v in os.environb.items()}
with open(sys.argv[1], 'a') as fh:
    fh.write(json.dumps(env) + '\\n')
"""


class EnvDumper:
    """A handler command that appends its whole environment (as raw bytes) to a file."""

    def __init__(self, tmp_path: Path) -> None:
        self.script = tmp_path / "dump_env.py"
        self.script.write_text(DUMP_ENV)
        self.output = tmp_path / "envs.jsonl"
        self.command = " ".join(
            shlex.quote(str(p)) for p in (sys.executable, self.script, self.output)
        )

    def records(self) -> list[dict[str, bytes]]:
        lines = self.output.read_text().splitlines()
        return [{k: bytes.fromhex(v) for k, v in json.loads(line).items()} for line in lines]

    def texts(self) -> list[dict[str, str]]:
        return [{k: v.decode("utf-8") for k, v in rec.items()} for rec in self.records()]


@pytest.fixture
def dumper(tmp_path: Path) -> EnvDumper:
    return EnvDumper(tmp_path)


@pytest.fixture
def base_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def process_gone(pid: int, within: float = 3.0) -> bool:
    """True once ``pid`` no longer runs (a zombie awaiting an absent reaper counts as gone)."""
    end = time.monotonic() + within
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return True
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.05)

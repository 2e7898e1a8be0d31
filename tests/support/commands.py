"""Run the installed vmcatcher commands as a user would, in a test's own directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BIN_DIR = Path(sys.executable).parent

# Variables of the developer's shell that would leak into a test's command.
_SCRUBBED_PREFIX = "VMCATCHER_"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"rc={self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def command_path(name: str) -> str:
    """Path of an installed console script in the test virtualenv."""
    path = BIN_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed in {BIN_DIR}; run 'make venv'")
    return str(path)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIX)}
    env.update(extra or {})
    return env


def run(
    name: str,
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> Result:
    """Run command ``name`` with ``args`` in ``cwd``; never raises on a non-zero exit."""
    completed = subprocess.run(
        [command_path(name), *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)

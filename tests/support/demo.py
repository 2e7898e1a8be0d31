"""``make demo``: the main job end to end on an embedded default, as a shell transcript.

Everything happens in a fresh temporary directory with a SQLite database; the
commands run are the installed ones, exactly as an admin would type them, and
each is echoed before its output. The demo exits non-zero as soon as a step
does not end the way it should, so it doubles as a smoke test.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.commands import clean_env, command_path


class Demo:
    """Runs commands in ``workdir`` and prints them like a terminal session."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = clean_env({"VMCATCHER_RDBMS": f"sqlite:///{workdir / 'vmcatcher.db'}"})

    def say(self, text: str) -> None:
        print(f"\n# {text}", flush=True)

    def run(self, name: str, *args: str, expect: int = 0) -> str:
        shown = " ".join(shlex.quote(a) for a in (name, *args))
        print(f"$ {shown}", flush=True)
        completed = subprocess.run(
            [command_path(name), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        sys.stdout.write(completed.stdout)
        if completed.stdout and not completed.stdout.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.write(completed.stderr)
        sys.stdout.flush()
        if completed.returncode != expect:
            raise SystemExit(
                f"demo failed: '{shown}' exited {completed.returncode}, expected {expect}"
            )
        return completed.stdout


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vmcatcher-demo-") as tmp:
        workdir = Path(tmp)
        demo = Demo(workdir)
        print(f"vmcatcher demo in {workdir} (database {demo.env['VMCATCHER_RDBMS']})")

        demo.say("Who may sign image lists: create an endorser with one x.509 credential.")
        demo.run(
            "vmcatcher_endorser",
            "-C",
            "-e",
            "Demo Endorser",
            "--dn",
            "/DC=org/DC=example/CN=Demo Endorser",
            "-I",
            "/DC=org/DC=example/CN=Demo CA",
        )
        demo.say("List the endorsers.")
        out = demo.run("vmcatcher_endorser", "-l")
        if "Demo Endorser" not in out:
            raise SystemExit("demo failed: the endorser is not listed")
        demo.say("The same credential cannot belong to a second endorser (exit code 12).")
        demo.run(
            "vmcatcher_endorser",
            "-C",
            "-e",
            "Someone Else",
            "--dn",
            "/DC=org/DC=example/CN=Demo Endorser",
            "-I",
            "/DC=org/DC=example/CN=Demo CA",
            expect=12,
        )
        demo.run("vmcatcher_endorser", "-l", "-f", "json")
        print("\n\ndemo finished: all steps behaved as expected.")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

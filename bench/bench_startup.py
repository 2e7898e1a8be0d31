"""Start-up cost of the commands an admin types most, against a bare interpreter.

Cron jobs and interactive `vmcatcher_image -l` should not pay for M2Crypto or
requests. Each command runs on an empty SQLite database (created once before
timing); the baseline is `python -c pass` measured in the same run, so the
ratio survives a noisy machine.

    .venv/bin/python bench/bench_startup.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(argv: list[str], cwd: str, env: dict[str, str], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VMCATCHER_")}
        env["VMCATCHER_RDBMS"] = f"sqlite:///{tmp}/vmcatcher.db"
        subprocess.run([str(BIN / "vmcatcher_endorser"), "-l"], cwd=tmp, env=env, check=True)
        baseline = timed([sys.executable, "-c", "pass"], tmp, env, rounds)
        print(f"baseline python -c pass: {baseline * 1000:.0f} ms")
        for command in (["vmcatcher_endorser", "-l"], ["vmcatcher_image", "-l"],
                        ["vmcatcher_subscribe", "-l"]):  # fmt: skip
            argv = [str(BIN / command[0]), *command[1:]]
            median = timed(argv, tmp, env, rounds)
            print(
                f"{' '.join(command)}: {median * 1000:.0f} ms ({median / baseline:.1f}x baseline)"
            )


if __name__ == "__main__":
    main()

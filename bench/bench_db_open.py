"""Time what every command pays at start-up: open the database and ensure_schema.

Not a test. Builds an up-to-date SQLite database in a temp dir, then measures
``open_database`` + ``ensure_schema`` (the one-query fast path) many times, and
the cost of ``import vmcatcher.db`` in a fresh interpreter.

    .venv/bin/python bench/bench_db_open.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    from vmcatcher.db import ensure_schema, open_database, prepare_database

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'vmcatcher.db'}"
        started = time.perf_counter()
        prepare_database(url).close()
        created = time.perf_counter() - started

        samples = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            database = open_database(url)
            ensure_schema(database)
            samples.append(time.perf_counter() - started)
            database.close()

        ensure_only = []
        database = open_database(url)
        for _ in range(args.rounds):
            started = time.perf_counter()
            ensure_schema(database)
            ensure_only.append(time.perf_counter() - started)
        database.close()

        code = (
            "import time; t = time.perf_counter(); import vmcatcher.db; "
            "print(time.perf_counter() - t)"
        )
        imports = [
            float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout)
            for _ in range(5)
        ]  # fmt: skip

    ms = 1000.0
    print(f"create fresh schema (once, imports alembic): {created * ms:.1f} ms")
    print(
        f"open_database + ensure_schema, up-to-date DB ({args.rounds} rounds): "
        f"median {statistics.median(samples) * ms:.2f} ms, "
        f"p95 {sorted(samples)[int(len(samples) * 0.95)] * ms:.2f} ms"
    )
    print(f"ensure_schema alone (one SELECT): median {statistics.median(ensure_only) * ms:.3f} ms")
    print(f"import vmcatcher.db (fresh process): median {statistics.median(imports) * ms:.0f} ms")


if __name__ == "__main__":
    main()

"""Time ``vmcatcher_subscribe -U`` on a large list, through the installed command.

Not a test. Why: big endorsers (CernVM, EGI AppDB VO lists) publish lists of
thousands of images and sites run ``-U`` from cron every few hours, so the
import must scale with the number of images and an unchanged list must be
recognised by its hash without re-importing anything.

For each round, in a fresh temp dir with a fresh SQLite DB and test CA:

* ``subscribe``: ``vmcatcher_subscribe -s file://... -e`` (verify, one
  ImageDefinition per image);
* ``first -U``: the first import (one list instance, N image instances);
* ``unchanged -U``: the same bytes again (sha512 match, nothing written);
* ``new version -U``: the list re-signed with a higher ``hv:version``.

Baselines measured in the same run, so ratios survive a slower machine:
``vmcatcher_subscribe -l`` on the same DB (interpreter, imports, DB open) and
the sha512 of the signed list in-process.

    .venv/bin/python bench/bench_update.py [--images 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.commands import clean_env, command_path
from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import TestPKI, sign


def timed(args: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> float:
    started = time.perf_counter()
    completed = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if completed.returncode != expect:
        raise SystemExit(f"{' '.join(args)} exited {completed.returncode}:\n{completed.stderr}")
    return elapsed


def one_round(pki: TestPKI, count: int, workdir: Path) -> dict[str, float]:
    ca_dir = pki.write_ca_dir(workdir / "certificates")
    list_path = workdir / "image.list"
    url = list_path.as_uri()
    images = [
        make_image(f"00000000-0000-4000-8000-{number:012d}", data=number.to_bytes(8, "big"))
        for number in range(count)
    ]

    def publish(version: str) -> bytes:
        document = make_image_list(
            "6a5b4a49-4bb4-4b42-9a6e-000000000001",
            url,
            version,
            images,
            pki.endorser.subject,
            pki.endorser.issuer,
        )
        data = sign(list_payload(document), pki.endorser)
        list_path.write_bytes(data)
        return data

    env = clean_env(
        {
            "VMCATCHER_RDBMS": f"sqlite:///{workdir / 'vmcatcher.db'}",
            "VMCATCHER_DIR_CERT": str(ca_dir),
        }
    )
    subscribe = command_path("vmcatcher_subscribe")
    data = publish("1")
    result = {"list MiB": len(data) / 2**20}

    started = time.perf_counter()
    hashlib.sha512(list_path.read_bytes()).hexdigest()
    result["baseline: sha512 of the list"] = time.perf_counter() - started
    result["subscribe -s"] = timed([subscribe, "-s", url, "-e"], env, workdir)
    result["baseline: subscribe -l"] = timed([subscribe, "-l"], env, workdir)
    result["first -U (import)"] = timed([subscribe, "-U"], env, workdir)
    result["unchanged -U"] = timed([subscribe, "-U"], env, workdir)
    publish("2")
    result["new version -U"] = timed([subscribe, "-U"], env, workdir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    pki = TestPKI()
    rounds = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
            rounds.append(one_round(pki, args.images, Path(tmp)))
            print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    base = medians["baseline: subscribe -l"]
    print(f"vmcatcher_subscribe -U, {args.images} images, list {medians['list MiB']:.1f} MiB, "
          f"median of {args.rounds} rounds, {os.cpu_count()} CPUs")  # fmt: skip
    for key, value in medians.items():
        if key == "list MiB":
            continue
        print(f"  {key:32s} {value:8.3f} s   {value / base:6.1f} x 'subscribe -l'")


if __name__ == "__main__":
    main()

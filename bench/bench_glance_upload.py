"""Benchmark: streaming an image to a real Glance, vs. reading the same file.

Why: ``vmcatcher_glance`` uploads straight from the cached file in 1 MiB reads
(docs/glance.md), so its memory must not grow with the image (target: peak RSS
well under 200 MB for 1 GiB) and its throughput should be bounded by Glance
(which hashes and writes what it receives), not by us.

How: a throw-away Glance (:mod:`tests.support.glance`, SQLite + file store, on
the same machine, so it competes for the same cores) and a 1 GiB file of
pseudo-random bytes. In the same run:

* *read*: a plain 1 MiB-chunk read loop over the file (page cache warm);
* *upload*: a child process doing what the command does for one image --
  :func:`vmcatcher.glance.client.connect` through a clouds.yaml, ``create``,
  ``upload`` from the open file, ``image`` to check Glance's sha512 -- timed
  around the upload, its peak RSS from ``ru_maxrss``.

    .venv/bin/python bench/bench_glance_upload.py [--size BYTES] [--dir DIR]

Every file, the Glance and its data are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GiB = 1024**3
MiB = 1024**2

CHILD = r"""
import hashlib, json, os, resource, sys, time
from vmcatcher.glance.client import connect
path, tag = sys.argv[1], sys.argv[2]
client = connect("benchglance")
size = os.path.getsize(path)
image_id = client.create("bench", "raw", "private", tag, {})
start = time.perf_counter()
with open(path, "rb") as handle:
    client.upload(image_id, handle, size)
seconds = time.perf_counter() - start
image = client.image(image_id)
client.delete(image_id)
print(json.dumps({"seconds": seconds, "status": image.status.value,
                  "hash": image.os_hash_value,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_file(path: Path, size: int) -> str:
    import hashlib

    digest = hashlib.sha512()
    block = os.urandom(MiB)
    with open(path, "wb") as out:
        written = 0
        counter = 0
        while written < size:
            chunk = (counter.to_bytes(8, "little") + block[8:])[: size - written]
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
            counter += 1
    return digest.hexdigest()


def plain_put_seconds(endpoint: str, path: Path) -> float:
    """Glance's intake alone: ``requests.put`` of the open file, no vmcatcher code."""
    import requests

    created = requests.post(f"{endpoint}/v2/images", json={"name": "plain", "disk_format": "raw",
                            "container_format": "bare"}, timeout=60)  # fmt: skip
    image_id = created.json()["id"]
    start = time.perf_counter()
    with open(path, "rb") as handle:
        answer = requests.put(f"{endpoint}/v2/images/{image_id}/file", data=handle,
                              headers={"Content-Type": "application/octet-stream"},
                              timeout=600)  # fmt: skip
    seconds = time.perf_counter() - start
    answer.raise_for_status()
    requests.delete(f"{endpoint}/v2/images/{image_id}", timeout=60)
    return seconds


def read_seconds(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as handle:
        while handle.read(MiB):
            pass
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=GiB)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()

    from tests.support import glance

    work = Path(tempfile.mkdtemp(prefix="bench-glance-", dir=args.dir))
    state_file = work / "glance.json"
    try:
        state = glance.start(state_file)
        clouds = glance.clouds_yaml(state.endpoint, work, cloud="benchglance")
        image = work / "image.raw"
        sha = make_file(image, args.size)
        read_seconds(image)  # warm the page cache
        reads = [read_seconds(image) for _ in range(3)]
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds))
        env.pop("OS_CLOUD", None)
        uploads = []
        for _ in range(3):
            child = subprocess.run([sys.executable, "-c", CHILD, str(image), "bench"], env=env,
                                   capture_output=True, text=True, check=True)  # fmt: skip
            uploads.append(json.loads(child.stdout))
        plain = sorted(plain_put_seconds(state.endpoint, image) for _ in range(3))[1]
        assert all(u["hash"] == sha and u["status"] == "active" for u in uploads), uploads
        read = sorted(reads)[1]
        upload = sorted(u["seconds"] for u in uploads)[1]
        rss = max(u["maxrss_kib"] for u in uploads) / 1024
        mib = args.size / MiB
        print(f"size: {mib:.0f} MiB")
        print(f"read (median of 3):   {read:6.2f} s  {mib / read:8.1f} MiB/s")
        print(f"upload (median of 3): {upload:6.2f} s  {mib / upload:8.1f} MiB/s  "
              f"ratio {read / upload:.3f}")  # fmt: skip
        print(f"plain requests.put (median of 3): {plain:6.2f} s  {mib / plain:8.1f} MiB/s  "
              f"vmcatcher/plain {plain / upload:.3f}")  # fmt: skip
        print(f"upload peak RSS (max of 3): {rss:.1f} MiB")
        print(f"Glance sha512 equals the file's: {all(u['hash'] == sha for u in uploads)}")
    finally:
        glance.stop(state_file)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

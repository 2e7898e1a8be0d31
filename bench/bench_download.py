"""Benchmark: download-and-verify of one large image vs. a plain sha512 pass.

Why: the download writes, hashes and counts in one streaming pass; it should run close
to the speed of hashing alone (target: throughput ratio >= 0.9) and its memory must not
grow with the image (target: peak RSS < 100 MB).

How: a local HTTP server (tests.support.servers, in its own process) generates a
deterministic pseudo-random body of ``--size`` bytes on the fly (never held in memory).
A fresh subprocess runs ``download_image`` (including the final fsync) and reports its
wall time and ``ru_maxrss``. Then the same file, now in the page cache, is hashed with a
plain 1 MiB-chunk sha512 loop for comparison, and copied to a new file with fsync (what
writing alone costs on this machine; shown for information).

    .venv/bin/python bench/bench_download.py [--size BYTES] [--dir DIR] [--rounds N]

Each round downloads into a fresh directory; the ratio is plain-hash time divided by
download time (1.0 = downloading costs no more than hashing the finished file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GiB = 1024**3
MiB = 1024**2
SEED = 20240601


def _serve(size: int, ready: multiprocessing.Queue) -> None:
    from tests.support.servers import GeneratedContent, TestServer

    with TestServer() as server:
        server.add("/image", GeneratedContent(size, SEED))
        ready.put(server.url("/image"))
        while True:
            time.sleep(3600)


def _child(url: str, partial: str, size: int, sha512: str) -> None:
    from vmcatcher.cache.download import download_image

    start = time.perf_counter()
    result = download_image(url, Path(partial), expected_size=size, expected_sha512=sha512)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_kib": peak_kib, "size": result.size}))


def _plain_sha512(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    digest = hashlib.sha512()
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(MiB):
            digest.update(block)
    return time.perf_counter() - start, digest.hexdigest()


def _copy_with_fsync(source: Path, target: Path) -> float:
    """Informative baseline: what just writing the bytes (no network, no hash) costs."""
    start = time.perf_counter()
    with open(source, "rb", buffering=0) as reader, open(target, "wb", buffering=0) as writer:
        while block := reader.read(MiB):
            writer.write(block)
        os.fsync(writer.fileno())
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=GiB)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("URL", "PARTIAL", "SIZE", "SHA512"))
    args = parser.parse_args()
    if args.child:
        url, partial, size, sha512 = args.child
        _child(url, partial, int(size), sha512)
        return 0

    from tests.support.servers import GeneratedContent

    start = time.perf_counter()
    expected = GeneratedContent(args.size, SEED).sha512()
    generate_seconds = time.perf_counter() - start

    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    server = context.Process(target=_serve, args=(args.size, ready), daemon=True)
    server.start()
    rounds: list[tuple[dict, float, float]] = []
    try:
        url = ready.get(timeout=30)
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
                partial = Path(scratch) / "image"
                command = [sys.executable, __file__, "--child", url, str(partial)]
                output = subprocess.run(
                    [*command, str(args.size), expected],
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                ).stdout
                child = json.loads(output)
                plain_seconds, plain_digest = _plain_sha512(partial)
                assert plain_digest == expected, "downloaded file does not verify"
                copy_seconds = _copy_with_fsync(partial, Path(scratch) / "copy")
                rounds.append((child, plain_seconds, copy_seconds))
    finally:
        server.terminate()
        server.join(5)

    size_mb = args.size / 1e6
    print(
        f"image size: {args.size} bytes ({args.size / GiB:.2f} GiB), cpus: {os.cpu_count()}, "
        f"load average: {os.getloadavg()[0]:.2f}"
    )
    print(f"generator + sha512 (info): {generate_seconds:.2f} s")
    print("round  download+verify+fsync     plain sha512 pass      ratio  peak RSS   (copy+fsync)")
    ratios = []
    for number, (child, plain_seconds, copy_seconds) in enumerate(rounds, 1):
        ratio = plain_seconds / child["seconds"]
        ratios.append(ratio)
        print(
            f"{number:5d}  {child['seconds']:6.2f} s {size_mb / child['seconds']:7.1f} MB/s"
            f"   {plain_seconds:6.2f} s {size_mb / plain_seconds:7.1f} MB/s"
            f"   {ratio:5.2f}  {child['peak_rss_kib'] / 1024:5.1f} MiB   ({copy_seconds:5.2f} s)"
        )
    peak = max(child["peak_rss_kib"] for child, _, _ in rounds) / 1024
    print(
        f"throughput ratio: median {statistics.median(ratios):.2f}, best {max(ratios):.2f} "
        f"(target >= 0.90); peak RSS {peak:.1f} MiB (target < 100 MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

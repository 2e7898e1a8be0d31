"""Benchmark: the installed ``vmcatcher_cache`` downloading a large image, vs. plain sha512.

Why: the cache downloads, hashes and counts in one streaming pass, so caching an image
should cost about as much as hashing it (target: throughput ratio >= 0.9 for 1 GiB), and
its memory must not grow with the image (target: peak RSS < 100 MB for 4 GiB).
``bench_download.py`` measures ``download_image`` alone; this one measures the real
command a site runs from cron, set up exactly as a site would (signed list, subscribe,
update, ``vmcatcher_image -a``, ``mkdir -p cache/partial cache/expired``).

How: a :class:`~tests.support.servers.TestServer` on 127.0.0.1, in its own process,
serves a :class:`~tests.support.servers.GeneratedContent` body (never held in memory).
``vmcatcher_cache`` runs with an event handler that records a timestamp for each event,
so the run is split into

* *command*: the whole process, start-up (imports, database) included;
* *download*: ``ProcessPrefix`` to ``AvailablePrefix``, i.e. choosing the image,
  downloading, hashing, counting and fsync'ing it -- the download-and-verify step.

The reference is a plain 1 MiB-chunk sha512 loop over the cached file (in the page cache
after the download), in this process. Peak RSS of the command comes from GNU time
(``/usr/bin/time -f %M``, the process's ``ru_maxrss``) and from polling ``VmHWM`` in
``/proc/<pid>/status`` while it runs.

    .venv/bin/python bench/bench_cache.py [--size BYTES] [--rss-size BYTES] [--dir DIR]

Every file is deleted at the end (the images are 1 GiB and 4 GiB by default).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shlex
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
SEED = 20240601
IMAGE = "5e1f0c2a-9b7d-4c3e-8f6a-1d2b3c4d5e6f"
TIME = "/usr/bin/time"

STAMP_HANDLER = """\
import sys, time
with open(sys.argv[1], "a") as handle:
    handle.write(f"{sys.argv[2]} {time.time():.6f}\\n")
"""


def _serve(size: int, queue: multiprocessing.Queue) -> None:
    from tests.support.servers import GeneratedContent, TestServer

    content = GeneratedContent(size, SEED)
    with TestServer() as server:
        server.add(f"/{IMAGE}.img", content)
        queue.put(server.url(f"/{IMAGE}.img"))
        while True:
            time.sleep(3600)


def _generated_sha512(size: int) -> tuple[str, float]:
    from tests.support.servers import GeneratedContent

    start = time.perf_counter()
    digest = GeneratedContent(size, SEED).sha512()
    return digest, time.perf_counter() - start


def _file_sha512(path: Path) -> tuple[str, float]:
    digest = hashlib.sha512()
    start = time.perf_counter()
    with open(path, "rb") as handle:
        while block := handle.read(MiB):
            digest.update(block)
    return digest.hexdigest(), time.perf_counter() - start


def _site(workdir: Path, url: str, size: int, sha512: str):
    """A site subscribed to one image of ``size`` bytes at ``url`` (real commands)."""
    from tests.cache_e2e.conftest import CacheSite
    from tests.support.databases import ScratchDatabase
    from tests.support.lists import make_image
    from tests.support.pki import TestPKI

    pki = TestPKI()
    ca_dir = pki.write_ca_dir(workdir / "certificates")
    root = workdir / "site"
    (root / "cache" / "partial").mkdir(parents=True)
    (root / "cache" / "expired").mkdir()
    database = ScratchDatabase(f"sqlite:///{root / 'vmcatcher.db'}", root / "vmcatcher.db")
    env = {
        "VMCATCHER_RDBMS": database.url,
        "VMCATCHER_DIR_CERT": str(ca_dir),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    site = CacheSite(root, pki, ca_dir, None, database, env)  # type: ignore[arg-type]
    site.images[IMAGE] = make_image(IMAGE, data=b"", size=size, sha512=sha512, uri=url)
    site.ready()
    return site


def _run_cache(site, stamps: Path) -> dict[str, float]:
    """Run vmcatcher_cache under GNU time, polling VmHWM; return the measurements."""
    from tests.support.commands import clean_env, command_path

    script = site.root / "stamp.py"
    script.write_text(STAMP_HANDLER)
    handler = " ".join(shlex.quote(str(p)) for p in (sys.executable, "-I", "-S", script, stamps))
    handler += ' "$VMCATCHER_EVENT_TYPE"'
    rss_file = site.root / "time.out"
    command = [TIME, "-o", str(rss_file), "-f", "%M", command_path("vmcatcher_cache"), "-x",
               handler]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=site.root, env=clean_env(site.env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    hwm_kib = 0
    child = None
    while proc.poll() is None:
        if child is None:
            child = _child_pid(proc.pid)
        if child is not None:
            hwm_kib = max(hwm_kib, _vm_hwm_kib(child))
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode != 0 or "ERROR" in err:
        raise SystemExit(f"vmcatcher_cache failed (rc={proc.returncode}):\n{out}{err}")
    events = {}
    for line in stamps.read_text().splitlines():
        name, when = line.split()
        events.setdefault(name, float(when))
    return {
        "command_s": seconds,
        "download_s": events["AvailablePrefix"] - events["ProcessPrefix"],
        "time_maxrss_kib": float(rss_file.read_text().strip().splitlines()[-1]),
        "vmhwm_kib": float(hwm_kib),
    }


def _child_pid(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _measure(workdir: Path, size: int) -> tuple[dict[str, float], float]:
    """Serve, subscribe and cache one generated image; return (measurements, hash seconds)."""
    sha512, generated_s = _generated_sha512(size)
    queue: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(size, queue), daemon=True)
    server.start()
    try:
        url = queue.get(timeout=30)
        site = _site(workdir, url, size, sha512)
        result = _run_cache(site, workdir / "stamps.txt")
    finally:
        server.terminate()
        server.join(10)
    cached = site.cache_dir / IMAGE
    digest, file_s = _file_sha512(cached)
    if digest != sha512 or cached.stat().st_size != size:
        raise SystemExit("the cached image does not verify")
    result["generated_sha512_s"] = generated_s
    return result, file_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=GiB, help="throughput image (1 GiB)")
    parser.add_argument("--rss-size", type=int, default=4 * GiB, help="RSS image (4 GiB)")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    args = parser.parse_args()
    if not os.path.exists(TIME):
        raise SystemExit(f"{TIME} (GNU time) is needed: apt-get install time")

    base = Path(tempfile.mkdtemp(prefix="vmcatcher-bench-cache-", dir=args.dir))
    try:
        print(f"throughput: {args.size / MiB:.0f} MiB image")
        result, plain_s = _measure(base / "throughput", args.size)
        shutil.rmtree(base / "throughput")
        mib = args.size / MiB
        download_rate = mib / result["download_s"]
        command_rate = mib / result["command_s"]
        plain_rate = mib / plain_s
        print(f"  vmcatcher_cache download+verify: {result['download_s']:7.2f} s "
              f"{download_rate:8.1f} MiB/s")  # fmt: skip
        print(f"  vmcatcher_cache whole command:   {result['command_s']:7.2f} s "
              f"{command_rate:8.1f} MiB/s")  # fmt: skip
        print(f"  plain sha512 of the cached file: {plain_s:7.2f} s {plain_rate:8.1f} MiB/s")
        print(f"  (sha512 of the generated bytes in memory: {result['generated_sha512_s']:.2f} s)")
        print(f"  ratio download/plain: {download_rate / plain_rate:.2f} (target >= 0.9); "
              f"whole command/plain: {command_rate / plain_rate:.2f}")  # fmt: skip
        print(f"  peak RSS: {result['time_maxrss_kib'] / 1024:.1f} MB")

        print(f"memory: {args.rss_size / MiB:.0f} MiB image")
        result, _ = _measure(base / "memory", args.rss_size)
        shutil.rmtree(base / "memory")
        print(f"  vmcatcher_cache: {result['command_s']:.2f} s, download+verify "
              f"{args.rss_size / MiB / result['download_s']:.1f} MiB/s")  # fmt: skip
        print(f"  peak RSS (GNU time maxrss): {result['time_maxrss_kib'] / 1024:.1f} MB; "
              f"VmHWM polled: {result['vmhwm_kib'] / 1024:.1f} MB (target < 100 MB)")  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

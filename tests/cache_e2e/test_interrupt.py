"""Issue 11, item 2: one Ctrl-C stops a running download promptly.

The download runs in a worker thread; the main thread used to wait for it to
finish before the KeyboardInterrupt took effect. Now the workers stop between
chunks, the partial file and its index entry are kept, and the next run
resumes with a Range request (docs/commands/vmcatcher_cache.md).
"""

from __future__ import annotations

import signal
import time

from tests.cache_e2e.conftest import CacheSite

IMAGE = "7d3c2b1a-5e4f-4a6b-8c9d-0e1f2a3b4c5d"
SIZE = 512 * 1024


def test_one_sigint_stops_a_download_keeps_the_partial_file_and_the_next_run_resumes(
    site: CacheSite,
) -> None:
    site.add_image(IMAGE, SIZE)
    site.ready()
    path = f"/{IMAGE}.img"
    # 1 KiB every 20 ms: the whole image would take more than 10 s.
    site.server.drip(path, site.data[IMAGE], 0.02, piece=1024, times=1)
    partial = site.partial_dir / IMAGE

    proc = site.start_cache("-D", events=False)
    deadline = time.monotonic() + 20
    while not (partial.exists() and partial.stat().st_size >= 16 * 1024):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)

    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _out, err = proc.communicate(timeout=10)
    elapsed = time.monotonic() - sent

    assert proc.returncode == 130, err
    assert elapsed < 3, f"took {elapsed:.1f} s to stop"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["ERROR:main:Interrupted."], err
    kept = partial.stat().st_size
    assert 0 < kept < SIZE
    assert IMAGE in site.index(site.partial_dir)
    assert IMAGE not in site.index(site.cache_dir)

    site.server.clear_requests()
    resumed = site.cache("-D", events=False)

    assert (site.cache_dir / IMAGE).read_bytes() == site.data[IMAGE], resumed
    [request] = site.server.requests_for(path)
    assert request.range is not None and request.range.startswith("bytes=")
    assert int(request.range.split("=")[1].rstrip("-")) > 0
    assert not partial.exists()

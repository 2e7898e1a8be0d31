"""No run leaves files outside the cache directories and the database (docs/robustness.md).

A cron job killed by a timeout (SIGKILL: no clean-up handler runs) must not
leave anything behind in the temporary directory; earlier versions wrote a
combined CA bundle ``vmcatcher-ca-*.pem`` there on every run.
"""

from __future__ import annotations

import signal
import time

from tests.cache_e2e.conftest import ConcurrencyMeter, SlowContent


def test_a_run_killed_mid_download_leaves_nothing_in_tmpdir(site, tmp_path) -> None:
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    site.env["TMPDIR"] = str(temp)
    site.add_image("slow-image", 64 * 1024, serve=False)
    site.server.add("/slow-image.img", SlowContent(site.data["slow-image"], 30, ConcurrencyMeter()))
    site.ready()
    proc = site.start_cache()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "slow-image" not in site.index(site.partial_dir):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.3)  # well inside the download
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert sorted(p.name for p in temp.iterdir()) == []


def test_a_complete_run_leaves_nothing_in_tmpdir(site, tmp_path) -> None:
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    site.env["TMPDIR"] = str(temp)
    site.add_image("image-one")
    site.ready()
    site.cache()
    assert site.files(site.cache_dir) == {"image-one"}
    assert sorted(p.name for p in temp.iterdir()) == []

"""``vmcatcher_check`` against real sites: each condition produced for real, then probed.

Docs: docs/monitoring.md, docs/commands/vmcatcher_check.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.cache_e2e.conftest import CacheSite
from tests.check.conftest import check

IMAGE = "6f1c2a3b-1111-4c3b-8a8e-3a4c9e1f0a01"
OTHER = "6f1c2a3b-2222-4c3b-8a8e-3a4c9e1f0a02"


def healthy(site: CacheSite) -> None:
    site.add_image(IMAGE)
    site.ready()
    site.cache()


def test_a_healthy_site_is_ok_and_its_runs_are_recorded(site: CacheSite) -> None:
    healthy(site)
    probe = check(site)
    assert probe.status == "OK", probe.output
    assert probe.perfdata["subscriptions"] == "1;;;0"
    assert probe.perfdata["images_wanted"] == "1;;;0"
    assert probe.perfdata["images_missing"] == "0;;;0"
    runs = site.sql("SELECT command, exit_code FROM vmcatcher_run ORDER BY id")
    assert runs == [("update", 0), ("cache", 0)]
    (status,) = site.sql("SELECT last_code, last_success FROM vmcatcher_subscription_status")
    assert status[0] == 0 and status[1] is not None


def test_expired_crl_in_the_ca_dir_is_critical_then_warning_when_relaxed(
    site: CacheSite, tmp_path
) -> None:
    healthy(site)
    stale = site.pki.write_ca_dir(tmp_path / "stale-ca", root_crl="expired")
    probe = check(site, "-c", str(stale))
    assert probe.status == "CRITICAL", probe.output
    assert "1 CA CRL past its nextUpdate" in probe.text
    assert probe.perfdata["crls_expired"] == "1;;;0"
    relaxed = check(site, "-c", str(stale), "--crl-policy", "relaxed")
    assert relaxed.status == "WARNING", relaxed.output
    assert check(site, "-c", str(stale), "--crl-policy", "off").status == "OK"


def test_a_ca_without_crl_is_critical_under_the_strict_policy(site: CacheSite, tmp_path) -> None:
    healthy(site)
    bare = site.pki.write_ca_dir(tmp_path / "bare-ca", intermediate_crl="missing")
    probe = check(site, "-c", str(bare))
    assert probe.status == "CRITICAL", probe.output
    assert "1 CA no CRL" in probe.text
    # A CRL whose nextUpdate is near (30 days here) warns once inside the window.
    assert check(site, "--crl-warning", str(31 * 24)).status == "WARNING"


def test_a_list_that_expires_in_two_days_warns(site: CacheSite) -> None:
    site.add_image(IMAGE)
    soon = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=2)
    site.publish(expires=soon)
    site.subscribe()
    site.accept(IMAGE)
    site.cache()
    probe = check(site)
    assert probe.status == "WARNING", probe.output
    assert "1 subscription list expires within 7d" in probe.text
    assert probe.perfdata["lists_expiring"] == "1;;;0"
    assert check(site, "--expiry-critical", "3").status == "CRITICAL"


def test_an_image_given_up_after_five_failed_downloads_is_critical(site: CacheSite) -> None:
    site.add_image(IMAGE)
    site.add_image(OTHER)
    site.ready()
    site.server.status(f"/{IMAGE}.img", 500)
    site.cache()
    probe = check(site)
    assert probe.status == "OK", probe.output  # one failure: still being retried
    assert probe.perfdata["images_missing"] == "1;;;0"
    for _ in range(4):
        site.cache()
    probe = check(site)
    assert probe.status == "CRITICAL", probe.output
    assert f"1 image given up after 5 failed downloads: {IMAGE}" in probe.text
    assert probe.perfdata["images_given_up"] == "1;;;0"


def test_a_cached_file_of_the_wrong_size_is_critical(site: CacheSite) -> None:
    healthy(site)
    with open(site.cache_dir / IMAGE, "ab") as handle:
        handle.write(b"x")
    probe = check(site)
    assert probe.status == "CRITICAL", probe.output
    assert "1 image cached file has the wrong size" in probe.text


@pytest.fixture
def small_fs(site: CacheSite):
    """A 2 MiB tmpfs holding a second cache layout (root only)."""
    mountpoint = site.root / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        (mountpoint / "partial").mkdir()
        (mountpoint / "expired").mkdir()
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_low_free_space_in_the_cache_file_system_is_critical(site: CacheSite, small_fs) -> None:
    healthy(site)
    site.cache("-C", str(small_fs))
    probe = check(site, "-C", str(small_fs), "--free-warning", "5120", "--free-critical", "1024")
    assert probe.status == "CRITICAL", probe.output
    assert "cache file system has only" in probe.text
    value, *_limits, high = probe.perfdata["cache_free"].split(";")
    assert int(value.rstrip("B")) < 2 * 1024 * 1024 and high == str(2 * 1024 * 1024)


HOLDER = """\
import sys, time
from vmcatcher.cache.lock import CacheLock
with CacheLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_cache_lock_held_too_long_by_another_run_warns(site: CacheSite) -> None:
    healthy(site)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(site.cache_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = site.cache_dir / ".vmcatcher.lock"
        three_hours_ago = time.time() - 3 * 3600
        os.utime(lock, (three_hours_ago, three_hours_ago))
        probe = check(site)
        assert probe.status == "WARNING", probe.output
        assert f"cache lock held by pid {holder.pid} for 3.0h" in probe.text
        assert check(site, "--lock-critical", "120").status == "CRITICAL"
    finally:
        holder.kill()
        holder.wait()
    assert check(site).status == "OK"  # the old lock file alone is no finding


def test_a_failed_update_and_an_old_cache_run_are_reported(site: CacheSite) -> None:
    healthy(site)
    site.list_path.unlink()
    site.command("vmcatcher_subscribe", "-U", expect=10)
    probe = check(site)
    assert probe.status == "WARNING", probe.output
    assert "last vmcatcher_subscribe -U run exited 10" in probe.text
    assert probe.perfdata["update_exit_code"] == "10;;;0"
    old = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=4)
    site.execute("UPDATE vmcatcher_run SET finished = ? WHERE command = 'cache'", (old,))
    probe = check(site)
    assert probe.status == "CRITICAL", probe.output
    assert "last vmcatcher_cache run was 4.0d ago" in probe.text


def test_no_database_or_an_old_schema_is_unknown_and_nothing_is_written(site: CacheSite) -> None:
    missing = site.command("vmcatcher_check", "-d", f"sqlite:///{site.root / 'none.db'}", expect=3)
    assert missing.stdout.startswith("VMCATCHER UNKNOWN - ")
    assert not (site.root / "none.db").exists()
    healthy(site)
    site.execute("UPDATE alembic_version SET version_num = 'v0_7'")
    probe = check(site)
    assert probe.status == "UNKNOWN"
    assert "not v0_7_runs" in probe.text


def test_json_format_carries_the_same_verdict(site: CacheSite) -> None:
    healthy(site)
    result = site.command("vmcatcher_check", "--free-critical", "0", "--free-warning", "0",
                          "-f", "json")  # fmt: skip
    verdict = json.loads(result.stdout)
    assert verdict["status"] == "OK" and verdict["exit_code"] == 0
    labels = {p["label"]: p["value"] for p in verdict["perfdata"]}
    assert labels["subscriptions"] == 1 and labels["images_wanted"] == 1


def test_the_probe_writes_nothing_next_to_a_sqlite_database(site: CacheSite) -> None:
    healthy(site)
    path = site.database.path
    if path is None:
        pytest.skip("SQLite only: a PostgreSQL session is made read-only by the server")
    before = {p.name: p.stat().st_mtime_ns for p in path.parent.iterdir()}
    check(site)
    after = {p.name: p.stat().st_mtime_ns for p in path.parent.iterdir()}
    assert after == before


def test_a_bad_command_line_is_unknown_not_critical(site: CacheSite) -> None:
    for args in (["--bogus"], ["--stale-warning", "soon"], ["--crl-policy", "lax"]):
        result = site.command("vmcatcher_check", *args, expect=3)
        assert result.stdout.startswith("VMCATCHER UNKNOWN - "), result
    assert site.command("vmcatcher_check", "--help").stdout.startswith("usage: vmcatcher_check")


def test_an_unreadable_table_is_unknown_on_one_line(site: CacheSite) -> None:
    healthy(site)
    site.execute("DROP TABLE vmcatcher_run")
    probe = check(site)
    assert probe.status == "UNKNOWN"
    assert probe.text.startswith("cannot read database ")
    assert probe.output.count("\n") == 1

"""The metrics file of ``-U`` and ``vmcatcher_cache`` runs, parsed with prometheus_client.

Docs: docs/monitoring.md (node_exporter textfile collector).
"""

from __future__ import annotations

from datetime import datetime, timezone

from tests.cache_e2e.conftest import SUBSCRIPTION, CacheSite
from tests.check.conftest import metrics

IMAGE = "7a1c2a3b-1111-4c3b-8a8e-3a4c9e1f0a01"
BROKEN = "7a1c2a3b-2222-4c3b-8a8e-3a4c9e1f0a02"


def test_cache_run_writes_its_counters_into_a_per_command_file(site: CacheSite) -> None:
    site.add_image(IMAGE, size=10_000)
    site.add_image(BROKEN)
    site.ready()
    site.server.status(f"/{BROKEN}.img", 500)
    textfiles = site.root / "textfile"
    textfiles.mkdir()
    before = datetime.now(timezone.utc).timestamp()
    site.cache("--metrics-file", str(textfiles), "-x", "exit 3", events=False)
    after = datetime.now(timezone.utc).timestamp()

    assert sorted(p.name for p in textfiles.iterdir()) == ["vmcatcher_cache.prom"]
    samples = metrics(textfiles / "vmcatcher_cache.prom")
    cache = (("command", "cache"),)

    def value(name: str) -> float:
        return samples[(f"vmcatcher_{name}", cache)]

    assert (
        before - 1
        <= value("run_start_timestamp_seconds")
        <= value("run_end_timestamp_seconds")
        <= after + 1
    )
    assert value("run_exit_code") == 0 and value("run_success") == 1
    assert value("run_images_selected") == 2
    assert value("run_images_cached") == 1
    assert value("run_images_downloaded") == 1
    assert value("run_images_failed") == 1
    assert value("run_images_expired") == 0
    assert value("run_downloaded_bytes") == 10_000
    assert value("run_download_seconds") > 0
    # ProcessPrefix, AvailablePrefix, AvailablePostfix, ProcessPostfix all exited 3.
    assert value("run_event_handler_failures") == 4
    assert value("run_event_handler_timeouts") == 0
    sub = (("command", "cache"), ("subscription", SUBSCRIPTION))
    assert samples[("vmcatcher_subscription_list_expiry_timestamp_seconds", sub)] > after
    info = (("command", "cache"), ("subscription", SUBSCRIPTION), ("version", "1"))
    assert samples[("vmcatcher_subscription_list_info", info)] == 1


def test_update_run_writes_to_the_file_named_by_the_environment(site: CacheSite) -> None:
    site.add_image(IMAGE)
    site.publish()
    site.command("vmcatcher_subscribe", "-s", site.list_url, "-e")
    target = site.root / "update.prom"
    env = {"VMCATCHER_METRICS_FILE": str(target)}
    before = datetime.now(timezone.utc).timestamp()
    site.command("vmcatcher_subscribe", "-U", env=env)
    samples = metrics(target)
    update = (("command", "update"),)
    assert samples[("vmcatcher_run_exit_code", update)] == 0
    assert samples[("vmcatcher_run_subscriptions_updated", update)] == 1
    assert samples[("vmcatcher_run_subscriptions_failed", update)] == 0
    sub = (("command", "update"), ("subscription", SUBSCRIPTION))
    success = samples[("vmcatcher_subscription_last_success_timestamp_seconds", sub)]
    assert success >= before - 1

    site.list_path.unlink()  # the next run fails with 10: the file says so
    site.command("vmcatcher_subscribe", "-U", env=env, expect=10)
    samples = metrics(target)
    assert samples[("vmcatcher_run_exit_code", update)] == 10
    assert samples[("vmcatcher_run_success", update)] == 0
    assert samples[("vmcatcher_run_subscriptions_failed", update)] == 1
    assert samples[("vmcatcher_subscription_last_success_timestamp_seconds", sub)] == success


def test_a_run_that_fails_before_the_database_still_writes_metrics(site: CacheSite) -> None:
    target = site.root / "cache.prom"
    site.cache("--metrics-file", str(target), "-C", str(site.root / "nowhere"), expect=1)
    samples = metrics(target)
    assert samples[("vmcatcher_run_exit_code", (("command", "cache"),))] == 1

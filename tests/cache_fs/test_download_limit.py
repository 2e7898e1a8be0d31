"""Every image download has a finite total time budget that grows with its size."""

from __future__ import annotations

from vmcatcher.services.cache import DOWNLOAD_GRACE_SECONDS, MIN_DOWNLOAD_RATE, download_time_limit


def test_small_images_get_the_grace_period() -> None:
    assert download_time_limit(0) == DOWNLOAD_GRACE_SECONDS


def test_large_images_get_time_at_the_minimum_rate() -> None:
    four_gib = 4 * 1024**3
    assert download_time_limit(four_gib) == DOWNLOAD_GRACE_SECONDS + four_gib / MIN_DOWNLOAD_RATE
    assert download_time_limit(four_gib) < 24 * 3600  # a dripping server cannot hold a day

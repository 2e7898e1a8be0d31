"""Hypothesis profiles: a fixed gate for ``make test``, random exploration for ``make fuzz``.

Why: a property test that draws new examples on every run makes the verdict of
``make test`` depend on the day's random seed, so a landing could fail (or pass)
by chance. The gate therefore runs every property under the ``ci`` profile:
examples derived from each test's own name (``derandomize``), a count suited to
CI, and no example database written into the working tree. ``make fuzz`` runs
the same properties under the ``fuzz`` profile: random seeds and
:data:`FUZZ_FACTOR` times as many examples. A failure found that way is then
pinned with ``@example(...)`` beside the property, so the gate checks it for
ever (docs/robustness.md, "Fuzzing").

The profile is chosen by ``VMCATCHER_HYPOTHESIS_PROFILE`` (``ci`` by default);
:func:`examples` is what each property uses instead of a literal ``settings``.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

ENV_PROFILE = "VMCATCHER_HYPOTHESIS_PROFILE"
CI, FUZZ = "ci", "fuzz"
#: How many times more examples a property draws under ``make fuzz``.
FUZZ_FACTOR = int(os.environ.get("VMCATCHER_FUZZ_FACTOR", "20"))

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    CI,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    FUZZ,
    derandomize=False,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)


def active_profile() -> str:
    name = os.environ.get(ENV_PROFILE, CI)
    if name not in (CI, FUZZ):
        raise ValueError(f"{ENV_PROFILE} must be '{CI}' or '{FUZZ}', not {name!r}")
    return name


def storage_directory() -> Path:
    """Where hypothesis may keep its caches: the user's cache directory, never the tree."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vmcatcher-hypothesis"


def load_profile() -> None:
    """Select the profile named by the environment (called from ``tests/conftest.py``)."""
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        set_hypothesis_home_dir(storage_directory())
    settings.load_profile(active_profile())


def examples(count: int) -> settings:
    """Settings for a property: ``count`` examples in the gate, ``count * FUZZ_FACTOR`` fuzzing.

    Built on the loaded profile, so derandomisation and the database choice come
    from it; only the example count is per test.
    """
    factor = FUZZ_FACTOR if active_profile() == FUZZ else 1
    return settings(max_examples=count * factor)

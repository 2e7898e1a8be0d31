"""Fixtures of the monitoring tests: the cache end-to-end site, and running the probe.

The :class:`~tests.cache_e2e.conftest.CacheSite` fixtures are reused as they are
(a real CA directory, image server, signed list, database and cache), so every
condition the probe reports is produced by the real commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.cache_e2e.conftest import CacheSite, ca_dir, pki, site  # noqa: F401

#: The status line of a Nagios plugin: status word, text, optional perfdata.
STATUS_LINE = re.compile(r"^VMCATCHER (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]*)(?: \| (.*))?$")
#: Thresholds that keep the free space of the test machine out of the verdict.
ROOMY = ("--free-warning", "1", "--free-critical", "0")


@dataclass
class Probe:
    code: int
    status: str
    text: str
    perfdata: dict[str, str]
    output: str


def check(at: CacheSite, *args: str, expect: int | None = None, **kwargs) -> Probe:
    """Run ``vmcatcher_check`` in the site (cache dir ./cache) and parse its output."""
    result = at.command("vmcatcher_check", *ROOMY, *args, expect=expect, **kwargs)
    first = result.stdout.splitlines()[0] if result.stdout else ""
    match = STATUS_LINE.match(first)
    assert match, f"not a Nagios status line: {result.stdout!r} (stderr {result.stderr!r})"
    status, text, perf = match.groups()
    perfdata = dict(item.split("=", 1) for item in (perf or "").split())
    assert result.returncode == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[status]
    return Probe(result.returncode, status, text, perfdata, result.stdout)


def metrics(path) -> dict[tuple[str, tuple], float]:
    """Every sample of a metrics file: (name, sorted labels) -> value, via prometheus_client."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples

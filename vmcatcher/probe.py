"""The probe's verdict: from gathered facts to a Nagios status, messages and perfdata.

Why pure: what counts as WARNING or CRITICAL is a policy a site tunes with
thresholds, and every rule must be testable without a database, a CA
directory or a cache. :mod:`vmcatcher.services.check` gathers the facts (all
I/O); :func:`evaluate` decides; :func:`status_line` renders the Nagios plugin
output. The rules and thresholds are documented in docs/monitoring.md.

The overall status is the worst finding, ranked CRITICAL > WARNING > UNKNOWN
> OK (a real problem found is more useful than "could not check something
else"). Only an unreadable database makes the whole probe UNKNOWN at once:
nothing else can be judged without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vmcatcher.monitoring import RunCommand, Status
from vmcatcher.services.health import RunOutcome, SubscriptionHealth

_RANK = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}
#: How many names a message lists before "and N more".
_NAMES_SHOWN = 3
HOUR = 3600.0
DAY = 86400.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Thresholds:
    """Every limit of the probe, in seconds or bytes (the CLI converts its units)."""

    stale_warning: float = 2 * DAY  # last successful fetch of a subscription
    stale_critical: float = 7 * DAY
    expiry_warning: float = 7 * DAY  # stored list expires within
    expiry_critical: float = 1 * DAY
    crl_warning: float = 1 * DAY  # a CRL's nextUpdate within
    free_warning: float = 5 * 1024 * MIB  # free bytes in the cache file system
    free_critical: float = 1024 * MIB
    lock_warning: float = 2 * HOUR  # another run holding the cache lock
    lock_critical: float = 6 * HOUR
    run_warning: float = 26 * HOUR  # last recorded -U / cache run finished
    run_critical: float = 3 * DAY
    max_tries: int = 5  # DownLoadTrys.count at which the cache gives up (services/cache.py)


@dataclass(frozen=True)
class CrlFact:
    """The CRL situation of one CA of the CA directory."""

    ca: str
    state: str  # vmcatcher.trust.crl.CrlState value: current, missing, expired, ...
    next_update: datetime | None = None


@dataclass(frozen=True)
class CacheFacts:
    """What the cache directory says about the wanted images."""

    wanted: int = 0
    #: Wanted, not cached, still being retried: those the cache indexes name...
    missing: tuple[str, ...] = ()
    #: ... and the count of all of them (None: ``len(missing)``).
    missing_count: int | None = None
    given_up: tuple[str, ...] = ()  # wanted, not cached, DownLoadTrys.count >= max_tries
    bad_size: tuple[str, ...] = ()  # cached file size differs from the index/list
    free_bytes: int | None = None
    total_bytes: int | None = None
    lock_pid: int | None = None  # another process holds .vmcatcher.lock
    lock_seconds: float | None = None  # ... since this long (lock file mtime)
    problem: str | None = None  # the cache could not be inspected


@dataclass(frozen=True)
class ProbeFacts:
    """Everything :func:`evaluate` judges; ``now`` is naive UTC like the database."""

    now: datetime
    database_problem: str | None = None
    subscriptions: tuple[SubscriptionHealth, ...] = ()
    runs: dict[str, RunOutcome] = field(default_factory=dict)
    crl_policy: str = "strict"
    crls: tuple[CrlFact, ...] = ()
    ca_problem: str | None = None
    cache: CacheFacts | None = None  # None: cache checks switched off


@dataclass(frozen=True)
class Finding:
    status: Status
    text: str


@dataclass(frozen=True)
class PerfDatum:
    """One Nagios performance datum: ``label=value[uom];warn;crit;min;max``."""

    label: str
    value: float
    uom: str = ""
    warn: float | None = None
    crit: float | None = None
    minimum: float | None = None
    maximum: float | None = None

    def render(self) -> str:
        parts = [f"{_number(self.value)}{self.uom}"]
        parts += [
            "" if v is None else _number(v)
            for v in (self.warn, self.crit, self.minimum, self.maximum)
        ]
        return f"{self.label}={';'.join(parts).rstrip(';')}"


@dataclass(frozen=True)
class ProbeResult:
    status: Status
    findings: tuple[Finding, ...]
    perfdata: tuple[PerfDatum, ...]

    @property
    def summary(self) -> str:
        """The problems, worst first, or a short all-clear."""
        problems = [f.text for f in self.findings if f.status is not Status.OK]
        return "; ".join(problems) if problems else self._all_clear()

    def _all_clear(self) -> str:
        values = {p.label: p.value for p in self.perfdata}
        return (
            f"{int(values.get('subscriptions', 0))} subscriptions, "
            f"{int(values.get('images_wanted', 0))} images wanted, all fine"
        )


def evaluate(facts: ProbeFacts, limits: Thresholds | None = None) -> ProbeResult:
    """Judge the facts against the thresholds; no I/O."""
    limits = limits or Thresholds()
    if facts.database_problem:
        finding = Finding(Status.UNKNOWN, facts.database_problem)
        return ProbeResult(Status.UNKNOWN, (finding,), ())
    findings: list[Finding] = []
    perfdata: list[PerfDatum] = []
    for rule in (_subscriptions, _runs, _crls, _cache):
        rule(facts, limits, findings, perfdata)
    findings.sort(key=lambda f: -_RANK[f.status])
    status = findings[0].status if findings else Status.OK
    return ProbeResult(status, tuple(findings), tuple(perfdata))


def status_line(result: ProbeResult) -> str:
    """The Nagios plugin output: one status line with perfdata, then one line per problem."""
    perf = " ".join(p.render() for p in result.perfdata)
    line = f"VMCATCHER {result.status.name} - {_one_line(result.summary)}"
    if perf:
        line += f" | {perf}"
    details = [
        f"{f.status.name}: {_one_line(f.text)}"
        for f in result.findings
        if f.status is not Status.OK
    ]
    return "\n".join([line, *details]) if len(details) > 1 else line


def as_json(result: ProbeResult) -> dict:
    """The same verdict as a JSON-ready dict (``vmcatcher_check -f json``)."""
    return {
        "status": result.status.name,
        "exit_code": int(result.status),
        "summary": result.summary,
        "findings": [{"status": f.status.name, "text": f.text} for f in result.findings],
        "perfdata": [
            {
                "label": p.label,
                "value": p.value,
                "uom": p.uom,
                "warn": p.warn,
                "crit": p.crit,
                "min": p.minimum,
                "max": p.maximum,
            }
            for p in result.perfdata
        ],
    }


# --- rules --------------------------------------------------------------------------


def _subscriptions(
    facts: ProbeFacts, limits: Thresholds, findings: list[Finding], perfdata: list[PerfDatum]
) -> None:
    active = [s for s in facts.subscriptions if s.authorised]
    stale_warn, stale_crit, expiring, expiring_crit, expired, failing = [], [], [], [], [], []
    for sub in active:
        age = None if sub.last_success is None else _seconds(facts.now - sub.last_success)
        if age is None or age >= limits.stale_critical:
            stale_crit.append(sub.identifier)
        elif age >= limits.stale_warning:
            stale_warn.append(sub.identifier)
        if sub.last_code:
            failing.append(f"{sub.identifier} ({sub.last_code})")
        if sub.list_expires is None:
            continue
        left = _seconds(sub.list_expires - facts.now)
        if sub.list_marked_expired is not None or left <= 0:
            expired.append(sub.identifier)
        elif left <= limits.expiry_critical:
            expiring_crit.append(sub.identifier)
        elif left <= limits.expiry_warning:
            expiring.append(sub.identifier)
    _add(
        findings,
        Status.CRITICAL,
        stale_crit,
        f"not fetched successfully for {_span(limits.stale_critical)}",
    )
    _add(
        findings,
        Status.WARNING,
        stale_warn,
        f"not fetched successfully for {_span(limits.stale_warning)}",
    )
    _add(findings, Status.CRITICAL, expired, "list expired")
    _add(
        findings,
        Status.CRITICAL,
        expiring_crit,
        f"list expires within {_span(limits.expiry_critical)}",
    )
    _add(findings, Status.WARNING, expiring, f"list expires within {_span(limits.expiry_warning)}")
    _add(findings, Status.WARNING, failing, "last update failed (code)")
    perfdata += [
        PerfDatum("subscriptions", len(active), minimum=0),
        PerfDatum("subscriptions_stale", len(stale_warn) + len(stale_crit), minimum=0),
        PerfDatum("lists_expiring", len(expiring) + len(expiring_crit), minimum=0),
        PerfDatum("lists_expired", len(expired), minimum=0),
    ]


def _runs(
    facts: ProbeFacts, limits: Thresholds, findings: list[Finding], perfdata: list[PerfDatum]
) -> None:
    for command in RunCommand:
        if command is RunCommand.CACHE and facts.cache is None:
            continue
        name = "vmcatcher_subscribe -U" if command is RunCommand.UPDATE else "vmcatcher_cache"
        run = facts.runs.get(command.value)
        if run is None:
            findings.append(Finding(Status.WARNING, f"no {name} run recorded yet"))
            continue
        age = _seconds(facts.now - run.finished)
        if age >= limits.run_critical:
            findings.append(Finding(Status.CRITICAL, f"last {name} run was {_span(age)} ago"))
        elif age >= limits.run_warning:
            findings.append(Finding(Status.WARNING, f"last {name} run was {_span(age)} ago"))
        if run.exit_code != 0:
            findings.append(Finding(Status.WARNING, f"last {name} run exited {run.exit_code}"))
        perfdata += [
            PerfDatum(
                f"{command.value}_age", round(age), "s", limits.run_warning, limits.run_critical, 0
            ),
            PerfDatum(f"{command.value}_exit_code", run.exit_code, minimum=0),
        ]


def _crls(
    facts: ProbeFacts, limits: Thresholds, findings: list[Finding], perfdata: list[PerfDatum]
) -> None:
    if facts.crl_policy == "off":
        return
    if facts.ca_problem:
        findings.append(Finding(Status.UNKNOWN, facts.ca_problem))
        return
    strict = facts.crl_policy == "strict"
    late = Status.CRITICAL if strict else Status.WARNING
    expired = [c.ca for c in facts.crls if c.state in ("expired", "not yet valid")]
    forged = [c.ca for c in facts.crls if c.state == "forged"]
    missing = [c.ca for c in facts.crls if c.state == "missing"]
    near = [
        c.ca
        for c in facts.crls
        if c.state == "current"
        and c.next_update is not None
        and _seconds(c.next_update - facts.now) <= limits.crl_warning
    ]
    _add(findings, late, expired, "CRL past its nextUpdate (or not yet valid)", noun="CA")
    _add(findings, Status.CRITICAL, forged, "CRL signature does not verify", noun="CA")
    _add(findings, late, missing, "no CRL", noun="CA")
    _add(
        findings,
        Status.WARNING,
        near,
        f"CRL nextUpdate within {_span(limits.crl_warning)}",
        noun="CA",
    )
    perfdata += [
        PerfDatum("cas", len(facts.crls), minimum=0),
        PerfDatum("crls_expired", len(expired), minimum=0),
        PerfDatum("crls_expiring", len(near), minimum=0),
        PerfDatum("cas_without_crl", len(missing), minimum=0),
    ]


def _cache(
    facts: ProbeFacts, limits: Thresholds, findings: list[Finding], perfdata: list[PerfDatum]
) -> None:
    cache = facts.cache
    if cache is None:
        return
    if cache.problem:
        findings.append(Finding(Status.UNKNOWN, cache.problem))
        return
    _add(
        findings,
        Status.CRITICAL,
        list(cache.given_up),
        f"given up after {limits.max_tries} failed downloads",
        noun="image",
    )
    _add(
        findings,
        Status.CRITICAL,
        list(cache.bad_size),
        "cached file has the wrong size",
        noun="image",
    )
    if cache.free_bytes is not None:
        if cache.free_bytes < limits.free_critical:
            status = Status.CRITICAL
        elif cache.free_bytes < limits.free_warning:
            status = Status.WARNING
        else:
            status = Status.OK
        if status is not Status.OK:
            findings.append(
                Finding(status, f"cache file system has only {_bytes(cache.free_bytes)} free")
            )
        perfdata.append(
            PerfDatum(
                "cache_free",
                cache.free_bytes,
                "B",
                limits.free_warning,
                limits.free_critical,
                0,
                cache.total_bytes,
            )
        )
    if cache.lock_pid is not None and cache.lock_seconds is not None:
        held = cache.lock_seconds
        if held >= limits.lock_critical:
            status = Status.CRITICAL
        elif held >= limits.lock_warning:
            status = Status.WARNING
        else:
            status = Status.OK
        if status is not Status.OK:
            findings.append(
                Finding(status, f"cache lock held by pid {cache.lock_pid} for {_span(held)}")
            )
    perfdata += [
        PerfDatum("images_wanted", cache.wanted, minimum=0),
        PerfDatum("images_missing", _missing(cache), minimum=0),
        PerfDatum("images_given_up", len(cache.given_up), minimum=0),
        PerfDatum("images_bad_size", len(cache.bad_size), minimum=0),
        PerfDatum(
            "lock_held",
            round(cache.lock_seconds or 0),
            "s",
            limits.lock_warning,
            limits.lock_critical,
            0,
        ),
    ]


# --- helpers --------------------------------------------------------------------------


def _missing(cache: CacheFacts) -> int:
    return len(cache.missing) if cache.missing_count is None else cache.missing_count


def _add(
    findings: list[Finding],
    status: Status,
    names: Iterable[str],
    what: str,
    noun: str = "subscription",
) -> None:
    names = list(names)
    if not names:
        return
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    plural = "s" if len(names) > 1 else ""
    findings.append(Finding(status, f"{len(names)} {noun}{plural} {what}: {shown}{more}"))


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def _span(seconds: float) -> str:
    """A duration for people: ``3d``, ``5h``, ``12m``, ``40s``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", DAY), ("h", HOUR), ("m", 60.0)):
        if seconds >= size:
            value = seconds / size
            return (
                f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
            )
    return f"{seconds:.0f}s"


def _bytes(count: float) -> str:
    for unit, size in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def _one_line(text: str) -> str:
    """Nagios reads up to the first newline; perfdata must not be broken by a '|'."""
    return " ".join(text.split()).replace("|", "/")

"""The probe's rules, without I/O: facts in, status, messages and perfdata out.

Docs: docs/monitoring.md (every threshold and what it triggers).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from vmcatcher.monitoring import Status
from vmcatcher.probe import (
    HOUR,
    MIB,
    CacheFacts,
    CrlFact,
    PerfDatum,
    ProbeFacts,
    Thresholds,
    as_json,
    evaluate,
    status_line,
)
from vmcatcher.services.health import RunOutcome, SubscriptionHealth

NOW = datetime(2026, 6, 1, 12, 0, 0)
DAY = timedelta(days=1)


def sub(name="s1", *, success=NOW - timedelta(hours=1), expires=NOW + 30 * DAY, code=0,
        authorised=True, marked=None) -> SubscriptionHealth:  # fmt: skip
    return SubscriptionHealth(name, authorised, success, code, "3", expires, marked)


def runs(update_code=0, cache_code=0, age=timedelta(hours=1)) -> dict[str, RunOutcome]:
    return {
        "update": RunOutcome("update", NOW - age, NOW - age, update_code, {}),
        "cache": RunOutcome("cache", NOW - age, NOW - age, cache_code, {}),
    }


def facts(**changes) -> ProbeFacts:
    base = dict(
        now=NOW,
        subscriptions=(sub(),),
        runs=runs(),
        crls=(CrlFact("/CN=CA", "current", NOW + 10 * DAY),),
        cache=CacheFacts(wanted=2, free_bytes=100 * 1024 * MIB, total_bytes=200 * 1024 * MIB),
    )
    base.update(changes)
    return ProbeFacts(**base)


def test_all_fine_is_ok_with_perfdata() -> None:
    result = evaluate(facts())
    assert result.status is Status.OK
    line = status_line(result)
    assert line.startswith("VMCATCHER OK - 1 subscriptions, 2 images wanted, all fine | ")
    assert "subscriptions=1;;;0" in line
    assert "update_age=3600s;93600;259200;0" in line
    assert "\n" not in line


def test_an_unreadable_database_is_unknown_whatever_else() -> None:
    result = evaluate(facts(database_problem="Database file 'x' does not exist"))
    assert result.status is Status.UNKNOWN
    assert status_line(result) == "VMCATCHER UNKNOWN - Database file 'x' does not exist"


@pytest.mark.parametrize(
    ("age", "status"),
    [(timedelta(hours=47), Status.OK), (timedelta(hours=49), Status.WARNING),
     (timedelta(days=8), Status.CRITICAL), (None, Status.CRITICAL)],
)  # fmt: skip
def test_stale_subscriptions(age, status) -> None:
    success = None if age is None else NOW - age
    assert evaluate(facts(subscriptions=(sub(success=success),))).status is status


def test_unauthorised_subscriptions_are_not_judged() -> None:
    result = evaluate(facts(subscriptions=(sub(success=None, authorised=False),)))
    assert result.status is Status.OK


@pytest.mark.parametrize(
    ("expires", "marked", "status", "text"),
    [(NOW + 2 * DAY, None, Status.WARNING, "list expires within 7d"),
     (NOW + 12 * timedelta(hours=1), None, Status.CRITICAL, "list expires within 1d"),
     (NOW - DAY, None, Status.CRITICAL, "list expired"),
     (NOW + 30 * DAY, NOW - DAY, Status.CRITICAL, "list expired")],
)  # fmt: skip
def test_list_expiry(expires, marked, status, text) -> None:
    result = evaluate(facts(subscriptions=(sub(expires=expires, marked=marked),)))
    assert result.status is status
    assert text in result.summary


@pytest.mark.parametrize(
    ("policy", "state", "status"),
    [("strict", "expired", Status.CRITICAL), ("relaxed", "expired", Status.WARNING),
     ("strict", "missing", Status.CRITICAL), ("relaxed", "missing", Status.WARNING),
     ("relaxed", "forged", Status.CRITICAL), ("off", "expired", Status.OK)],
)  # fmt: skip
def test_crl_states_under_each_policy(policy, state, status) -> None:
    result = evaluate(facts(crl_policy=policy, crls=(CrlFact("/CN=CA", state),)))
    assert result.status is status


def test_a_crl_near_its_next_update_warns() -> None:
    near = CrlFact("/CN=CA", "current", NOW + timedelta(hours=5))
    result = evaluate(facts(crls=(near,)))
    assert result.status is Status.WARNING
    assert "1 CA CRL nextUpdate within 1d: /CN=CA" in result.summary


def test_cache_findings_and_their_ranking() -> None:
    cache = CacheFacts(wanted=3, missing=("m",), given_up=("g",), free_bytes=2 * 1024 * MIB,
                       total_bytes=4 * 1024 * MIB, lock_pid=42, lock_seconds=3 * HOUR)  # fmt: skip
    result = evaluate(facts(cache=cache))
    assert result.status is Status.CRITICAL
    assert [f.status for f in result.findings] == [Status.CRITICAL, Status.WARNING, Status.WARNING]
    assert result.findings[0].text == "1 image given up after 5 failed downloads: g"
    line = status_line(result)
    assert line.count("\n") == 3  # status line, then one line per problem
    assert "images_missing=1;;;0" in line


def test_free_space_and_lock_thresholds() -> None:
    limits = Thresholds(free_warning=10 * MIB, free_critical=5 * MIB, lock_warning=60,
                        lock_critical=120)  # fmt: skip
    low = CacheFacts(free_bytes=4 * MIB, total_bytes=8 * MIB, lock_pid=7, lock_seconds=90)
    result = evaluate(facts(cache=low), limits)
    assert [f.status for f in result.findings] == [Status.CRITICAL, Status.WARNING]
    assert "cache_free=4194304B;10485760;5242880;0;8388608" in status_line(result)


def test_runs_failed_missing_or_old() -> None:
    assert evaluate(facts(runs=runs(update_code=10))).status is Status.WARNING
    assert evaluate(facts(runs={})).summary.startswith("no vmcatcher_subscribe -U run recorded")
    assert evaluate(facts(runs=runs(age=4 * DAY))).status is Status.CRITICAL
    assert evaluate(facts(runs=runs(age=27 * timedelta(hours=1)))).status is Status.WARNING
    # Without cache checks, the cache run is not expected.
    only_update = {"update": runs()["update"]}
    assert evaluate(facts(runs=only_update, cache=None)).status is Status.OK


def test_names_are_capped_and_text_stays_on_one_line() -> None:
    many = tuple(sub(f"s{i}|x\ny", success=None) for i in range(5))
    line = status_line(evaluate(facts(subscriptions=many)))
    first = line.splitlines()[0]
    assert (
        "5 subscriptions not fetched successfully for 7d: s0/x y, s1/x y, s2/x y and 2 more"
        in first
    )
    assert first.count("|") == 1


def test_perfdatum_rendering_and_json() -> None:
    assert PerfDatum("a", 1.5, "s", None, 3).render() == "a=1.5s;;3"
    result = evaluate(facts())
    data = as_json(result)
    assert data["status"] == "OK" and data["exit_code"] == 0
    assert {"label": "subscriptions", "value": 1, "uom": "", "warn": None, "crit": None,
            "min": 0, "max": None} in data["perfdata"]  # fmt: skip

"""What a handler sees in its environment (spec §11.2, DECISIONS "Cache and events")."""

from __future__ import annotations

import os
import uuid

import pytest

from vmcatcher.events import EventRunner, build_event_env, event_variables, redact_database_url
from vmcatcher.vocabulary import EventType

FULL_ENTRY = {
    "filename": "f0e1d2c3-0000-4000-8000-000000000001",
    "dc:identifier": "f0e1d2c3-0000-4000-8000-000000000001",
    "hv:uri": "https://example.org/images/one.img",
    "hv:size": 1234,
    "dc:description": "A test image",
    "hv:imagelist.dc:identifier": "11111111-2222-4333-8444-555555555555",
    "dc:title": "Test image",
    "hv:hypervisor": "KVM",
    "hv:image.hv:format": "qcow2",
    "hv:version": "1.2",
    "sl:arch": "x86_64",
    "sl:comments": "None",
    "sl:os": "Linux",
    "sl:osversion": "AlmaLinux 9",
    "hv:image.ad:mpuri": "https://marketplace.example.org/x",
    "sl:checksum:sha512": "ab" * 64,
    "hv:imagelist.ad:vo": "dteam",
    "message": "the whole signed list is not exported",
    "msgHash": "not exported either",
}

EXPECTED = {
    "VMCATCHER_EVENT_FILENAME": "f0e1d2c3-0000-4000-8000-000000000001",
    "VMCATCHER_EVENT_DC_IDENTIFIER": "f0e1d2c3-0000-4000-8000-000000000001",
    "VMCATCHER_EVENT_HV_URI": "https://example.org/images/one.img",
    "VMCATCHER_EVENT_HV_SIZE": "1234",
    "VMCATCHER_EVENT_DC_DESCRIPTION": "A test image",
    "VMCATCHER_EVENT_IL_DC_IDENTIFIER": "11111111-2222-4333-8444-555555555555",
    "VMCATCHER_EVENT_DC_TITLE": "Test image",
    "VMCATCHER_EVENT_HV_HYPERVISOR": "KVM",
    "VMCATCHER_EVENT_HV_FORMAT": "qcow2",
    "VMCATCHER_EVENT_HV_VERSION": "1.2",
    "VMCATCHER_EVENT_SL_ARCH": "x86_64",
    "VMCATCHER_EVENT_SL_COMMENTS": "None",
    "VMCATCHER_EVENT_SL_OS": "Linux",
    "VMCATCHER_EVENT_SL_OSVERSION": "AlmaLinux 9",
    "VMCATCHER_EVENT_AD_MPURI": "https://marketplace.example.org/x",
    "VMCATCHER_EVENT_SL_CHECKSUM_SHA512": "ab" * 64,
    "VMCATCHER_EVENT_VO": "dteam",
}


def event_vars(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("VMCATCHER_EVENT_")}


def test_event_type_strings_are_the_emitted_ones():
    assert EventType.PROCESS_PREFIX == "ProcessPrefix"
    assert EventType.PROCESS_POSTFIX == "ProcessPostfix"
    assert EventType.AVAILABLE_PREFIX == "AvailablePrefix"
    assert EventType.AVAILABLE_POSTFIX == "AvailablePostfix"
    assert EventType.EXPIRE_PREFIX == "ExpirePrefix"
    assert EventType.EXPIRE_POSTFIX == "ExpirePostfix"
    assert EventType.SUBSCRIPTION_IMAGE_NEW == "SubscriptionImageNew"
    assert len(EventType) == 7


def test_full_mapping_reaches_the_handler(dumper, base_env):
    runner = EventRunner(dumper.command, base_env=base_env)
    result = runner.fire(EventType.AVAILABLE_POSTFIX, FULL_ENTRY)
    assert result.rc == 0 and not result.timed_out
    (env,) = dumper.texts()
    expected = dict(EXPECTED)
    expected["VMCATCHER_EVENT_TYPE"] = "AvailablePostfix"
    expected["VMCATCHER_EVENT_UUID_SESSION"] = runner.session_uuid
    assert event_vars(env) == expected
    assert env["PATH"] == base_env["PATH"]


def test_legacy_aliases_are_honoured():
    variables = event_variables({"uuid": "u-1", "size": 42, "sha512": "cd" * 64})
    assert variables == {
        "VMCATCHER_EVENT_DC_IDENTIFIER": "u-1",
        "VMCATCHER_EVENT_HV_SIZE": "42",
        "VMCATCHER_EVENT_SL_CHECKSUM_SHA512": "cd" * 64,
    }


def test_new_key_wins_over_legacy_alias_and_empty_falls_back():
    variables = event_variables({"dc:identifier": "new", "uuid": "old", "hv:size": "", "size": 7})
    assert variables["VMCATCHER_EVENT_DC_IDENTIFIER"] == "new"
    assert variables["VMCATCHER_EVENT_HV_SIZE"] == "7"


def test_empty_values_are_not_set_and_unknown_keys_ignored():
    variables = event_variables({"dc:title": "", "sl:os": None, "hv:format": "raw", "x": "y"})
    # str(None) is 'None' (non-empty) as in the original; hv:format without the
    # hv:image. prefix is not mapped (SubscriptionImageNew never sets HV_FORMAT).
    assert variables == {"VMCATCHER_EVENT_SL_OS": "None"}


def test_process_events_carry_only_type_and_session(dumper, base_env):
    runner = EventRunner(dumper.command, base_env=base_env)
    runner.fire(EventType.PROCESS_PREFIX)
    (env,) = dumper.texts()
    assert set(event_vars(env)) == {"VMCATCHER_EVENT_TYPE", "VMCATCHER_EVENT_UUID_SESSION"}
    assert env["VMCATCHER_EVENT_TYPE"] == "ProcessPrefix"


def test_non_ascii_values_arrive_as_utf8(dumper, base_env):
    title = "Ubuntu ünïcødé 日本語 🚀"
    runner = EventRunner(dumper.command, base_env=base_env)
    result = runner.fire(EventType.SUBSCRIPTION_IMAGE_NEW, {"dc:title": title, "sl:os": "Ελληνικά"})
    assert result.rc == 0
    (raw,) = dumper.records()
    assert raw["VMCATCHER_EVENT_DC_TITLE"] == title.encode("utf-8")
    assert raw["VMCATCHER_EVENT_SL_OS"] == "Ελληνικά".encode()


def test_hostile_values_do_not_break_the_run(dumper, base_env):
    runner = EventRunner(dumper.command, base_env=base_env)
    metadata = {"dc:title": "nul\x00inside", "dc:description": "lone \ud800 surrogate"}
    result = runner.fire(EventType.SUBSCRIPTION_IMAGE_NEW, metadata)
    assert result.rc == 0
    (raw,) = dumper.records()
    assert raw["VMCATCHER_EVENT_DC_TITLE"] == b"nulinside"
    assert raw["VMCATCHER_EVENT_DC_DESCRIPTION"].startswith(b"lone ")


def test_command_string_is_not_interpolated_with_metadata(tmp_path, base_env):
    marker = tmp_path / "pwned"
    runner = EventRunner('printf %s "$VMCATCHER_EVENT_DC_TITLE"', base_env=base_env)
    result = runner.fire(EventType.SUBSCRIPTION_IMAGE_NEW, {"dc:title": f"$(touch {marker}); `id`"})
    assert result.stdout == f"$(touch {marker}); `id`"
    assert not marker.exists()


def test_fresh_environment_per_event_no_bleed(dumper, base_env):
    runner = EventRunner(dumper.command, base_env=base_env)
    runner.fire(EventType.EXPIRE_PREFIX, FULL_ENTRY)
    runner.fire(EventType.PROCESS_POSTFIX)
    runner.fire(EventType.SUBSCRIPTION_IMAGE_NEW, {"dc:title": "only title"})
    first, second, third = dumper.texts()
    assert event_vars(first)["VMCATCHER_EVENT_VO"] == "dteam"
    assert set(event_vars(second)) == {"VMCATCHER_EVENT_TYPE", "VMCATCHER_EVENT_UUID_SESSION"}
    assert set(event_vars(third)) == {
        "VMCATCHER_EVENT_TYPE",
        "VMCATCHER_EVENT_UUID_SESSION",
        "VMCATCHER_EVENT_DC_TITLE",
    }


def test_stale_event_variables_in_base_env_are_dropped():
    env = build_event_env(
        {"VMCATCHER_EVENT_DC_TITLE": "stale", "HOME": "/root"}, "ProcessPrefix", "s-1"
    )
    assert "VMCATCHER_EVENT_DC_TITLE" not in env
    assert env["HOME"] == "/root"


def test_process_environment_is_never_modified(dumper, base_env):
    before = dict(os.environ)
    runner = EventRunner(
        dumper.command,
        base_env={**base_env, "VMCATCHER_CACHE_DIR_CACHE": "/srv/cache"},
    )
    runner.fire(EventType.AVAILABLE_PREFIX, FULL_ENTRY)
    assert dict(os.environ) == before
    (env,) = dumper.texts()
    assert env["VMCATCHER_CACHE_DIR_CACHE"] == "/srv/cache"


def test_base_env_is_copied_at_construction(dumper, base_env):
    mutable = dict(base_env)
    runner = EventRunner(dumper.command, base_env=mutable)
    mutable["LATE"] = "added later"
    runner.fire(EventType.PROCESS_PREFIX)
    (env,) = dumper.texts()
    assert "LATE" not in env


def test_session_uuid_is_uuid1_stable_per_runner(dumper, base_env):
    runner = EventRunner(dumper.command, base_env=base_env)
    runner.fire(EventType.PROCESS_PREFIX)
    runner.fire(EventType.PROCESS_POSTFIX)
    envs = dumper.texts()
    assert {e["VMCATCHER_EVENT_UUID_SESSION"] for e in envs} == {runner.session_uuid}
    assert uuid.UUID(runner.session_uuid).version == 1
    assert EventRunner(None, base_env={}).session_uuid != runner.session_uuid


def test_database_password_is_not_exported(dumper, base_env):
    runner = EventRunner(
        dumper.command,
        base_env={**base_env, "VMCATCHER_RDBMS": "postgresql+psycopg://vmc:s3cr3t@db.example/vmc"},
    )
    runner.fire(EventType.PROCESS_PREFIX)
    (env,) = dumper.texts()
    assert env["VMCATCHER_RDBMS"] == "postgresql+psycopg://vmc@db.example/vmc"
    assert "s3cr3t" not in "".join(env.values())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///vmcatcher.db", "sqlite:///vmcatcher.db"),
        ("sqlite:////var/lib/vmcatcher/vmcatcher.db", "sqlite:////var/lib/vmcatcher/vmcatcher.db"),
        ("postgresql://user:pw@host:5432/db", "postgresql://user@host:5432/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://user:p@ss:w@rd@host/db", "postgresql://user@host/db"),
        (
            "postgresql://user:pw@host/db?sslmode=require",
            "postgresql://user@host/db?sslmode=require",
        ),
        (
            "postgresql://host/db?user=u&password=pw&sslmode=require",
            "postgresql://host/db?user=u&sslmode=require",
        ),
        ("postgresql://host/db?password=pw", "postgresql://host/db"),
        ("mysql+pymysql://:onlypw@host/db", "mysql+pymysql://@host/db"),
    ],
)
def test_redact_database_url(url, expected):
    assert redact_database_url(url) == expected


def test_no_command_is_a_noop(tmp_path):
    for command in (None, "", "   "):
        runner = EventRunner(command, base_env={})
        result = runner.fire(EventType.PROCESS_PREFIX, FULL_ENTRY)
        assert result.rc == 0 and result.stdout == "" and not result.timed_out


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError):
        EventRunner("true", base_env={}, timeout=0)
    with pytest.raises(ValueError):
        EventRunner("true", base_env={}, kill_grace=-1)

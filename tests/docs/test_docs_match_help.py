"""The user documentation keeps up with the code: every option, variable and event is documented.

Why: the pages in docs/ are written by hand, and the commands keep gaining
options. These tests read the real argparse parsers (or, for the example
handler, its ``--help`` output) and the event module, and fail as soon as a
command gains an option, an environment variable appears in its help, or an
event variable is added, that its page does not mention. They also check the
other direction where it is cheap: every ``VMCATCHER_*`` variable named in the
docs and in contrib/ exists in the code (no typos in copy-paste material).
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.commands import clean_env, command_path
from vmcatcher import events
from vmcatcher.errors import Code
from vmcatcher.vocabulary import HISTORICAL_EXPIRE_POSTFIX, EventType

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
COMMANDS_DIR = DOCS / "commands"

# command -> module of vmcatcher.cli holding its parser
COMMANDS = {
    "vmcatcher_endorser": "endorser",
    "vmcatcher_subscribe": "subscribe",
    "vmcatcher_image": "image",
    "vmcatcher_cache": "cache",
    "vmcatcher_glance": "glance",
    "vmcatcher_check": "check",
    "vmcatcher_eventHndlExpl": "event_handler_example",
}

OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")
VARIABLE = re.compile(r"\bVMCATCHER_[A-Z0-9_]+")


def page(command: str) -> str:
    path = COMMANDS_DIR / f"{command}.md"
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    return path.read_text()


def mentions(text: str, option: str) -> bool:
    """``option`` appears as a whole token (``-s`` does not count inside ``--sha512``)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def variables_in(text: str) -> set[str]:
    """``VMCATCHER_*`` names in ``text``; wildcards such as ``VMCATCHER_CACHE_DIR_*`` skipped."""
    return {name for name in VARIABLE.findall(text) if not name.endswith("_")}


def parser_of(command: str) -> argparse.ArgumentParser | None:
    module = importlib.import_module(f"vmcatcher.cli.{COMMANDS[command]}")
    build = getattr(module, "build_parser", None)
    return build() if callable(build) else None


def help_text(command: str) -> str:
    parser = parser_of(command)
    if parser is not None:
        return parser.format_help()
    completed = subprocess.run(
        [command_path(command), "--help"], capture_output=True, text=True, env=clean_env(),
        timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def options_from_help(text: str) -> set[str]:
    """Options named on argparse's option lines (``  -s SHA512, --sha512 SHA512   help``)."""
    found: set[str] = set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            found.update(OPTION.findall(stripped.split("  ")[0]))
    return found


def option_strings(command: str) -> set[str]:
    """Every short and long option the command accepts."""
    parser = parser_of(command)
    if parser is not None:
        return {flag for action in parser._actions for flag in action.option_strings}
    return options_from_help(help_text(command))  # no build_parser(): read --help


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_on_the_command_page(command: str) -> None:
    text = page(command)
    options = option_strings(command)
    assert {"-h", "--help", "--version"} <= options  # sanity: we did read the parser
    missing = sorted(option for option in options if not mentions(text, option))
    assert not missing, f"docs/commands/{command}.md does not mention {missing}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_variable_in_the_help_is_on_the_command_page(command: str) -> None:
    text = page(command)
    missing = sorted(variables_in(help_text(command)) - variables_in(text))
    assert not missing, f"docs/commands/{command}.md does not mention {missing}"


def test_the_option_reader_sees_what_argparse_sees() -> None:
    """The --help fallback finds the same options as the parser, where both exist."""
    for command in ("vmcatcher_cache", "vmcatcher_endorser", "vmcatcher_subscribe"):
        completed = subprocess.run(
            [command_path(command), "--help"], capture_output=True, text=True,
            env=clean_env(), timeout=60,
        )  # fmt: skip
        assert options_from_help(completed.stdout) == option_strings(command), command


def test_every_event_type_and_variable_is_documented() -> None:
    text = (DOCS / "events.md").read_text()
    for event_type in sorted(e.value for e in EventType):
        assert f"`{event_type}`" in text, event_type
    assert HISTORICAL_EXPIRE_POSTFIX in text
    names = [name for name, _keys in events.EVENT_VARIABLES]
    names += [events.ENV_EVENT_TYPE, events.ENV_SESSION_UUID, events.ENV_RDBMS]
    missing = sorted(name for name in names if name not in variables_in(text))
    assert not missing, f"docs/events.md does not mention {missing}"


def test_example_handler_page_lists_every_recorded_variable() -> None:
    from vmcatcher.cli import event_handler_example

    text = page("vmcatcher_eventHndlExpl")
    missing = sorted(set(event_handler_example.INTERESTING_KEYS) - variables_in(text))
    assert not missing, missing


def test_every_subscribe_result_code_is_documented() -> None:
    text = page("vmcatcher_subscribe")
    for code in Code:
        if code >= 10 and code != Code.IMAGE_DEFINITION_FAILED:  # 39: never produced
            assert f"| `{int(code)}` |" in text, f"code {int(code)} ({code.name})"


def code_variables() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "vmcatcher").rglob("*.py"):
        names |= variables_in(path.read_text())
    return names


def suite_variables() -> set[str]:
    """Variables the test suite reads (e.g. VMCATCHER_TEST_DATABASE); pages may name them."""
    names: set[str] = set()
    for path in (REPO / "tests").rglob("*.py"):
        names |= variables_in(path.read_text())
    return names


def test_every_configuration_variable_of_the_code_is_documented() -> None:
    documented: set[str] = set()
    for path in DOCS.rglob("*.md"):
        documented |= variables_in(path.read_text())
    missing = sorted(code_variables() - documented)
    assert not missing, f"no page of docs/ mentions {missing}"


@pytest.mark.parametrize(
    "path",
    sorted(
        [p for p in DOCS.rglob("*.md")] + [p for p in (REPO / "contrib").rglob("*") if p.is_file()]
    ),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_docs_and_contrib_name_only_real_variables(path: Path) -> None:
    known = code_variables() | suite_variables()
    unknown = sorted(variables_in(path.read_text()) - known)
    assert not unknown, f"{path.relative_to(REPO)} names unknown variables {unknown}"


def test_contrib_files_are_consistent() -> None:
    contrib = REPO / "contrib"
    cron = (contrib / "cron.d" / "vmcatcher").read_text()
    jobs = [line for line in cron.splitlines() if line and line[0].isdigit()]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 6)
    assert fields[:5] == ["50", "*/6", "*", "*", "*"] and fields[5] == "vmcatcher"
    assert "vmcatcher_subscribe -U;" in fields[6] and "vmcatcher_cache" in fields[6]
    assert not re.search(r"^\s*export\s", cron, re.M)  # cron takes NAME=value lines only

    service = (contrib / "systemd" / "vmcatcher.service").read_text()
    for line in ("Type=oneshot", "User=vmcatcher", "EnvironmentFile=/etc/vmcatcher/vmcatcher.env",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "ReadWritePaths=/var/lib/vmcatcher"):  # fmt: skip
        assert re.search(rf"^{re.escape(line)}$", service, re.M), line
    # Through /usr/bin/env and the unit's PATH (test_contrib_units.py checks the layout).
    starts = re.findall(r"^ExecStart=-?/usr/bin/env (\S+)", service, re.M)
    assert [Path(s).name for s in starts] == ["vmcatcher_subscribe", "vmcatcher_cache"]
    # vmcatcher_glance is opt-in (sites without OpenStack): commented, after the cache run.
    offered = re.findall(r"^#ExecStart=-?/usr/bin/env (\S+)", service, re.M)
    assert [Path(s).name for s in offered] == ["vmcatcher_glance"]
    assert service.index("#ExecStart=") > service.index("ExecStart=/usr/bin/env vmcatcher_cache")
    glance_jobs = [line for line in cron.splitlines() if line.startswith("#50 ")]
    assert len(glance_jobs) == 1 and glance_jobs[0].rstrip().endswith(
        "vmcatcher_cache; vmcatcher_glance; }"
    )
    timer = (contrib / "systemd" / "vmcatcher.timer").read_text()
    assert "OnCalendar=" in timer and "WantedBy=timers.target" in timer

    env_file = (contrib / "vmcatcher.env").read_text()
    settings = dict(
        line.split("=", 1) for line in env_file.splitlines() if line and not line.startswith("#")
    )
    assert settings["VMCATCHER_RDBMS"] == "sqlite:////var/lib/vmcatcher/vmcatcher.db"
    for key in ("VMCATCHER_CACHE_DIR_CACHE", "VMCATCHER_CACHE_DIR_DOWNLOAD",
                "VMCATCHER_CACHE_DIR_EXPIRE"):  # fmt: skip
        assert settings[key].startswith("/var/lib/vmcatcher/"), key
    assert len({settings[k] for k in settings if k.startswith("VMCATCHER_CACHE_DIR_")}) == 3


def test_the_env_file_is_valid_shell() -> None:
    """operations.md sources it with ``set -a; . vmcatcher.env``: it must parse in sh."""
    completed = subprocess.run(
        ["/bin/sh", "-c", 'set -a; . "$1"; printf %s "$VMCATCHER_RDBMS"', "sh",
         str(REPO / "contrib" / "vmcatcher.env")],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=30,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "sqlite:////var/lib/vmcatcher/vmcatcher.db"

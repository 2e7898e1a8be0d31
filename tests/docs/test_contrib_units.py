"""The shipped systemd unit works with the documented layouts (issue 11, item 10).

It named ``/usr/local/bin`` only, so the virtualenv of docs/operations.md
(``/opt/vmcatcher``) failed, and handlers named without a path were not found.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.commands import command_path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "systemd" / "vmcatcher.service"


def _settings(name: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{name}=")
    ]


def test_the_unit_finds_the_commands_in_the_virtualenv_and_system_wide() -> None:
    [path] = [value.split("=", 1)[1] for value in _settings("Environment")
              if value.startswith("PATH=")]  # fmt: skip
    directories = path.split(":")
    assert directories[:2] == ["/opt/vmcatcher/bin", "/usr/local/bin"]
    assert "/opt/vmcatcher" in (REPO / "docs" / "operations.md").read_text()

    commands = []
    for value in _settings("ExecStart"):
        program, *args = value.lstrip("-").split()
        assert program == "/usr/bin/env", value  # ExecStart does not search PATH itself
        commands.append(args[0])
    assert commands == ["vmcatcher_subscribe", "vmcatcher_cache"]
    for name in (*commands, "vmcatcher_eventHndlExpl"):  # installed in one bin directory
        assert Path(command_path(name)).parent == Path(command_path("vmcatcher_cache")).parent

"""Issue 11, item 5: the shipped ``logger.conf`` works as installed.

It used to name a syslog host that does not resolve, and Python 3's
SysLogHandler resolves it at start-up: every command exited 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[2] / "logger.conf"
TIMESTAMPED = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO:main:Defaulting DB connection"
)

UNRESOLVABLE_SYSLOG = """\
[loggers]
keys=root
[handlers]
keys=remote
[formatters]
keys=f
[logger_root]
level=INFO
handlers=remote
[handler_remote]
class=handlers.SysLogHandler
formatter=f
args=(('syslogserver.invalid', handlers.SYSLOG_UDP_PORT), handlers.SysLogHandler.LOG_USER)
[formatter_f]
format=%(message)s
"""


@pytest.mark.sqlite_only
def test_the_shipped_logger_conf_works_and_adds_timestamps(site) -> None:
    assert site.database.path == site.root / "vmcatcher.db"  # the default of the cwd
    result = site.endorser("-l", "--log-config", str(SHIPPED), env={"VMCATCHER_RDBMS": ""})
    assert result.returncode == 0, result
    assert any(TIMESTAMPED.match(line) for line in result.stderr.splitlines()), result


def test_a_handler_that_cannot_be_created_is_named_with_its_cause(site) -> None:
    conf = site.root / "remote.conf"
    conf.write_text(UNRESOLVABLE_SYSLOG)
    result = site.endorser("-l", "--log-config", str(conf))
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"ERROR:main:Logfile configuration file '{conf}': handler 'remote' cannot be created: "
    ), result
    assert line.endswith("(a host name in its args does not resolve)"), result

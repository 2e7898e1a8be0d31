"""One resolver for every configurable value: command line, then environment, then default.

The original read each setting in a slightly different way, with bugs (an
optparse default masking ``VMCATCHER_DIR_CERT`` in ``vmcatcher_image``). Every
command now goes through :func:`resolve`, so the rule "command line beats
``VMCATCHER_*`` beats built-in default" holds everywhere, and every defaulted
critical value logs the original's INFO line (``Defaulting DB connection to
'sqlite:///vmcatcher.db'``), which admins grep for in cron mail.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from vmcatcher.errors import UsageError

T = TypeVar("T")

log = logging.getLogger("main")

DEFAULT_DATABASE = "sqlite:///vmcatcher.db"
DEFAULT_CERT_DIR = "/etc/grid-security/certificates/"
DEFAULT_FORMAT = "lines"
OUTPUT_FORMATS = ("SMIME", "message", "lines", "json")

# Environment variable names (docs/operations.md), in one place.
ENV_DATABASE = "VMCATCHER_RDBMS"
ENV_LOG_CONF = "VMCATCHER_LOG_CONF"
ENV_CERT_DIR = "VMCATCHER_DIR_CERT"
ENV_OUTPUT_FORMAT = "VMCATCHER_OUTPUT_FORMAT"
ENV_SUB_EVENT = "VMCATCHER_SUB_EVENT"
ENV_CACHE_EVENT = "VMCATCHER_CACHE_EVENT"
ENV_CACHE_DIR_CACHE = "VMCATCHER_CACHE_DIR_CACHE"
ENV_CACHE_DIR_DOWNLOAD = "VMCATCHER_CACHE_DIR_DOWNLOAD"
ENV_CACHE_DIR_EXPIRE = "VMCATCHER_CACHE_DIR_EXPIRE"
ENV_CACHE_ACTION_DOWNLOAD = "VMCATCHER_CACHE_ACTION_DOWNLOAD"
ENV_CACHE_ACTION_CHECK = "VMCATCHER_CACHE_ACTION_CHECK"
ENV_CACHE_ACTION_EXPIRE = "VMCATCHER_CACHE_ACTION_EXPIRE"
ENV_CRL_POLICY = "VMCATCHER_CRL_POLICY"
ENV_FETCH_TIMEOUT = "VMCATCHER_FETCH_TIMEOUT"


def resolve(
    cli_value: T | None,
    env_var: str | None,
    default: T | None = None,
    *,
    default_message: str | None = None,
    env: Mapping[str, str] | None = None,
) -> T | str | None:
    """Return the command-line value, else the env var's (if non-empty), else ``default``.

    ``default_message`` is a %-format with one ``%s`` for the default, logged at
    INFO when the default is used, exactly as the original did.
    """
    if cli_value is not None:
        return cli_value
    environment = os.environ if env is None else env
    if env_var:
        from_env = environment.get(env_var)
        if from_env:
            return from_env
    if default_message is not None and default is not None:
        log.info(default_message, default)
    return default


def resolve_database(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    """The SQLAlchemy URL of the vmcatcher database (``-d``, ``VMCATCHER_RDBMS``)."""
    return str(
        resolve(
            cli_value,
            ENV_DATABASE,
            DEFAULT_DATABASE,
            default_message="Defaulting DB connection to '%s'",
            env=env,
        )
    )


def database_origin(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    """Where the database URL of :func:`resolve_database` came from, for error messages."""
    if cli_value is not None:
        return "set by option -d"
    environment = os.environ if env is None else env
    if environment.get(ENV_DATABASE):
        return f"set by environment variable {ENV_DATABASE}"
    return f"the default: neither -d nor {ENV_DATABASE} is set"


@dataclass(frozen=True)
class DatabaseSettings:
    """Which database a command opens, and where that choice came from (for messages)."""

    url: str
    origin: str
    echo: bool = False  # --log-sql-info

    @classmethod
    def resolve(
        cls, cli_value: str | None, echo: bool = False, env: Mapping[str, str] | None = None
    ) -> DatabaseSettings:
        """``-d``/``VMCATCHER_RDBMS``/default, as every command resolves it."""
        return cls(resolve_database(cli_value, env), database_origin(cli_value, env), echo)


def resolve_cert_dir(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    """The Grid CA directory (``-c``, ``VMCATCHER_DIR_CERT``)."""
    return str(
        resolve(
            cli_value,
            ENV_CERT_DIR,
            DEFAULT_CERT_DIR,
            default_message="Defaulting Certificate directory to '%s'",
            env=env,
        )
    )


def resolve_format(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    """The output format name (``-f``, ``VMCATCHER_OUTPUT_FORMAT``), not yet validated."""
    return str(resolve(cli_value, ENV_OUTPUT_FORMAT, DEFAULT_FORMAT, env=env))


def env_flag(name: str, env: Mapping[str, str] | None = None) -> bool:
    """True only when the variable is exactly ``"1"`` (the original's rule)."""
    environment = os.environ if env is None else env
    return environment.get(name) == "1"


#: Longest wait for a TCP/TLS connection to a list or image server, whatever the read timeout.
MAX_CONNECT_TIMEOUT = 10.0


def parse_number(
    value: object, what: str, *, whole: bool = False, zero: bool = False, unit: str | None = None
) -> float:
    """The one rule for every numeric option and variable (docs/troubleshooting.md).

    A finite number (a whole one when ``whole``), above 0, or from 0 when ``zero``.
    Anything else is a :class:`UsageError` (exit 1) shaped
    ``Invalid <what> '<value>': a number of <unit> above 0``.
    """
    text = str(value).strip()
    number: float | None
    try:
        number = float(int(text)) if whole else float(text)
    except (TypeError, ValueError):
        number = None
    valid = number is not None and math.isfinite(number) and (number >= 0 if zero else number > 0)
    if not valid or number is None:
        noun = "a whole number" if whole else f"a number of {unit}" if unit else "a number"
        bound = "0 or more" if zero else "above 0"
        raise UsageError(f"Invalid {what} '{value}': {noun} {bound}")
    return number


def resolve_number(
    cli_value: object | None,
    env_var: str | None,
    default: float | None,
    what: str,
    *,
    whole: bool = False,
    zero: bool = False,
    unit: str | None = None,
    env: Mapping[str, str] | None = None,
) -> float | None:
    """A number from the command line, the environment or ``default``, checked by parse_number."""
    value = resolve(cli_value, env_var, None, env=env)
    if value is None:
        return default
    return parse_number(value, what, whole=whole, zero=zero, unit=unit)


def resolve_seconds(
    cli_value: object | None,
    env_var: str,
    default: float,
    what: str,
    env: Mapping[str, str] | None = None,
) -> float:
    """A positive number of seconds from the command line, the environment or ``default``."""
    seconds = resolve_number(cli_value, env_var, default, what, unit="seconds", env=env)
    assert seconds is not None
    return seconds


def transfer_timeout(read_seconds: float) -> tuple[float, float]:
    """(connect, read) timeouts for requests: connecting never waits longer than reading."""
    return (min(MAX_CONNECT_TIMEOUT, read_seconds), read_seconds)

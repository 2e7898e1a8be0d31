"""Plumbing shared by the commands: options, logging, action selection, error handling.

A command module only declares its options and maps the parsed arguments onto
service calls. Everything a user can get wrong ends here as one ERROR line and
the exit code the failure carries (see :mod:`vmcatcher.errors`); an unexpected
bug ends as one CRITICAL line, with the traceback only at ``-v -v`` (DEBUG).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from vmcatcher import __version__
from vmcatcher.errors import Code, UsageError, VmcatcherError
from vmcatcher.settings import OUTPUT_FORMATS

log = logging.getLogger("main")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the original's usage-error exit status (2) and a one-line message."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(Code.USAGE, f"{self.prog}: error: {message}\n")


def new_parser(prog: str, description: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    return parser


def add_actions(
    group: argparse._ArgumentGroup, actions: Sequence[tuple[tuple[str, ...], str, str]]
):
    """Declare action flags; each appends its name to ``args.actions`` for :func:`single_action`."""
    for flags, name, text in actions:
        group.add_argument(*flags, dest="actions", action="append_const", const=name, help=text)


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="more output (repeat for DEBUG)"
    )
    group.add_argument("-q", "--quiet", action="count", default=0, help="less output (repeatable)")
    group.add_argument(
        "--log-config",
        metavar="FILE",
        help="logging configuration file (logging.config.fileConfig); env VMCATCHER_LOG_CONF",
    )


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-d",
        "--database",
        metavar="URL",
        help="SQLAlchemy database URL; env VMCATCHER_RDBMS; default sqlite:///vmcatcher.db",
    )
    parser.add_argument(
        "--log-sql-info", action="store_true", help="log every SQL statement (SQLAlchemy echo)"
    )


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--format",
        metavar="FORMAT",
        help=f"output format, one of {', '.join(OUTPUT_FORMATS)}; "
        "env VMCATCHER_OUTPUT_FORMAT; default lines",
    )


def check_format(value: str) -> str:
    """Reject an unknown output format with the original's message."""
    if value not in OUTPUT_FORMATS:
        raise UsageError(
            f"Invalid format '{value}' allowed formats are '{', '.join(OUTPUT_FORMATS)}'"
        )
    return value


def single_action(selected: Sequence[str]) -> str:
    """The one action the user asked for, with the original's two error messages."""
    if not selected:
        raise UsageError("No actions selected")
    if len(selected) > 1:
        raise UsageError("More than one action selected.")
    return selected[0]


def run_cli(body: Callable[[], int]) -> int:
    """Run a command body and turn every failure into a log line and an exit code."""
    try:
        return int(body())
    except VmcatcherError as error:
        _ensure_logging()
        log.error("%s", error)
        return int(error.code)
    except KeyboardInterrupt:
        _ensure_logging()
        log.error("Interrupted.")
        return 130
    except BrokenPipeError:
        return int(Code.FAILURE)
    except Exception as error:  # a bug or an environment failure we did not foresee
        _ensure_logging()
        if type(error).__module__.startswith("sqlalchemy"):
            from vmcatcher.services.database import describe_database_error

            log.error("Database error: %s", describe_database_error(error))
        else:
            log.critical("Unexpected error: %s: %s", type(error).__name__, error)
        log.debug("Traceback of the unexpected error", exc_info=True)
        return int(Code.FAILURE)


def _ensure_logging() -> None:
    from vmcatcher.logsetup import install_safe_records

    install_safe_records()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING)

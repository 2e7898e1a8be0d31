"""``vmcatcher_eventHndlExpl``: the example event handler, appending each event as a JSON line.

Sites point ``-x``/``VMCATCHER_CACHE_EVENT``/``VMCATCHER_SUB_EVENT`` at this to
see what vmcatcher passes to a handler, and copy it as a starting point. It
reads the ``VMCATCHER_*`` variables of its environment and appends one line,
``json.dumps(record, sort_keys=True)``, to ``--output_file``
(docs/commands/vmcatcher_eventHndlExpl.md).

Fixed against the original: ``--log-config`` works, ``DATETIME`` is UTC, the
``VMCATCHER_EVENT_AD_MPURI`` and ``VMCATCHER_EVENT_UUID_SESSION`` variables are
recorded, and there is no Python 2 ``reload(sys)``.

This module imports **only the standard library**, so that the top-level
``vmcatcher_eventHndlExpl`` launcher runs with a bare ``python3`` on a host
where vmcatcher's dependencies are not installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

VERSION = "0.0.2"
PROGRAM = "vmcatcher_eventHndlExpl"

EVENT_KEYS = (
    "VMCATCHER_EVENT_TYPE",
    "VMCATCHER_EVENT_DC_DESCRIPTION",
    "VMCATCHER_EVENT_DC_IDENTIFIER",
    "VMCATCHER_EVENT_DC_TITLE",
    "VMCATCHER_EVENT_HV_HYPERVISOR",
    "VMCATCHER_EVENT_HV_SIZE",
    "VMCATCHER_EVENT_HV_URI",
    "VMCATCHER_EVENT_HV_VERSION",
    "VMCATCHER_EVENT_HV_FORMAT",
    "VMCATCHER_EVENT_SL_ARCH",
    "VMCATCHER_EVENT_SL_CHECKSUM_SHA512",
    "VMCATCHER_EVENT_SL_COMMENTS",
    "VMCATCHER_EVENT_SL_OS",
    "VMCATCHER_EVENT_SL_OSVERSION",
    "VMCATCHER_EVENT_FILENAME",
    "VMCATCHER_EVENT_IL_DC_IDENTIFIER",
    "VMCATCHER_EVENT_VO",
    "VMCATCHER_EVENT_AD_MPURI",
    "VMCATCHER_EVENT_UUID_SESSION",
)

CONFIG_KEYS = (
    "VMCATCHER_RDBMS",
    "VMCATCHER_CACHE_EVENT",
    "VMCATCHER_LOG_CONF",
    "VMCATCHER_DIR_CERT",
    "VMCATCHER_CACHE_DIR_CACHE",
    "VMCATCHER_CACHE_DIR_DOWNLOAD",
    "VMCATCHER_CACHE_DIR_EXPIRE",
    "VMCATCHER_CACHE_ACTION_DOWNLOAD",
    "VMCATCHER_CACHE_ACTION_CHECK",
    "VMCATCHER_CACHE_ACTION_EXPIRE",
)

INTERESTING_KEYS = EVENT_KEYS + CONFIG_KEYS
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def build_record(
    environ: Mapping[str, str], *, minimal: bool = False, with_datetime: bool = False
) -> dict[str, str]:
    """The dict written for one event.

    Default generator: every interesting key, ``""`` when unset. ``minimal``
    (``--generator minium``): only the keys that are set.
    """
    if minimal:
        record = {key: environ[key] for key in INTERESTING_KEYS if key in environ}
    else:
        record = {key: environ.get(key, "") for key in INTERESTING_KEYS}
    if with_datetime:
        record["DATETIME"] = datetime.now(timezone.utc).strftime(DATETIME_FORMAT)
    return record


def append_record(path: str, record: Mapping[str, str]) -> None:
    """Append ``record`` as one JSON line, in one ``write`` so concurrent handlers don't mix."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Example vmcatcher event handler: appends the event's VMCATCHER_* "
        "environment as one JSON line to a file.",
    )
    parser.add_argument(
        "--output_file", dest="output_file", metavar="OUTPUT_LOGFILE", help="append here"
    )
    parser.add_argument(
        "--generator",
        dest="generator",
        metavar="GENERATOR",
        help="'minium' writes only the variables that are set",
    )
    parser.add_argument(
        "--datetime", dest="datetime", action="store_true", help="add a UTC DATETIME key"
    )
    parser.add_argument(
        "--log-config", dest="log_config", metavar="LOG_CONFIG", help="logging config file"
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {VERSION}")
    return parser


def _setup_logging(log_config: str | None) -> bool:
    if log_config is None:
        logging.basicConfig(level=logging.INFO)
        return True
    if not os.path.isfile(log_config):
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("main").error(
            "Logfile configuration file '%s' was not found.", log_config
        )
        return False
    try:
        logging.config.fileConfig(log_config, disable_existing_loggers=False)
    except Exception as exc:  # fileConfig raises many kinds for a bad file
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("main").error(
            "Logfile configuration file '%s' could not be used: %s", log_config, exc
        )
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example handler; returns the exit status."""
    try:
        options = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 1
    if not _setup_logging(options.log_config):
        return 1
    log = logging.getLogger("main")
    if not options.output_file:
        log.info("'--help' for options.")
        return 0
    record = build_record(
        os.environ,
        minimal=options.generator == "minium",
        with_datetime=options.datetime,
    )
    try:
        append_record(options.output_file, record)
    except OSError as exc:
        log.error("Cannot write to '%s': %s", options.output_file, exc.strerror or exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

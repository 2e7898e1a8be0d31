"""Logging set-up shared by the commands (docs/compatibility.md, "Logger names").

The level is a counter starting at 2 (WARNING); each ``-v`` lowers it, each
``-q`` raises it. A logging config file (``--log-config`` or
``VMCATCHER_LOG_CONF``) replaces all of that with ``logging.config.fileConfig``.
Without one, messages go to stderr as ``LEVEL:logger:message``, which is what
the original's README shows and what admins' log filters expect.
"""

from __future__ import annotations

import logging
import logging.config
import os
from collections.abc import Mapping

from vmcatcher.errors import ConfigError
from vmcatcher.safetext import escape_controls
from vmcatcher.settings import ENV_LOG_CONF

_LEVELS = {
    0: logging.DEBUG,
    1: logging.INFO,
    2: logging.WARNING,
    3: logging.ERROR,
    4: logging.FATAL,
}


class SafeLogRecord(logging.LogRecord):
    """A log record whose message never carries raw control characters.

    Messages quote list titles, URIs, DNs and HTTP reasons; whatever handler a
    site configures, an ESC or a newline from them is shown escaped, so a
    remote party can neither forge a log line nor rewrite the terminal.
    """

    def getMessage(self) -> str:
        return escape_controls(super().getMessage(), keep="\t")


def install_safe_records() -> None:
    """Make every log record of this process a :class:`SafeLogRecord`."""
    logging.setLogRecordFactory(SafeLogRecord)


def level_for(verbose: int, quiet: int) -> int:
    """Map the -v/-q counters to a logging level (≤0 DEBUG ... ≥5 CRITICAL)."""
    counter = 2 - (verbose or 0) + (quiet or 0)
    if counter <= 0:
        return logging.DEBUG
    return _LEVELS.get(counter, logging.CRITICAL)


def setup_logging(
    verbose: int = 0,
    quiet: int = 0,
    log_config: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Configure the root logger once per process.

    Raises :class:`ConfigError` (exit 1) when a named config file does not
    exist; unlike the original, the message names the path whichever way it
    was given (command line or environment).
    """
    install_safe_records()
    environment = os.environ if env is None else env
    path = log_config or environment.get(ENV_LOG_CONF) or None
    level = level_for(verbose, quiet)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if path is None:
        logging.basicConfig(level=level)
        return
    if not os.path.isfile(path):
        logging.basicConfig(level=level)
        raise ConfigError(f"Logfile configuration file '{path}' was not found.")
    try:
        logging.config.fileConfig(path, disable_existing_loggers=False)
    except OSError as error:
        # The file is valid but a handler cannot be created now: an unresolvable syslog
        # host, a missing /dev/log, an unwritable log file (docs/troubleshooting.md).
        logging.basicConfig(level=level)
        failing = _failing_handler(error)
        which = f"handler '{failing}'" if failing else "a handler"
        raise ConfigError(
            f"Logfile configuration file '{path}': {which} cannot be created: "
            f"{_os_error_text(error)}"
        ) from None
    except Exception as error:  # configparser, KeyError, ImportError... all mean "bad file"
        logging.basicConfig(level=level)
        raise ConfigError(f"Logfile configuration file '{path}' is not valid: {error}") from None


def _failing_handler(error: BaseException) -> str | None:
    """The section name of the handler fileConfig was creating when *error* was raised."""
    traceback = error.__traceback__
    name = None
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "_install_handlers" and isinstance(
            frame.f_locals.get("hand"), str
        ):
            name = frame.f_locals["hand"]
        traceback = traceback.tb_next
    return name


def _os_error_text(error: OSError) -> str:
    import socket

    text = error.strerror or str(error)
    if isinstance(error, socket.gaierror):
        return f"{text} (a host name in its args does not resolve)"
    if getattr(error, "filename", None):
        return f"{text}: '{error.filename}'"
    return text

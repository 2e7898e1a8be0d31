"""Render records in the chosen output format onto one stream.

Each command keeps one :class:`Writer` per destination. ``lines`` and ``json``
come from :mod:`vmcatcher.output.records`; ``message`` prints the verified
payload of a stored list and ``SMIME`` the stored signed bytes, as the
original's output drivers did. Several JSON documents in one run are simply
concatenated (no trailing newline), exactly like the original. Text from a list
or a server never reaches the terminal with raw control characters
(:mod:`vmcatcher.safetext`); JSON escapes them itself.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from typing import Any, TextIO

from vmcatcher.errors import ConfigError, TrustError
from vmcatcher.output import records
from vmcatcher.safetext import escape_controls, escape_document

log = logging.getLogger("vmcatcher.output")

# Verifies a stored signed list and returns its payload; None when no trust store is loaded.
PayloadReader = Callable[[bytes], bytes]


def _stdout() -> TextIO:
    """``sys.stdout``, set to escape what its encoding cannot show instead of raising.

    Lists carry any Unicode in titles and descriptions; under a non-UTF-8 locale
    (or ``PYTHONIOENCODING=ascii``) printing them must not end in a traceback.
    """
    stream = sys.stdout
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="backslashreplace")
    return stream


def selection_writer(
    files: ExitStack,
    fmt: str,
    outputs: Sequence[str],
    position: int,
    payload_reader: PayloadReader | None = None,
) -> Writer:
    """The writer for the ``position``-th selection: its ``-o`` file if one was given, else stdout.

    Files are paired with selections by position and only opened (truncated) for a
    selection that matched something; ``files`` closes them at the end of the command.
    """
    stream = None
    if position < len(outputs):
        try:
            handle = open(outputs[position], "w", encoding="utf-8")  # noqa: SIM115 (closed by files)
            stream = files.enter_context(handle)
        except OSError as error:
            raise ConfigError(
                f"Cannot write output file '{outputs[position]}': {error.strerror}"
            ) from None
    return Writer(fmt, stream, payload_reader=payload_reader)


class Writer:
    """Write records to ``stream`` in ``fmt`` (one of settings.OUTPUT_FORMATS)."""

    def __init__(
        self,
        fmt: str,
        stream: TextIO | None = None,
        payload_reader: PayloadReader | None = None,
    ) -> None:
        self.format = fmt
        self.stream = stream if stream is not None else _stdout()
        self.payload_reader = payload_reader

    # --- primitives ---------------------------------------------------------

    def lines(self, lines: Iterable[str]) -> None:
        """One record per line; control characters in it are shown escaped (tabs kept)."""
        for line in lines:
            self.stream.write(escape_controls(line, keep="\t") + "\n")

    def json(self, value: Any) -> None:
        self.stream.write(records.json_text(value))

    def raw(self, data: bytes | str) -> None:
        """A stored document as is, but for control characters no verified list holds."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        self.stream.write(escape_document(text))

    @property
    def is_json(self) -> bool:
        return self.format == "json"

    # --- stored image lists -------------------------------------------------

    def signed_list(self, identifier: str, instance: Any | None) -> bool:
        """Print a stored list for ``message`` / ``SMIME``; False when it cannot be shown."""
        if self.format == "SMIME":
            if instance is None or instance.data is None:
                log.error("Imagelist not yet available.")
                return False
            self.raw(instance.data)
            return True
        if instance is None:
            return True
        if instance.data is None:
            log.warning("No imagelist found.")
            return False
        if self.payload_reader is None:
            log.warning("No trust anchor found so can not decode.")
            self.raw(instance.data)
            return True
        try:
            payload = self.payload_reader(instance.data)
        except TrustError as error:
            log.error("Failed to validate text for '%s' produced error '%s'", identifier, error)
            return False
        self.raw(payload)
        return True

    def subscription_info(self, sub: Any, instance: Any | None) -> bool:
        """The ``-i`` view of one subscription and its latest list instance."""
        if self.format == "lines":
            self.lines(records.subscription_lines(sub))
            if instance is not None:
                self.lines(records.list_instance_lines(instance))
            return True
        if self.format == "json":
            record: dict[str, Any] = {"Subscription": records.subscription_json(sub)}
            if instance is not None:
                record["ImageListInstance"] = records.list_instance_json(instance)
            self.json(record)
            return True
        return self.signed_list(sub.identifier, instance)

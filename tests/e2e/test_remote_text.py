"""A hostile list cannot rewrite the admin's terminal (docs/robustness.md).

Titles, descriptions, URIs and other image fields come from a remote publisher;
an HTTP reason phrase from a remote server. Every command that prints them,
in every format, to stdout, to ``-o`` files and in log lines, shows control
characters escaped (``\\x1b``) or as JSON escapes; ordinary UTF-8 is printed
byte for byte.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.lists import make_image

ESC_TITLE = "Evil \x1b]0;owned\x07title\x1b[2J with \x08backspace and \rreturn"
DESCRIPTION = "Ünïcödé ✓ stays as it is\x9b31m"
RAW_CONTROLS = ("\x1b", "\x07", "\x08", "\x9b")


def _assert_clean(text: str) -> None:
    for control in RAW_CONTROLS:
        assert control not in text, f"raw {control!r} printed"


@pytest.fixture
def hostile(site):
    image = make_image("hostile-image", title=ESC_TITLE, description=DESCRIPTION,
                       comments="tab\there", extra={"hv:format": "raw\x1b[5m"})  # fmt: skip
    published = site.file_list(images=[image])
    site.subscribed(published)
    return published


def test_lines_escape_controls_and_keep_utf8(site, hostile) -> None:
    result = site.image("-i", "-u", "hostile-image")
    assert result.returncode == 0, result
    _assert_clean(result.stdout)
    assert "\r" not in result.stdout
    assert (
        "image.dc:title=Evil \\x1b]0;owned\\x07title\\x1b[2J with \\x08backspace and \\rreturn"
        in result.stdout.splitlines()
    )
    assert "image.dc:description=Ünïcödé ✓ stays as it is\\x9b31m" in result.stdout.splitlines()


def test_json_escapes_controls(site, hostile) -> None:
    result = site.image("-i", "-u", "hostile-image", "-f", "json")
    assert result.returncode == 0, result
    _assert_clean(result.stdout)
    assert "\\u001b]0;owned\\u0007" in result.stdout
    assert json.loads(result.stdout)["ImageInstance"]["title"] == ESC_TITLE


def test_message_and_smime_carry_no_raw_controls(site, hostile) -> None:
    for fmt in ("message", "SMIME"):
        result = site.image("-i", "-u", "hostile-image", "-f", fmt)
        assert result.returncode == 0, result
        _assert_clean(result.stdout)
    # the signed JSON itself escapes them: the document is unchanged
    message = site.image("-i", "-u", "hostile-image", "-f", "message").stdout
    assert json.loads(message)["hv:imagelist"]["hv:images"][0]["hv:image"]["dc:title"] == (
        ESC_TITLE
    )


def test_output_files_and_subscription_views(site, hostile, tmp_path) -> None:
    out = tmp_path / "info.txt"
    result = site.image("-i", "-u", "hostile-image", "-o", str(out))
    assert result.returncode == 0, result
    _assert_clean(out.read_text())
    assert "\\x1b]0;owned" in out.read_text()
    for args in (
        ("-i", "-u", hostile.identifier),
        ("--image-list", "-u", hostile.identifier),
        ("-l",),
    ):
        shown = site.subscribe(*args)
        assert shown.returncode == 0, shown
        _assert_clean(shown.stdout + shown.stderr)


class _HostileStatusServer:
    """Answers every request with a status line whose reason phrase holds terminal codes."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.port = self.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 503 \x1b]0;owned\x07Gone\x1b[2J\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def hostile_server() -> Iterator[_HostileStatusServer]:
    server = _HostileStatusServer()
    yield server
    server.close()


def test_http_reason_in_log_lines(site, hostile_server) -> None:
    result = site.subscribe("-s", f"http://127.0.0.1:{hostile_server.port}/image.list", "-e")
    assert result.returncode == 1, result
    _assert_clean(result.stderr)
    assert "HTTP 503 \\x1b]0;owned\\x07Gone\\x1b[2J" in result.stderr

"""Fuzzing the parsers that read what remote publishers and local files hand us.

Each target gets 1,000 hypothesis examples in the gate (20,000 under ``make fuzz``),
fed in-process (no subprocess),
and must either succeed or raise one of the typed
:class:`~vmcatcher.errors.VmcatcherError` subclasses -- never ``KeyError``,
``RecursionError``, ``UnicodeError``, an M2Crypto exception or anything else
a user would see as a traceback:

* the S/MIME layer (:func:`~vmcatcher.trust.verify_message` and
  :func:`~vmcatcher.trust.extract_payload_unverified`) on mutated real
  signed messages: a mutation may only ever make verification fail;
* the decoder (:func:`~vmcatcher.imagelist.decode_image_list`) on mutated
  lists, both as JSON structures and as bytes;
* the ``cache.index`` reader (:class:`~vmcatcher.cache.index.CacheIndex`) on
  random file contents, whose result must save and load back unchanged;
* URL handling (:mod:`vmcatcher.uri`) and the fetchers' URL validation;
* version comparison, which must be reflexive and antisymmetric.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.robustness.hostile_support import grid_pki
from tests.support.fuzzing import examples
from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import sign
from vmcatcher.cache.index import CacheIndex
from vmcatcher.errors import (
    CacheError,
    DownloadError,
    FetchError,
    ImageListError,
    InvalidURIError,
    TrustError,
)
from vmcatcher.imagelist import ImageList, decode_image_list
from vmcatcher.trust import CrlPolicy, extract_payload_unverified, load_trust_store, verify_message
from vmcatcher.uri import mask_password, normalise_anonymous, parse, scheme_of, split_credentials
from vmcatcher.versions import compare_versions

pytestmark = pytest.mark.robustness

#: The gate draws 1,000 fixed examples per target; ``make fuzz`` draws 20,000 random ones.
EXAMPLES = examples(1_000)

NOW = datetime.now(timezone.utc).replace(tzinfo=None)  # fixed for the whole module


@pytest.fixture(autouse=True)
def _quiet_decoder() -> Iterator[None]:
    """Dropped images log one WARNING each: thousands of examples would flood the capture."""
    logger = logging.getLogger("vmcatcher")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(previous)


# --- shared mutation strategy ------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` after 1-4 byte-level edits: flip, delete, insert, duplicate, truncate,
    or swap a line for a random one (MIME headers and boundaries are lines)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        at = draw(st.integers(0, max(size - 1, 0)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "repeat", "cut", "line"]))
        if action == "flip" and size:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 256))] * draw(st.integers(1, 3))
        elif action == "cut":
            del data[at:]
        elif action == "line":
            lines = bytes(data).split(b"\n")
            index = draw(st.integers(0, len(lines) - 1))
            lines[index] = draw(
                st.sampled_from([b"", b"--", b"Content-Type: text/plain", b"\r", b"MIME-Version"])
                | st.binary(max_size=40)
            )
            data = bytearray(b"\n".join(lines))
    return bytes(data)


# --- S/MIME -----------------------------------------------------------------------------


class _Signed:
    """One real signed list, its payload and a trust store, built once per module."""

    def __init__(self, directory: Path) -> None:
        pki = grid_pki()
        document = make_image_list(
            "fuzz-list", "https://example.org/image.list", "1",
            [make_image("fuzz-image", data=b"x" * 64)],
            pki.endorser.subject, pki.endorser.issuer,
            created=NOW - timedelta(days=1), expires=NOW + timedelta(days=1),
        )  # fmt: skip
        self.payload = list_payload(document)
        self.detached = sign(self.payload, pki.endorser)
        self.opaque = sign(self.payload, pki.endorser, detached=False)
        self.store = load_trust_store(pki.write_ca_dir(directory / "certificates"))


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> _Signed:
    return _Signed(tmp_path_factory.mktemp("fuzz-smime"))


def test_smime_originals_verify(signed: _Signed) -> None:
    """The starting points of the fuzzing are valid: mutations start from success."""
    for message in (signed.detached, signed.opaque):
        verified = verify_message(message, signed.store, crl_policy=CrlPolicy.STRICT, now=NOW)
        assert verified.payload.replace(b"\r\n", b"\n") == signed.payload
        assert extract_payload_unverified(message).replace(b"\r\n", b"\n") == signed.payload


@EXAMPLES
@given(data=st.data())
def test_mutated_smime_messages_fail_only_with_trust_errors(signed: _Signed, data: Any) -> None:
    original = data.draw(st.sampled_from([signed.detached, signed.opaque]))
    message = data.draw(mutated(original))
    try:
        verified = verify_message(message, signed.store, crl_policy=CrlPolicy.STRICT, now=NOW)
    except TrustError as error:
        assert str(error) and "\n" not in str(error)
    else:  # only a mutation that kept the signed bytes can still verify
        assert verified.payload.replace(b"\r\n", b"\n") == signed.payload
    try:
        extract_payload_unverified(message)
    except TrustError as error:
        assert str(error) and "\n" not in str(error)


# --- the image list decoder ----------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "../x", "a\x00b", "2024-01-01T00:00:00Z", "9" * 200, "\ud800"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=6,
)

VALID_LIST = make_image_list(
    "decoder-list", "https://example.org/image.list", "1",
    [make_image("image-a", data=b"a" * 16)],
    "/DC=org/CN=Jane", "/DC=org/CN=CA",
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every (key/index) path into a JSON document, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


LIST_PATHS = _paths(VALID_LIST)


@st.composite
def mutated_document(draw: st.DrawFn) -> bytes:
    """A valid list with 1-3 values replaced or deleted, serialised (sometimes mutated)."""
    document = json.loads(json.dumps(VALID_LIST))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(LIST_PATHS))
        parent: Any = document
        try:
            for step in path[:-1]:
                parent = parent[step]
        except (KeyError, IndexError, TypeError):
            continue
        if not path:
            document = draw(JSON_VALUES)
            continue
        last = path[-1]
        if not isinstance(parent, (dict, list)):
            continue
        if isinstance(parent, dict) and draw(st.booleans()):
            parent.pop(last, None)
        elif isinstance(parent, dict) or (isinstance(last, int) and last < len(parent)):
            parent[last] = draw(JSON_VALUES)
    text = json.dumps(document, indent=draw(st.sampled_from([None, 4])))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:
        raw = draw(mutated(raw))
    return raw


def test_decoder_original_is_valid() -> None:
    assert isinstance(decode_image_list(list_payload(VALID_LIST)), ImageList)


@EXAMPLES
@given(payload=mutated_document())
def test_mutated_lists_fail_only_with_image_list_errors(payload: bytes) -> None:
    try:
        image_list = decode_image_list(payload)
    except ImageListError as error:
        assert str(error) and "\n" not in str(error)
        return
    for image in image_list.images:  # what the decoder lets through is usable as promised
        assert isinstance(image.size, int) and 0 <= image.size <= 2**50
        assert len(image.sha512) == 128
        for text in (image.identifier, image.uri, image.title, image.version, image.os):
            assert isinstance(text, str) and "\x00" not in text
            text.encode("utf-8")  # no lone surrogates in what reaches the database
    assert image_list.created <= datetime.max and image_list.expires <= datetime.max


# --- cache.index ------------------------------------------------------------------------------

INDEX_CONTENTS = (
    st.binary(max_size=300)
    | st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=5).map(
        lambda value: json.dumps(value).encode("utf-8", "surrogatepass")
    )
    | JSON_VALUES.map(lambda value: json.dumps(value).encode("utf-8", "surrogatepass"))
    | st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.integers(1, 200_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth)
    | st.integers(1, 3_000).map(lambda depth: b'{"u": ' + b"[" * depth + b"]" * depth + b"}")
)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """On tmpfs when there is one: every save fsyncs, and 10,000 fsyncs on a disk take
    minutes (what is tested is the parsing, not the disk)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("fuzz-index")
        return
    directory = Path(tempfile.mkdtemp(prefix="vmcatcher-fuzz-index-", dir=shm))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@EXAMPLES
@given(content=INDEX_CONTENTS)
def test_random_cache_index_contents(index_dir: Path, content: bytes) -> None:
    """Loading never raises (a corrupt file is set aside); what loads saves and reloads."""
    shutil.rmtree(index_dir)
    index_dir.mkdir()
    (index_dir / "cache.index").write_bytes(content)
    try:
        index = CacheIndex(index_dir)
    except CacheError:
        return
    if index.recovered is not None:
        assert len(index) == 0 and index.recovered.read_bytes() == content
    assert all(isinstance(entry, dict) for entry in index.values())
    try:
        index.save()
    except CacheError:
        return
    again = CacheIndex(index_dir)
    assert again.recovered is None
    assert again.render() == index.render(), "saving and loading changed the index"


# --- URLs -----------------------------------------------------------------------------------

URL_PIECES = st.sampled_from(
    [
        "http",
        "https",
        "file",
        "ftp",
        "",
        ":",
        "//",
        "/",
        "@",
        "[",
        "]",
        "::1",
        "%",
        "%40",
        "?",
        "#",
        ";",
        "user",
        "pw",
        "127.0.0.1",
        "host",
        "\x00",
        " ",
        "é",
        "\uff03",
        "\u2100",
        "65536",
        "0",
        "-1",
        "\n",
    ]
)
URLS = (
    st.text(max_size=60)
    | st.lists(URL_PIECES | st.text(max_size=5), max_size=12).map("".join)
    | st.builds(
        lambda scheme, user, password, host, port, path: (
            f"{scheme}://{user}:{password}@{host}:{port}{path}"
        ),
        st.sampled_from(["http", "https", "file", "gopher"]),
        st.text(max_size=8),
        st.text(max_size=8),
        st.sampled_from(["127.0.0.1", "[::1]", "[::1", "host", "", "ex\u2100ample.org"]),
        st.integers(-5, 70_000).map(str) | st.text(max_size=4),
        st.text(max_size=12),
    )
)


@EXAMPLES
@given(url=URLS)
@example(url="A://[::]@]")  # found by make test on a fresh clone: bare ValueError from urlsplit
def test_url_functions_raise_only_invalid_uri(url: str) -> None:
    assert isinstance(mask_password(url), str)  # used while reporting errors: never raises
    assert isinstance(scheme_of(url), str)
    try:
        parsed = parse(url)
        stored = normalise_anonymous(url)
        _plain, user, password = split_credentials(url)
    except InvalidURIError as error:
        assert "\n" not in str(error).replace("\\n", "")
        return
    assert user == parsed.username and password == parsed.password
    try:
        again = parse(stored)
    except InvalidURIError:  # e.g. 'a:::' is stored as 'a://::' (the original's form)
        again = None
    if again is not None:
        assert again.username is None and again.password is None, "credentials in the DB form"
    if password and f":{password}@" in url:
        assert f":{password}@" not in mask_password(url), "password shown in a log line"


@EXAMPLES
@given(url=URLS)
@example(url="A://[::]@]")  # found by make test on a fresh clone: bare ValueError from urlsplit
@example(url="http://[::]@]/")
def test_fetch_url_validation_raises_only_typed_errors(url: str) -> None:
    """What the fetchers refuse before any network or file access: a typed error only."""
    from vmcatcher.cache.download import download_image
    from vmcatcher.fetch import fetch_list

    if scheme_of(url) in ("http", "https", "file"):  # those would really connect or read
        url = "x" + url
    with pytest.raises(FetchError):
        fetch_list(url)
    with pytest.raises(DownloadError):
        download_image(url, Path("/nonexistent/partial"), expected_size=1,
                       expected_sha512="0" * 128)  # fmt: skip


@EXAMPLES
@given(location=URLS, https=st.booleans())
@example(location="//[::]@]/x", https=False)
def test_redirect_validation(location: str, https: bool) -> None:
    """A redirect target is an http(s) URL or a one-line refusal, never an exception."""
    from vmcatcher.fetch import TransportFailure, _next_hop

    current = ("https" if https else "http") + "://127.0.0.1:8080/dir/list"
    try:
        target = _next_hop(current, location, {current})
    except TransportFailure as failure:
        assert "\n" not in str(failure).replace("\\n", "")
        return
    except ValueError as error:  # urljoin/urlsplit on a broken netloc
        pytest.fail(f"redirect to {location!r}: {type(error).__name__}: {error}")
    assert scheme_of(target) in ("http", "https")


# --- versions -----------------------------------------------------------------------------

VERSIONS = st.text(alphabet="0123456789.-,/abz_ é١", max_size=16) | st.text(max_size=16)


@EXAMPLES
@given(old=VERSIONS, new=VERSIONS)
def test_version_comparison_is_reflexive_and_antisymmetric(old: str, new: str) -> None:
    forward = compare_versions(old, new)
    assert forward in (-1, 0, 1)
    assert compare_versions(new, old) == -forward
    assert compare_versions(old, old) == 0

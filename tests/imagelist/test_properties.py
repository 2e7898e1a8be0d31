"""Property tests: thousands of mutated lists reach the decoder; only typed errors come out,
and whatever decodes satisfies the model's guarantees."""

from __future__ import annotations

import copy
import json
from datetime import datetime

from hypothesis import event, given
from hypothesis import strategies as st

from tests.support.fuzzing import examples
from tests.support.lists import list_payload, make_image, make_image_list
from vmcatcher.errors import VmcatcherError
from vmcatcher.imagelist import MAX_IMAGE_SIZE, ImageList, decode_image_list
from vmcatcher.names import is_safe_name

SETTINGS = examples(2000)

BASE = make_image_list(
    "251c2259-fb08-4892-80fa-13b739813a90",
    "https://images.example-grid.org/image.list",
    "3.0.1",
    [make_image("c8bb4e9b-8e63-4ea5-8dca-979b3686e229"), make_image("7c8f5d07-8dab-40c2")],
    "/DC=org/DC=example-grid/O=People/CN=Jane Endorser",
    "/DC=org/DC=example-grid/CN=Example Grid Test CA",
    created="2026-11-25T09:00:00Z",
    expires="2026-12-23T09:00:00Z",
    extra={"ad:vo": "vo.example-grid.org"},
)
BASE_PAYLOAD = list_payload(BASE)
SPECIAL_BYTES = [b'"', b"{", b"]", b",", b"\\u0000", b"\\ud800"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "../x", "2026-11-25T09:00:00Z", "1e3", "-1", "a" * 128, "0"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


def _containers(node, path=()):
    """Every (path, container) pair in a JSON tree."""
    if isinstance(node, (dict, list)):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            yield from _containers(child, (*path, key))


operation = st.tuples(
    st.sampled_from(["delete", "replace", "add", "wrap", "unwrap"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    json_values,
    st.text(max_size=12) | st.sampled_from(["hv:imagelist", "hv:image", "hv:x509", "hv:size"]),
)


def _mutate_tree(document, operations):
    doc = copy.deepcopy(document)
    for kind, pick, child_pick, value, key in operations:
        containers = list(_containers(doc))
        _, node = containers[pick % len(containers)]
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        if kind == "add":
            if isinstance(node, dict):
                node[key] = value
            else:
                node.append(value)
            continue
        if not keys:
            continue
        target = keys[child_pick % len(keys)]
        if kind == "delete":
            del node[target]
        elif kind == "replace":
            node[target] = value
        elif kind == "wrap":
            node[target] = {key: node[target]}
        elif kind == "unwrap" and isinstance(node[target], dict) and node[target]:
            node[target] = next(iter(node[target].values()))
    return doc


def _check_invariants(result: ImageList) -> None:
    assert isinstance(result.created, datetime) and result.created.tzinfo is None
    assert isinstance(result.expires, datetime) and result.expires.tzinfo is None
    for text in (result.identifier, result.version, result.uri, result.endorser.dn):
        assert isinstance(text, str)
    for image in result.images:
        assert is_safe_name(image.identifier)
        assert isinstance(image.size, int) and 0 <= image.size <= MAX_IMAGE_SIZE
        assert len(image.sha512) == 128 and image.sha512 == image.sha512.lower()
        int(image.sha512, 16)
        for text in (image.uri, image.title, image.os, image.version, image.comments):
            assert isinstance(text, str) and "\x00" not in text


def _decode(payload: bytes) -> None:
    try:
        result = decode_image_list(payload)
    except VmcatcherError as error:
        assert error.code in (37, 38)
        assert "\n" not in str(error)
        event(f"refused {error.code}")
    else:
        event(f"decoded with {len(result.images)} images")
        _check_invariants(result)


@SETTINGS
@given(operations=st.lists(operation, min_size=1, max_size=5))
def test_structurally_mutated_lists(operations):
    payload = json.dumps(_mutate_tree(BASE, operations)).encode()
    _decode(payload)


@SETTINGS
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(BASE_PAYLOAD)),
            st.integers(min_value=0, max_value=8),
            st.binary(max_size=6)
            | st.sampled_from([b'"', b"{", b"]", b",", b"\\u0000", b"\\ud800"]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_byte_mutated_payloads(edits):
    data = bytearray(BASE_PAYLOAD)
    for position, length, blob in edits:
        data[position : position + length] = blob
    _decode(bytes(data))

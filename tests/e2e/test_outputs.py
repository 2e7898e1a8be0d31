"""vmcatcher_subscribe output layouts, byte for byte (behaviour-spec §6.5, §6.6, §6.11, §7).

Sites parse these outputs with shell scripts, so every line, key order, JSON
indent and the absence of a trailing newline after JSON are part of the
contract. Expected texts are written out here from the spec, with values read
back from the database with plain SQL (SQLite or PostgreSQL).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import shown

DESCRIPTION = "Images endorsed for the example-grid.org test sites."


@pytest.fixture
def imported(site):
    """A subscribed list whose first version has been imported."""
    published = site.file_list()
    site.subscribed(published)
    return published


def subscription_lines(site, published, *, updated=True, extra=()) -> list[str]:
    row = site.sub_row(published.identifier)
    return [
        f"imagelist.dc:identifier={published.identifier}",
        f"subscription.dc:identifier={published.identifier}",
        f"subscription.dc:description={DESCRIPTION}",
        "subscription.sl:authorised=True",
        f"subscription.hv:uri={published.url}",
        "subscription.hv:uri.trustAnchor=Browser",
        *extra,
        f"subscription.dc:date:updated={shown(row['updated']) if updated else 'False'}",
        "subscription.updateMode=0",
    ]


def list_instance_lines(site, published) -> list[str]:
    [(imported,)] = site.sql("SELECT imported FROM imageListInstance")
    return [
        "imagelist.expired=False",
        f"imagelist.dc:date:imported={shown(imported)}",
        f"imagelist.dc:date:created={published.body['dc:date:created']}",
        f"imagelist.dc:date:expires={published.body['dc:date:expires']}",
    ]


def text(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def json_text(value) -> str:
    return json.dumps(value, sort_keys=True, indent=4)


def test_list_lines_and_json(site, imported):
    expected_lines = f"{imported.identifier}\tTrue\tBrowser\t{imported.url}\n"
    assert site.subscribe("-l").stdout == expected_lines
    # List commands print the lines layout for message and SMIME (spec §7).
    assert site.subscribe("-l", "-f", "SMIME").stdout == expected_lines

    as_json = site.subscribe("-l", "-f", "json").stdout
    assert as_json == json_text(
        [{"authorised": True, "identifier": imported.identifier, "uri": imported.url}]
    )
    assert not as_json.endswith("\n")
    from_env = site.subscribe("-l", env={"VMCATCHER_OUTPUT_FORMAT": "json"})
    assert from_env.stdout == as_json


def test_info_lines_before_and_after_the_first_update(site):
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e").returncode == 0
    before = site.subscribe("-i", "-u", published.identifier)
    assert before.returncode == 0, before
    assert before.stdout == text(subscription_lines(site, published, updated=False))

    assert site.subscribe("-U").returncode == 0
    after = site.subscribe("-i", "-r", published.url)
    assert after.returncode == 0, after
    assert after.stdout == text(
        subscription_lines(site, published) + list_instance_lines(site, published)
    )

    assert site.subscribe("--uri-username-set", "bob", "-u", published.identifier).returncode == 0
    with_user = site.subscribe("-i", "-u", published.identifier).stdout
    assert with_user == text(
        subscription_lines(site, published, extra=["subscription.hv:uri.username=bob"])
        + list_instance_lines(site, published)
    )


def test_info_json(site, imported):
    row = site.sub_row(imported.identifier)
    [(imported_at,)] = site.sql("SELECT imported FROM imageListInstance")
    result = site.subscribe("-i", "-u", imported.identifier, "-f", "json")
    assert result.returncode == 0, result
    assert result.stdout == json_text(
        {
            "ImageListInstance": {
                "created": imported.body["dc:date:created"],
                "expires": imported.body["dc:date:expires"],
                "imported": shown(imported_at),
            },
            "Subscription": {
                "authorised": True,
                "description": DESCRIPTION,
                "identifier": imported.identifier,
                "updateMode": 0,
                "updated": shown(row["updated"]),
                "uri": imported.url,
                "uri.trustAnchor": "Browser",
            },
        }
    )


def test_info_smime_prints_the_stored_bytes(site, imported):
    code, out, err = site.run_bytes("vmcatcher_subscribe", "-i", "-u", imported.identifier,
                                    "-f", "SMIME")  # fmt: skip
    assert code == 0, err
    assert out == imported.data
    assert out == site.scalar("SELECT data FROM imageListInstance")


def test_info_message_prints_the_verified_payload(site, imported):
    code, out, err = site.run_bytes("vmcatcher_subscribe", "-i", "-u", imported.identifier,
                                    "-f", "message")  # fmt: skip
    assert code == 0, err
    assert out == imported.payload
    assert json.loads(out) == imported.document


def test_smime_without_an_imported_list_says_so(site):
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e").returncode == 0
    result = site.subscribe("-i", "-u", published.identifier, "-f", "SMIME")
    assert result.stdout == ""
    assert "Imagelist not yet available." in result.stderr


def test_image_list_prints_the_image_definitions(site, imported):
    first, second = imported.image_ids
    assert site.image("-a", "-u", second).returncode == 0
    result = site.subscribe("--image-list", "-u", imported.identifier)
    assert result.returncode == 0, result
    assert result.stdout == text(
        subscription_lines(site, imported)
        + list_instance_lines(site, imported)
        + [f"imagedef.dc:identifier={first}", "imagedef.cache=0"]
        + [f"imagedef.dc:identifier={second}", "imagedef.cache=1"]
    )


def test_output_files_are_only_created_for_matching_selections(site, imported):
    result = site.subscribe(
        "-i", "-u", imported.identifier, "-u", "no-such-subscription",
        "-o", "found.txt", "-o", "missing.txt",
    )  # fmt: skip
    assert result.returncode == 0, result
    assert result.stdout == ""
    assert "Selections 'no-such-subscription' does not match any known subscriptions." in (
        result.stderr
    )
    assert (site.root / "found.txt").read_text() == text(
        subscription_lines(site, imported) + list_instance_lines(site, imported)
    )
    assert not (site.root / "missing.txt").exists()

    images = site.subscribe(
        "--image-list", "-u", "no-such-subscription", "-u", imported.identifier,
        "-o", "none.txt",
    )  # fmt: skip
    assert images.returncode == 0, images
    assert not (site.root / "none.txt").exists()
    assert images.stdout.startswith(f"imagelist.dc:identifier={imported.identifier}\n")
    assert f"imagedef.dc:identifier={imported.image_ids[0]}\n" in images.stdout


def test_unwritable_output_file_is_one_clear_error(site, imported):
    for command in (site.subscribe, site.image):
        selector = imported.identifier if command == site.subscribe else imported.image_ids[0]
        result = command("-i", "-u", selector, "-o", "no-such-dir/out.txt")
        assert result.returncode == 1, result
        assert "Cannot write output file 'no-such-dir/out.txt'" in result.stderr
        assert "Traceback" not in result.stderr and "Unexpected" not in result.stderr

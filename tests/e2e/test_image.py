"""vmcatcher_image end to end: state listing, selection for the cache, image details (spec §8).

Layouts are checked byte for byte against behaviour-spec §7.3/§7.6, with the
fixed ``sl:arch`` bug (the original printed the hypervisor there). Also the two
option bugs of §14.2: ``-L/--logfile`` is honoured and ``VMCATCHER_DIR_CERT``
is not masked by a ``-c`` default.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import shown
from tests.support.lists import image_bytes, make_image

DESCRIPTION = "Images endorsed for the example-grid.org test sites."


@pytest.fixture
def imported(site):
    """A subscribed, imported list of two images with distinct field values."""
    data, _ = image_bytes("alma", 2048)
    images = [
        make_image(data=data, arch="aarch64", hypervisor="KVM", os="AlmaLinux", osversion="9.4",
                   comments="Minimal build.", version="9.4-20260101", title="Alma 9"),
        make_image(arch="x86_64", hypervisor="Xen"),
    ]  # fmt: skip
    published = site.file_list(images=images)
    site.subscribed(published)
    return published


def json_text(value) -> str:
    return json.dumps(value, sort_keys=True, indent=4)


def test_list_lines_and_json(site):
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e").returncode == 0
    first, second = published.image_ids
    sub = published.identifier

    assert site.image("-l").stdout == f"{first}\t0\t{sub}\n{second}\t0\t{sub}\n"
    assert site.subscribe("-U").returncode == 0
    assert site.image("-a", "-u", second).returncode == 0
    assert site.image("-l", "-f", "message").stdout == f"{first}\t2\t{sub}\n{second}\t3\t{sub}\n"

    as_json = site.image("-l", "-f", "json").stdout
    assert as_json == json_text(
        [
            {"image": first, "state": 2, "subscription": sub},
            {"image": second, "state": 3, "subscription": sub},
        ]
    )
    assert not as_json.endswith("\n")

    assert site.image("-r", "-u", second).returncode == 0
    assert site.states() == {first: 2, second: 2}


def detail_lines(site, published, index: int) -> str:
    image = published.images[index]
    sub = site.sub_row(published.identifier)
    [(imported_at,)] = site.sql("SELECT imported FROM imageListInstance")
    lines = [
        f"imagelist.dc:identifier={published.identifier}",
        f"subscription.dc:identifier={published.identifier}",
        f"subscription.dc:description={DESCRIPTION}",
        "subscription.sl:authorised=True",
        f"subscription.hv:uri={published.url}",
        "subscription.hv:uri.trustAnchor=Browser",
        f"subscription.dc:date:updated={shown(sub['updated'])}",
        "subscription.updateMode=0",
        "imagelist.expired=False",
        f"imagelist.dc:date:imported={shown(imported_at)}",
        f"imagelist.dc:date:created={published.body['dc:date:created']}",
        f"imagelist.dc:date:expires={published.body['dc:date:expires']}",
        f"image.dc:description={image['dc:description']}",
        f"image.dc:title={image['dc:title']}",
        f"image.hv:hypervisor={image['hv:hypervisor']}",
        f"image.hv:size={image['hv:size']}",
        f"image.hv:uri={image['hv:uri']}",
        f"image.hv:version={image['hv:version']}",
        f"image.sl:arch={image['sl:arch']}",
        f"image.sl:checksum:sha512={image['sl:checksum:sha512']}",
        f"image.sl:comments={image['sl:comments']}",
        f"image.sl:os={image['sl:os']}",
        f"image.sl:osversion={image['sl:osversion']}",
        f"imagedef.dc:identifier={image['dc:identifier']}",
        "imagedef.cache=0",
        f"endorser:hv:subject={site.pki.endorser.subject}",
        f"endorser:hv:issuer={site.pki.endorser.issuer}",
    ]
    return "".join(line + "\n" for line in lines)


def test_info_lines_print_every_block_in_order(site, imported):
    image = imported.images[0]
    result = site.image("-i", "-u", image["dc:identifier"])
    assert result.returncode == 0, result
    assert result.stdout == detail_lines(site, imported, 0)
    assert "image.sl:arch=aarch64\n" in result.stdout  # not the hypervisor (spec §14.2)


def test_info_json(site, imported):
    image = imported.images[0]
    sub = site.sub_row(imported.identifier)
    [(imported_at,)] = site.sql("SELECT imported FROM imageListInstance")
    result = site.image("-i", "-u", image["dc:identifier"], "-f", "json")
    assert result.returncode == 0, result
    assert result.stdout == json_text(
        {
            "Endorser": {"identifier": site.scalar("SELECT identifier FROM endorser")},
            "EndorserPrincible": {
                "issuer": site.pki.endorser.issuer,
                "subject": site.pki.endorser.subject,
            },
            "ImageDefinition": {"cache": 0, "identifier": image["dc:identifier"]},
            "ImageInstance": {
                "arch": "aarch64",
                "comments": "Minimal build.",
                "description": image["dc:description"],
                "hypervisor": "KVM",
                "sha512": image["sl:checksum:sha512"],
                "size": 2048,
                "sl:os": "AlmaLinux",
                "sl:osversion": "9.4",
                "title": "Alma 9",
                "uri": image["hv:uri"],
                "version": "9.4-20260101",
            },
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
                "updated": shown(sub["updated"]),
                "uri": imported.url,
                "uri.trustAnchor": "Browser",
            },
            "SubscriptionAuth": {},
        }
    )


def test_select_by_sha512(site, imported):
    first, second = imported.images
    by_sha = site.image("-i", "-s", second["sl:checksum:sha512"])
    assert by_sha.returncode == 0, by_sha
    assert by_sha.stdout == detail_lines(site, imported, 1)

    assert site.image("-a", "-s", first["sl:checksum:sha512"]).returncode == 0
    assert site.states() == {first["dc:identifier"]: 3, second["dc:identifier"]: 2}

    unknown = site.image("-i", "-s", "0" * 128)
    assert unknown.returncode == 0, unknown
    assert unknown.stdout == ""
    assert f"Selections '{'0' * 128}' does not match any known images." in unknown.stderr


def test_info_before_the_first_update(site):
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e").returncode == 0
    image = published.image_ids[0]
    result = site.image("-i", "-u", image)
    assert result.returncode == 0, result
    assert f"Subscription '{published.identifier}' needs an update." in result.stderr
    assert result.stdout.startswith(f"imagelist.dc:identifier={published.identifier}\n")
    assert result.stdout.endswith(
        f"subscription.updateMode=0\nimagedef.dc:identifier={image}\nimagedef.cache=0\n"
    )


def test_info_smime_and_message(site, imported):
    image = imported.image_ids[0]
    code, out, err = site.run_bytes("vmcatcher_image", "-i", "-u", image, "-f", "SMIME")
    assert code == 0, err
    assert out == imported.data
    code, out, err = site.run_bytes("vmcatcher_image", "-i", "-u", image, "-f", "message")
    assert code == 0, err
    assert out == imported.payload


def test_cert_dir_comes_from_the_environment(site, imported):
    image = imported.image_ids[0]
    wrong = site.image("-i", "-u", image, "-f", "message",
                       env={"VMCATCHER_DIR_CERT": "/nonexistent/certificates"})  # fmt: skip
    assert wrong.returncode == 1, wrong
    assert "Invalid x509 trust store directory: /nonexistent/certificates." in wrong.stderr
    option_wins = site.image("-i", "-u", image, "-f", "message", "-c", str(site.ca_dir),
                             env={"VMCATCHER_DIR_CERT": "/nonexistent/certificates"})  # fmt: skip
    assert option_wins.returncode == 0, option_wins
    assert json.loads(option_wins.stdout) == imported.document


def test_logfile_option_configures_logging(site, imported):
    conf = site.root / "logger.conf"
    conf.write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
        "[logger_root]\nlevel=INFO\nhandlers=h\n"
        "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
        "[formatter_f]\nformat=CUSTOM %(levelname)s %(message)s\n"
    )
    for option in ("-L", "--logfile"):
        result = site.image(option, str(conf), "-i", "-u", "no-such-image")
        assert result.returncode == 0, result
        assert "CUSTOM WARNING Selections 'no-such-image' does not match any known images." in (
            result.stderr
        )


def test_output_files_are_only_created_for_matching_selections(site, imported):
    image = imported.image_ids[0]
    result = site.image("-i", "-u", "no-such-image", "-u", image, "-o", "none.txt", "-o", "a.txt")
    assert result.returncode == 0, result
    assert result.stdout == ""
    assert not (site.root / "none.txt").exists()
    assert (site.root / "a.txt").read_text() == detail_lines(site, imported, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "No actions selected"),
        (["-l", "-a", "-u", "x"], "More than one action selected."),
        (["-i"], "Action 'info' requires an image to be selected."),
        (["-a"], "Action 'add' requires an image to be selected."),
        (["-i", "-u", "x", "-s", "y"], "Conflicting selectors."),
        (["-l", "-f", "xml"], "Invalid format 'xml' allowed formats are"),
    ],
)
def test_validation_messages(site, args, message):
    result = site.image(*args)
    assert result.returncode == 1, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr

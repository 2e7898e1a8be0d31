"""vmcatcher_subscribe end to end: the installed command, real signed lists, a real database.

Covers the acceptance scenarios of behaviour-spec §16 (items 1-7), the trust and
error rules of DECISIONS.md (list expiry, replay, rollback, image ownership,
list-controlled settings, one bad subscription never stops the others) and the
transport rules (timeouts, HTTP statuses, TLS trust anchors, Basic auth) against
real servers on 127.0.0.1. The database is SQLite, or PostgreSQL in the second
pass of ``make test`` (see ``tests/e2e/conftest.py``).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.databases import test_database
from tests.support.lists import make_image
from tests.support.servers import basic_auth_header
from tests.support.tls import write_hashed_dir


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def dump(site) -> dict[str, list[tuple]]:
    """Every row of every table, to prove that a failed update wrote nothing.

    Except the run record, which every -U writes by design (docs/monitoring.md).
    """
    rows = site.dump()
    for table in ("vmcatcher_run", "vmcatcher_subscription_status"):
        rows.pop(table, None)
    return rows


# --- spec §16, items 1-7 ----------------------------------------------------------------


def test_no_arguments_is_an_error_and_opens_no_database(site, tmp_path):
    unopened = test_database(tmp_path, "unopened.db")
    result = site.subscribe(env={"VMCATCHER_RDBMS": unopened.url})
    assert result.returncode == 1, result
    assert "No actions selected" in result.stderr
    assert not unopened.exists()


def test_subscribe_needs_a_known_endorser_unless_auto_endorse(site, pki):
    list_uri = "https://images.example-grid.org/lists/base/image.list"
    published = site.publish_file("copy.list", site.document(list_uri))

    refused = site.subscribe("-s", published.url)
    assert refused.returncode == 1, refused
    assert (
        f"Endorser '{pki.endorser.subject}':'{pki.endorser.issuer}' was not found in database."
        in refused.stderr
    )
    assert site.count("subscription") == 0

    accepted = site.subscribe("-s", published.url, "-e")
    assert accepted.returncode == 0, accepted
    [(endorser_id,)] = site.sql("SELECT identifier FROM endorser")
    assert str(uuid.UUID(endorser_id)) == endorser_id  # a random UUID
    assert site.sql("SELECT hv_dn, hv_ca FROM endorserPrincible") == [
        (pki.endorser.subject, pki.endorser.issuer)
    ]
    [(identifier, uri)] = site.sql("SELECT identifier, uri FROM subscription")
    assert identifier == published.identifier
    assert uri == list_uri != published.url
    assert site.count("imageListInstance") == 0
    assert site.states() == {image: 0 for image in published.image_ids}


def test_first_update_imports_the_list_and_images_become_available(site):
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e").returncode == 0

    update = site.subscribe("-U", "-v")
    assert update.returncode == 0, update
    assert f"First version of:{published.identifier}" in update.stderr
    assert site.count("imageListInstance") == 1
    assert site.count("ImageInstance") == 2
    assert site.states() == {image: 2 for image in published.image_ids}

    first, second = published.image_ids
    assert site.image("-a", "-u", first).returncode == 0
    assert site.states() == {first: 3, second: 2}


def test_unchanged_list_is_recognised_and_nothing_changes(site):
    published = site.file_list()
    site.subscribed(published)
    before = dump(site)

    again = site.subscribe("-U", "-v", "-v")
    assert again.returncode == 0, again
    assert f"Same version:{published.identifier}" in again.stderr
    assert dump(site) == before  # no new instance, subscription.updated unchanged


def test_version_checks(site):
    published = site.file_list(version="1.9")
    site.subscribed(published)
    sub = published.identifier

    site.republish(published, version="1.10")
    higher = site.subscribe("-U")
    assert higher.returncode == 0, higher
    assert site.count("imageListInstance") == 2
    latest = site.sub_row(sub)["imagelist_latest"]
    assert site.scalar("SELECT version FROM imageListInstance WHERE id = ?", (latest,)) == "1.10"

    site.republish(published, version="1.10", extra={"dc:description": "Same number."})
    equal = site.subscribe("-U")
    assert equal.returncode == 0, equal
    assert 'has the same version number than the old version "1.10".' in equal.stderr
    assert site.count("imageListInstance") == 3
    assert site.sub_row(sub)["imagelist_latest"] > latest

    before = dump(site)
    site.republish(published, version="1.2")
    lower = site.subscribe("-U")
    assert lower.returncode == 17, lower
    assert 'has lower version number than the old version "1.10".' in lower.stderr
    assert dump(site) == before


def test_validation_failures_store_nothing(site, pki):
    published = site.file_list()
    site.subscribed(published)
    now = utcnow()
    cases = [
        ("expired", 34, dict(version="2", created=now - timedelta(days=40),
                             expires=now - timedelta(days=10))),
        ("created in the future", 33, dict(version="2", created=now + timedelta(days=1))),
        ("other identifier", 31, dict(version="2", identifier=str(uuid.uuid4()))),
        ("hv:ca not the signer's CA", 12, dict(version="2", ca=pki.intermediate.subject)),
        ("untrusted signer", 11, dict(version="2", signer=pki.stranger)),
    ]  # fmt: skip
    before = dump(site)
    for label, code, changes in cases:
        site.republish(published, **changes)
        result = site.subscribe("-U")
        assert result.returncode == code, f"{label}: {result}"
        assert "Traceback" not in result.stderr
        assert dump(site) == before, label

    site.republish(published, version="2")
    endorser = site.scalar("SELECT identifier FROM endorser")
    unlink = site.endorser("-u", "-e", endorser, "-s", published.identifier)
    assert unlink.returncode == 0, unlink
    before = dump(site)
    result = site.subscribe("-U")
    assert result.returncode == 13, result
    assert "not authorised on subscription" in result.stderr
    assert dump(site) == before


def test_endorser_mismatch_names_the_lists_values_as_expected(site, pki):
    """hv:dn / hv:ca of the list are what was expected, the signer's what was downloaded."""
    published = site.file_list()
    site.subscribed(published)
    other_dn = "/DC=org/DC=example-grid/O=People/CN=Somebody Else"
    site.republish(published, version="2", dn=other_dn)
    result = site.subscribe("-U")
    assert result.returncode == 12, result
    assert f"Expected DN '{other_dn}', Downloaded DN '{pki.endorser.subject}'" in result.stderr

    site.republish(published, version="2", ca=pki.intermediate.subject)
    result = site.subscribe("-U")
    assert result.returncode == 12, result
    assert (
        f"Expected CA '{pki.intermediate.subject}', Downloaded CA '{pki.endorser.issuer}'"
        in result.stderr
    )


def test_new_image_is_refused_with_an_event_then_newimage_subscribe_adds_it(site):
    published = site.file_list()
    site.subscribed(published)
    old = published.image_ids
    newcomer = make_image()
    site.republish(published, version="2", images=[*published.images, newcomer])
    handler = 'echo "$VMCATCHER_EVENT_TYPE $VMCATCHER_EVENT_DC_IDENTIFIER" >> events.log'

    refused = site.subscribe("-U", "-x", handler)
    assert refused.returncode == 32, refused
    assert (site.root / "events.log").read_text() == (
        f"SubscriptionImageNew {newcomer['dc:identifier']}\n"
    )
    assert newcomer["dc:identifier"] not in site.states()
    assert site.states() == {image: 2 for image in old}  # the known images were imported

    result = site.subscribe("--imagelist-newimage-subscribe", "-u", published.identifier)
    assert result.returncode == 0, result
    assert site.sub_row(published.identifier)["updateMode"] == 3
    assert site.sql(
        "SELECT cache FROM ImageDefinition WHERE identifier = ?", (newcomer["dc:identifier"],)
    ) == [(1,)]
    assert site.states() == {old[0]: 2, old[1]: 2, newcomer["dc:identifier"]: 3}


# --- DECISIONS.md: trust rules ---------------------------------------------------------


def test_stored_list_expiry_is_enforced_and_a_later_valid_list_clears_it(site):
    published = site.file_list()
    site.subscribed(published)
    first, second = published.image_ids
    assert site.image("-a", "-u", first).returncode == 0
    site.execute("UPDATE imageListInstance SET expires = '2001-01-01 00:00:00.000000'")

    # Unavailable at once, before any -U marks anything.
    assert site.scalar("SELECT expired FROM imageListInstance") is None
    assert site.states() == {first: 1, second: 0}

    update = site.subscribe("-U")
    assert update.returncode == 0, update
    assert site.scalar("SELECT expired FROM imageListInstance") is not None
    info = site.subscribe("-i", "-u", published.identifier).stdout
    assert "imagelist.expired=True\n" in info
    assert "imagelist.vmcatcher.dc:date:expired=" in info
    assert site.states() == {first: 1, second: 0}

    site.republish(published, version="2")
    renewed = site.subscribe("-U")
    assert renewed.returncode == 0, renewed
    latest = site.sub_row(published.identifier)["imagelist_latest"]
    assert site.sql("SELECT expired FROM imageListInstance WHERE id = ?", (latest,)) == [(None,)]
    assert site.states() == {first: 3, second: 2}


def test_replaying_an_old_expired_list_changes_nothing(site):
    now = utcnow()
    old = site.file_list(version="1", created=now - timedelta(days=60),
                         expires=now - timedelta(days=30))  # fmt: skip
    old_bytes = old.data
    current = site.republish(old, version="2", created=None, expires=None)
    site.subscribed(current)
    before = dump(site)

    current.path.write_bytes(old_bytes)
    replay = site.subscribe("-U")
    assert replay.returncode == 34, replay
    assert dump(site) == before
    assert site.states() == {image: 2 for image in current.image_ids}


@pytest.mark.parametrize("action", ["--image-accept", "--image-refuse"])
def test_rollback_is_refused_after_image_accept_or_refuse(site, action):
    published = site.file_list(version="1")
    v1 = published.data
    site.subscribed(published)
    site.republish(published, version="2")
    assert site.subscribe("-U").returncode == 0
    image = str(uuid.uuid4()) if action == "--image-accept" else published.image_ids[1]

    changed = site.subscribe(action, image, "-u", published.identifier)
    assert changed.returncode == 0, changed
    published.path.write_bytes(v1)
    rollback = site.subscribe("-U")
    assert rollback.returncode == 17, rollback
    assert site.sql("SELECT version FROM imageListInstance ORDER BY id") == [("1",), ("2",)]


def test_an_image_uuid_belongs_to_the_subscription_that_registered_it(site):
    owner = site.file_list("owner.list")
    site.subscribed(owner)
    owned = owner.image_ids[0]
    [(owner_sub, latest_before)] = site.sql(
        "SELECT subscription, latest FROM ImageDefinition WHERE identifier = ?", (owned,)
    )

    own_image = make_image()
    intruder = site.file_list("intruder.list", images=[owner.images[0], own_image])
    joined = site.subscribe("-s", intruder.url)  # same signer: the endorser is known
    assert joined.returncode == 0, joined
    update = site.subscribe("-U")
    assert update.returncode == 32, update

    assert site.sql(
        "SELECT subscription, latest FROM ImageDefinition WHERE identifier = ?", (owned,)
    ) == [(owner_sub, latest_before)]
    assert (
        site.scalar(
            "SELECT count(*) FROM ImageInstance i JOIN ImageDefinition d ON i.fkIdentifier = d.id "
            "WHERE d.identifier = ?",
            (owned,),
        )
        == 1
    )
    states = site.states()
    assert states[owned] == 2
    assert states[own_image["dc:identifier"]] == 2
    listed = site.image("-l").stdout
    assert f"{owned}\t2\t{owner.identifier}\n" in listed


def test_a_list_cannot_set_credentials_trust_anchor_or_update_mode(site):
    hostile = {
        "il.transfer.protocol:userName": "mallory",
        "il.transfer.protocol:password": "stolen",
        "il.transfer.protocol:trustAnchor": 0,
        "il.transfer.updatemode": 3,
    }
    document = site.document("https://images.example-grid.org/l.list", extra=hostile)
    document.update(hostile)  # at the document's top level too
    published = site.publish_file("hostile.list", document)

    result = site.subscribe("-s", published.url, "-e")
    assert result.returncode == 0, result
    row = site.sub_row(published.identifier)
    assert (row["userName"], row["password"], row["trustAnchor"], row["updateMode"]) == (
        None,
        None,
        1,
        0,
    )
    assert site.sql("SELECT DISTINCT cache FROM ImageDefinition") == [(0,)]


# --- transport -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_stalled_server_times_out(site, tls_pki, scheme):
    server = site.server(tls_pki if scheme == "https" else None)
    published = site.publish_http(server, "/image.list")
    site.subscribed(published, "--uri-trustanchor-set", "none")

    server.stall("/image.list", published.data, seconds=30)
    started = time.monotonic()
    update = site.subscribe("-U", env={"VMCATCHER_FETCH_TIMEOUT": "1"})
    assert update.returncode == 10, update
    assert "timed out" in update.stderr
    assert published.url in update.stderr

    other = site.document(server.url("/other.list"))
    server.stall("/other.list", site.signed(other), seconds=30, before_headers=True)
    subscribe = site.subscribe(
        "-s", server.url("/other.list"), "-e", "--uri-trustanchor-set", "none",
        "--fetch-timeout", "1",
    )  # fmt: skip
    assert subscribe.returncode == 1, subscribe
    assert "timed out" in subscribe.stderr
    assert time.monotonic() - started < 15
    assert site.count("subscription") == 1


def test_fetch_timeout_must_be_a_positive_number(site):
    result = site.subscribe("-l", "--fetch-timeout", "soon")
    assert result.returncode == 1, result
    assert "Invalid fetch timeout 'soon'" in result.stderr


def test_http_error_status_is_logged_and_exits_10(site):
    server = site.server()
    published = site.publish_http(server, "/image.list")
    site.subscribed(published)

    server.status("/image.list", 404)
    update = site.subscribe("-U")
    assert update.returncode == 10, update
    assert "HTTP 404" in update.stderr
    missing = site.subscribe("-s", server.url("/missing.list"), "-e")
    assert missing.returncode == 1, missing
    assert "HTTP 404" in missing.stderr


def test_https_trust_anchors(site, tls_pki):
    server = site.server(tls_pki)
    published = site.publish_http(server, "/image.list")

    browser = site.subscribe("-s", published.url, "-e")
    assert browser.returncode == 1, browser
    assert "certificate verification failed" in browser.stderr
    igtf_without_ca = site.subscribe("-s", published.url, "-e", "--uri-trustanchor-set", "igtf")
    assert igtf_without_ca.returncode == 1, igtf_without_ca
    assert "certificate verification failed" in igtf_without_ca.stderr
    assert site.count("subscription") == 0

    write_hashed_dir(site.ca_dir, [tls_pki.ca_cert])
    igtf = site.subscribe("-s", published.url, "-e", "--uri-trustanchor-set", "IGTF")
    assert igtf.returncode == 0, igtf
    assert site.sub_row(published.identifier)["trustAnchor"] == 2
    assert site.subscribe("-U").returncode == 0
    assert site.sub_row(published.identifier)["imagelist_latest"] is not None

    other = site.publish_http(server, "/other.list")
    none = site.subscribe("-s", other.url, "-e", "--uri-trustanchor-set", "none")
    assert none.returncode == 0, none
    assert site.sub_row(other.identifier)["trustAnchor"] == 0

    # The stored anchor is what -U uses.
    changed = site.subscribe("--uri-trustanchor-set", "browser", "-u", other.identifier)
    assert changed.returncode == 0, changed
    refused = site.subscribe("-U")
    assert refused.returncode == 10, refused
    assert "certificate verification failed" in refused.stderr
    assert site.sub_row(other.identifier)["imagelist_latest"] is None


def test_one_broken_subscription_does_not_stop_the_others(site):
    server = site.server()
    lists = [site.publish_http(server, f"/{name}.list") for name in ("a", "b", "c")]
    joined = site.subscribe("-e", *[arg for item in lists for arg in ("-s", item.url)])
    assert joined.returncode == 0, joined

    server.status("/b.list", 404)
    update = site.subscribe("-U")
    assert update.returncode == 10, update
    assert "HTTP 404" in update.stderr
    latest = {item.identifier: site.sub_row(item.identifier)["imagelist_latest"] for item in lists}
    assert latest[lists[0].identifier] is not None
    assert latest[lists[1].identifier] is None
    assert latest[lists[2].identifier] is not None


def test_credentials_are_used_at_subscribe_time_and_masked(site):
    server = site.server()
    server.auth = ("reader", "s3cr3t-pw")
    first = site.publish_http(server, "/first.list")
    second = site.publish_http(server, "/second.list")

    anonymous = site.subscribe("-s", first.url, "-e")
    assert anonymous.returncode == 1, anonymous
    assert "HTTP 401" in anonymous.stderr

    given = site.subscribe(
        "-s", first.url, "-e", "--uri-username-set", "reader", "--uri-password-set", "s3cr3t-pw"
    )
    assert given.returncode == 0, given
    assert server.requests[-1].authorization == basic_auth_header("reader", "s3cr3t-pw")

    (site.root / "password").write_text("s3cr3t-pw\n")
    from_file = site.subscribe(
        "-s", second.url, "-e", "--uri-username-set", "reader", "--uri-password-file", "password"
    )
    assert from_file.returncode == 0, from_file
    server.clear_requests()
    update = site.subscribe("-U")
    assert update.returncode == 0, update
    assert [r.authorization for r in server.requests] == [
        basic_auth_header("reader", "s3cr3t-pw")
    ] * 2

    for identifier in (first.identifier, second.identifier):
        info = site.subscribe("-i", "-u", identifier)
        assert "subscription.hv:uri.username=reader\n" in info.stdout
        assert "subscription.hv:uri.password=********\n" in info.stdout
        as_json = site.subscribe("-i", "-u", identifier, "-f", "json")
        assert '"uri.password": "********"' in as_json.stdout
        for output in (info, as_json, given, from_file, update):
            assert "s3cr3t-pw" not in output.stdout + output.stderr


def test_newimage_subscribe_on_a_file_copy_subscribes_every_image(site):
    list_uri = "https://images.example-grid.org/lists/mirrored/image.list"
    published = site.publish_file("copy.list", site.document(list_uri))
    result = site.subscribe("-s", published.url, "-e", "--imagelist-newimage-subscribe")
    assert result.returncode == 0, result
    row = site.sub_row(published.identifier)
    assert (row["uri"], row["updateMode"]) == (list_uri, 3)
    assert site.sql("SELECT identifier, cache FROM ImageDefinition ORDER BY id") == [
        (image, 1) for image in published.image_ids
    ]


def test_newimage_subscribe_applies_to_an_existing_subscription(site):
    published = site.file_list()
    site.subscribed(published)
    again = site.subscribe("-s", published.url, "--imagelist-newimage-subscribe")
    assert again.returncode == 0, again
    assert site.sub_row(published.identifier)["updateMode"] == 3
    assert site.states() == {image: 3 for image in published.image_ids}
    assert site.count("subscriptionAuth") == 1


def test_delete_leaves_no_orphan_rows(site):
    gone = site.file_list("gone.list")
    kept = site.file_list("kept.list")
    site.subscribed(gone)
    site.subscribed(kept)

    result = site.subscribe("-D", "-u", gone.identifier)
    assert result.returncode == 0, result
    assert site.sql("SELECT identifier FROM subscription") == [(kept.identifier,)]
    assert site.counts() == {
        "subscription": 1,
        "subscriptionAuth": 1,
        "imageListInstance": 1,
        "ImageInstance": 2,
        "ImageDefinition": 2,
        "endorser": 1,
        "endorserPrincible": 1,
    }
    orphans = {
        "auth": "SELECT count(*) FROM subscriptionAuth WHERE subscription NOT IN "
        "(SELECT id FROM subscription)",
        "list": "SELECT count(*) FROM imageListInstance WHERE sub_auth NOT IN "
        "(SELECT id FROM subscriptionAuth)",
        "image": "SELECT count(*) FROM ImageInstance WHERE fkimagelistinstance IS NULL "
        "OR fkimagelistinstance NOT IN (SELECT id FROM imageListInstance) "
        "OR fkIdentifier NOT IN (SELECT id FROM ImageDefinition)",
        "definition": "SELECT count(*) FROM ImageDefinition WHERE subscription NOT IN "
        "(SELECT id FROM subscription)",
    }
    assert {name: site.scalar(query) for name, query in orphans.items()} == dict.fromkeys(
        orphans, 0
    )
    assert site.states() == {image: 2 for image in kept.image_ids}

    unknown = site.subscribe("-D", "-u", "no-such-subscription")
    assert unknown.returncode == 1, unknown
    assert "Failed to remove a subscription from 'no-such-subscription'" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-l", "-U"], "More than one action selected."),
        (["-i"], "No subscription selections made."),
        (["--uri-username-set", "bob"], "No subscription selections made."),
        (["-i", "-u", "a", "-r", "file:///b"], "Conflicting selectors."),
        (["-l", "--uri-trustanchor-set", "system", "-u", "a"], "Invalid trust anchor value"),
        (["-l", "-f", "xml"], "Invalid format 'xml' allowed formats are"),
        (["-U", "-c", "/nonexistent/certs"], "Invalid x509 trust store directory: /nonexistent"),
    ],
)
def test_validation_messages(site, args, message):
    result = site.subscribe(*args)
    assert result.returncode == 1, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_password_from_stdin_is_stored_and_cleared(site):
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e").returncode == 0
    sub = published.identifier
    given = site.subscribe("--uri-password-file", "-", "-u", sub, input="from-stdin\n")
    assert given.returncode == 0, given
    assert site.sub_row(sub)["password"] == "from-stdin"
    cleared = site.subscribe("--uri-password-clear", "-u", sub)
    assert cleared.returncode == 0, cleared
    assert site.sub_row(sub)["password"] == ""
    assert "subscription.hv:uri.password" not in site.subscribe("-i", "-u", sub).stdout


def test_relaxed_crl_acceptance_is_logged_by_the_update(site, tmp_path):
    """The verifying core returns relaxed acceptances; the update logs each as a WARNING."""
    stale = site.pki.write_ca_dir(tmp_path / "stale-certificates", root_crl="expired")
    published = site.file_list()
    env = {"VMCATCHER_DIR_CERT": str(stale), "VMCATCHER_CRL_POLICY": "relaxed"}
    assert site.subscribe("-s", published.url, "-e", env=env).returncode == 0
    result = site.subscribe("-U", env=env)
    assert result.returncode == 0, result
    relaxed = [line for line in result.stderr.splitlines() if "CRL policy relaxed" in line]
    assert relaxed and all(line.startswith("WARNING:") for line in relaxed), result.stderr


def test_subscribing_again_with_new_options_applies_all_of_them(site):
    """Issue 11, item 8: the trust anchor used to be dropped while the mode was applied."""
    published = site.file_list()
    assert site.subscribe("-s", published.url, "-e").returncode == 0
    before = site.sub_row(published.identifier)
    assert (before["trustAnchor"], before["updateMode"]) == (1, 0)

    options = ("--uri-trustanchor-set", "igtf", "--imagelist-newimage-subscribe",
               "--uri-username-set", "reader")  # fmt: skip
    again = site.subscribe("-s", published.url, *options)

    assert again.returncode == 0, again
    after = site.sub_row(published.identifier)
    assert (after["trustAnchor"], after["updateMode"], after["userName"]) == (2, 3, "reader")
    [line] = [w for w in again.stderr.splitlines() if w.startswith("WARNING:")]
    assert f"Subscription '{published.identifier}' already existed; applied" in line, again
    for change in ("trust anchor 'igtf'", "user name", "new-image mode 3"):
        assert change in line
    assert site.count("subscription") == 1


def test_update_with_a_selection_updates_only_the_selected_subscriptions(site):
    """Issue 11, item 10: ``-U -u <id>`` used to ignore ``-u`` and update everything."""
    first, second = site.file_list("first.list"), site.file_list("second.list")
    for published in (first, second):
        assert site.subscribe("-s", published.url, "-e").returncode == 0

    result = site.subscribe("-U", "-u", first.identifier)

    assert result.returncode == 0, result
    assert site.sub_row(first.identifier)["imagelist_latest"] is not None
    assert site.sub_row(second.identifier)["imagelist_latest"] is None

    unknown = site.subscribe("-U", "-u", "no-such-subscription")
    assert unknown.returncode == 1, unknown
    assert "ERROR:main:No known subscription matches the selection; nothing updated." in (
        unknown.stderr
    )
    assert site.sub_row(second.identifier)["imagelist_latest"] is None

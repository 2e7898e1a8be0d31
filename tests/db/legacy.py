"""Databases exactly as the original Python 2 vmcatcher left them, built by raw SQL.

The CREATE TABLE statements are what the original's SQLAlchemy ``create_all``
emitted on SQLite (old SQLAlchemy also added a CHECK for each Boolean), for the
three column sets of ``subscription`` that ever shipped. Every table gets rows,
including values the new schema must keep: a >2 GiB image size, dates with
and without microseconds, a binary blob that is not UTF-8, booleans 0 and 1,
a DN longer than 50 characters.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

PRE_0_4 = "pre_0_4"
V0_4 = "v0_4"
V0_6 = "v0_6"
VERSIONS = (PRE_0_4, V0_4, V0_6)


def _create(name: str, *lines: str) -> str:
    """CREATE TABLE laid out exactly as SQLAlchemy's SQLite compiler writes it."""
    return f"CREATE TABLE {name} (\n\t" + ", \n\t".join(lines) + "\n)"


CASCADE = "ON DELETE CASCADE ON UPDATE CASCADE"

ENDORSER = _create(
    "endorser",
    "id INTEGER NOT NULL",
    "identifier VARCHAR(50) NOT NULL",
    "PRIMARY KEY (id)",
    "UNIQUE (identifier)",
)

SUBSCRIPTION_HEAD = (
    "id INTEGER NOT NULL",
    "identifier VARCHAR(50) NOT NULL",
    "description VARCHAR(200)",
    "uri VARCHAR(200) NOT NULL",
    "authorised BOOLEAN NOT NULL",
    "imagelist_latest INTEGER",
    "updated DATETIME",
)
SUBSCRIPTION_0_4 = (
    '"trustAnchor" INTEGER NOT NULL',
    '"userName" VARCHAR(200)',
    "password VARCHAR(200)",
)
SUBSCRIPTION_0_6 = ('"updateMode" INTEGER NOT NULL',)
SUBSCRIPTION_TAIL = (
    "PRIMARY KEY (id)",
    "UNIQUE (identifier)",
    "UNIQUE (uri)",
    "CHECK (authorised IN (0, 1))",
)

PRINCIPAL = _create(
    '"endorserPrincible"',
    "id INTEGER NOT NULL",
    "hv_dn VARCHAR(50) NOT NULL",
    "hv_ca VARCHAR(50) NOT NULL",
    "endorser INTEGER",
    "PRIMARY KEY (id)",
    "UNIQUE (hv_dn)",
    f"FOREIGN KEY(endorser) REFERENCES endorser (id) {CASCADE}",
)

AUTH = _create(
    '"subscriptionAuth"',
    "id INTEGER NOT NULL",
    "subscription INTEGER",
    "endorser INTEGER",
    "authorised BOOLEAN NOT NULL",
    "PRIMARY KEY (id)",
    f"FOREIGN KEY(subscription) REFERENCES subscription (id) {CASCADE}",
    f"FOREIGN KEY(endorser) REFERENCES endorser (id) {CASCADE}",
    "CHECK (authorised IN (0, 1))",
)

DEFINITION = _create(
    '"ImageDefinition"',
    "id INTEGER NOT NULL",
    "identifier VARCHAR(50) NOT NULL",
    "latest INTEGER",
    "cache INTEGER NOT NULL",
    "subscription INTEGER",
    "PRIMARY KEY (id)",
    "UNIQUE (identifier)",
    f"FOREIGN KEY(subscription) REFERENCES subscription (id) {CASCADE}",
)

LIST_INSTANCE = _create(
    '"imageListInstance"',
    "id INTEGER NOT NULL",
    "data BLOB NOT NULL",
    "data_hash VARCHAR(128) NOT NULL",
    "expired DATETIME",
    "sub_auth INTEGER",
    "imported DATETIME NOT NULL",
    "created DATETIME NOT NULL",
    "expires DATETIME NOT NULL",
    "version VARCHAR(50) NOT NULL",
    "PRIMARY KEY (id)",
    f'FOREIGN KEY(sub_auth) REFERENCES "subscriptionAuth" (id) {CASCADE}',
)

IMAGE = _create(
    '"ImageInstance"',
    "id INTEGER NOT NULL",
    "description VARCHAR(50) NOT NULL",
    "hypervisor VARCHAR(50) NOT NULL",
    "sha512 VARCHAR(128) NOT NULL",
    "uri VARCHAR(128) NOT NULL",
    "os VARCHAR(50) NOT NULL",
    "osversion VARCHAR(50) NOT NULL",
    "arch VARCHAR(50) NOT NULL",
    "version VARCHAR(50) NOT NULL",
    "size INTEGER NOT NULL",
    "title VARCHAR(100) NOT NULL",
    "comments VARCHAR(100)",
    '"fkIdentifier" INTEGER',
    "fkimagelistinstance INTEGER",
    "PRIMARY KEY (id)",
    f'FOREIGN KEY("fkIdentifier") REFERENCES "ImageDefinition" (id) {CASCADE}',
    f'FOREIGN KEY(fkimagelistinstance) REFERENCES "imageListInstance" (id) {CASCADE}',
)


def subscription_ddl(version: str) -> str:
    middle = {PRE_0_4: (), V0_4: SUBSCRIPTION_0_4, V0_6: SUBSCRIPTION_0_4 + SUBSCRIPTION_0_6}
    return _create("subscription", *SUBSCRIPTION_HEAD, *middle[version], *SUBSCRIPTION_TAIL)


def ddl(version: str) -> dict[str, str]:
    """Table name -> CREATE TABLE, in the original create_all order."""
    return {
        "endorser": ENDORSER,
        "subscription": subscription_ddl(version),
        "endorserPrincible": PRINCIPAL,
        "subscriptionAuth": AUTH,
        "ImageDefinition": DEFINITION,
        "imageListInstance": LIST_INSTANCE,
        "ImageInstance": IMAGE,
    }


LONG_DN = "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=someone/CN=123456/CN=Some Body Long"
SHA = "a" * 128
BLOB_1 = b"MIME-Version: 1.0\r\n\x00\xff\xfe signed list one"
BLOB_2 = b"Content-Type: multipart/signed\r\n\x80\x81 signed list two"
BIG_SIZE = 5 * 1024**3 + 7  # above 2 GiB

ENDORSERS = [(1, "Endorser One"), (2, LONG_DN)]
PRINCIPALS = [
    (1, LONG_DN, "/DC=ch/DC=cern/CN=CERN Grid Certification Authority", 1),
    (2, "/C=DE/O=GermanGrid/CN=second", "/C=DE/O=GermanGrid/CN=GridKa-CA", 1),
    (3, "/C=UK/O=eScience/CN=third", "/C=UK/O=eScience/CN=UK e-Science CA 2B", 2),
]
# (id, identifier, description, uri, authorised, imagelist_latest, updated)
SUBSCRIPTIONS_7 = [
    (
        1,
        "e55c1afe-0a62-4d31-a8d7-fb8c825f92a2",
        "Endorsed list of CernVM Images",
        "https://cernvm.cern.ch/releases/image.list",
        1,
        1,
        "2014-01-25 22:20:29.859405",
    ),
    (2, "uuid", "desc", "https://example.org/list", 1, 2, "2014-05-29 19:59:05.305093"),
    (3, "never-updated", None, "http://example.net/image.list", 0, None, None),
]
# extra columns per version for rows 1..3: (trustAnchor, userName, password) + (updateMode,)
EXTRA_0_4 = [(2, "", ""), (0, None, None), (1, "user", "pa ss")]
EXTRA_0_6 = [(3,), (0,), (1,)]
AUTHS = [(1, 1, 1, 1), (2, 2, 2, 1), (3, 3, 1, 0)]
DEFINITIONS = [
    (1, "img-1", 1, 1, 1),
    (2, "img-2", 0, 0, 1),
    (3, "img-3", 2, 1, 2),
]
# (id, data, data_hash, expired, sub_auth, imported, created, expires, version)
LIST_INSTANCES = [
    (
        1,
        BLOB_1,
        "b" * 128,
        None,
        1,
        "2014-01-25 22:20:29.859405",
        "2014-01-20 10:00:00.000000",
        "2014-02-20 10:00:00.000000",
        "3.1.4",
    ),
    (
        2,
        BLOB_2,
        "reload cache",
        "2015-03-01 00:00:00",
        2,
        "2014-05-29 19:59:05.305093",
        "2014-05-28 08:30:00",
        "2014-06-28 08:30:00",
        "20140528",
    ),
]
IMAGES = [
    (
        1,
        "CernVM 3 image",
        "kvm",
        SHA,
        "https://cernvm.cern.ch/releases/cernvm3.hdd",
        "Linux",
        "3.1",
        "x86_64",
        "3.1.4",
        BIG_SIZE,
        "CernVM 3",
        None,
        1,
        1,
    ),
    (
        2,
        "A" * 80,  # longer than the original String(50)
        "xen",
        "c" * 128,
        "https://example.org/" + "x" * 150 + ".img",
        "Linux",
        "7",
        "i386",
        "1",
        1024,
        "Title " + "t" * 120,
        "a comment",
        3,
        2,
    ),
    # Left behind by the original's delete bug: list instance nulled, definition gone.
    (
        3,
        "orphan",
        "kvm",
        "d" * 128,
        "https://gone.example/img",
        "Linux",
        "6",
        "x86_64",
        "0.9",
        10,
        "Orphan",
        None,
        99,
        None,
    ),
]


def make_legacy_db(path: Path, version: str, *, skip_tables: tuple[str, ...] = ()) -> None:
    """Write an original-vmcatcher database of *version* at *path* (rows in every table)."""
    connection = sqlite3.connect(path)
    try:
        for name, statement in ddl(version).items():
            if name not in skip_tables:
                connection.execute(statement)
        rows = {
            "endorser": ENDORSERS,
            "endorserPrincible": PRINCIPALS,
            "subscription": subscription_rows(version),
            "subscriptionAuth": AUTHS,
            "ImageDefinition": DEFINITIONS,
            "imageListInstance": LIST_INSTANCES,
            "ImageInstance": IMAGES,
        }
        for table, values in rows.items():
            if table in skip_tables:
                continue
            marks = ",".join("?" * len(values[0]))
            connection.executemany(f'INSERT INTO "{table}" VALUES({marks})', values)
        # The README's own example line, verbatim (11 values, 0.6.x only).
        if version == V0_6:
            connection.execute(
                "INSERT INTO \"subscription\" VALUES(4,'uuid-4','desc','https://x.example/l',"
                "1,5,'2014-05-29 19:59:05.305093',0,NULL,NULL,0)"
            )
        connection.commit()
    finally:
        connection.close()


def subscription_rows(version: str) -> list[tuple]:
    rows = []
    for index, base in enumerate(SUBSCRIPTIONS_7):
        row = base
        if version in (V0_4, V0_6):
            row = row + EXTRA_0_4[index]
        if version == V0_6:
            row = row + EXTRA_0_6[index]
        rows.append(row)
    return rows


def parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


SUBSCRIPTION_COLUMNS_0_6 = (
    "id",
    "identifier",
    "description",
    "uri",
    "authorised",
    "imagelist_latest",
    "updated",
    "trustAnchor",
    "userName",
    "password",
    "updateMode",
)

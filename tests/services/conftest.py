"""In-process tests of the services, with an in-memory list repository.

Why: the end-to-end tests prove the commands, but each takes a subprocess and
seconds. Here the update service runs in the test process, on a SQLite file,
with a :class:`ListRepository` standing in for the network (in the spirit of
python-tuf's ``RepositorySimulator``): lists are built and signed with the test
PKI, published under a URL, changed, withdrawn or made to fail, and the
service's ``fetch`` hook reads them from memory. Every verification is real
(S/MIME, CA directory, CRLs); only the transport is simulated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.lists import list_payload, make_image, make_image_list
from tests.support.pki import Identity, TestPKI, sign
from vmcatcher.db import Database, prepare_database
from vmcatcher.db.models import (
    Endorser,
    EndorserPrincipal,
    ImageDefinition,
    ImageListInstance,
    Subscription,
    SubscriptionAuth,
)
from vmcatcher.errors import FetchError
from vmcatcher.services.update import UpdateContext, update_subscriptions
from vmcatcher.trust import CrlPolicy, load_trust_store


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return TestPKI()


@dataclass
class Published:
    """One list as the repository serves it."""

    identifier: str
    url: str
    version: str
    images: list[dict[str, Any]]
    signer: Identity
    created: datetime | None = None
    expires: datetime | None = None
    hv_uri: str | None = None  # the list's own hv:uri; default: where it is served


@dataclass
class ListRepository:
    """Signed lists by URL, served from memory; ``fail`` makes a URL answer like a dead server."""

    pki: TestPKI
    lists: dict[str, bytes] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    fetched: list[str] = field(default_factory=list)

    def publish(self, item: Published) -> bytes:
        document = make_image_list(
            item.identifier,
            item.hv_uri or item.url,
            item.version,
            item.images,
            item.signer.subject,
            item.signer.issuer,
            created=item.created,
            expires=item.expires,
        )
        data = sign(list_payload(document), item.signer)
        self.lists[item.url] = data
        return data

    def fetch(self, url: str, **_transport: Any) -> bytes:
        self.fetched.append(url)
        if url in self.failing or url not in self.lists:
            raise FetchError(f"cannot fetch {url}: connection refused")
        return self.lists[url]


@dataclass
class World:
    """A database, a trust store and a repository: what one update run sees."""

    database: Database
    repository: ListRepository
    context: UpdateContext
    pki: TestPKI

    def subscribe(
        self, identifier: str, url: str, *, update_mode: int = 1, signer: Identity | None = None
    ) -> None:
        """A subscription row authorising ``signer`` (default: the test endorser).

        ``update_mode`` 1 (new images added) stands for what ``-s`` did: it registered
        the first version's images; 0 refuses every image the row does not know.
        """
        signer = signer or self.pki.endorser
        with self.database.session() as session:
            principal = session.scalars(
                select(EndorserPrincipal).where(EndorserPrincipal.hv_dn == signer.subject)
            ).first()
            if principal is None:
                endorser = Endorser(identifier=f"endorser {signer.subject}")
                principal = EndorserPrincipal(
                    hv_dn=signer.subject, hv_ca=signer.issuer, endorser=endorser
                )
                session.add(principal)
            sub = Subscription(identifier=identifier, uri=url, description="", authorised=True,
                               update_mode=update_mode, trust_anchor=1)  # fmt: skip
            session.add(SubscriptionAuth(subscription=sub, endorser=principal.endorser,
                                         authorised=True))  # fmt: skip
            session.commit()

    def publish(
        self,
        identifier: str,
        url: str,
        version: str,
        *images: str,
        signer: Identity | None = None,
        created: datetime | None = None,
        expires: datetime | None = None,
        hv_uri: str | None = None,
    ) -> bytes:
        """Sign and serve a list holding 1 KiB images with these identifiers."""
        item = Published(identifier, url, version, [make_image(i) for i in images],
                         signer or self.pki.endorser, created, expires, hv_uri)  # fmt: skip
        return self.repository.publish(item)

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """Plain SQL on the world's database (rows for a SELECT)."""
        from sqlalchemy import text

        with self.database.session() as session:
            result = session.execute(text(statement), params)
            rows = list(result) if result.returns_rows else []
            session.commit()
        return rows

    def update(self) -> int:
        return update_subscriptions(self.database.session, self.context)

    def versions(self, identifier: str) -> list[str]:
        with self.database.session() as session:
            rows = session.execute(
                select(ImageListInstance.version)
                .join(SubscriptionAuth, ImageListInstance.sub_auth_id == SubscriptionAuth.id)
                .join(Subscription, SubscriptionAuth.subscription_id == Subscription.id)
                .where(Subscription.identifier == identifier)
                .order_by(ImageListInstance.id)
            )
            return [version for (version,) in rows]

    def latest_version(self, identifier: str) -> str | None:
        with self.database.session() as session:
            sub = session.scalars(
                select(Subscription).where(Subscription.identifier == identifier)
            ).one()
            if sub.imagelist_latest is None:
                return None
            return session.get(ImageListInstance, sub.imagelist_latest).version

    def subscription(self, identifier: str) -> Subscription:
        with self.database.session() as session:
            return session.scalars(
                select(Subscription).where(Subscription.identifier == identifier)
            ).one()

    def images(self, identifier: str) -> set[str]:
        with self.database.session() as session:
            rows = session.execute(
                select(ImageDefinition.identifier)
                .join(Subscription, ImageDefinition.subscription_id == Subscription.id)
                .where(Subscription.identifier == identifier)
            )
            return {image for (image,) in rows}


@pytest.fixture
def world(tmp_path: Path, pki: TestPKI) -> Iterator[World]:
    ca_dir = pki.write_ca_dir(tmp_path / "certificates")
    database = prepare_database(f"sqlite:///{tmp_path / 'vmcatcher.db'}")
    repository = ListRepository(pki)
    context = UpdateContext(
        load_trust_store(ca_dir), CrlPolicy.STRICT, ca_dir, fetch=repository.fetch
    )
    yield World(database, repository, context, pki)
    database.close()


def days(n: float) -> timedelta:
    return timedelta(days=n)

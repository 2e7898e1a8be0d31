"""The tables of a vmcatcher database, as SQLAlchemy 2 declarative models.

Why the odd names: sites keep the ``vmcatcher.db`` written by the original
Python 2 vmcatcher, and their own scripts (and the README's dump/reload
migration recipe) rely on its exact table names, column names and column
*order* (docs/database.md). So the tables keep ``endorserPrincible``,
``fkIdentifier``, ``trustAnchor`` ... and the columns are declared in the
original order; only the Python attribute names are clean English (foreign-key
columns get an ``_id`` attribute mapped onto the original column name).

What differs from the original, on purpose:

* String lengths are wide enough for real DNs, URIs and titles (the original's
  ``String(50)`` only worked because SQLite ignores lengths), free prose is
  ``Text`` and ``ImageInstance.size`` is a ``BigInteger`` (images exceed 2 GiB).
* Every foreign key has an index, so cascades and the "available image" query
  stay fast on PostgreSQL too.
* One bidirectional relationship per foreign key (the original declared
  overlapping ones, which SQLAlchemy 2 warns about). ORM cascades delete
  children, including the ``ImageInstance`` rows the original orphaned; the
  bulk helpers in :mod:`vmcatcher.db.cascade` additionally clear the
  ``imagelist_latest`` / ``latest`` pointers, which have no foreign key.

``subscription.imagelist_latest`` and ``ImageDefinition.latest`` stay plain
integers without a foreign key, exactly as in the original schema.

Every time stored is a naive UTC ``datetime``.

Besides the original seven tables, ``vmcatcher_run`` and
``vmcatcher_subscription_status`` record run outcomes for monitoring.

Any change here must come with a new migration under
``vmcatcher/db/migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from vmcatcher.limits import DIGEST, LONG, SHORT


def cascading_foreign_key(column: str) -> ForeignKey:
    """A foreign key whose rows follow their parent on update and delete (the original's)."""
    return ForeignKey(column, onupdate="CASCADE", ondelete="CASCADE")


#: The ``authorised`` flags: ``CHECK (authorised IN (0, 1))`` where the database has no
#: boolean type (SQLite), exactly as the original's tables; PostgreSQL's native BOOLEAN
#: refuses anything else by itself (docs/database.md).
_FLAG = Boolean(create_constraint=True)


class Base(DeclarativeBase):
    """Declarative base holding the metadata of every vmcatcher table."""


class Endorser(Base):
    """The human identity behind one or more signing credentials."""

    __tablename__ = "endorser"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(LONG), nullable=False, unique=True)

    principals: Mapped[list[EndorserPrincipal]] = relationship(
        back_populates="endorser",
        cascade="all, delete",
        order_by="EndorserPrincipal.id",
    )
    auths: Mapped[list[SubscriptionAuth]] = relationship(
        back_populates="endorser",
        cascade="all, delete",
        order_by="SubscriptionAuth.id",
    )

    def __repr__(self) -> str:
        return f"Endorser(id={self.id!r}, identifier={self.identifier!r})"


class EndorserPrincipal(Base):
    """One X.509 credential (subject DN + issuer DN) of an endorser.

    ``hv_dn`` is unique: a subject DN belongs to one endorser whatever its CA.
    """

    __tablename__ = "endorserPrincible"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hv_dn: Mapped[str] = mapped_column(String(LONG), nullable=False, unique=True)
    hv_ca: Mapped[str] = mapped_column(String(LONG), nullable=False)
    endorser_id: Mapped[int | None] = mapped_column(
        "endorser", Integer, cascading_foreign_key("endorser.id")
    )

    endorser: Mapped[Endorser | None] = relationship(back_populates="principals")

    __table_args__ = (Index("ix_endorserPrincible_endorser", "endorser"),)

    def __repr__(self) -> str:
        return f"EndorserPrincipal(id={self.id!r}, hv_dn={self.hv_dn!r}, hv_ca={self.hv_ca!r})"


class Subscription(Base):
    """One subscribed image list (column order is part of the compatibility contract)."""

    __tablename__ = "subscription"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(SHORT), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    uri: Mapped[str] = mapped_column(String(LONG), nullable=False, unique=True)
    authorised: Mapped[bool] = mapped_column(_FLAG, nullable=False)
    #: id of the current ImageListInstance; deliberately no foreign key (as the original).
    imagelist_latest: Mapped[int | None] = mapped_column(Integer)
    updated: Mapped[datetime | None] = mapped_column(DateTime)
    #: 0 = None, 1 = Browser, 2 = IGTF.
    trust_anchor: Mapped[int] = mapped_column(
        "trustAnchor", Integer, nullable=False, default=0, server_default=text("0")
    )
    username: Mapped[str | None] = mapped_column("userName", String(LONG))
    password: Mapped[str | None] = mapped_column(String(LONG))
    #: bit 1 = auto-add new image UUIDs, bit 2 = and subscribe them.
    update_mode: Mapped[int] = mapped_column(
        "updateMode", Integer, nullable=False, default=0, server_default=text("0")
    )

    auths: Mapped[list[SubscriptionAuth]] = relationship(
        back_populates="subscription",
        cascade="all, delete",
        order_by="SubscriptionAuth.id",
    )
    image_definitions: Mapped[list[ImageDefinition]] = relationship(
        back_populates="subscription",
        cascade="all, delete",
        order_by="ImageDefinition.id",
    )

    def __repr__(self) -> str:
        return f"Subscription(id={self.id!r}, identifier={self.identifier!r}, uri={self.uri!r})"


class SubscriptionAuth(Base):
    """ "Endorser X may sign subscription Y" (no uniqueness on the pair, as the original)."""

    __tablename__ = "subscriptionAuth"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int | None] = mapped_column(
        "subscription", Integer, cascading_foreign_key("subscription.id")
    )
    endorser_id: Mapped[int | None] = mapped_column(
        "endorser", Integer, cascading_foreign_key("endorser.id")
    )
    authorised: Mapped[bool] = mapped_column(_FLAG, nullable=False)

    subscription: Mapped[Subscription | None] = relationship(back_populates="auths")
    endorser: Mapped[Endorser | None] = relationship(back_populates="auths")
    list_instances: Mapped[list[ImageListInstance]] = relationship(
        back_populates="sub_auth",
        cascade="all, delete",
        order_by="ImageListInstance.id",
    )

    __table_args__ = (
        Index("ix_subscriptionAuth_subscription", "subscription"),
        Index("ix_subscriptionAuth_endorser", "endorser"),
    )

    def __repr__(self) -> str:
        return (
            f"SubscriptionAuth(id={self.id!r}, subscription_id={self.subscription_id!r}, "
            f"endorser_id={self.endorser_id!r})"
        )


class ImageDefinition(Base):
    """An image UUID a subscription may carry; ``cache`` 1 means "keep it cached"."""

    __tablename__ = "ImageDefinition"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(SHORT), nullable=False, unique=True)
    #: id of the newest ImageInstance of this UUID; no foreign key, starts at 0.
    latest: Mapped[int | None] = mapped_column(Integer, default=0)
    cache: Mapped[int] = mapped_column(Integer, nullable=False)
    subscription_id: Mapped[int | None] = mapped_column(
        "subscription", Integer, cascading_foreign_key("subscription.id")
    )

    subscription: Mapped[Subscription | None] = relationship(back_populates="image_definitions")
    instances: Mapped[list[ImageInstance]] = relationship(
        back_populates="definition",
        cascade="all, delete",
        order_by="ImageInstance.id",
    )

    __table_args__ = (Index("ix_ImageDefinition_subscription", "subscription"),)

    def __repr__(self) -> str:
        return (
            f"ImageDefinition(id={self.id!r}, identifier={self.identifier!r}, "
            f"cache={self.cache!r}, latest={self.latest!r})"
        )


class ImageListInstance(Base):
    """One imported version of a signed list, kept byte for byte in ``data``."""

    __tablename__ = "imageListInstance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    #: sha512 hex of ``data``, or the sentinel ``"reload cache"``.
    data_hash: Mapped[str] = mapped_column(String(DIGEST), nullable=False)
    #: NULL = valid; otherwise when the instance was marked expired.
    expired: Mapped[datetime | None] = mapped_column(DateTime)
    sub_auth_id: Mapped[int | None] = mapped_column(
        "sub_auth", Integer, cascading_foreign_key("subscriptionAuth.id")
    )
    imported: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    created: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    expires: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    version: Mapped[str] = mapped_column(String(SHORT), nullable=False)

    sub_auth: Mapped[SubscriptionAuth | None] = relationship(back_populates="list_instances")
    images: Mapped[list[ImageInstance]] = relationship(
        back_populates="list_instance",
        cascade="all, delete",
        order_by="ImageInstance.id",
    )

    __table_args__ = (Index("ix_imageListInstance_sub_auth", "sub_auth"),)

    def __repr__(self) -> str:
        return (
            f"ImageListInstance(id={self.id!r}, version={self.version!r}, "
            f"sub_auth_id={self.sub_auth_id!r}, expired={self.expired!r})"
        )


class ImageInstance(Base):
    """One image entry of one list instance."""

    __tablename__ = "ImageInstance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    hypervisor: Mapped[str] = mapped_column(String(SHORT), nullable=False)
    sha512: Mapped[str] = mapped_column(String(DIGEST), nullable=False)
    uri: Mapped[str] = mapped_column(String(LONG), nullable=False)
    os: Mapped[str] = mapped_column(String(SHORT), nullable=False)
    osversion: Mapped[str] = mapped_column(String(SHORT), nullable=False)
    arch: Mapped[str] = mapped_column(String(SHORT), nullable=False)
    version: Mapped[str] = mapped_column(String(SHORT), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    title: Mapped[str] = mapped_column(String(LONG), nullable=False)
    comments: Mapped[str | None] = mapped_column(Text)
    definition_id: Mapped[int | None] = mapped_column(
        "fkIdentifier", Integer, cascading_foreign_key("ImageDefinition.id")
    )
    list_instance_id: Mapped[int | None] = mapped_column(
        "fkimagelistinstance", Integer, cascading_foreign_key("imageListInstance.id")
    )

    definition: Mapped[ImageDefinition | None] = relationship(back_populates="instances")
    list_instance: Mapped[ImageListInstance | None] = relationship(back_populates="images")

    __table_args__ = (
        Index("ix_ImageInstance_fkIdentifier", "fkIdentifier"),
        Index("ix_ImageInstance_fkimagelistinstance", "fkimagelistinstance"),
    )

    def __repr__(self) -> str:
        return (
            f"ImageInstance(id={self.id!r}, definition_id={self.definition_id!r}, "
            f"list_instance_id={self.list_instance_id!r}, version={self.version!r})"
        )


class RunRecord(Base):
    """The outcome of one ``vmcatcher_subscribe -U`` or ``vmcatcher_cache`` run.

    Not part of the original schema: written at the end of each run so that
    ``vmcatcher_check`` can tell a failing or stalled cron job (docs/monitoring.md).
    ``counts`` is a JSON object of the run's counters (``vmcatcher.monitoring.Counter``).
    """

    __tablename__ = "vmcatcher_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command: Mapped[str] = mapped_column(String(SHORT), nullable=False)
    started: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    finished: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    exit_code: Mapped[int] = mapped_column(Integer, nullable=False)
    counts: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_vmcatcher_run_command_finished", "command", "finished"),)

    def __repr__(self) -> str:
        return (
            f"RunRecord(id={self.id!r}, command={self.command!r}, "
            f"finished={self.finished!r}, exit_code={self.exit_code!r})"
        )


class SubscriptionStatus(Base):
    """When a subscription was last fetched and verified, whatever the list's version.

    ``subscription.updated`` only moves when a *new* list version is imported;
    a site whose publisher rarely changes the list still wants to know that
    the list is fetched. Deleted with its subscription (foreign key cascade).
    """

    __tablename__ = "vmcatcher_subscription_status"

    subscription_id: Mapped[int] = mapped_column(
        "subscription", Integer, cascading_foreign_key("subscription.id"), primary_key=True
    )
    last_attempt: Mapped[datetime | None] = mapped_column(DateTime)
    last_success: Mapped[datetime | None] = mapped_column(DateTime)
    last_code: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return (
            f"SubscriptionStatus(subscription_id={self.subscription_id!r}, "
            f"last_success={self.last_success!r}, last_code={self.last_code!r})"
        )

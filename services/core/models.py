"""The shop's tables: users, products, orders with their items, idempotency keys; the
worker's: the outbox and the email delivery claims; and the api's keys.

Relationships are ``lazy="raise"``: a forgotten eager load is a loud error in tests, not
an N+1 query storm in production. Load collections with ``selectinload``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so Alembic migrations can name what they drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class OrderStatus(enum.StrEnum):
    PLACED = "placed"
    CANCELLED = "cancelled"


class ConfirmationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # Stored normalised (lower case) so the unique index is case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    orders: Mapped[list[Order]] = relationship(back_populates="user", lazy="raise")


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        # Keyset pagination within a category walks this index.
        Index("ix_products_category_id", "category", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))
    price_cents: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        Index("ix_orders_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    status: Mapped[OrderStatus] = mapped_column(
        _enum(OrderStatus, "order_status"), default=OrderStatus.PLACED
    )
    confirmation_status: Mapped[ConfirmationStatus] = mapped_column(
        _enum(ConfirmationStatus, "confirmation_status"), default=ConfirmationStatus.PENDING
    )
    total_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    user: Mapped[User] = relationship(back_populates="orders", lazy="raise")
    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderItem.id"
    )


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_cents >= 0", name="unit_price_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="RESTRICT"), index=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="items", lazy="raise")


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key`` for ``POST /orders`` and the answer it got.

    The row is inserted in the same transaction as the order: a concurrent duplicate
    blocks on the primary key until the first commits, then reads the stored answer.
    """

    __tablename__ = "idempotency_keys"
    # The retention sweep deletes the oldest keys (services.worker.retention).
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # sha256 of the canonical request, to refuse a key reused for a different request.
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=True
    )
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OutboxMessage(Base):
    """Work for the worker, written in the same transaction as the change that causes it.

    A row goes created → published (the relay handed it to the broker) → done (its task
    finished) or dead (its task gave up: a dead letter, which an operator can retry).
    An insert notifies ``OUTBOX_CHANNEL`` at commit (a trigger, see migration 0002), which
    wakes the relay.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's scan: the oldest unpublished rows.
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        # The republish sweep: published rows whose task has not finished yet.
        Index(
            "ix_outbox_in_flight",
            "published_at",
            postgresql_where=text("done_at IS NULL AND dead_at IS NULL"),
        ),
        Index("ix_outbox_dead", "id", postgresql_where=text("dead_at IS NOT NULL")),
        # The retention sweep: finished rows, oldest first.
        Index("ix_outbox_done", "done_at", postgresql_where=text("done_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, object]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    publish_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class EmailDelivery(Base):
    """The idempotency guard of one email, keyed by its Message-ID.

    An attempt claims the row with a lease (``claimed_by``, ``lease_until``) before it
    talks to SMTP and sets ``sent_at`` once the server accepted the message. Nobody sends
    while another attempt's lease runs, and nobody sends after ``sent_at`` is set.
    """

    __tablename__ = "email_deliveries"

    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """An API key. The token itself is never stored: only its public ``prefix`` (the
    lookup) and an HMAC-SHA256 of the whole token under the server's secret, so a copy
    of this table does not let anyone call the API (``services.core.api_keys``)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Written in batches by each api process, at most every ``auth.last_used_flush_s``.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

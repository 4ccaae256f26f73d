"""The data model (SPEC section 1) as SQLModel tables.

Money is integer cents (BigInteger). Times go through ``UTCDateTime``: aware UTC in Python,
`timestamptz` on PostgreSQL, a sortable UTC text on SQLite, so a value survives a round trip
through either database unchanged. Every `list` filter and sort has an index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

UTC = UTC


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; times must be timezone-aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


OPEN_STATUSES_SQL = "('active','paused','expired','will-fail','failed')"
IN_PROGRESS_SQL = "status IN ('active','paused','will-fail','failed')"


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class Meta(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class Patient(SQLModel, table=True):
    __tablename__ = "patient"
    id: int | None = Field(default=None, primary_key=True)
    patient_id: str = Field(unique=True, nullable=False)
    first_name: str
    last_name: str = ""
    phone: str | None = Field(default=None, index=True)  # E.164
    phone_type: str = "unknown"
    email: str | None = Field(default=None, index=True)
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    address_invalid: bool = False
    # Computed once when the phone/email is stored (validation is costly at a million sets);
    # NULL means "not computed": checked on the fly.
    phone_valid: bool | None = None
    email_valid: bool | None = None
    timezone: str | None = None  # explicit column from the import
    phone_tz: str | None = None  # derived: the phone's zone when it has exactly one
    address_tz: str | None = None  # derived: the address state's zone
    sms_opt_out: bool = False
    call_opt_out: bool = False
    email_opt_out: bool = False
    email_suppressed: str | None = None  # bounced | complained
    card_token: str | None = None
    stripe_customer_id: str | None = None  # cus_...: card on file at Stripe (with the payment method)
    stripe_payment_method_id: str | None = None  # pm_...
    search_name: str = Field(default="", index=True)  # lower("first last") for --search
    # Folded names both ways, email, phone digits (core/searchtext.py): what --search matches.
    search_text: str = Field(default="", sa_type=Text, nullable=False)
    created_at: datetime | None = _ts(nullable=False)
    updated_at: datetime | None = _ts(nullable=False)


class RuleSetRow(SQLModel, table=True):
    __tablename__ = "rule_set"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, nullable=False)
    title: str
    description: str = ""
    current_version: int = 1
    synced_at: datetime | None = _ts(nullable=False)


class RuleSetVersion(SQLModel, table=True):
    __tablename__ = "rule_set_version"
    __table_args__ = (UniqueConstraint("rule_set_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    rule_set_id: int = Field(foreign_key="rule_set.id", nullable=False)
    version: int
    content_hash: str
    source_text: str = Field(sa_type=Text)
    parsed_json: str = Field(sa_type=Text)
    created_at: datetime | None = _ts(nullable=False)


class InvoiceSet(SQLModel, table=True):
    __tablename__ = "invoice_set"
    __table_args__ = (
        # A patient has at most one in-progress set.
        Index(
            "uq_invoice_set_in_progress",
            "patient_pk",
            unique=True,
            sqlite_where=text(IN_PROGRESS_SQL),
            postgresql_where=text(IN_PROGRESS_SQL),
        ),
        Index("ix_invoice_set_status_next", "status", "next_send_at"),
        Index("ix_invoice_set_status_amount", "status", "amount_outstanding_cents"),
        Index("ix_invoice_set_status_created", "status", "created_at", "amount_outstanding_cents"),  # covers aging
        Index("ix_invoice_set_status_rule_set", "status", "rule_set_id"),
        Index("ix_invoice_set_rule_set_created", "rule_set_id", "created_at", "status"),  # covers report
    )
    id: int | None = Field(default=None, primary_key=True)
    patient_pk: int = Field(foreign_key="patient.id", nullable=False, index=True)
    rule_set_id: int = Field(foreign_key="rule_set.id", nullable=False)
    status: str = Field(nullable=False)
    status_reason: str | None = None
    # The open conditions behind the shown status (SPEC section 2: paused > expired > failed >
    # will-fail > active). `status` is derived from these plus the terminal statuses.
    failed_reason: str | None = None
    will_fail_reason: str | None = None
    expired_at: datetime | None = _ts()
    amount_outstanding_cents: int = Field(default=0, sa_type=BigInteger, nullable=False, index=True)
    created_at: datetime | None = _ts(nullable=False, index=True)
    anchor_at: datetime | None = _ts(nullable=False)
    paused_at: datetime | None = _ts()
    next_send_at: datetime | None = _ts(index=True)
    next_step_index: int | None = None
    next_step: str | None = None
    next_methods: str | None = None  # comma-separated
    schedule_gen: int = 1
    # A step whose outcome changed after the run (a status callback, a reconciliation): the next
    # run re-decides it (fallbacks, failed).
    recheck_step: int | None = None
    exported_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    updated_at: datetime | None = _ts(nullable=False)
    # A/B test: the weighted rule-set spec the set was created under and the arm it drew.
    experiment: str | None = None
    arm: str | None = None


class Charge(SQLModel, table=True):
    __tablename__ = "charge"
    __table_args__ = (Index("ix_charge_set_status_amount", "invoice_set_id", "status", "amount_cents"),)  # report
    id: int | None = Field(default=None, primary_key=True)
    charge_id: str = Field(unique=True, nullable=False)
    patient_pk: int = Field(foreign_key="patient.id", nullable=False, index=True)
    invoice_set_id: int | None = Field(default=None, foreign_key="invoice_set.id", index=True)
    amount_cents: int = Field(sa_type=BigInteger, nullable=False)
    outstanding_cents: int = Field(sa_type=BigInteger, nullable=False)
    created_at: datetime | None = _ts(nullable=False)
    description: str = ""
    status: str = "outstanding"  # outstanding | paid | written-off | collections | void


class Payment(SQLModel, table=True):
    __tablename__ = "payment"
    id: int | None = Field(default=None, primary_key=True)
    payment_id: str = Field(unique=True, nullable=False)
    patient_pk: int = Field(foreign_key="patient.id", nullable=False, index=True)
    amount_cents: int = Field(sa_type=BigInteger, nullable=False)
    unapplied_cents: int = Field(default=0, sa_type=BigInteger, nullable=False)
    paid_at: datetime | None = _ts(nullable=False)
    charge_ref: str | None = None
    source: str = "import"  # import | card
    created_at: datetime | None = _ts(nullable=False)


class PaymentAllocation(SQLModel, table=True):
    __tablename__ = "payment_allocation"
    id: int | None = Field(default=None, primary_key=True)
    payment_pk: int = Field(foreign_key="payment.id", nullable=False, index=True)
    charge_pk: int = Field(foreign_key="charge.id", nullable=False, index=True)
    amount_cents: int = Field(sa_type=BigInteger, nullable=False)


class Send(SQLModel, table=True):
    """One method of one step of one set: the unit of delivery and of exactly-once accounting."""

    __tablename__ = "send"
    __table_args__ = (
        UniqueConstraint("invoice_set_id", "schedule_gen", "step_index", "method", name="uq_send_step_method"),
        Index("ix_send_status_lease", "status", "lease_until"),
        Index(  # covers the report's counts per step and method
            "ix_send_set_step_method",
            "invoice_set_id",
            "step_day",
            "step_title",
            "method",
            "status",
            "sent_at",
            "finished_at",
            "due_at",
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    invoice_set_id: int = Field(foreign_key="invoice_set.id", nullable=False, index=True)
    patient_pk: int = Field(foreign_key="patient.id", nullable=False, index=True)
    schedule_gen: int = 1
    step_index: int
    step_day: int
    step_title: str
    method: str
    is_fallback: bool = False
    rule_set_version: int = 1
    status: str = "pending"  # pending claimed sent delivered failed skipped cancelled unknown
    due_at: datetime | None = _ts()
    claim_token: str | None = None
    lease_until: datetime | None = _ts()
    attempts: int = 0
    next_attempt_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    local_day: str | None = None  # patient-local date of the send (one per channel per day)
    provider_ref: str | None = Field(default=None, index=True)
    error_code: str | None = None
    reason: str | None = None


class InboundMessage(SQLModel, table=True):
    """Replies already applied (by provider message ID), so reading them again changes nothing."""

    __tablename__ = "inbound_message"
    sid: str = Field(primary_key=True)
    received_at: datetime | None = _ts()
    patient_pk: int | None = Field(default=None, foreign_key="patient.id")


class StripeEvent(SQLModel, table=True):
    """Stripe events already applied (from the event feed or `events ingest`), so an event that
    arrives again changes nothing. `amount_cents` is what it restored (refunds, disputes)."""

    __tablename__ = "stripe_event"
    event_id: str = Field(primary_key=True)
    type: str
    object_id: str | None = Field(default=None, index=True)  # the PaymentIntent
    invoice_set_id: int | None = Field(default=None, foreign_key="invoice_set.id")
    amount_cents: int = Field(default=0, sa_type=BigInteger, nullable=False)
    created: int = 0  # Stripe's own timestamp (the feed's cursor)
    received_at: datetime | None = _ts(nullable=False)


class StripeCheckout(SQLModel, table=True):
    """Stripe Checkout Sessions used as a set's payment link: one per set and balance."""

    __tablename__ = "stripe_checkout"
    session_id: str = Field(primary_key=True)
    invoice_set_id: int = Field(foreign_key="invoice_set.id", nullable=False, index=True)
    amount_cents: int = Field(sa_type=BigInteger, nullable=False)
    url: str = Field(sa_type=Text)
    expires_at: datetime | None = _ts(nullable=False)
    created_at: datetime | None = _ts(nullable=False)
    replaced_at: datetime | None = _ts()


class Event(SQLModel, table=True):
    """Append-only timeline and audit record. Never updated or deleted."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_kind_set", "kind", "invoice_set_id"),)  # the report's opt-outs
    id: int | None = Field(default=None, primary_key=True)
    invoice_set_id: int | None = Field(default=None, foreign_key="invoice_set.id", index=True)
    patient_pk: int | None = Field(default=None, foreign_key="patient.id", index=True)
    at: datetime | None = _ts(nullable=False, index=True)
    kind: str
    actor: str | None = Field(default=None, index=True)
    action: str | None = None
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    detail: str | None = Field(default=None, sa_type=Text)


# Integer, String are re-exported for migrations' convenience.
__all__ = [
    "Charge",
    "Column",
    "Event",
    "ForeignKey",
    "Integer",
    "InvoiceSet",
    "Meta",
    "Patient",
    "Payment",
    "PaymentAllocation",
    "RuleSetRow",
    "RuleSetVersion",
    "Send",
    "String",
    "StripeCheckout",
    "StripeEvent",
    "UTCDateTime",
]

# Core table handles: bulk work uses SQLAlchemy Core on these (set-based, no per-row ORM).
meta_t = Meta.__table__  # type: ignore[attr-defined]
patient_t = Patient.__table__  # type: ignore[attr-defined]
rule_set_t = RuleSetRow.__table__  # type: ignore[attr-defined]
rule_set_version_t = RuleSetVersion.__table__  # type: ignore[attr-defined]
invoice_set_t = InvoiceSet.__table__  # type: ignore[attr-defined]
charge_t = Charge.__table__  # type: ignore[attr-defined]
payment_t = Payment.__table__  # type: ignore[attr-defined]
allocation_t = PaymentAllocation.__table__  # type: ignore[attr-defined]
send_t = Send.__table__  # type: ignore[attr-defined]
event_t = Event.__table__  # type: ignore[attr-defined]
inbound_t = InboundMessage.__table__  # type: ignore[attr-defined]
stripe_event_t = StripeEvent.__table__  # type: ignore[attr-defined]
stripe_checkout_t = StripeCheckout.__table__  # type: ignore[attr-defined]

"""The data model (SPEC section 1) as SQLAlchemy Core tables.

Money is integer cents (BigInteger). Times go through ``UTCDateTime``: aware UTC in Python,
`timestamptz` on PostgreSQL, a sortable UTC text on SQLite, so a value survives a round trip
through either database unchanged. Every `list` filter and sort has an index.

Plain `Table`s (no ORM, no SQLModel/pydantic): all work is set-based SQLAlchemy Core, and read
commands start faster without building model classes. A column's Python ``default`` applies to
inserts that leave it out. Alembic compares `complete_metadata()` (the tables and their indexes)
with the migrations (the drift test).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

from outreach_cli.domain.statuses import IN_PROGRESS, OPEN, ChargeStatus, SendStatus

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


OPEN_STATUSES_SQL = "(" + ",".join(f"'{s.value}'" for s in OPEN) + ")"
IN_PROGRESS_SQL = "status IN (" + ",".join(f"'{s.value}'" for s in IN_PROGRESS) + ")"


metadata = MetaData()

meta_t = Table(
    "meta",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", String, nullable=False),
)

patient_t = Table(
    "patient",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id", String, nullable=False, unique=True),
    Column("first_name", String, nullable=False),
    Column("last_name", String, nullable=False, default=""),
    Column("phone", String, nullable=True),  # E.164
    Column("phone_type", String, nullable=False, default="unknown"),
    Column("email", String, nullable=True),
    Column("address_line1", String, nullable=True),
    Column("address_line2", String, nullable=True),
    Column("city", String, nullable=True),
    Column("state", String, nullable=True),
    Column("postal_code", String, nullable=True),
    Column("country", String, nullable=True),
    Column("address_invalid", Boolean, nullable=False, default=False),
    # Computed once when the phone/email is stored (validation is costly at a million sets);
    # NULL means "not computed": checked on the fly.
    Column("phone_valid", Boolean, nullable=True),
    Column("email_valid", Boolean, nullable=True),
    Column("timezone", String, nullable=True),  # explicit column from the import
    Column("phone_tz", String, nullable=True),  # derived: the phone's zone when it has exactly one
    Column("address_tz", String, nullable=True),  # derived: the ZIP code's zone, else the state's
    Column("sms_opt_out", Boolean, nullable=False, default=False),
    Column("call_opt_out", Boolean, nullable=False, default=False),
    Column("email_opt_out", Boolean, nullable=False, default=False),
    Column("email_suppressed", String, nullable=True),  # bounced | complained
    Column("card_token", String, nullable=True),
    Column("stripe_customer_id", String, nullable=True),  # cus_...: card on file at Stripe (with the payment method)
    Column("stripe_payment_method_id", String, nullable=True),  # pm_...
    # A reply that reads like a refusal but names no opt-out word: a person decides (SPEC 13).
    Column("needs_review", Boolean, nullable=False, default=False, server_default=text("false")),
    Column("search_name", String, nullable=False, default=""),  # lower("first last") for --search
    # Folded names both ways, email, phone digits (core/searchtext.py): what --search matches.
    Column("search_text", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

rule_set_t = Table(
    "rule_set",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("title", String, nullable=False),
    Column("description", String, nullable=False, default=""),
    Column("current_version", Integer, nullable=False, default=1),
    Column("synced_at", UTCDateTime(), nullable=False),
)

rule_set_version_t = Table(
    "rule_set_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rule_set_id", Integer, ForeignKey("rule_set.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String, nullable=False),
    Column("source_text", Text, nullable=False),
    Column("parsed_json", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("rule_set_id", "version"),
)

invoice_set_t = Table(
    "invoice_set",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_pk", Integer, ForeignKey("patient.id"), nullable=False),
    Column("rule_set_id", Integer, ForeignKey("rule_set.id"), nullable=False),
    Column("status", String, nullable=False),
    Column("status_reason", String, nullable=True),
    # The open conditions behind the shown status (SPEC section 2: paused > expired > failed >
    # will-fail > active). `status` is derived from these plus the terminal statuses.
    Column("failed_reason", String, nullable=True),
    Column("will_fail_reason", String, nullable=True),
    Column("expired_at", UTCDateTime(), nullable=True),
    Column("amount_outstanding_cents", BigInteger, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("anchor_at", UTCDateTime(), nullable=False),
    Column("paused_at", UTCDateTime(), nullable=True),
    Column("next_send_at", UTCDateTime(), nullable=True),
    Column("next_step_index", Integer, nullable=True),
    Column("next_step", String, nullable=True),
    Column("next_methods", String, nullable=True),  # comma-separated
    Column("schedule_gen", Integer, nullable=False, default=1),
    # A step whose outcome changed after the run (a status callback, a reconciliation): the next
    # run re-decides it (fallbacks, failed).
    Column("recheck_step", Integer, nullable=True),
    # Why the next send waits past its due moment when a contact cap held it (`cap:NAME`), and
    # until when; the forecast and `show` report it (README "Compliance").
    Column("held_by", String, nullable=True),
    Column("held_until", UTCDateTime(), nullable=True),
    Column("exported_at", UTCDateTime(), nullable=True),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    # A/B test: the weighted rule-set spec the set was created under and the arm it drew.
    Column("experiment", String, nullable=True),
    Column("arm", String, nullable=True),
    # What the set's charges owe (void ones excluded): kept by triggers on charge (migration 0011).
    Column("owed_cents", BigInteger, nullable=False, server_default=text("0")),
)

charge_t = Table(
    "charge",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("charge_id", String, nullable=False, unique=True),
    Column("patient_pk", Integer, ForeignKey("patient.id"), nullable=False),
    Column("invoice_set_id", Integer, ForeignKey("invoice_set.id"), nullable=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("outstanding_cents", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("description", String, nullable=False, default=""),
    # outstanding | paid | written-off | collections | void
    Column("status", String, nullable=False, default=ChargeStatus.OUTSTANDING.value),
)

payment_t = Table(
    "payment",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("payment_id", String, nullable=False, unique=True),
    Column("patient_pk", Integer, ForeignKey("patient.id"), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("unapplied_cents", BigInteger, nullable=False, default=0),
    Column("paid_at", UTCDateTime(), nullable=False),
    Column("charge_ref", String, nullable=True),
    Column("source", String, nullable=False, default="import"),  # import | card
    Column("created_at", UTCDateTime(), nullable=False),
)

allocation_t = Table(
    "payment_allocation",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("payment_pk", Integer, ForeignKey("payment.id"), nullable=False),
    Column("charge_pk", Integer, ForeignKey("charge.id"), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
)

# One method of one step of one set: the unit of delivery and of exactly-once accounting.
send_t = Table(
    "send",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invoice_set_id", Integer, ForeignKey("invoice_set.id"), nullable=False),
    Column("patient_pk", Integer, ForeignKey("patient.id"), nullable=False),
    Column("schedule_gen", Integer, nullable=False, default=1),
    Column("step_index", Integer, nullable=False),
    Column("step_day", Integer, nullable=False),
    Column("step_title", String, nullable=False),
    Column("method", String, nullable=False),
    Column("is_fallback", Boolean, nullable=False, default=False),
    Column("rule_set_version", Integer, nullable=False, default=1),
    Column(
        "status", String, nullable=False, default=SendStatus.PENDING.value
    ),  # pending claimed sent delivered failed skipped cancelled unknown
    Column("due_at", UTCDateTime(), nullable=True),
    Column("claim_token", String, nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("local_day", String, nullable=True),  # patient-local date of the send (one per channel per day)
    Column("provider_ref", String, nullable=True),
    Column("error_code", String, nullable=True),
    Column("reason", String, nullable=True),
    # The set's rule set, creation time and owed, kept equal to the set's by triggers (migration
    # 0018): the report counts sends and sets per step from send alone.
    Column("set_rule_set_id", Integer, nullable=True),
    Column("set_created_at", UTCDateTime(), nullable=True),
    Column("set_owed_cents", BigInteger, nullable=True),
    UniqueConstraint("invoice_set_id", "schedule_gen", "step_index", "method", name="uq_send_step_method"),
)

# The report's last-touch attribution kept at write time (migration 0020; store/attribution.py):
# per (set, payment) the summed allocations and the set's last delivered send at or before it;
# per set its outcome; the sets whose rows triggers marked for recomputing.
payment_touch_t = Table(
    "payment_touch",
    metadata,
    Column("set_id", Integer, primary_key=True),
    Column("pay_id", String, primary_key=True),
    Column("paid_at", UTCDateTime(), nullable=False),
    Column("cents", BigInteger, nullable=False),
    Column("touch_age_us", BigInteger, nullable=True),  # the payment's time less the send's
    Column("t_day", Integer, nullable=True),
    Column("t_title", String, nullable=True),
    Column("t_method", String, nullable=True),
    Column("rule_set_id", Integer, nullable=False),  # the set's
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String, nullable=False),
    Column("refunded", Integer, nullable=False),  # the set's: any payment of it a refund
    Column("last_paid_at", UTCDateTime(), nullable=False),  # the set's latest payment
)

set_paid_t = Table(
    "set_paid",
    metadata,
    Column("set_id", Integer, primary_key=True),
    Column("last_paid_at", UTCDateTime(), nullable=False),
    Column("refunded", Integer, nullable=False),
    Column("collected", BigInteger, nullable=False),
    Column("full_at", UTCDateTime(), nullable=True),  # the payment that completed the owed
    Column("days_us", BigInteger, nullable=True),  # full_at less the set's creation
    Column("key_age_us", BigInteger, nullable=True),  # the credited payment's touch's age
    Column("key_day", Integer, nullable=True),
    Column("key_title", String, nullable=True),
    Column("key_method", String, nullable=True),
    Column("f_day", Integer, nullable=True),  # the funnel: the last step reached by full_at
    Column("f_title", String, nullable=True),
    Column("rule_set_id", Integer, nullable=False),  # the set's
    Column("created_at", UTCDateTime(), nullable=False),
    Column("status", String, nullable=False),
    Column("experiment", String, nullable=True),
    Column("arm", String, nullable=True),
)

report_stale_t = Table("report_stale", metadata, Column("set_id", Integer, primary_key=True))

# The report's reach kept at write time (migration 0021; store/reach.py): per set and step it
# reached, the earliest time it did (NULL: a send with no time at all, which always counts) and
# whether that step is the set's first reached; with the set's facts the report filters and groups
# by. `reach_stale` holds the sets whose rows triggers marked for recomputing.
step_reach_t = Table(
    "step_reach",
    metadata,
    Column("set_id", Integer, primary_key=True),
    Column("step_day", Integer, primary_key=True),
    Column("step_title", String, primary_key=True),
    Column("first_at", UTCDateTime(), nullable=True),
    Column("set_first", Integer, nullable=False),  # 1 on one row per set: its earliest step reached
    Column("rule_set_id", Integer, nullable=False),  # the set's
    Column("created_at", UTCDateTime(), nullable=False),
    Column("owed_cents", BigInteger, nullable=False),
)

reach_stale_t = Table("reach_stale", metadata, Column("set_id", Integer, primary_key=True))


# `metrics`' counts and amounts per status and day of creation, kept by triggers (migration 0022,
# store/tally.py); on PostgreSQL each writing statement appends to the delta, folded in later.
def _tally_columns(*, keyed: bool) -> list[Column[Any]]:
    return [
        Column("status", String, primary_key=keyed, nullable=False),
        Column("day", Date, primary_key=keyed, nullable=False),  # of creation, UTC
        Column("sets", BigInteger, nullable=False),
        Column("cents", BigInteger, nullable=False),  # outstanding
    ]


set_tally_t = Table("set_tally", metadata, *_tally_columns(keyed=True))
set_tally_delta_t = Table("set_tally_delta", metadata, *_tally_columns(keyed=False))

# Replies already applied (by provider message ID), so reading them again changes nothing.
inbound_t = Table(
    "inbound_message",
    metadata,
    Column("sid", String, primary_key=True),
    Column("received_at", UTCDateTime(), nullable=True),
    Column("patient_pk", Integer, ForeignKey("patient.id"), nullable=True),
)

# Stripe events already applied (from the event feed or `events ingest`), so an event that
# arrives again changes nothing. `amount_cents` is what it restored (refunds, disputes).
stripe_event_t = Table(
    "stripe_event",
    metadata,
    Column("event_id", String, primary_key=True),
    Column("type", String, nullable=False),
    Column("object_id", String, nullable=True),  # the PaymentIntent
    Column("invoice_set_id", Integer, ForeignKey("invoice_set.id"), nullable=True),
    Column("amount_cents", BigInteger, nullable=False, default=0),
    Column("created", Integer, nullable=False, default=0),  # Stripe's own timestamp (the feed's cursor)
    Column("received_at", UTCDateTime(), nullable=False),
)

# Stripe Checkout Sessions used as a set's payment link: one per set and balance.
stripe_checkout_t = Table(
    "stripe_checkout",
    metadata,
    Column("session_id", String, primary_key=True),
    Column("invoice_set_id", Integer, ForeignKey("invoice_set.id"), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("url", Text, nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("replaced_at", UTCDateTime(), nullable=True),
)

# Append-only timeline and audit record. Never updated or deleted.
event_t = Table(
    "event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("invoice_set_id", Integer, ForeignKey("invoice_set.id"), nullable=True),
    Column("patient_pk", Integer, ForeignKey("patient.id"), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String, nullable=False),
    Column("actor", String, nullable=True),
    Column("action", String, nullable=True),
    Column("from_status", String, nullable=True),
    Column("to_status", String, nullable=True),
    Column("reason", String, nullable=True),
    Column("detail", Text, nullable=True),
)


# The indexes (SPEC section 10: every `list` filter and sort has one). Declared apart from the
# tables and built on first use by `complete_metadata()`: the queries never name an index, and
# building ~40 `Index` objects (each validating its dialect options) cost every read command's
# start. Alembic (db/env.py) and the drift test compare `complete_metadata()` with the database.
INDEXES: tuple[tuple[Table, str, tuple[str, ...]], ...] = (
    (patient_t, "ix_patient_phone", ("phone",)),
    (patient_t, "ix_patient_email", ("email",)),
    (patient_t, "ix_patient_search_name", ("search_name",)),
    (invoice_set_t, "ix_invoice_set_patient_pk", ("patient_pk",)),
    (invoice_set_t, "ix_invoice_set_amount_outstanding_cents", ("amount_outstanding_cents",)),
    (invoice_set_t, "ix_invoice_set_created_at", ("created_at",)),
    (invoice_set_t, "ix_invoice_set_next_send_at", ("next_send_at",)),
    (invoice_set_t, "ix_invoice_set_status_next", ("status", "next_send_at")),
    (invoice_set_t, "ix_invoice_set_status_amount", ("status", "amount_outstanding_cents")),
    # covers aging
    (invoice_set_t, "ix_invoice_set_status_created", ("status", "created_at", "amount_outstanding_cents")),
    (invoice_set_t, "ix_invoice_set_status_rule_set", ("status", "rule_set_id")),
    (invoice_set_t, "ix_invoice_set_report", ("rule_set_id", "created_at", "status", "owed_cents")),  # covers report
    (charge_t, "ix_charge_patient_pk", ("patient_pk",)),
    (charge_t, "ix_charge_invoice_set_id", ("invoice_set_id",)),
    (charge_t, "ix_charge_status_amount", ("status", "amount_cents")),  # metrics --all: written off
    (charge_t, "ix_charge_set_status_amount", ("invoice_set_id", "status", "amount_cents")),  # report
    (payment_t, "ix_payment_patient_pk", ("patient_pk",)),
    # credit totals (metrics --all)
    (payment_t, "ix_payment_unapplied_patient", ("unapplied_cents", "patient_pk")),
    (allocation_t, "ix_payment_allocation_payment_pk", ("payment_pk",)),
    (allocation_t, "ix_payment_allocation_charge_pk", ("charge_pk",)),
    (send_t, "ix_send_invoice_set_id", ("invoice_set_id",)),
    (send_t, "ix_send_patient_pk", ("patient_pk",)),
    (send_t, "ix_send_provider_ref", ("provider_ref",)),
    (send_t, "ix_send_status_lease", ("status", "lease_until")),
    (  # covers the report's counts per step and method
        send_t,
        "ix_send_set_step_method",
        (
            "invoice_set_id",
            "step_day",
            "step_title",
            "method",
            "status",
            "sent_at",
            "finished_at",
            "due_at",
            "step_index",
        ),
    ),
    (  # the report's messages per rule set, step and method (migration 0018)
        send_t,
        "ix_send_report_messages",
        (
            *("set_rule_set_id", "step_day", "step_title", "method", "status"),
            *("step_index", "set_created_at", "sent_at", "finished_at", "due_at"),
        ),
    ),
    (  # the report's sets per rule set and step, each once, with its owed (migration 0018)
        send_t,
        "ix_send_report_reached",
        (
            *("set_rule_set_id", "step_day", "step_title", "invoice_set_id", "set_owed_cents", "status"),
            *("step_index", "set_created_at", "sent_at", "finished_at", "due_at"),
        ),
    ),
    (set_paid_t, "ix_set_paid_last", ("last_paid_at",)),  # the sets paid on or after --until
    (  # the report's sets per rule set and step, with their owed, each once at its first
        step_reach_t,
        "ix_step_reach_report",
        ("rule_set_id", "step_day", "step_title", "created_at", "owed_cents", "first_at", "set_first"),
    ),
    (stripe_event_t, "ix_stripe_event_object_id", ("object_id",)),
    (stripe_checkout_t, "ix_stripe_checkout_invoice_set_id", ("invoice_set_id",)),
    (event_t, "ix_event_invoice_set_id", ("invoice_set_id",)),
    (event_t, "ix_event_patient_pk", ("patient_pk",)),
    (event_t, "ix_event_at", ("at",)),
    (event_t, "ix_event_actor", ("actor",)),
    (event_t, "ix_event_kind_set", ("kind", "invoice_set_id")),  # the report's opt-outs
)


def complete_metadata() -> MetaData:
    """``metadata`` with its indexes (``INDEXES``, and a patient's at most one in-progress set, a
    partial unique index on both databases), built on the first call; what Alembic compares.

    Its PostgreSQL option imports SQLAlchemy's PostgreSQL dialect, which an SQLite read would pay
    for too: another reason the indexes are not built with the tables.
    """
    if not any(ix.name == "uq_invoice_set_in_progress" for ix in invoice_set_t.indexes):
        for table, name, columns in INDEXES:
            Index(name, *(table.c[c] for c in columns))
        Index(
            "uq_invoice_set_in_progress",
            invoice_set_t.c.patient_pk,
            unique=True,
            sqlite_where=text(IN_PROGRESS_SQL),
            postgresql_where=text(IN_PROGRESS_SQL),
        )
    return metadata


# Made by migration 0009 outside these models (SQLAlchemy cannot declare them): the FTS5 search
# table and its shadow tables (SQLite), the trigram and lower(patient_id) indexes. Alembic's
# comparison with the models skips them (db/env.py, the drift test).
DATABASE_ONLY = frozenset(
    {
        "patient_search",
        "patient_search_data",
        "patient_search_idx",
        "patient_search_docsize",
        "patient_search_config",
        "ix_patient_search_text_trgm",
        "ix_patient_patient_id_lower",
        "ix_send_delivered_at",  # partial, on an expression: the report's attribution (0018)
    }
)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic `include_name` hook: leave out what migrations make outside the models."""
    return name not in DATABASE_ONLY

"""The rows `list`, `show` and `audit` hand to the CLI, as the JSON they print (SPEC section 7).

TypedDicts: plain dicts at runtime (the list streams a million of them, and JSON writes them as
they are), while mypy rejects a misspelt key where they are built and read."""

from __future__ import annotations

from typing import Any, TypedDict


class SetListRow(TypedDict):
    """One row of `list` (the columns of ``queries.LIST_COLUMNS``)."""

    id: int
    status: str
    amount_outstanding: str
    amount_outstanding_cents: int
    patient_id: str
    patient_name: str
    phone: str | None
    email: str | None
    rule_set: str
    created_at: str | None
    next_send_at: str | None
    next_step: str | None
    next_methods: list[str]
    status_reason: str | None
    payment_url: str | None
    needs_review: bool


class Address(TypedDict):
    address_line1: str | None
    address_line2: str | None
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None


class ZoneSource(TypedDict):
    zone: str
    source: str


class MethodUse(TypedDict):
    usable: bool
    reason: str | None


class PatientView(TypedDict):
    """The patient of `show`."""

    patient_id: str
    first_name: str
    last_name: str
    phone: str | None
    phone_type: str
    email: str | None
    address: Address
    timezone: str
    timezones: list[str]
    timezone_sources: list[ZoneSource]
    needs_review: bool
    sms_opt_out: bool
    call_opt_out: bool
    email_opt_out: bool
    email_suppressed: bool
    email_suppression: str | None
    card_on_file: bool
    usable_methods: dict[str, MethodUse]


class ChargeView(TypedDict):
    charge_id: str
    amount_cents: int
    outstanding_cents: int
    status: str
    created_at: str | None
    description: str | None


class ScheduleRow(TypedDict, total=False):
    """A send of the set's schedule: one that exists, or (with ``send_at`` and ``held_by``) one
    still to come."""

    step: str
    day: int
    method: str
    status: str
    due_at: str | None
    send_at: str | None  # planned rows only
    held_by: str | None  # planned rows only
    sent_at: str | None
    reason: str | None
    provider_ref: str | None
    fallback: bool
    generation: int
    attempts: int
    next_attempt_at: str | None


class TimelineEvent(TypedDict):
    at: str | None
    kind: str
    actor: str | None
    action: str | None
    from_status: str | None
    to_status: str | None
    reason: str | None
    detail: Any  # the event's JSON detail, as stored


class AuditRow(TimelineEvent):
    """One row of `audit`: the event with its set (``id``, first, as in `list`) and its own ID."""

    id: int | None
    event_id: int


class SetView(TypedDict):
    """The document `show` prints."""

    id: int
    status: str
    status_reason: str | None
    amount_outstanding_cents: int
    amount_outstanding: str
    rule_set: str
    payment_url: str | None
    credit_cents: int
    credit: str
    created_at: str | None
    anchor_at: str | None
    next_send_at: str | None
    next_step: str | None
    patient: PatientView
    charges: list[ChargeView]
    schedule: list[ScheduleRow]
    timeline: list[TimelineEvent]

"""The validated import records: one file row after its checks, before it is staged.

TypedDicts rather than dataclasses: at runtime each is the plain dict the validators build (no
object per row on the million-row staging stream), while mypy rejects a misspelt key. The staged
rows themselves stay plain tuples (``staged_row`` in each import module)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict


class PatientRecord(TypedDict, total=False):
    """A patients row: the columns of ``importer.PATIENT_COLUMNS``, normalised, and which of them
    the file has (a column missing from the file keeps the patient's value)."""

    _cols: set[str]
    patient_id: str
    first_name: str
    last_name: str
    phone: str | None  # E.164
    phone_valid: bool | None  # from the parse that read the phone
    phone_tz: str | None
    phone_type: str | None
    email: str | None
    address_line1: str | None
    address_line2: str | None
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None
    timezone: str | None
    sms_opt_out: bool | None  # None: the cell is empty
    call_opt_out: bool | None
    email_opt_out: bool | None
    card_token: str | None
    stripe_customer_id: str | None
    stripe_payment_method_id: str | None


class ChargeRecord(TypedDict):
    charge_id: str
    patient_id: str
    amount_cents: int
    created_at: datetime | None  # None: the import's time
    description: str


class PaymentRecord(TypedDict):
    payment_id: str
    patient_id: str
    amount_cents: int
    paid_at: datetime
    charge_id: str | None

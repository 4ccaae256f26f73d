"""A payment on its way into the ledger (`store.ledger.apply_payments`), from any door: a
payments import, a Stripe event, a card charged by a step."""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict


class NewPayment(TypedDict):
    payment_id: str
    patient_pk: int
    amount_cents: int
    paid_at: datetime
    charge_ref: NotRequired[str | None]  # the charge the payer named: paid first
    source: NotRequired[str]  # "import" (the default), "stripe", "card"

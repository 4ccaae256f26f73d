"""The channel interface: one small adapter per provider.

``send`` turns one message into a ``ProviderOutcome`` classified as delivered, sent (accepted, final
status later), permanent failure, transient failure, or unknown (may have gone out; never
blindly re-sent). Adapters never log message bodies or full contact data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypedDict, runtime_checkable


class ProviderResult(StrEnum):
    """How a provider classifies one attempt."""

    DELIVERED = "delivered"
    SENT = "sent"  # accepted; the final status comes later
    FAILED = "failed"  # permanent
    TRANSIENT = "transient"  # safe to try again
    UNKNOWN = "unknown"  # may have gone out: looked up, never blindly re-sent
    NOT_STARTED = "not-started"  # the engine never made the call (interrupted or stopped)


DELIVERED = ProviderResult.DELIVERED
SENT = ProviderResult.SENT
FAILED = ProviderResult.FAILED
TRANSIENT = ProviderResult.TRANSIENT
UNKNOWN = ProviderResult.UNKNOWN


class InboundSms(TypedDict):
    """One text a patient sent to the practice number."""

    message_sid: str | None  # the provider's message SID: a reply seen twice is applied once
    from_number: str  # E.164
    body: str
    received_at: datetime | None


@dataclass
class Message:
    send_id: int
    set_id: int
    method: str
    step_title: str
    body: str
    payment_url: str
    phone: str | None = None
    email: str | None = None
    first_name: str = ""
    last_name: str = ""
    address: dict[str, str | None] = field(default_factory=dict)
    card_token: str | None = None
    balance_cents: int = 0
    practice_name: str = ""
    practice_phone: str = ""
    claim_token: str = ""
    attempted_at: datetime | None = None  # when an earlier attempt was made (lookups)
    # Letters (outbox): the tool's clock and the practice zone date the letter; a letter has its
    # own template (the step's mail message), rendered with ``values`` at send time.
    now: datetime | None = None
    practice_tz: str = "UTC"
    letter_template: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    # Stripe card on file (charge_card): the charge is bounded by the step's max_balance.
    stripe_customer_id: str | None = None
    stripe_payment_method_id: str | None = None
    schedule_gen: int = 0
    max_charge_cents: int | None = None


@dataclass
class ProviderOutcome:
    status: ProviderResult
    provider_ref: str | None = None
    error_code: str | None = None
    reason: str | None = None
    # Facts learned about the patient: phone_type="landline", sms_opt_out=True, email_suppressed="bounced"
    patient_update: dict[str, str | bool] = field(default_factory=dict)
    charged_cents: int = 0  # charge_card: the amount collected


class ProviderConfigError(Exception):
    """Authentication/account problems: the run stops (exit 4) and sends nothing more."""


class Provider(Protocol):
    name: str

    def send(self, msg: Message) -> ProviderOutcome: ...

    def lookup(self, provider_ref: str | None, msg: Message) -> ProviderOutcome | None:
        """The final outcome of an earlier send, or None if it cannot be known yet."""
        ...


@runtime_checkable
class StatusSource(Protocol):
    """A provider that can fetch the final status of a message it accepted (reconciliation)."""

    def fetch(self, provider_ref: str) -> ProviderOutcome: ...


@runtime_checkable
class InboundSource(Protocol):
    """A provider that can list the replies sent to our number (opt-outs by reply)."""

    from_number: str | None

    def inbound(self, to_number: str, since: datetime | None) -> list[InboundSms]: ...


# What the sandbox puts where the practice's name and phone go when none are configured: clearly
# not a real practice (555-01xx numbers are reserved for fiction). Real providers refuse instead.
SANDBOX_PRACTICE_NAME = "Example Practice"
SANDBOX_PRACTICE_PHONE = "+15555550100"


def _identity_faults(name: str | None, phone: str | None) -> dict[str, str]:
    """The practice settings that cannot name the practice, each with what is wrong with it."""
    faults: dict[str, str] = {}
    if not (name or "").strip():
        faults["practice_name"] = "practice_name is not set"
    if not (phone or "").strip():
        faults["practice_phone"] = "practice_phone is not set"
    else:
        import phonenumbers

        try:
            ok = phonenumbers.is_valid_number(phonenumbers.parse(str(phone), "US"))
        except phonenumbers.NumberParseException:
            ok = False
        if not ok:
            faults["practice_phone"] = f"practice_phone {phone!r} is not a valid phone number"
    return faults


def practice_identity_problem(name: str | None, phone: str | None) -> str | None:
    """Why messages and letters cannot name the practice (unset name, unset or invalid phone), or
    None when both settings are usable."""
    return "; ".join(_identity_faults(name, phone).values()) or None


def practice_identity_fix(name: str | None, phone: str | None) -> tuple[str, str]:
    """What to set for `practice_identity_problem`'s problem: (the advice, the environment
    variables), naming only the settings at fault."""
    keys = list(_identity_faults(name, phone))
    env = " / ".join(f"OUTREACH_{k.upper()}" for k in keys)
    if keys == ["practice_phone"] and (phone or "").strip():  # set, but not a number
        return "set practice_phone to a number patients can call (e.g. +16175550123)", env
    return f"set {' and '.join(keys)}", env

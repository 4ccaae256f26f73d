"""The sandbox providers (SPEC section 5): no network, no credentials, deterministic."""

from __future__ import annotations

import hashlib

from outreach_cli.core.channels.base import DELIVERED, FAILED, TRANSIENT, Message, ProviderOutcome

INVALID = "+15005550001"
LANDLINE = "+15005550009"
OPTED_OUT = "+15005550004"
UNAVAILABLE = "+15005550008"


def _ref(prefix: str, msg: Message) -> str:
    return prefix + hashlib.sha256(f"{msg.send_id}:{msg.claim_token}".encode()).hexdigest()[:30]


class SandboxProvider:
    name = "sandbox"

    def __init__(self, method: str) -> None:
        self.method = method

    def send(self, msg: Message) -> ProviderOutcome:
        m = self.method
        if m in ("sms", "call"):
            phone = msg.phone or ""
            ref = _ref("SM" if m == "sms" else "CA", msg)
            if phone == INVALID:
                return ProviderOutcome(FAILED, ref, "21211", "invalid phone number")
            if phone == UNAVAILABLE:
                return ProviderOutcome(TRANSIENT, None, "503", "provider unavailable")
            if m == "sms" and phone == LANDLINE:
                return ProviderOutcome(
                    FAILED, ref, "21614", "not a mobile number (landline)", {"phone_type": "landline"}
                )
            if m == "sms" and phone == OPTED_OUT:
                return ProviderOutcome(FAILED, ref, "21610", "recipient opted out of SMS", {"sms_opt_out": True})
            return ProviderOutcome(DELIVERED, ref)
        if m == "email":
            email = (msg.email or "").lower()
            if email.endswith(".invalid"):
                return ProviderOutcome(FAILED, _ref("EM", msg), "550", "email bounced", {"email_suppressed": "bounced"})
            return ProviderOutcome(DELIVERED, _ref("EM", msg))
        if m == "mail":
            return ProviderOutcome(DELIVERED, _ref("LT", msg))
        if m == "charge_card":
            if msg.card_token == "tok_chargeDeclined":
                return ProviderOutcome(FAILED, _ref("ch_", msg), "card_declined", "card declined")
            return ProviderOutcome(DELIVERED, _ref("ch_", msg), charged_cents=msg.balance_cents)
        return ProviderOutcome(FAILED, None, None, f"no sandbox for method {m}")

    def lookup(self, provider_ref: str | None, msg: Message) -> ProviderOutcome | None:
        # Deterministic: what the sandbox would have done is what it did.
        out = self.send(msg)
        return None if out.status == TRANSIENT else out

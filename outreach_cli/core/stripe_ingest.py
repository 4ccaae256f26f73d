"""Stripe events in `outreach events ingest` (webhook deliveries saved by any receiver).

Two line shapes:
- the event object itself, as Stripe sends it: `{"id": "evt_...", "object": "event", "type": ...,
  "data": {"object": {...}}}`;
- a signed delivery: `{"stripe_signature": "<the Stripe-Signature header>", "payload": "<the raw
  request body, unchanged>"}`.

When `STRIPE_WEBHOOK_SECRET` is set, only signed deliveries are accepted and each signature is
verified through the SDK (a bare event or a bad signature is an error for that line). The
signature's timestamp is not held to Stripe's 5-minute tolerance: saved deliveries are ingested
later by design, and a replayed event changes nothing (each event applies once).
"""

from __future__ import annotations

import json
from typing import Any

from outreach_cli.core.stripe_payments import validate_event


def is_stripe_line(obj: dict[str, Any]) -> bool:
    return obj.get("object") == "event" or "stripe_signature" in obj


def parse_stripe_line(
    n: int, obj: dict[str, Any], out: list[dict[str, Any]], problems: list[str], secret: str | None
) -> None:
    """``secret``: STRIPE_WEBHOOK_SECRET (``Settings.stripe.webhook_secret``); when set, events
    must come signed."""
    if "stripe_signature" in obj:
        payload, sig = obj.get("payload"), obj.get("stripe_signature")
        if not isinstance(payload, str) or not isinstance(sig, str) or not payload or not sig:
            problems.append(f"line {n}: payload: a signed Stripe delivery needs the raw body as a string")
            return
        if secret:
            import stripe

            try:
                stripe.WebhookSignature.verify_header(payload, sig, secret, tolerance=None)
            except stripe.SignatureVerificationError:
                problems.append(
                    f"line {n}: stripe_signature: does not match the payload under STRIPE_WEBHOOK_SECRET "
                    "(was the body changed, or is this another endpoint's secret?)"
                )
                return
        try:
            ev = json.loads(payload)
        except ValueError:
            problems.append(f"line {n}: payload: not JSON")
            return
        if not isinstance(ev, dict) or ev.get("object") != "event":
            problems.append(f"line {n}: payload: not a Stripe event object")
            return
    else:
        if secret:
            problems.append(
                f"line {n}: stripe_signature: STRIPE_WEBHOOK_SECRET is set, so Stripe events must come as "
                '{"stripe_signature": ..., "payload": "<raw body>"} to be verified'
            )
            return
        ev = obj
    problem = validate_event(ev)
    if problem:
        problems.append(f"line {n}: {problem}")
        return
    out.append(ev)

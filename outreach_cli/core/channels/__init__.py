"""Channel providers. ``build_providers`` picks one per method from the configuration."""

from __future__ import annotations

from typing import Any

from outreach_cli.core.channels.base import Provider


def build_providers(channels: dict[str, Any]) -> dict[str, Provider]:
    from outreach_cli.core.channels.sandbox import SandboxProvider

    out: dict[str, Provider] = {}
    for method in ("sms", "call", "email", "mail", "charge_card"):
        kind = channels.get(method, "sandbox")
        if kind == "sandbox":
            out[method] = SandboxProvider(method)
        elif kind == "outbox":
            from outreach_cli.core.channels.outbox import OutboxProvider

            out[method] = OutboxProvider(str(channels.get("mail_outbox", "mail-outbox")))
        elif kind == "twilio":
            from outreach_cli.core.channels.twilio_provider import TwilioProvider

            out[method] = TwilioProvider.from_env(method)
        elif kind == "smtp":
            from outreach_cli.core.channels.smtp import SmtpProvider

            out[method] = SmtpProvider.from_env()
        elif kind == "stripe":
            from outreach_cli.core.channels.stripe_provider import StripeProvider

            out[method] = StripeProvider.from_env()
        else:
            raise ValueError(f"unknown provider {kind!r} for {method}")
    return out

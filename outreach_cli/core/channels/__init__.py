"""Channel providers. ``build_providers`` picks one per method from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach_cli.core.channels.base import Provider, ProviderConfigError
from outreach_cli.core.timeutil import Clock, utcnow

if TYPE_CHECKING:
    from outreach_cli.config import Settings

METHODS = ("sms", "call", "email", "mail", "charge_card")


def build_providers(settings: Settings, clock: Clock = utcnow) -> dict[str, Provider]:
    """One provider per method. Raises ProviderConfigError with the same problems `doctor`
    reports (``Settings.provider_problems``), so doctor cannot pass what this refuses."""
    return {method: _provider(settings, method, clock) for method in METHODS}


def _provider(settings: Settings, method: str, clock: Clock) -> Provider:
    kind = settings.channels.provider(method)
    if kind == "sandbox":
        from outreach_cli.core.channels.sandbox import SandboxProvider

        return SandboxProvider(method)
    if kind == "outbox":
        from outreach_cli.core.channels.outbox import OutboxProvider

        return OutboxProvider(settings.channels.mail_outbox, clock)
    if kind == "twilio":
        from outreach_cli.core.channels.twilio_provider import TwilioProvider

        return TwilioProvider.from_settings(settings.twilio, method, clock)
    if kind == "smtp":
        from outreach_cli.core.channels.smtp import SmtpProvider

        return SmtpProvider.from_settings(settings.smtp, clock)
    if kind == "stripe":
        from outreach_cli.core.channels.stripe_provider import StripeProvider

        return StripeProvider.from_settings(settings.stripe)
    raise ProviderConfigError(f"unknown provider {kind!r} for {method}")

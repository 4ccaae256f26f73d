"""Stripe in a tick: the event feed (payments, refunds, disputes made at Stripe) and payment
links (each message's {url} is the set's Checkout Session for the balance now)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from outreach_cli.channels.base import TRANSIENT, Provider, ProviderConfigError, ProviderOutcome
from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import ConfigError
from outreach_cli.outreach.messages import rerender
from outreach_cli.outreach.state import ClaimedSend

if TYPE_CHECKING:
    from outreach_cli.outreach.context import TickContext
    from outreach_cli.store.database import Store

log = logging.getLogger("outreach.engine")


@dataclass(frozen=True)
class StripeHooks:
    api: Any = None  # set when Stripe charges cards or serves payment links
    links: Any = None

    @classmethod
    def from_settings(cls, ctx: Context, providers: dict[str, Provider]) -> StripeHooks:
        from outreach_cli.outreach.stripe_payments import stripe_settings

        charges, links = stripe_settings(ctx)
        if not (charges or links):
            return cls()
        from outreach_cli.channels.stripe_provider import StripeApi, StripeLinks

        card = providers.get("charge_card")
        try:
            api = getattr(card, "api", None) or StripeApi.from_settings(ctx.extra["settings"].stripe)
        except ProviderConfigError as exc:
            raise ConfigError(str(exc)) from None
        if not links:
            return cls(api)
        success = str(ctx.extra["settings"].values["payments"]["success_url"])
        return cls(api, StripeLinks(api, success))

    def wants_link(self, c: ClaimedSend) -> bool:
        return self.links is not None and c.method != "charge_card"


def _store(t: TickContext) -> Store:
    # The Stripe ledger reads and writes through read()/write() only, which the dry run's one
    # rolled-back transaction provides as well.
    return cast("Store", t.store)


def sync_stripe_events(t: TickContext) -> None:
    """Payments, refunds and disputes made at Stripe since the last tick (the event feed)."""
    if t.stripe.api is None:
        return
    from outreach_cli.outreach.stripe_payments import sync_events

    report = sync_events(_store(t), t.ctx, t.stripe.api)
    t.state.summary.reconciled += report.applied
    t.state.summary.paid += report.paid


def attach_payment_link(t: TickContext, c: ClaimedSend) -> ProviderOutcome | None:
    """Puts the set's Checkout Session into the message; a transient failure when Stripe cannot
    create it (the send waits for a retry)."""
    from outreach_cli.outreach.stripe_payments import checkout_link

    try:
        url = checkout_link(_store(t), t.ctx, t.stripe.links, c.set_id, c.msg.balance_cents, c.msg.stripe_customer_id)
    except ProviderConfigError:
        raise
    except Exception as exc:
        log.info("payment link for set %s failed: %s", c.set_id, type(exc).__name__)
        return ProviderOutcome(TRANSIENT, None, "payment_link", "the Stripe payment link could not be created")
    rerender(c, url=url)
    return None

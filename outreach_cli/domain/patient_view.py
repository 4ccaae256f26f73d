"""A patient row seen as the pure core sees it: contact data, zones, sending window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from outreach_cli.domain.scheduling import Window

if TYPE_CHECKING:  # phonenumbers (under contacts) is slow to import; read commands do not need it
    from outreach_cli.domain.contacts import Contact
from outreach_cli.domain.context import Context


def contact_of(p: Any) -> Contact:
    from outreach_cli.domain.contacts import Contact

    return Contact(
        phone=p.phone,
        phone_type=p.phone_type,
        email=p.email,
        address_line1=p.address_line1,
        city=p.city,
        state=p.state,
        postal_code=p.postal_code,
        address_invalid=bool(p.address_invalid),
        sms_opt_out=bool(p.sms_opt_out),
        call_opt_out=bool(p.call_opt_out),
        email_opt_out=bool(p.email_opt_out),
        email_suppressed=p.email_suppressed,
        card_token=p.card_token,
        stripe_card=bool(p.stripe_customer_id and p.stripe_payment_method_id),
        phone_valid=p.phone_valid,
        email_valid=p.email_valid,
    )


def zones_of(p: Any, practice_tz: str) -> tuple[str, ...]:
    """Every zone the patient's data points to (timezone column, each zone of the phone number,
    the ZIP code's zone or else the state's), primary first; see ``contacts.zone_sources``."""
    from outreach_cli.domain.contacts import zones_for  # phonenumbers: loaded only when needed

    return zones_for(
        explicit=p.timezone,
        phone=p.phone,
        postal_code=p.postal_code,
        state=p.state,
        country=p.country,
        practice_tz=practice_tz,
        phone_tz=getattr(p, "phone_tz", None),  # a patient row has it; a hand-made view may not
    )


def window_of(p: Any, ctx: Context) -> Window:
    """The sending window for this patient: the configured one, plus their state's holidays when
    `sending.state_holidays` is on."""
    return ctx.window.for_state(p.state)

"""Stored Stripe Checkout links still valid for a set's balance."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, select

from outreach_cli.domain.timeutil import utcnow
from outreach_cli.store.models import (
    stripe_checkout_t,
)


def current_link(conn: Connection, set_id: int, balance_cents: int) -> str | None:
    """The stored Checkout Session URL still valid for this set and balance (Stripe's clock)."""
    row = conn.execute(
        select(stripe_checkout_t.c.url)
        .where(
            stripe_checkout_t.c.invoice_set_id == set_id,
            stripe_checkout_t.c.amount_cents == balance_cents,
            stripe_checkout_t.c.replaced_at.is_(None),
            stripe_checkout_t.c.expires_at > utcnow() + timedelta(minutes=30),
        )
        .order_by(stripe_checkout_t.c.created_at.desc())
        .limit(1)
    ).first()
    return str(row[0]) if row else None


def current_links(conn: Connection, balances: dict[int, int]) -> dict[int, str]:
    """`current_link` for many sets at once: {set id: url} for those that have one."""
    out: dict[int, str] = {}
    if not balances:
        return out
    valid_after = utcnow() + timedelta(minutes=30)
    for sid, amount, url in conn.execute(
        select(stripe_checkout_t.c.invoice_set_id, stripe_checkout_t.c.amount_cents, stripe_checkout_t.c.url)
        .where(
            stripe_checkout_t.c.invoice_set_id.in_(sorted(balances)),
            stripe_checkout_t.c.replaced_at.is_(None),
            stripe_checkout_t.c.expires_at > valid_after,
        )
        .order_by(stripe_checkout_t.c.created_at)
    ):
        if balances.get(sid) == amount:
            out[sid] = str(url)
    return out

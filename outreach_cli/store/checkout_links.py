"""Stored Stripe Checkout links still valid for a set's balance."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class SetLinks:
    """A set's stored Checkout links for one balance, read in one statement (one snapshot: two
    messages of a step asking at once must agree on the count that makes the idempotency key)."""

    url: str | None  # the link still valid for the balance, if any
    stale: list[tuple[str, int]]  # (session ID, amount) of every link not yet replaced
    made_for_balance: int  # how many links were ever made for this balance


def links_of_set(conn: Connection, set_id: int, balance_cents: int) -> SetLinks:
    c = stripe_checkout_t.c
    rows = conn.execute(
        select(c.session_id, c.amount_cents, c.url, c.replaced_at, c.expires_at)
        .where(c.invoice_set_id == set_id)
        .order_by(c.created_at)
    ).all()
    valid_after = utcnow() + timedelta(minutes=30)
    url = None
    for _sid, amount, link, replaced_at, expires_at in rows:
        if amount == balance_cents and replaced_at is None and expires_at > valid_after:
            url = str(link)  # the newest valid one wins, as in `current_link`
    return SetLinks(
        url=url,
        stale=[(str(r[0]), int(r[1])) for r in rows if r[3] is None],
        made_for_balance=sum(1 for r in rows if r[1] == balance_cents),
    )


def current_links(conn: Connection, balances: dict[int, int]) -> dict[int, str]:
    """`current_link` for many sets at once: {set id: url} for those that have one."""
    out: dict[int, str] = {}
    if not balances:
        return out
    valid_after = utcnow() + timedelta(minutes=30)
    for set_id, amount, url in conn.execute(
        select(stripe_checkout_t.c.invoice_set_id, stripe_checkout_t.c.amount_cents, stripe_checkout_t.c.url)
        .where(
            stripe_checkout_t.c.invoice_set_id.in_(sorted(balances)),
            stripe_checkout_t.c.replaced_at.is_(None),
            stripe_checkout_t.c.expires_at > valid_after,
        )
        .order_by(stripe_checkout_t.c.created_at)
    ):
        if balances.get(set_id) == amount:
            out[set_id] = str(url)
    return out

"""Stripe closes the loop: payments, refunds and disputes reach the invoice sets exactly once,
and Checkout Sessions serve as payment links.

- A payment's ID is its PaymentIntent ID, whether it came from an off-session charge by a
  `charge_card` step, a Checkout Session, or a payment made elsewhere (found through the
  patient's `stripe_customer_id`): however many times its events arrive, it is applied once.
- Every Stripe event is applied at most once (`stripe_event` keeps the IDs); the tick reads the
  event feed from a cursor kept in `meta` (`stripe_events_created`, Stripe's own timestamps).
- A refund restores the refunded amount to the charges the payment paid (newest allocation
  first, unapplied credit before that) and reopens a paid set: it becomes active again and its
  schedule continues from the step where it stopped. A dispute does the same for the disputed
  amount and pauses the set with the reason; an admin resumes it once the dispute is settled."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from outreach_cli.channels.base import ProviderConfigError
from outreach_cli.channels.stripe_provider import StripeApi, StripeLinks, events_since
from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import ConfigError
from outreach_cli.domain.money import format_dollars
from outreach_cli.domain.payment_rows import NewPayment
from outreach_cli.domain.statuses import IN_PROGRESS, ChargeStatus, Status
from outreach_cli.domain.timeutil import utcnow
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.meta import get_meta, set_meta
from outreach_cli.store.models import (
    allocation_t,
    charge_t,
    invoice_set_t,
    patient_t,
    payment_t,
    stripe_checkout_t,
    stripe_event_t,
)
from outreach_cli.store.reevaluate import recompute_amounts, refresh_sets

if TYPE_CHECKING:
    from outreach_cli.store.database import Store
from outreach_cli.store.checkout_links import links_of_set

log = logging.getLogger("outreach.stripe")


EVENT_TYPES = (
    "payment_intent.succeeded",
    "checkout.session.completed",
    "charge.refunded",
    "charge.dispute.created",
)


CURSOR_KEY = "stripe_events_created"


FIRST_LOOKBACK_S = 24 * 3600


ACTOR = "stripe"


def record_payments(
    conn: Connection, payments: list[NewPayment], ctx: Context, rule_sets: RuleSets
) -> dict[int, tuple[str, str]]:
    """Apply payments not recorded yet (by payment_id); the one door to the payment ledger for
    Stripe money. A payment another run recorded meanwhile is skipped, never applied twice."""
    from outreach_cli.store.ledger import apply_payments

    ids = sorted({p["payment_id"] for p in payments})
    if not ids:
        return {}
    known = set(conn.execute(select(payment_t.c.payment_id).where(payment_t.c.payment_id.in_(ids))).scalars())
    seen: set[str] = set()
    new = []
    for p in payments:
        if p["payment_id"] in known or p["payment_id"] in seen:
            continue
        seen.add(p["payment_id"])
        new.append(p)
    if not new:
        return {}
    try:
        with conn.begin_nested():
            return apply_payments(conn, new, ctx, rule_sets)
    except IntegrityError:
        # Recorded by a concurrent run between our read and our insert: theirs stands.
        log.info("payment already recorded by another run")
        return {}


@dataclass
class EventReport:
    applied: int = 0
    unchanged: int = 0
    paid: int = 0


def _obj(ev: dict[str, Any]) -> dict[str, Any]:
    data = ev.get("data") or {}
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def validate_event(ev: dict[str, Any]) -> str | None:
    """What is wrong with a Stripe event object, or None."""
    if not isinstance(ev.get("id"), str) or not ev["id"].startswith("evt_"):
        return "id: a Stripe event ID (evt_...) is required"
    if not isinstance(ev.get("type"), str):
        return "type: required"
    if not _obj(ev):
        return "data.object: required"
    return None


def _set_for(conn: Connection, obj: dict[str, Any]) -> tuple[int | None, int | None]:
    """(set id, patient pk) a Stripe object belongs to: our metadata first, then the customer."""
    meta = obj.get("metadata") or {}
    set_id_text = str(meta.get("outreach_set_id") or "")
    if set_id_text.isdigit():
        row = conn.execute(
            select(invoice_set_t.c.id, invoice_set_t.c.patient_pk).where(invoice_set_t.c.id == int(set_id_text))
        ).first()
        if row is not None:
            return row.id, row.patient_pk
    customer = obj.get("customer")
    if isinstance(customer, str) and customer:
        ppk = conn.execute(select(patient_t.c.id).where(patient_t.c.stripe_customer_id == customer)).scalar()
        if ppk is not None:
            return None, int(ppk)
    return None, None


def _paid_at(ev: dict[str, Any], ctx: Context) -> datetime:
    try:
        return datetime.fromtimestamp(int(ev["created"]), UTC)
    except (KeyError, TypeError, ValueError):
        return ctx.now


def apply_events(
    conn: Connection, events: list[dict[str, Any]], ctx: Context, rule_sets: RuleSets, source: str
) -> EventReport:
    """Apply Stripe events in order, each at most once. The event's row is written first, in a
    savepoint with everything it changes: a concurrent run applying the same event waits on that
    row and then applies nothing (its savepoint is rolled back)."""
    report = EventReport()
    for ev in events:
        if conn.execute(select(stripe_event_t.c.event_id).where(stripe_event_t.c.event_id == ev["id"])).first():
            report.unchanged += 1
            continue
        row: dict[str, Any] = {
            "event_id": ev["id"],
            "type": ev["type"],
            "object_id": None,
            "invoice_set_id": None,
            "amount_cents": 0,
            "created": int(ev.get("created") or 0),
            "received_at": ctx.now,
        }
        try:
            with conn.begin_nested():
                conn.execute(insert(stripe_event_t), row)
                changed = _apply_one(conn, ev, row, ctx, rule_sets)
                conn.execute(
                    update(stripe_event_t)
                    .where(stripe_event_t.c.event_id == ev["id"])
                    .values(
                        object_id=row["object_id"],
                        invoice_set_id=row["invoice_set_id"],
                        amount_cents=row["amount_cents"],
                    )
                )
        except IntegrityError:
            report.unchanged += 1  # a concurrent run applied it; its transaction stands
            continue
        report.applied += 1
        report.paid += sum(1 for _, to in changed.values() if to == Status.PAID.value)
    return report


def _apply_one(
    conn: Connection, ev: dict[str, Any], row: dict[str, Any], ctx: Context, rule_sets: RuleSets
) -> dict[int, tuple[str, str]]:
    """One event's effect; fills ``row`` (the PaymentIntent, the set, the cents restored)."""
    kind = ev["type"]
    if kind in ("payment_intent.succeeded", "checkout.session.completed"):
        return _apply_payment(conn, ev, row, ctx, rule_sets)
    if kind in ("charge.refunded", "charge.dispute.created"):
        return _apply_refund_or_dispute(conn, ev, row, ctx, rule_sets)
    return {}


def _apply_payment(
    conn: Connection, ev: dict[str, Any], row: dict[str, Any], ctx: Context, rule_sets: RuleSets
) -> dict[int, tuple[str, str]]:
    """A succeeded PaymentIntent or a paid Checkout session: record the payment."""
    obj = _obj(ev)
    if ev["type"] == "payment_intent.succeeded":
        pi_id, amount, ok = obj.get("id"), obj.get("amount_received") or obj.get("amount"), True
    else:
        pi_id, amount = obj.get("payment_intent"), obj.get("amount_total")
        ok = obj.get("payment_status") == "paid"
    set_id, ppk = _set_for(conn, obj)
    row.update(object_id=pi_id, invoice_set_id=set_id)
    if ok and pi_id and ppk is not None and isinstance(amount, int) and amount > 0:
        payment: NewPayment = {
            "payment_id": pi_id,
            "patient_pk": ppk,
            "amount_cents": amount,
            "paid_at": _paid_at(ev, ctx),
            "charge_ref": None,
            "source": "stripe",
        }
        return record_payments(conn, [payment], ctx, rule_sets)
    if ppk is None:
        log.info("stripe event %s: no patient matches it; recorded, nothing applied", ev["id"])
    return {}


def _apply_refund_or_dispute(
    conn: Connection, ev: dict[str, Any], row: dict[str, Any], ctx: Context, rule_sets: RuleSets
) -> dict[int, tuple[str, str]]:
    """A refund or a dispute: give back what is not given back yet, up to the payment."""
    kind, obj = ev["type"], _obj(ev)
    pi_id = obj.get("payment_intent")
    row["object_id"] = pi_id
    pay = conn.execute(select(payment_t).where(payment_t.c.payment_id == pi_id)).first() if pi_id else None
    if pay is None:
        log.info("stripe event %s: payment %s is not in the ledger; nothing applied", ev["id"], pi_id)
        return {}
    restored = _restored_cents(conn, pi_id)
    want, reason, pause = _give_back_terms(conn, kind, obj, pi_id)
    cents = max(0, min(want, pay.amount_cents - restored))
    row["amount_cents"] = cents
    row["invoice_set_id"], changed = _restore(conn, pay, cents, ctx, rule_sets, kind, reason, pause)
    return changed


def _restored_cents(conn: Connection, pi_id: Any, kind: str | None = None) -> int:
    """Cents already given back for a PaymentIntent (by events of ``kind`` only, when given)."""
    where = [stripe_event_t.c.object_id == pi_id]
    if kind is not None:
        where.append(stripe_event_t.c.type == kind)
    return int(
        conn.execute(select(func.coalesce(func.sum(stripe_event_t.c.amount_cents), 0)).where(*where)).scalar_one()
    )


def _give_back_terms(conn: Connection, kind: str, obj: dict[str, Any], pi_id: Any) -> tuple[int, str, str | None]:
    """(cents wanted back, the reason, the pause reason or None) for a refund or a dispute."""
    if kind == "charge.refunded":
        want = int(obj.get("amount_refunded") or 0) - _restored_cents(conn, pi_id, "charge.refunded")
        return want, f"refund of {format_dollars(max(want, 0))} at Stripe ({pi_id})", None
    want = int(obj.get("amount") or 0)
    why = str(obj.get("reason") or "unspecified").replace("_", " ")
    reason = f"card payment disputed at Stripe: {why} ({obj.get('id')})"
    return want, reason, f"payment disputed ({why}); resume once the dispute is settled"


def _restore(
    conn: Connection,
    pay: Any,
    cents: int,
    ctx: Context,
    rule_sets: RuleSets,
    kind: str,
    reason: str,
    pause: str | None,
) -> tuple[int | None, dict[int, tuple[str, str]]]:
    """Give back ``cents`` of a payment: unapplied credit first, then its allocations newest
    first (a negative allocation each). Reopens paid sets; ``pause`` pauses them with a reason."""
    left = _take_from_credit(conn, pay, cents)
    sets = _reverse_allocations(conn, pay, left)
    if not sets:
        return _note_on_latest_set(conn, pay, cents, ctx, kind, reason), {}
    events: list[dict[str, Any]] = []
    final: set[int] = set()
    to_pause: dict[int, tuple[str, int]] = {}  # set -> (status before, patient)
    for set_id in sorted(sets):
        target = _reopen_set(conn, set_id, ctx, reason, pause, events, to_pause)
        final.update({set_id, target})
        events.append(_money_event(ctx, kind, target, pay, cents, reason))
    add_events(conn, events)
    recompute_amounts(conn, final)
    changed = refresh_sets(conn, final, ctx, rule_sets)
    # Paused last, as the `pause` action does, so the dispute is the reason shown.
    for set_id, (before, ppk) in to_pause.items():
        _pause_set(conn, set_id, before, ppk, ctx, pause)
        changed.pop(set_id, None)
    return min(final), changed


def _take_from_credit(conn: Connection, pay: Any, cents: int) -> int:
    """Take what can be taken from the payment's unapplied credit; returns the cents left."""
    take = min(cents, pay.unapplied_cents)
    if take:
        conn.execute(
            update(payment_t).where(payment_t.c.id == pay.id).values(unapplied_cents=payment_t.c.unapplied_cents - take)
        )
    return int(cents - take)


def _reverse_allocations(conn: Connection, pay: Any, left: int) -> set[int]:
    """Owe ``left`` cents again on the payment's charges, newest allocation first; returns their sets."""
    net: dict[int, int] = {}
    for charge_pk, amount in conn.execute(
        select(allocation_t.c.charge_pk, allocation_t.c.amount_cents)
        .where(allocation_t.c.payment_pk == pay.id)
        .order_by(allocation_t.c.id)
    ):
        net[charge_pk] = net.get(charge_pk, 0) + amount
    sets: set[int] = set()
    for charge_pk in reversed(list(net)):
        if left <= 0:
            break
        give = min(left, net[charge_pk])
        if give <= 0:
            continue
        ch = conn.execute(select(charge_t).where(charge_t.c.id == charge_pk)).one()
        if ch.status not in (ChargeStatus.PAID, ChargeStatus.OUTSTANDING):
            continue  # written off, in collections or void: nothing to collect again
        conn.execute(insert(allocation_t), {"payment_pk": pay.id, "charge_pk": charge_pk, "amount_cents": -give})
        conn.execute(
            update(charge_t)
            .where(charge_t.c.id == charge_pk)
            .values(outstanding_cents=charge_t.c.outstanding_cents + give, status=ChargeStatus.OUTSTANDING)
        )
        left -= give
        if ch.invoice_set_id is not None:
            sets.add(ch.invoice_set_id)
    return sets


def _note_on_latest_set(conn: Connection, pay: Any, cents: int, ctx: Context, kind: str, reason: str) -> int | None:
    """Nothing went back to a charge (all credit): note it on the patient's latest set."""
    set_id = conn.execute(
        select(invoice_set_t.c.id)
        .where(invoice_set_t.c.patient_pk == pay.patient_pk)
        .order_by(invoice_set_t.c.id.desc())
        .limit(1)
    ).scalar()
    if set_id is not None:
        add_events(conn, [_money_event(ctx, kind, set_id, pay, cents, reason)])
    return set_id


def _reopen_set(
    conn: Connection,
    set_id: int,
    ctx: Context,
    reason: str,
    pause: str | None,
    events: list[dict[str, Any]],
    to_pause: dict[int, tuple[str, int]],
) -> int:
    """Reopen a paid set (or move its money owed to the patient's newer set in progress); note the
    sets to pause. Returns the set the money owed again now belongs to."""
    s = conn.execute(select(invoice_set_t).where(invoice_set_t.c.id == set_id)).one()
    if s.status != Status.PAID.value:
        if pause and s.status in (Status.ACTIVE.value, Status.WILL_FAIL.value, Status.FAILED.value):
            to_pause[set_id] = (s.status, s.patient_pk)
        return set_id
    other = conn.execute(
        select(invoice_set_t.c.id).where(
            invoice_set_t.c.patient_pk == s.patient_pk,
            invoice_set_t.c.id != set_id,
            invoice_set_t.c.status.in_([x.value for x in IN_PROGRESS]),
        )
    ).scalar()
    if other is not None:
        # The patient has a newer set in progress: the money owed again joins it.
        conn.execute(
            update(charge_t)
            .where(charge_t.c.invoice_set_id == set_id, charge_t.c.outstanding_cents > 0)
            .values(invoice_set_id=other)
        )
        return other  # type: ignore[no-any-return]
    conn.execute(
        update(invoice_set_t)
        .where(invoice_set_t.c.id == set_id)
        .values(status=Status.ACTIVE.value, status_reason=None, closed_at=None, updated_at=ctx.now)
    )
    if pause:
        to_pause[set_id] = (s.status, s.patient_pk)
    else:
        events.append(
            event_row(
                ctx,
                "status",
                set_id=set_id,
                patient_pk=s.patient_pk,
                actor=ACTOR,
                from_status=s.status,
                to_status=Status.ACTIVE.value,
                reason=reason,
            )
        )
    return set_id


def _pause_set(conn: Connection, set_id: int, before: str, ppk: int, ctx: Context, pause: str | None) -> None:
    now = ctx.now
    conn.execute(
        update(invoice_set_t)
        .where(invoice_set_t.c.id == set_id)
        .values(status=Status.PAUSED.value, status_reason=pause, paused_at=now, next_send_at=None, updated_at=now)
    )
    add_events(
        conn,
        [
            event_row(
                ctx,
                "status",
                set_id=set_id,
                patient_pk=ppk,
                actor=ACTOR,
                action="pause",
                from_status=before,
                to_status=Status.PAUSED.value,
                reason=pause,
            )
        ],
    )


def _money_event(ctx: Context, kind: str, set_id: int, pay: Any, cents: int, reason: str) -> dict[str, Any]:
    return event_row(
        ctx,
        "refund" if kind == "charge.refunded" else "dispute",
        set_id=set_id,
        patient_pk=pay.patient_pk,
        actor=ACTOR,
        reason=reason,
        detail={"payment_id": pay.payment_id, "restored_cents": cents, "source": "stripe"},
    )


def sync_events(store: Store, ctx: Context, api: StripeApi) -> EventReport:
    """One tick's read of the event feed: every event since the cursor, applied once, in order.
    The cursor is Stripe's `created` of the newest event seen (events of that same second are
    read again next time and skipped by ID, so none is lost). The first read starts 24 hours back
    (Stripe's clock), not at the account's whole history."""
    with store.read() as conn:
        stored = get_meta(conn, CURSOR_KEY)
    cursor = int(stored) if stored else int(utcnow().timestamp()) - FIRST_LOOKBACK_S
    try:
        events = events_since(api, cursor, EVENT_TYPES)
    except ProviderConfigError as exc:
        raise ConfigError(f"stripe: {exc}") from None
    except Exception as exc:  # the feed is read again next tick; sending goes on
        log.info("reading Stripe events failed: %s", type(exc).__name__)
        return EventReport()
    if not events:
        if not stored:
            with store.write() as conn:
                set_meta(conn, CURSOR_KEY, str(cursor))
        return EventReport()
    with store.write() as conn:
        report = apply_events(conn, events, ctx, RuleSets(conn), source="stripe events")
        newest = max(int(e.get("created") or 0) for e in events)
        set_meta(conn, CURSOR_KEY, str(max(newest, cursor)))
    return report


def checkout_link(
    store: Store, ctx: Context, links: StripeLinks, set_id: int, balance_cents: int, customer: str | None
) -> str:
    """The set's Checkout Session for this balance: reused while valid, else a new one (created
    once per set, balance and generation: the idempotency key makes concurrent messages of one
    step share it). Sessions for an older balance are replaced and expired at Stripe."""
    with store.read() as conn:
        found = links_of_set(conn, set_id, balance_cents)
    if found.url:
        return found.url
    stale, n = found.stale, found.made_for_balance
    key = f"outreach-checkout-{set_id}-{balance_cents}-{n + 1}"
    s = links.create(set_id, balance_cents, customer, ctx.practice_name, key)
    if not s.get("url"):
        raise RuntimeError("Stripe returned a Checkout Session without a URL")
    for session_id, amount in stale:
        if amount != balance_cents:
            links.expire(session_id)  # a link for an old balance must not take a stale amount
    with store.write() as conn:
        for session_id, _ in stale:
            conn.execute(
                update(stripe_checkout_t)
                .where(stripe_checkout_t.c.session_id == session_id)
                .values(replaced_at=ctx.now)
            )
        _store_session(conn, ctx, set_id, balance_cents, s)
    return str(s["url"])


def _store_session(conn: Connection, ctx: Context, set_id: int, balance_cents: int, s: dict[str, Any]) -> None:
    """Record a new Checkout Session and its event, once (a concurrent message may have stored it)."""
    if conn.execute(
        select(stripe_checkout_t.c.session_id).where(stripe_checkout_t.c.session_id == s["session_id"])
    ).first():
        return
    try:
        with conn.begin_nested():
            conn.execute(
                insert(stripe_checkout_t),
                {
                    "session_id": s["session_id"],
                    "invoice_set_id": set_id,
                    "amount_cents": balance_cents,
                    "url": s["url"],
                    "expires_at": s["expires_at"],
                    "created_at": ctx.now,
                },
            )
        add_events(
            conn,
            [
                event_row(
                    ctx,
                    "payment_link",
                    set_id=set_id,
                    actor="system",
                    detail={"provider": "stripe", "session_id": s["session_id"], "amount_cents": balance_cents},
                )
            ],
        )
    except IntegrityError:
        pass  # the other message of this step stored the same session


def stripe_settings(ctx: Context) -> tuple[bool, bool]:
    """(charge_card uses Stripe, payment links are Stripe Checkout) from the settings."""
    settings = ctx.extra.get("settings")
    if settings is None:
        return False, False
    values = settings.values
    return (
        values.get("channels", {}).get("charge_card") == "stripe",
        values.get("payments", {}).get("provider") == "stripe",
    )

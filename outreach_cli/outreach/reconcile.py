"""Learning what happened after earlier sends: expired leases become `unknown`, `unknown` sends
are resolved by looking them up (never by sending again), accepted messages get their final
status, inbound replies are read, and steps whose outcome changed since are listed for a
re-decision (fallbacks, failed)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, select, update

from outreach_cli.channels.base import UNKNOWN, InboundSource, ProviderConfigError, StatusSource
from outreach_cli.domain.errors import ConfigError
from outreach_cli.domain.statuses import SendStatus
from outreach_cli.outreach.context import TickContext
from outreach_cli.outreach.messages import send_event
from outreach_cli.outreach.resolve import resolve_unknown
from outreach_cli.outreach.state import StepKey
from outreach_cli.store.bulk import chunks
from outreach_cli.store.events import add_events
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.meta import set_meta
from outreach_cli.store.models import invoice_set_t, send_t

log = logging.getLogger("outreach.engine")

LOOKUP_BATCH = 5000
INBOUND_CURSOR = "twilio_inbound_since"
T = TypeVar("T")


def expire_leases(t: TickContext) -> None:
    """Claims whose lease ran out may have gone out: they become unknown (then reconciled)."""
    now = t.ctx.now
    cols = (send_t.c.id, send_t.c.invoice_set_id, send_t.c.patient_pk, send_t.c.method)
    with t.store.write() as conn:
        rows = conn.execute(
            select(*cols, send_t.c.step_title, send_t.c.step_day).where(
                send_t.c.status == SendStatus.CLAIMED, send_t.c.lease_until < now
            )
        ).all()
        if not rows:
            return
        reason = "the run ended before the outcome was recorded; resolving by lookup"
        for chunk in chunks([r.id for r in rows]):
            conn.execute(
                update(send_t)
                .where(send_t.c.id.in_(chunk), send_t.c.status == SendStatus.CLAIMED, send_t.c.lease_until < now)
                .values(status=SendStatus.UNKNOWN, claim_token=None, reason=reason)
            )
        detail = {"status": SendStatus.UNKNOWN, "reason": "lease expired"}
        add_events(
            conn,
            [
                send_event(
                    t.ctx,
                    r.invoice_set_id,
                    r.patient_pk,
                    {"step": r.step_title, "day": r.step_day, "method": r.method, **detail},
                )
                for r in rows
            ],
        )
        t.state.summary.unknown += len(rows)


def reconcile(t: TickContext) -> list[StepKey]:
    """Resolves unknown sends, fetches final statuses, reads replies; returns the steps to
    re-decide."""
    unknown, accepted = _to_look_up(t)
    if unknown or accepted:
        with t.store.write() as conn:
            rule_sets = RuleSets(conn)
            for r in unknown:
                resolve_unknown(t, conn, r, rule_sets)
            for r in accepted:
                _fetch_status(t, conn, r)
            t.refresh(conn, rule_sets)
    _read_inbound(t)
    return _steps_to_recheck(t)


def _status_sources(t: TickContext) -> dict[str, StatusSource]:
    return {m: p for m, p in t.providers.items() if isinstance(p, StatusSource)}


def _to_look_up(t: TickContext) -> tuple[list[Any], list[Any]]:
    fetchable = sorted(_status_sources(t))
    with t.store.read() as conn:
        unknown = conn.execute(
            select(send_t).where(send_t.c.status == SendStatus.UNKNOWN).order_by(send_t.c.id).limit(LOOKUP_BATCH)
        ).all()
        if not fetchable:
            return list(unknown), []
        accepted = conn.execute(
            select(send_t)
            .where(
                send_t.c.status == SendStatus.SENT,
                send_t.c.method.in_(fetchable),
                send_t.c.provider_ref.is_not(None),
                send_t.c.sent_at >= t.ctx.now - timedelta(days=7),
            )
            .order_by(send_t.c.id)
            .limit(LOOKUP_BATCH)
        ).all()
    return list(unknown), list(accepted)


def provider_read(t: TickContext, method: str, what: str, call: Callable[[], T], log_text: str) -> T | None:
    """One read from a provider: a configuration error stops the run (exit 4); any other failure
    is counted as a provider problem (said on stderr) and the read is skipped."""
    try:
        return call()
    except ProviderConfigError as exc:
        raise ConfigError(f"{method} provider: {exc}") from None
    except Exception as exc:
        log.info("%s: %s", log_text, type(exc).__name__)
        t.state.problem(f"{what} failed ({type(exc).__name__})")
        return None


def _fetch_status(t: TickContext, conn: Connection, r: Any) -> None:
    from outreach_cli.outreach.inbound import apply_send_status

    source = _status_sources(t)[r.method]
    what = f"{r.method} delivery status lookups"
    out = provider_read(t, r.method, what, lambda: source.fetch(r.provider_ref), f"status fetch for send {r.id} failed")
    if out is None:
        return
    if out.status == UNKNOWN:
        t.state.problem(f"{what} failed (error {out.error_code})")
    if apply_send_status(conn, r, out, t.ctx, source="reconciliation"):
        t.state.summary.reconciled += 1
        t.state.touched_patients.add(r.patient_pk)
        t.state.touched_sets.add(r.invoice_set_id)


def _read_inbound(t: TickContext) -> None:
    from outreach_cli.outreach.inbound import apply_inbound

    sms = t.providers.get("sms")
    if not isinstance(sms, InboundSource) or not sms.from_number:
        return
    number = sms.from_number
    with t.store.read() as conn:
        since_text = t.store.get_meta(conn, INBOUND_CURSOR)
    since = datetime.fromisoformat(since_text) if since_text else t.ctx.now - timedelta(days=2)
    items = provider_read(
        t,
        "sms",
        "reading SMS replies",
        lambda: sms.inbound(number, since - timedelta(days=1)),
        "reading inbound messages failed",
    )
    if not items:
        return
    with t.store.write() as conn:
        n, patients = apply_inbound(conn, items, t.ctx)
        t.state.summary.reconciled += n
        t.state.touched_patients |= patients
        newest = max((i["received_at"] for i in items if i["received_at"]), default=since)
        set_meta(conn, INBOUND_CURSOR, max(newest, since).isoformat())
        t.refresh(conn)


def _steps_to_recheck(t: TickContext) -> list[StepKey]:
    """Steps marked for a re-decision (a send failed after the fact); the marks are cleared here
    and the steps decided by the caller."""
    with t.store.read() as conn:
        recheck = [
            (set_id, gen, idx)
            for set_id, gen, idx in conn.execute(
                select(invoice_set_t.c.id, invoice_set_t.c.schedule_gen, invoice_set_t.c.recheck_step).where(
                    invoice_set_t.c.recheck_step.is_not(None)
                )
            )
        ]
    if recheck:
        with t.store.write() as conn:
            for set_id, _, _ in recheck:
                conn.execute(update(invoice_set_t).where(invoice_set_t.c.id == set_id).values(recheck_step=None))
    return recheck

"""Patient replies and delivery facts that arrive after the send (SPEC section 5):
inbound SMS with the STOP/START keywords, status callbacks, email bounces and complaints.

Used by reconciliation in `run-outreach` (Twilio) and by `outreach events ingest`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from outreach_cli.core.channels.base import DELIVERED, FAILED, Outcome
from outreach_cli.core.models import inbound_t, invoice_set_t, patient_t, send_t
from outreach_cli.core.sets import Context, add_events, event_row, open_set_ids_for_patients
from outreach_cli.core.statuses import OPEN

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
START_WORDS = {"START", "UNSTOP", "YES"}
MAX_BODY = 320


def keyword(body: str) -> str | None:
    word = body.strip().upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    return None


def _timeline_sets(conn: Connection, patient_pk: int) -> list[int]:
    """The patient's open sets, else their most recent set."""
    open_ids = open_set_ids_for_patients(conn, [patient_pk])
    if open_ids:
        return open_ids
    last = conn.execute(
        select(invoice_set_t.c.id)
        .where(invoice_set_t.c.patient_pk == patient_pk)
        .order_by(invoice_set_t.c.id.desc())
        .limit(1)
    ).scalar()
    return [last] if last is not None else []


def apply_inbound(conn: Connection, items: list[dict[str, Any]], ctx: Context) -> tuple[int, set[int]]:
    """Each reply goes on the patient's timeline; STOP-words set the SMS opt-out, START-words clear
    it. Items: {sid?, from (E.164), body, received_at}. Returns (applied, patients touched)."""
    applied = 0
    touched: set[int] = set()
    for it in items:
        sid = it.get("sid")
        if sid and conn.execute(select(inbound_t.c.sid).where(inbound_t.c.sid == sid)).first():
            continue  # already applied
        patients = conn.execute(
            select(patient_t.c.id, patient_t.c.sms_opt_out).where(patient_t.c.phone == it["from"])
        ).all()
        kw = keyword(it.get("body") or "")
        at: datetime = it.get("received_at") or ctx.now
        for pk, opted in patients:
            if kw == "stop" and not opted:
                conn.execute(update(patient_t).where(patient_t.c.id == pk).values(sms_opt_out=True, updated_at=ctx.now))
            elif kw == "start" and opted:
                conn.execute(
                    update(patient_t).where(patient_t.c.id == pk).values(sms_opt_out=False, updated_at=ctx.now)
                )
            touched.add(pk)
            add_events(
                conn,
                [
                    event_row(
                        ctx,
                        "reply",
                        set_id=sid_,
                        patient_pk=pk,
                        actor="patient",
                        at=at,
                        detail={"body": (it.get("body") or "")[:MAX_BODY], "keyword": kw, "sid": sid},
                    )
                    for sid_ in _timeline_sets(conn, pk)
                ],
            )
        if sid:
            conn.execute(
                insert(inbound_t), {"sid": sid, "received_at": at, "patient_pk": patients[0][0] if patients else None}
            )
        applied += 1
    return applied, touched


def apply_send_status(conn: Connection, send_row: Any, out: Outcome, ctx: Context, *, source: str) -> bool:
    """A later fact about a send (status callback, reconciliation). Returns True if it changed."""
    new = {DELIVERED: "delivered", FAILED: "failed"}.get(out.status)
    if new is None or send_row.status == new or send_row.status in ("skipped", "cancelled", "claimed", "pending"):
        return False
    conn.execute(
        update(send_t)
        .where(send_t.c.id == send_row.id)
        .values(
            status=new,
            error_code=out.error_code,
            reason=out.reason,
            finished_at=ctx.now,
            provider_ref=out.provider_ref or send_row.provider_ref,
        )
    )
    if out.patient_update:
        conn.execute(
            update(patient_t)
            .where(patient_t.c.id == send_row.patient_pk)
            .values(updated_at=ctx.now, **out.patient_update)
        )
    add_events(
        conn,
        [
            event_row(
                ctx,
                "send",
                set_id=send_row.invoice_set_id,
                patient_pk=send_row.patient_pk,
                actor="system",
                detail={
                    "step": send_row.step_title,
                    "day": send_row.step_day,
                    "method": send_row.method,
                    "status": new,
                    "provider_ref": send_row.provider_ref,
                    "error_code": out.error_code,
                    "reason": out.reason,
                    "source": source,
                },
            )
        ],
    )
    if new == "failed":
        # The next run re-decides the step: fallbacks, or failed.
        conn.execute(
            update(invoice_set_t)
            .where(
                invoice_set_t.c.id == send_row.invoice_set_id,
                invoice_set_t.c.schedule_gen == send_row.schedule_gen,
                invoice_set_t.c.status.in_([s.value for s in OPEN]),
            )
            .values(recheck_step=send_row.step_index)
        )
    return True


def suppress_email(conn: Connection, email: str, kind: str, ctx: Context, reason: str | None = None) -> set[int]:
    """A bounce or complaint: the address is suppressed for every patient using it."""
    rows = conn.execute(select(patient_t.c.id).where(patient_t.c.email == email)).scalars().all()
    if not rows:
        from sqlalchemy import func

        rows = (
            conn.execute(select(patient_t.c.id).where(func.lower(patient_t.c.email) == email.lower())).scalars().all()
        )
    touched = set(rows)
    for pk in rows:
        values: dict[str, Any] = {"email_suppressed": kind, "updated_at": ctx.now}
        if kind == "complained":
            values["email_opt_out"] = True
        conn.execute(update(patient_t).where(patient_t.c.id == pk).values(**values))
        add_events(
            conn,
            [
                event_row(
                    ctx,
                    f"email_{'bounce' if kind == 'bounced' else 'complaint'}",
                    set_id=sid,
                    patient_pk=pk,
                    actor="system",
                    detail={"reason": reason} if reason else None,
                )
                for sid in _timeline_sets(conn, pk)
            ],
        )
    return touched

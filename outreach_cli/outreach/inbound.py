"""Patient replies and delivery facts that arrive after the send (SPEC section 5):
inbound SMS with the STOP/START keywords, status callbacks, email bounces and complaints.

Used by reconciliation in `run-outreach` (Twilio) and by `outreach events ingest`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from outreach_cli.channels.base import DELIVERED, FAILED, InboundSms, ProviderOutcome
from outreach_cli.domain.context import Context
from outreach_cli.domain.statuses import IN_FLIGHT_SENDS, OPEN, SendStatus
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.models import inbound_t, invoice_set_t, patient_t, send_t
from outreach_cli.store.reevaluate import open_set_ids_for_patients

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
START_WORDS = {"START", "UNSTOP", "YES"}
MAX_BODY = 320
CONFIRMATION_STEP = -1  # send.step_index of opt-out confirmations (not a rule-set step)
CONFIRMATION_TITLE = "Opt-out confirmation"
CONFIRMATION_TEXT = (
    "{practice_name}: you are unsubscribed and will receive no more text messages from us. Reply START to resubscribe."
)

# Revocation by any reasonable means (FCC 2024 consent-revocation order): these words always
# count, in any case, with any punctuation, anywhere in the reply, as whole words.
_STOP_RE = re.compile(
    r"(?<![a-z0-9])(stop|stopall|quit|end|revoke|cancel|unsubscribe|opt[\s_-]*out)(?![a-z0-9])",
    re.IGNORECASE,
)
# Replies that read like a refusal without one of the words: a person reviews them.
_REFUSAL_RE = re.compile(
    r"\b(remove me|take me off|leave me alone|wrong (number|person)|do ?n[o']?t (text|call|contact|message|email)"
    r"|dont (text|call|contact|message|email)|no more (texts?|messages|calls|emails)|not interested"
    r"|harass|lawyer|attorney|who is this|not me|stop (texting|calling|contacting))",
    re.IGNORECASE,
)
_CALLS_RE = re.compile(r"\b(call|calls|calling|phone calls?)\b", re.IGNORECASE)


def classify(body: str) -> str | None:
    """`stop` (revocation), `start` (the whole reply is START, UNSTOP or YES), `review` (reads
    like a refusal without an opt-out word), or None."""
    text = body or ""
    if _STOP_RE.search(text):
        return "stop"
    bare = re.sub(r"[^A-Za-z]", "", text).upper()
    if bare in START_WORDS and len(text.strip()) <= len(bare) + 3:
        return "start"
    if _REFUSAL_RE.search(text):
        return "review"
    return None


def keyword(body: str) -> str | None:
    kw = classify(body)
    return kw if kw in ("stop", "start") else None


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


def apply_inbound(conn: Connection, items: list[InboundSms], ctx: Context) -> tuple[int, set[int]]:
    """Each reply goes on the patient's timeline. A reply with an opt-out word sets the SMS opt-out
    (and the call opt-out when it speaks of calls) for every patient record with that phone and
    queues one confirmation text; START/UNSTOP/YES as the whole reply clears it; a reply that reads
    like a refusal sets `needs_review`. Items: `InboundSms`.
    Returns (applied, patients touched)."""
    applied = 0
    touched: set[int] = set()
    for it in items:
        message_sid = it["message_sid"]
        if message_sid and conn.execute(select(inbound_t.c.sid).where(inbound_t.c.sid == message_sid)).first():
            continue  # already applied
        patients = conn.execute(
            select(patient_t.c.id, patient_t.c.sms_opt_out).where(patient_t.c.phone == it["from_number"])
        ).all()
        body = it["body"] or ""
        kind = classify(body)
        at: datetime = it["received_at"] or ctx.now
        newly_opted: list[int] = []
        for pk, opted in patients:
            if _apply_reply_to_patient(conn, pk, opted, kind, body, ctx):
                newly_opted.append(pk)
            touched.add(pk)
            _add_reply_events(conn, pk, kind, body, message_sid, at, ctx)
        if newly_opted:
            queue_confirmation(conn, newly_opted, ctx)
        if message_sid:
            conn.execute(
                insert(inbound_t),
                {"sid": message_sid, "received_at": at, "patient_pk": patients[0][0] if patients else None},
            )
        applied += 1
    return applied, touched


def _apply_reply_to_patient(conn: Connection, pk: int, opted: bool, kind: str | None, body: str, ctx: Context) -> bool:
    """Set or clear the opt-outs or the review flag the reply asks for; True when newly opted out."""
    if kind == "stop":
        values: dict[str, Any] = {"sms_opt_out": True, "needs_review": False, "updated_at": ctx.now}
        if _CALLS_RE.search(body):
            values["call_opt_out"] = True
        conn.execute(update(patient_t).where(patient_t.c.id == pk).values(**values))
        return not opted
    if kind == "start" and opted:
        conn.execute(update(patient_t).where(patient_t.c.id == pk).values(sms_opt_out=False, updated_at=ctx.now))
    elif kind == "review":
        conn.execute(update(patient_t).where(patient_t.c.id == pk).values(needs_review=True, updated_at=ctx.now))
    return False


def _add_reply_events(
    conn: Connection, pk: int, kind: str | None, body: str, message_sid: str | None, at: datetime, ctx: Context
) -> None:
    """The reply on the timeline of each of the patient's sets."""
    kw = kind if kind in ("stop", "start") else None
    add_events(
        conn,
        [
            event_row(
                ctx,
                "reply",
                set_id=set_id,
                patient_pk=pk,
                actor="patient",
                at=at,
                detail={
                    "body": body[:MAX_BODY],
                    "keyword": kw,
                    "sid": message_sid,  # the stored event's key
                    "needs_review": True if kind == "review" else None,
                },
            )
            for set_id in _timeline_sets(conn, pk)
        ],
    )


def queue_confirmation(conn: Connection, patient_pks: list[int], ctx: Context) -> None:
    """One confirmation text per opt-out of a phone number (FCC 2024 order: one is allowed), on the
    timeline of the first of its patient records that has a set. The run sends it at the first
    allowed moment (the sending window and 08:00-21:00 patient-local apply)."""
    for pk in sorted(patient_pks):
        sets = _timeline_sets(conn, pk)
        if not sets:
            continue
        set_id = sets[0]
        gen = conn.execute(select(invoice_set_t.c.schedule_gen).where(invoice_set_t.c.id == set_id)).scalar_one()
        prior = conn.execute(
            select(send_t.c.step_index).where(send_t.c.invoice_set_id == set_id, send_t.c.step_index < 0)
        ).scalars()
        index = min([CONFIRMATION_STEP + 1, *prior]) - 1
        conn.execute(
            insert(send_t),
            {
                "invoice_set_id": set_id,
                "patient_pk": pk,
                "schedule_gen": gen,
                "step_index": index,
                "step_day": 0,
                "step_title": CONFIRMATION_TITLE,
                "method": "sms",
                "is_fallback": False,
                "status": SendStatus.PENDING,
                "due_at": ctx.now,
                "next_attempt_at": ctx.now,
                "attempts": 0,
            },
        )
        return


def unsubscribe_email(conn: Connection, email: str, ctx: Context, source: str) -> set[int]:
    """An email unsubscribe (List-Unsubscribe, an email reply): email opt-out for every patient
    record with that address."""
    from sqlalchemy import func

    rows = (
        conn.execute(select(patient_t.c.id).where(func.lower(patient_t.c.email) == email.strip().lower()))
        .scalars()
        .all()
    )
    for pk in rows:
        conn.execute(update(patient_t).where(patient_t.c.id == pk).values(email_opt_out=True, updated_at=ctx.now))
        add_events(
            conn,
            [
                event_row(
                    ctx, "email_unsubscribe", set_id=set_id, patient_pk=pk, actor="patient", detail={"source": source}
                )
                for set_id in _timeline_sets(conn, pk)
            ],
        )
    return set(rows)


def apply_send_status(conn: Connection, send_row: Any, out: ProviderOutcome, ctx: Context, *, source: str) -> bool:
    """A later fact about a send (status callback, reconciliation). Returns True if it changed."""
    new = {DELIVERED: SendStatus.DELIVERED, FAILED: SendStatus.FAILED}.get(out.status)
    if (
        new is None
        or send_row.status == new
        or send_row.status in (SendStatus.SKIPPED, SendStatus.CANCELLED, *IN_FLIGHT_SENDS)
    ):
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
    if new == SendStatus.FAILED:
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
                    set_id=set_id,
                    patient_pk=pk,
                    actor="system",
                    detail={"reason": reason} if reason else None,
                )
                for set_id in _timeline_sets(conn, pk)
            ],
        )
    return touched

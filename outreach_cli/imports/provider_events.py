"""`outreach events ingest FILE|-`: delivery facts as JSON lines (SPEC section 5).

Types: sms_status {sid, status, error_code}, inbound_sms {from, body, received_at},
email_bounce {email, reason}, email_complaint {email}, email_unsubscribe {email} (a List-Unsubscribe
click), email_reply {email, body} (a patient's email reply: an opt-out word opts out of email, a
refusal without one sets needs_review); and Stripe events (see `core/stripe_ingest.py`). Every line is validated first; unknown
types and malformed lines are reported with their line number and nothing is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from outreach_cli.channels.base import InboundSms
from outreach_cli.channels.twilio_provider import classify_status
from outreach_cli.domain.contacts import parse_phone
from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.timeutil import parse_datetime
from outreach_cli.imports.readers import json_objects
from outreach_cli.outreach.inbound import apply_inbound, apply_send_status, classify, suppress_email, unsubscribe_email
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import patient_t, send_t
from outreach_cli.store.reevaluate import open_set_ids_for_patients, refresh_sets

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

TYPES = {
    "sms_status": ("sid", "status"),
    "inbound_sms": ("from", "body"),
    "email_bounce": ("email",),
    "email_complaint": ("email",),
    "email_unsubscribe": ("email",),
    "email_reply": ("email", "body"),
}
STATUSES = {
    "accepted",
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "read",
    "receiving",
    "received",
}


@dataclass
class IngestReport:
    lines: int = 0
    applied: int = 0
    unchanged: int = 0


def ingest(store: Store, text: str, ctx: Context, source: str = "<stdin>") -> IngestReport:
    events, stripe_events, problems = _parse_lines(text, ctx)
    report = IngestReport(lines=len(events) + len(stripe_events) + len(problems))
    with store.write() as conn:
        sends = _sends_by_message_sid(conn, events)
        for n, o in events:
            if o["type"] == "sms_status" and o["sid"] not in sends:
                problems.append(f"line {n}: sid: no send with this message SID")
        if problems:
            problems.sort(key=lambda p: int(p.split(":")[0].split()[1]))
            raise InvalidInput(f"{source}: {len(problems)} problem(s); nothing was applied", details=problems[:50])
        touched: set[int] = set()
        for _, o in events:
            touched |= _apply_event(conn, o, sends, ctx, report)
        if stripe_events:
            from outreach_cli.outreach.stripe_payments import apply_events

            sr = apply_events(conn, stripe_events, ctx, RuleSets(conn), source="events ingest")
            report.applied += sr.applied
            report.unchanged += sr.unchanged
        if touched:
            refresh_sets(conn, open_set_ids_for_patients(conn, touched), ctx, RuleSets(conn))
    return report


def _parse_lines(text: str, ctx: Context) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]], list[str]]:
    """(provider events with their line numbers, Stripe events, problems) from the JSON lines."""
    from outreach_cli.imports.stripe_events import is_stripe_line, parse_stripe_line

    events: list[tuple[int, dict[str, Any]]] = []
    stripe_events: list[dict[str, Any]] = []
    problems: list[str] = []
    for n, obj in json_objects(text, problems):
        if is_stripe_line(obj):
            parse_stripe_line(n, obj, stripe_events, problems, ctx.extra["settings"].stripe.webhook_secret)
            continue
        problem = _line_problem(n, obj)
        if problem:
            problems.append(problem)
            continue
        events.append((n, obj))
    return events, stripe_events, problems


def _line_problem(n: int, obj: dict[str, Any]) -> str | None:
    """What is wrong with one provider event line (None when fine); normalises inbound SMS fields."""
    kind = obj.get("type")
    if kind not in TYPES:
        return f"line {n}: type: unknown event type {kind!r} (known: {', '.join(TYPES)})"
    missing = [k for k in TYPES[kind] if not isinstance(obj.get(k), str) or not obj.get(k)]
    if missing:
        return f"line {n}: {missing[0]}: required for {kind}"
    if kind == "sms_status" and obj["status"] not in STATUSES:
        return f"line {n}: status: unknown message status {obj['status']!r}"
    if kind == "sms_status" and obj.get("error_code") not in (None, "") and not str(obj["error_code"]).isdigit():
        return f"line {n}: error_code: expected a number"
    if kind == "inbound_sms":
        try:
            obj["from"] = parse_phone(obj["from"])
        except ValueError as exc:
            return f"line {n}: from: {exc}"
        if obj.get("received_at"):
            try:
                obj["received_at"] = parse_datetime(str(obj["received_at"]))
            except ValueError as exc:
                return f"line {n}: received_at: {exc}"
    return None


def _sends_by_message_sid(conn: Any, events: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """The sends the status events name, by message SID."""
    sends: dict[str, Any] = {}
    message_sids = [o["sid"] for _, o in events if o["type"] == "sms_status"]
    for i in range(0, len(message_sids), 500):
        for r in conn.execute(select(send_t).where(send_t.c.provider_ref.in_(message_sids[i : i + 500]))):
            sends[r.provider_ref] = r
    return sends


def _apply_event(conn: Any, o: dict[str, Any], sends: dict[str, Any], ctx: Context, report: IngestReport) -> set[int]:
    """Apply one provider event; counts it in ``report``; returns the patients it touched."""
    kind = o["type"]
    touched: set[int] = set()
    if kind == "sms_status":
        row = sends[o["sid"]]
        out = classify_status(o["status"], o.get("error_code"), o["sid"])
        if apply_send_status(conn, row, out, ctx, source="events ingest"):
            report.applied += 1
            touched.add(row.patient_pk)
            sends[o["sid"]] = conn.execute(select(send_t).where(send_t.c.id == row.id)).one()
        else:
            report.unchanged += 1
    elif kind == "inbound_sms":
        n_applied, pts = apply_inbound(
            conn,
            [
                InboundSms(
                    message_sid=o.get("sid"),
                    from_number=o["from"],
                    body=o["body"],
                    received_at=o.get("received_at"),
                )
            ],
            ctx,
        )
        report.applied += n_applied
        touched |= pts
    elif kind == "email_unsubscribe":
        touched |= unsubscribe_email(conn, o["email"], ctx, "List-Unsubscribe")
        report.applied += 1
    elif kind == "email_reply":
        verdict = classify(o["body"])
        if verdict == "stop":
            touched |= unsubscribe_email(conn, o["email"], ctx, "email reply")
        elif verdict == "review":
            touched |= flag_for_review(conn, o["email"], ctx)
        report.applied += 1
    else:
        touched |= suppress_email(
            conn, o["email"], "bounced" if kind == "email_bounce" else "complained", ctx, o.get("reason")
        )
        report.applied += 1
    return touched


def flag_for_review(conn: Any, email: str, ctx: Context) -> set[int]:
    from sqlalchemy import func, update

    rows = set(
        conn.execute(select(patient_t.c.id).where(func.lower(patient_t.c.email) == email.strip().lower())).scalars()
    )
    if rows:
        conn.execute(
            update(patient_t).where(patient_t.c.id.in_(sorted(rows))).values(needs_review=True, updated_at=ctx.now)
        )
    return rows

"""Reads the claim phase and the fallbacks share: patient rows, and what was already sent to
their contacts (the contact caps count it)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select

from outreach_cli.domain.caps import ContactUsage
from outreach_cli.domain.contacts import usable_methods
from outreach_cli.domain.context import Context
from outreach_cli.domain.patient_view import contact_of, zones_of
from outreach_cli.domain.statuses import COUNTS_AS_SENT, IN_FLIGHT_SENDS
from outreach_cli.outreach.plan import PlanPatient
from outreach_cli.outreach.state import MESSAGE_CHANNELS
from outreach_cli.store.bulk import chunks
from outreach_cli.store.models import patient_t, send_t

BUSY = (*IN_FLIGHT_SENDS, *COUNTS_AS_SENT)
DEFAULT_CAPS: dict[str, Any] = {"calls_per_7_days": 7, "messages_per_7_days": None, "states": {}}


def load_patients(conn: Connection, pks: set[int]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for chunk in chunks(sorted(pks)):
        for p in conn.execute(select(patient_t).where(patient_t.c.id.in_(chunk))):
            out[p.id] = p
    return out


def plan_patient(p: Any, practice_tz: str) -> PlanPatient:
    """The facts of patient row ``p`` that ``plan_step`` decides on."""
    return PlanPatient(
        id=p.id,
        phone=p.phone,
        email=p.email,
        state=p.state,
        zones=zones_of(p, practice_tz),
        usable=usable_methods(contact_of(p)),
    )


def contact_usage(conn: Connection, ctx: Context, pmap: Mapping[int, Any]) -> ContactUsage:
    """What was sent to these patients' phone numbers and email addresses, by any patient
    record and set: today's channels and the last 7 days (README "Compliance": caps)."""
    settings = ctx.extra.get("settings")
    caps = settings.values.get("compliance") if settings is not None else None
    usage = ContactUsage(caps or dict(DEFAULT_CAPS))
    phones = sorted({p.phone for p in pmap.values() if p.phone})
    emails = sorted({p.email for p in pmap.values() if p.email})  # exact: served by the index
    conds = [send_t.c.patient_pk.in_(sorted(pmap))]
    if phones:
        conds.append(patient_t.c.phone.in_(phones))
    if emails:
        conds.append(patient_t.c.email.in_(emails))
    since = ctx.now - timedelta(days=7)
    q = (
        select(
            send_t.c.patient_pk,
            send_t.c.method,
            send_t.c.local_day,
            send_t.c.step_index,
            func.coalesce(send_t.c.sent_at, send_t.c.due_at).label("at"),
            patient_t.c.phone,
            patient_t.c.email,
        )
        .join(patient_t, patient_t.c.id == send_t.c.patient_pk)
        .where(
            or_(*conds),
            send_t.c.method.in_(MESSAGE_CHANNELS),
            send_t.c.status.in_(BUSY),
            or_(send_t.c.sent_at >= since, send_t.c.sent_at.is_(None)),
        )
    )
    for r in conn.execute(q):
        if r.step_index is not None and r.step_index < 0:
            continue  # the opt-out confirmation is not outreach
        usage.record(r.patient_pk, r.phone, r.email, r.method, r.local_day, r.at or ctx.now)
    return usage

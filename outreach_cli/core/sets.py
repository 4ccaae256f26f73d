"""Invoice sets in the database: creation, re-evaluation after any change, events, payment links.

Everything here works on chunks of sets with a handful of statements per chunk, so a change that
touches a hundred thousand sets stays set-based.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, select, update

from outreach_cli.core.errors import InvalidInput
from outreach_cli.core.models import (
    charge_t,
    event_t,
    invoice_set_t,
    patient_t,
    rule_set_t,
    rule_set_version_t,
    send_t,
)
from outreach_cli.core.rulesets import RuleSet
from outreach_cli.core.scheduling import Window
from outreach_cli.core.statuses import OPEN, Status

if TYPE_CHECKING:  # phonenumbers (under contacts) is slow to import; read commands do not need it
    from outreach_cli.core.contacts import Contact

CHUNK = 500


def chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@dataclass
class Context:
    """What every change needs: the (injectable) clock, who acts, and the scheduling settings."""

    now: datetime
    window: Window
    practice_tz: str
    actor: str = "system"
    practice_name: str = ""
    practice_phone: str = ""
    url_template: str = "https://pay.example.com/p/{token}"
    secret: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class RuleSets:
    """The rule sets in the database, current versions parsed."""

    def __init__(self, conn: Connection) -> None:
        self.by_id: dict[int, tuple[str, int, RuleSet]] = {}
        self.ids: dict[str, int] = {}
        rows = conn.execute(
            select(
                rule_set_t.c.id, rule_set_t.c.name, rule_set_t.c.current_version, rule_set_version_t.c.parsed_json
            ).join(
                rule_set_version_t,
                (rule_set_version_t.c.rule_set_id == rule_set_t.c.id)
                & (rule_set_version_t.c.version == rule_set_t.c.current_version),
            )
        ).all()
        for rid, name, version, parsed in rows:
            self.by_id[rid] = (name, version, RuleSet.from_json(parsed))
            self.ids[name] = rid

    def resolve(self, name: str) -> int:
        if name not in self.ids:
            known = ", ".join(sorted(self.ids)) or "none (run `outreach init`)"
            raise InvalidInput(f"unknown rule set {name!r}; known: {known}")
        return self.ids[name]

    def get(self, rule_set_id: int) -> RuleSet:
        return self.by_id[rule_set_id][2]

    def name(self, rule_set_id: int) -> str:
        return self.by_id[rule_set_id][0]

    def version(self, rule_set_id: int) -> int:
        return self.by_id[rule_set_id][1]


def contact_of(p: Any) -> Contact:
    from outreach_cli.core.contacts import Contact

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
    from outreach_cli.core.contacts import zones_for  # phonenumbers: loaded only when needed

    return zones_for(
        explicit=p.timezone,
        phone=p.phone,
        postal_code=p.postal_code,
        state=p.state,
        country=p.country,
        practice_tz=practice_tz,
    )


def window_of(p: Any, ctx: Context) -> Window:
    """The sending window for this patient: the configured one, plus their state's holidays when
    `sending.state_holidays` is on."""
    return ctx.window.for_state(p.state)


def payment_token(set_id: int, secret: str) -> str:
    """Unguessable and not revealing the set ID: HMAC-SHA256 of the ID under the secret."""
    mac = hmac.new(secret.encode(), f"invoice-set:{set_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def payment_url(set_id: int, ctx: Context) -> str:
    return ctx.url_template.replace("{token}", payment_token(set_id, ctx.secret))


def payment_url_maker(ctx: Context) -> Callable[[int], str]:
    """`payment_url` for many sets: the HMAC key is prepared once and copied per set."""
    keyed = hmac.new(ctx.secret.encode(), digestmod=hashlib.sha256)
    template = ctx.url_template

    def url(set_id: int) -> str:
        mac = keyed.copy()
        mac.update(b"invoice-set:%d" % set_id)
        return template.replace("{token}", base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("="))

    return url


def event_row(
    ctx: Context,
    kind: str,
    *,
    set_id: int | None = None,
    patient_pk: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "invoice_set_id": set_id,
        "patient_pk": patient_pk,
        "at": at or ctx.now,
        "kind": kind,
        "actor": actor or ctx.actor,
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
        "detail": json.dumps(detail, sort_keys=True) if detail else None,
    }


def add_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append events (dicts from `event_row`, all with the same keys).

    Straight to the driver's executemany with each column's bind conversion done once per
    distinct value (a bulk action writes 100,000 events sharing one time and actor): SQLAlchemy's
    per-row parameter handling cost more than the inserts themselves.
    """
    if not rows:
        return
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    cols = list(rows[0])
    if mark is None or any(list(r) != cols for r in rows):
        for chunk in chunks(rows, 2000):
            conn.execute(event_t.insert(), list(chunk))
        return
    convert: list[Any] = []
    for c in cols:
        proc = event_t.c[c].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if proc is None:
            convert.append(None)
        else:
            cache: dict[Any, Any] = {}

            def conv(v: Any, proc: Any = proc, cache: dict[Any, Any] = cache) -> Any:
                if v is None:
                    return None
                if v not in cache:
                    cache[v] = proc(v)
                return cache[v]

            convert.append(conv)
    sql = f"INSERT INTO event ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    plain = all(f is None for f in convert)
    for chunk in chunks(rows, 5000):
        if plain:
            params = [tuple(r.values()) for r in chunk]
        else:
            params = [tuple(v if f is None else f(v) for v, f in zip(r.values(), convert, strict=True)) for r in chunk]
        conn.exec_driver_sql(sql, params)


def recompute_amounts(conn: Connection, set_ids: Iterable[int]) -> None:
    ids = sorted(set(set_ids))
    total = (
        select(func.coalesce(func.sum(charge_t.c.outstanding_cents), 0))
        .where(charge_t.c.invoice_set_id == invoice_set_t.c.id)
        .scalar_subquery()
    )
    for chunk in chunks(ids):
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(amount_outstanding_cents=total))


def cancel_pending_sends(conn: Connection, set_ids: Iterable[int], reason: str, now: datetime) -> None:
    ids = sorted(set(set_ids))
    for chunk in chunks(ids):
        conn.execute(
            update(send_t)
            .where(send_t.c.invoice_set_id.in_(chunk), send_t.c.status == "pending")
            .values(status="cancelled", reason=reason, finished_at=now)
        )


_SET_COLS = (
    invoice_set_t.c.id,
    invoice_set_t.c.patient_pk,
    invoice_set_t.c.rule_set_id,
    invoice_set_t.c.status,
    invoice_set_t.c.status_reason,
    invoice_set_t.c.failed_reason,
    invoice_set_t.c.will_fail_reason,
    invoice_set_t.c.expired_at,
    invoice_set_t.c.amount_outstanding_cents,
    invoice_set_t.c.anchor_at,
    invoice_set_t.c.paused_at,
    invoice_set_t.c.next_send_at,
    invoice_set_t.c.next_step_index,
    invoice_set_t.c.next_step,
    invoice_set_t.c.next_methods,
    invoice_set_t.c.held_until,
)
_PATIENT_COLS = tuple(
    patient_t.c[n].label("p_" + n)
    for n in (
        "phone",
        "phone_type",
        "email",
        "address_line1",
        "city",
        "state",
        "postal_code",
        "country",
        "address_invalid",
        "sms_opt_out",
        "call_opt_out",
        "email_opt_out",
        "email_suppressed",
        "card_token",
        "stripe_customer_id",
        "stripe_payment_method_id",
        "timezone",
        "phone_tz",
        "address_tz",
        "phone_valid",
        "email_valid",
    )
)


class _PatientView:
    def __init__(self, row: Any) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, "p_" + name)


def refresh_sets(
    conn: Connection,
    set_ids: Iterable[int],
    ctx: Context,
    rule_sets: RuleSets,
    *,
    reason_prefix: str | None = None,
) -> dict[int, tuple[str, str]]:
    """Re-evaluate open sets after a change: paid, expired, will-fail/active, next send.

    Returns {set_id: (from_status, to_status)} for the sets whose shown status changed; each such
    change is written as an event in the caller's transaction.
    """
    from outreach_cli.core.evaluation import evaluate  # imports phonenumbers: only writers need it

    ids = sorted(set(set_ids))
    changed: dict[int, tuple[str, str]] = {}
    open_values = [s.value for s in OPEN]
    for chunk in chunks(ids):
        rows = conn.execute(
            select(*_SET_COLS, *_PATIENT_COLS)
            .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
            .where(invoice_set_t.c.id.in_(chunk), invoice_set_t.c.status.in_(open_values))
        ).all()
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        paid: list[int] = []
        for r in rows:
            p = _PatientView(r)
            view = evaluate(
                status=Status(r.status),
                rule_set=rule_sets.get(r.rule_set_id),
                next_step_index=r.next_step_index or 0,
                anchor=r.anchor_at,
                paused=r.paused_at is not None,
                expired_at=r.expired_at,
                failed_reason=r.failed_reason,
                balance_cents=r.amount_outstanding_cents,
                contact=contact_of(p),
                zones=zones_of(p, ctx.practice_tz),
                window=window_of(p, ctx),
                now=ctx.now,
                held_until=r.held_until,
            )
            new = {
                "status": view.status.value,
                "status_reason": view.status_reason,
                "will_fail_reason": view.will_fail_reason,
                "expired_at": view.expired_at,
                "next_send_at": view.next_send_at,
                "next_step": view.next_step,
                "next_methods": view.next_methods,
            }
            old = {k: getattr(r, k) for k in new}
            if new == old:
                continue
            new["b_id"] = r.id
            new["updated_at"] = ctx.now
            new["closed_at"] = ctx.now if view.status is Status.PAID else None
            updates.append(new)
            if view.status.value != r.status:
                changed[r.id] = (r.status, view.status.value)
                events.append(
                    event_row(
                        ctx,
                        "status",
                        set_id=r.id,
                        patient_pk=r.patient_pk,
                        actor="system",
                        from_status=r.status,
                        to_status=view.status.value,
                        reason=view.status_reason or ("balance reached zero" if view.status is Status.PAID else None),
                    )
                )
                if view.status is Status.PAID:
                    paid.append(r.id)
        if updates:
            bulk_update(conn, invoice_set_t, updates)
        if paid:
            cancel_pending_sends(conn, paid, "balance reached zero", ctx.now)
        add_events(conn, events)
    return changed


def bulk_update(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """executemany UPDATE ... WHERE id = :b_id; every row carries the same keys."""
    if not rows:
        return
    keys = [k for k in rows[0] if k != "b_id"]
    stmt = update(table).where(table.c.id == bindparam("b_id")).values({k: bindparam("v_" + k) for k in keys})
    params = [{"b_id": r["b_id"], **{"v_" + k: r[k] for k in keys}} for r in rows]
    for chunk in chunks(params, 2000):
        conn.execute(stmt, list(chunk))


def open_set_ids_for_patients(conn: Connection, patient_pks: Iterable[int]) -> list[int]:
    pks = sorted(set(patient_pks))
    out: list[int] = []
    for chunk in chunks(pks):
        out.extend(
            conn.execute(
                select(invoice_set_t.c.id).where(
                    invoice_set_t.c.patient_pk.in_(chunk), invoice_set_t.c.status.in_([s.value for s in OPEN])
                )
            ).scalars()
        )
    return out

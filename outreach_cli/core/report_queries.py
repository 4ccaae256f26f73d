"""The rows `outreach report` computes over: the sets that entered in the period (with the filters),
and their charges, sends, payment allocations and opt-out events. Set-based reads, one query per
table; the figures themselves are computed in `core/report.py`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, and_, func, select, type_coerce

from outreach_cli.core.models import (
    allocation_t,
    charge_t,
    event_t,
    invoice_set_t,
    payment_t,
    rule_set_t,
    send_t,
)
from outreach_cli.core.report import OPT_OUT_KINDS, OptOutRow, PaymentRow, ReportInput, SendRow, SetRow
from outreach_cli.core.sets import RuleSets


def read_report_input(
    conn: Connection,
    *,
    since: datetime,
    until: datetime,
    rule_sets: list[str] | None = None,
    statuses: list[str] | None = None,
) -> ReportInput:
    cond: list[Any] = [invoice_set_t.c.created_at >= since, invoice_set_t.c.created_at < until]
    if statuses:
        cond.append(invoice_set_t.c.status.in_(statuses))
    if rule_sets:
        cond.append(invoice_set_t.c.rule_set_id.in_(select(rule_set_t.c.id).where(rule_set_t.c.name.in_(rule_sets))))
    where = and_(*cond)
    in_scope = select(invoice_set_t.c.id).where(where).scalar_subquery()
    tcol, parse = _time_reader(conn)

    owed: dict[int, int] = dict(
        conn.execute(
            select(charge_t.c.invoice_set_id, func.sum(charge_t.c.amount_cents))
            .where(charge_t.c.invoice_set_id.in_(in_scope), charge_t.c.status != "void")
            .group_by(charge_t.c.invoice_set_id)
        ).all()
    )
    names: dict[int, str] = dict(conn.execute(select(rule_set_t.c.id, rule_set_t.c.name)).all())
    sets = [
        SetRow(sid, names.get(rs_id, str(rs_id)), status, parse(created), int(owed.get(sid, 0)), arm, exp)
        for sid, rs_id, status, created, arm, exp in conn.execute(
            select(
                invoice_set_t.c.id,
                invoice_set_t.c.rule_set_id,
                invoice_set_t.c.status,
                tcol(invoice_set_t.c.created_at),
                invoice_set_t.c.arm,
                invoice_set_t.c.experiment,
            ).where(where)
        )
    ]
    sends = [
        SendRow(sid, day, title, method, status, attempts or 0, parse(sent or finished or due))
        for sid, day, title, method, status, attempts, sent, finished, due in conn.execute(
            select(
                send_t.c.invoice_set_id,
                send_t.c.step_day,
                send_t.c.step_title,
                send_t.c.method,
                send_t.c.status,
                send_t.c.attempts,
                tcol(send_t.c.sent_at),
                tcol(send_t.c.finished_at),
                tcol(send_t.c.due_at),
            ).where(send_t.c.invoice_set_id.in_(in_scope), send_t.c.status.notin_(("pending", "cancelled", "claimed")))
        )
    ]
    payments = [
        PaymentRow(int(sid), pid, parse(paid_at), int(cents))
        for sid, pid, paid_at, cents in conn.execute(
            select(
                charge_t.c.invoice_set_id,
                payment_t.c.payment_id,
                tcol(payment_t.c.paid_at),
                func.sum(allocation_t.c.amount_cents),
            )
            .select_from(
                allocation_t.join(charge_t, charge_t.c.id == allocation_t.c.charge_pk).join(
                    payment_t, payment_t.c.id == allocation_t.c.payment_pk
                )
            )
            .where(charge_t.c.invoice_set_id.in_(in_scope))
            .group_by(charge_t.c.invoice_set_id, payment_t.c.payment_id, payment_t.c.paid_at)
        )
    ]
    opt_outs = []
    for sid, at, kind, detail in conn.execute(
        select(event_t.c.invoice_set_id, tcol(event_t.c.at), event_t.c.kind, event_t.c.detail).where(
            event_t.c.invoice_set_id.in_(in_scope), event_t.c.kind.in_(OPT_OUT_KINDS)
        )
    ):
        if kind == "reply" and _keyword(detail) != "stop":
            continue
        opt_outs.append(OptOutRow(sid, parse(at), kind))
    rs = RuleSets(conn)
    steps = {rs.name(i): [(st.day, st.title) for st in rs.get(i).steps] for i in rs.by_id}
    return ReportInput(sets, sends, payments, opt_outs, steps)


def _keyword(detail: str | None) -> str | None:
    try:
        value = json.loads(detail or "{}").get("keyword")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def _time_reader(conn: Connection) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(column wrapper, value parser) for reading many timestamps fast. SQLite keeps UTC text
    (see models.UTCDateTime): read it raw and parse it with the C `fromisoformat`, instead of the
    generic per-value conversion, which dominates the report's time at scale."""
    if conn.dialect.name == "sqlite":

        def parse(v: Any) -> datetime | None:
            return None if v is None else datetime.fromisoformat(v).replace(tzinfo=UTC)

        return (lambda c: type_coerce(c, String)), parse
    return (lambda c: c), (lambda v: v)

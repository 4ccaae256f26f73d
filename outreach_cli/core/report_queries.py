"""What `outreach report` computes over: the sets that entered in the period (with the filters), and
their charges, sends, payment allocations and opt-out events; the figures themselves are computed
in `core/report.py`.

`read_report` is what the command uses: counts and sums in the database (GROUP BY rule set, week,
step, method; migration 0010's covering indexes), rows only for the sets with payments or opt-outs.
`read_report_input` reads every row of every set: the reference the tests compare it with.

Where the time goes at a million sets on SQLite (bench/RESULTS.md): each set's owed (a search of its
charges) and its steps (its sends) are looked up once per query, about a microsecond each; five such
passes make the report's seconds. Less would need the owed and the rule set kept on the sets' and
sends' rows at write time (or a summary table)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Integer, String, and_, case, func, literal_column, or_, select, text, type_coerce

from outreach_cli.core.models import (
    allocation_t,
    charge_t,
    event_t,
    invoice_set_t,
    payment_t,
    rule_set_t,
    send_t,
)
from outreach_cli.core.report import (
    ATTEMPTED,
    NO_SEND_TOUCH,
    OPT_OUT_KINDS,
    REACHED,
    Fine,
    MsgTally,
    OptOutRow,
    PaymentRow,
    ReportInput,
    SendRow,
    SetRow,
    Tallies,
    fine_key,
    projection,
    week_bucket_seconds,
    week_of,
)
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
            )
            .where(send_t.c.invoice_set_id.in_(in_scope), send_t.c.status.notin_(("pending", "cancelled", "claimed")))
            .order_by(send_t.c.id)  # sends delivered at the same instant: the one recorded later is later
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
    opt_outs = _opt_outs(conn, event_t.c.invoice_set_id.in_(in_scope), tcol, parse)
    rs = RuleSets(conn)
    steps = {rs.name(i): [(st.day, st.title) for st in rs.get(i).steps] for i in rs.by_id}
    return ReportInput(sets, sends, payments, opt_outs, steps)


# --- the fast path: counts in the database, rows only for sets with payments or opt-outs ---------


def read_report(
    conn: Connection,
    *,
    since: datetime,
    until: datetime,
    tz: ZoneInfo,
    by: tuple[str, ...],
    experiment: bool = False,
    rule_sets: list[str] | None = None,
    statuses: list[str] | None = None,
) -> ReportInput:
    """What `Report` needs, read in a few GROUP BY queries: the tallies (`report.Tallies`) of every
    set in scope, and the rows of only the sets that have a payment or an opt-out before ``until``
    (attribution, paid-in-full and the funnel's "paid after" need those sets' own sends). The
    figures are the same as from `read_report_input` (every row), which the tests check."""
    if conn.dialect.name == "sqlite":
        # Read pages through a memory map rather than a read() call each: most of a scan's system
        # time at a million sets. Read-only use; the connection ends with the command.
        conn.exec_driver_sql("PRAGMA mmap_size = 4294967296")
    s = invoice_set_t.alias("s")

    def scope(col: Callable[[Any], Any]) -> list[Any]:
        c: list[Any] = [col(s.c.created_at) >= since, col(s.c.created_at) < until]
        if statuses:
            c.append(col(s.c.status).in_(statuses))
        if rule_sets:
            c.append(col(s.c.rule_set_id).in_(select(rule_set_t.c.id).where(rule_set_t.c.name.in_(rule_sets))))
        return c

    cond = scope(lambda c: c)
    names: dict[int, str] = dict(conn.execute(select(rule_set_t.c.id, rule_set_t.c.name)).all())
    weeks = "week" in by
    bucket_of = _bucket(conn, s.c.created_at, week_bucket_seconds(tz, since, until)) if weeks else None
    week_cache: dict[Any, date] = {}

    def week(b: Any) -> date | None:
        if bucket_of is None:
            return None
        w = week_cache.get(b)
        if w is None:
            w = week_cache[b] = week_of(bucket_of[1](b), tz)
        return w

    owed = (
        select(func.coalesce(func.sum(charge_t.c.amount_cents), 0))
        .where(charge_t.c.invoice_set_id == s.c.id, charge_t.c.status != "void")
        .scalar_subquery()
    )
    head = [s.c.rule_set_id] + ([bucket_of[0].label("bucket")] if bucket_of is not None else [])
    d = send_t.alias("d")
    # Sends joined to their sets: on SQLite, `+d.invoice_set_id` (no index may serve it) makes the
    # planner read the sends in order and look each set up by its ID, rather than search the sends
    # of every set (40 % less time at a million sets). PostgreSQL plans this join well as it is.
    send_set = literal_column("+d.invoice_set_id", Integer) if conn.dialect.name == "sqlite" else d.c.invoice_set_id
    when = func.coalesce(d.c.sent_at, d.c.finished_at, d.c.due_at)
    counted = or_(when.is_(None), when < until)
    touch_cols = {"step": [d.c.step_day, d.c.step_title], "method": [d.c.method]}

    def split(row: Any) -> tuple[str, date | None, tuple[Any, ...]]:
        rs_id = row[0]
        if bucket_of is None:
            return names.get(rs_id, str(rs_id)), None, tuple(row[1:])
        return names.get(rs_id, str(rs_id)), week(row[1]), tuple(row[2:])

    # Each set once (projection ()); then the sets that reached no step (no send yet), which only
    # step and method rows show.
    whole: dict[Fine, list[int]] = defaultdict(lambda: [0, 0])
    for row in conn.execute(select(*head, func.count(), func.sum(owed)).where(*cond).group_by(*head)):
        rs, wk, (n, cents) = split(row)
        e = whole[(rs, wk, None, None)]
        e[0] += int(n)
        e[1] += int(cents or 0)
    no_send: list[tuple[str, date | None, int, int]] = []
    if projection(by):
        # NOT IN (one pass over the sends, then a lookup per set) rather than NOT EXISTS (a search
        # of the sends per set): about half the time on SQLite. send.invoice_set_id is never NULL.
        reached_sets = select(d.c.invoice_set_id).where(d.c.status.in_(REACHED), counted)
        q = select(*head, func.count(), func.sum(owed)).where(*cond, s.c.id.not_in(reached_sets)).group_by(*head)
        for row in conn.execute(q):
            rs, wk, (n, cents) = split(row)
            no_send.append((rs, wk, int(n), int(cents or 0)))
    entered: dict[tuple[str, ...], dict[Fine, list[int]]] = {(): dict(whole)}
    for proj in {projection(by), ("step",)} - {()}:
        acc: dict[Fine, list[int]] = defaultdict(lambda: [0, 0])
        cols = [c for dim in proj for c in touch_cols[dim]]
        reached = select(d.c.invoice_set_id, *cols).where(d.c.status.in_(REACHED), counted).distinct().subquery("r")
        rcols = [reached.c[c.name] for c in cols]
        q = (
            select(*head, *rcols, func.count(), func.sum(owed))
            .select_from(reached.join(s, s.c.id == reached.c.invoice_set_id))
            .where(*cond)
            .group_by(*head, *rcols)
        )
        for row in conn.execute(q):
            rs, wk, rest = split(row)
            step = (rest[0], rest[1]) if "step" in proj else None
            method = rest[-3] if "method" in proj else None
            e = acc[(rs, wk, step, method)]
            e[0] += rest[-2]
            e[1] += int(rest[-1] or 0)
        for rs, wk, n, cents in no_send:
            e = acc[fine_key(rs, wk, NO_SEND_TOUCH, proj)]
            e[0] += n
            e[1] += cents
        entered[proj] = dict(acc)

    messages: dict[Fine, MsgTally] = {}
    q = (
        select(
            *head,
            d.c.step_day,
            d.c.step_title,
            d.c.method,
            func.count(),
            func.sum(case((d.c.status == "delivered", 1), else_=0)),
            func.sum(case((d.c.status == "failed", 1), else_=0)),
        )
        .select_from(d.join(s, s.c.id == send_set))
        .where(*cond, d.c.status.in_(ATTEMPTED), counted)
        .group_by(*head, d.c.step_day, d.c.step_title, d.c.method)
    )
    for row in conn.execute(q):
        rs, wk, (day, title, method, n, delivered, failed) = split(row)
        key = (rs, wk, (day, title), method)
        m = messages.get(key) or messages.setdefault(key, MsgTally())
        m.attempted += n
        m.delivered += int(delivered or 0)
        m.failed += int(failed or 0)
        m.units += n  # no provider reports call durations yet: one minute per call attempt

    arms: dict[tuple[str, str], list[int]] = {}
    if experiment:
        q = (
            select(s.c.experiment, s.c.arm, func.count(), func.sum(owed))
            .where(*cond, s.c.experiment.is_not(None), s.c.experiment != "", s.c.arm.is_not(None), s.c.arm != "")
            .group_by(s.c.experiment, s.c.arm)
        )
        arms = {(row[0], row[1]): [int(row[2]), int(row[3] or 0)] for row in conn.execute(q)}

    # The sets with a payment or an opt-out before `until`, and their rows: read from the payments
    # and opt-out events (few next to the sets), then only those sets are checked against the scope.
    tcol, parse = _time_reader(conn)
    pay_rows = [
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
            .where(payment_t.c.paid_at < until, charge_t.c.invoice_set_id.is_not(None))
            .group_by(charge_t.c.invoice_set_id, payment_t.c.payment_id, payment_t.c.paid_at)
        )
    ]
    # (the time is checked on the rows: an index on it would lead the planner to read every event)
    out_rows = [o for o in _opt_outs(conn, event_t.c.invoice_set_id.is_not(None), tcol, parse) if o.at < until]
    candidates = sorted({p.set_id for p in pay_rows} | {o.set_id for o in out_rows})
    in_scope = case((and_(*cond), 1), else_=0)  # a column, so each set is found by its ID, not by an index scan
    sets: list[SetRow] = []
    sends: list[SendRow] = []
    for chunk in _chunks(candidates, 20000):
        found = [
            SetRow(sid, names.get(rs_id, str(rs_id)), status, parse(created), int(o or 0), arm, exp)
            for sid, rs_id, status, created, arm, exp, o, ok in conn.execute(
                select(
                    s.c.id, s.c.rule_set_id, s.c.status, tcol(s.c.created_at), s.c.arm, s.c.experiment, owed, in_scope
                ).where(_ids_in("s.id", chunk))
            )
            if ok
        ]
        sets += found
        chunk = [st.id for st in found]
        if not chunk:
            continue
        rows = sorted(  # recorded order (ties at one instant); ORDER BY in SQL would scan every send
            conn.execute(
                select(
                    d.c.id,
                    d.c.invoice_set_id,
                    d.c.step_day,
                    d.c.step_title,
                    d.c.method,
                    d.c.status,
                    d.c.attempts,
                    tcol(d.c.sent_at),
                    tcol(d.c.finished_at),
                    tcol(d.c.due_at),
                ).where(_ids_in("d.invoice_set_id", chunk), d.c.status.in_(REACHED))
            ),
            key=lambda r: int(r[0]),
        )
        sends += [
            SendRow(sid, day, title, method, status, attempts or 0, parse(sent or finished or due))
            for _id, sid, day, title, method, status, attempts, sent, finished, due in rows
        ]
    scoped = {st.id for st in sets}
    payments = [p for p in pay_rows if p.set_id in scoped]
    opt_outs = [o for o in out_rows if o.set_id in scoped]
    rs_ = RuleSets(conn)
    steps = {rs_.name(i): [(st.day, st.title) for st in rs_.get(i).steps] for i in rs_.by_id}
    return ReportInput(sets, sends, payments, opt_outs, steps, Tallies(entered, messages, arms, weeks=weeks))


def _ids_in(column: str, ids: list[int]) -> Any:
    """``column IN (1,2,...)`` written out: whole numbers only, so nothing to escape; binding tens of
    thousands of parameters one by one costs more than the query."""
    return text(f"{column} IN ({','.join(str(int(i)) for i in ids)})")


def _chunks(ids: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


def _opt_outs(conn: Connection, where: Any, tcol: Callable[[Any], Any], parse: Callable[[Any], Any]) -> list[OptOutRow]:
    out = []
    for sid, at, kind, detail in conn.execute(
        select(event_t.c.invoice_set_id, tcol(event_t.c.at), event_t.c.kind, event_t.c.detail).where(
            where, event_t.c.kind.in_(OPT_OUT_KINDS)
        )
    ):
        if kind == "reply" and _keyword(detail) != "stop":
            continue
        out.append(OptOutRow(sid, parse(at), kind))
    return out


def _bucket(conn: Connection, col: Any, seconds: int) -> tuple[Any, Callable[[Any], datetime]]:
    """(SQL expression, parser to a UTC datetime) grouping times into UTC hours or minutes
    (`report.week_bucket_seconds`; 0: the exact time)."""
    if conn.dialect.name == "sqlite":
        raw = type_coerce(col, String)  # UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        if seconds == 3600:
            return func.substr(raw, 1, 13), lambda v: datetime.fromisoformat(v + ":00").replace(tzinfo=UTC)
        if seconds == 60:
            return func.substr(raw, 1, 16), lambda v: datetime.fromisoformat(v).replace(tzinfo=UTC)
        return raw, lambda v: datetime.fromisoformat(v).replace(tzinfo=UTC)
    if seconds in (3600, 60):
        unit = "hour" if seconds == 3600 else "minute"
        return func.date_trunc(unit, func.timezone("UTC", col)), lambda v: v.replace(tzinfo=UTC)
    return col, lambda v: v


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

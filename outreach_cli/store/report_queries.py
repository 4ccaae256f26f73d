"""What `outreach report` computes over: the sets that entered in the period (with the filters), and
their charges, sends, payment allocations and opt-out events; the figures themselves are computed
in `domain/report.py`.

`read_report` is what the command uses: counts and sums in the database (GROUP BY rule set, week,
step, method) over what is kept at write time (each set's owed, 0011; its rule set, creation and
owed on its sends, 0018; the last-touch attribution, 0020; the steps each set reached, 0021), rows
only for the sets with a refund or an opt-out; its independent reads side by side on connections
of one snapshot where the database allows (`Store.read_together`). `read_report_input` reads every
row of every set: the reference the tests compare it with. Where the time goes at a million sets:
bench/RESULTS.md."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    text,
    type_coerce,
)

from outreach_cli.domain.report import (
    ATTEMPTED,
    NO_SEND_TOUCH,
    OPT_OUT_KINDS,
    REACHED,
    UNPROMPTED_TOUCH,
    Acc,
    Fine,
    MsgTally,
    OptOutRow,
    PaidFacts,
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
from outreach_cli.domain.statuses import ChargeStatus, SendStatus
from outreach_cli.store.attribution import REACHED_SQL
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import (
    UTCDateTime,
    allocation_t,
    charge_t,
    event_t,
    invoice_set_t,
    payment_t,
    reach_stale_t,
    report_stale_t,
    rule_set_t,
    send_t,
    set_paid_t,
    step_reach_t,
)


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
            .where(charge_t.c.invoice_set_id.in_(in_scope), charge_t.c.status != ChargeStatus.VOID)
            .group_by(charge_t.c.invoice_set_id)
        ).all()
    )
    names: dict[int, str] = dict(conn.execute(select(rule_set_t.c.id, rule_set_t.c.name)).all())
    sets = [
        SetRow(set_id, names.get(rs_id, str(rs_id)), status, parse(created), int(owed.get(set_id, 0)), arm, exp)
        for set_id, rs_id, status, created, arm, exp in conn.execute(
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
        SendRow(set_id, day, title, method, status, attempts or 0, parse(sent or finished or due))
        for set_id, day, title, method, status, attempts, sent, finished, due in conn.execute(
            _all_sends(in_scope, tcol)
        )
    ]
    grp = _payment_groups(tcol, charge_t.c.invoice_set_id.in_(in_scope))
    payments = [
        PaymentRow(int(set_id), pid, parse(paid_at), int(cents)) for set_id, pid, paid_at, cents in conn.execute(grp)
    ]
    opt_outs = _opt_outs(conn, event_t.c.invoice_set_id.in_(in_scope), tcol, parse)
    return ReportInput(sets, sends, payments, opt_outs, _steps(conn))


def _all_sends(in_scope: Any, tcol: Callable[[Any], Any]) -> Any:
    return (
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
        .where(
            send_t.c.invoice_set_id.in_(in_scope),
            send_t.c.status.notin_((SendStatus.PENDING, SendStatus.CANCELLED, SendStatus.CLAIMED)),
            send_t.c.step_index >= 0,  # opt-out confirmations are not outreach
        )
        .order_by(send_t.c.id)  # sends delivered at the same instant: the one recorded later is later
    )


def _payment_groups(tcol: Callable[[Any], Any], where: Any) -> Any:
    """(set, payment ID, paid at, cents): a payment's allocations to one set's charges, summed."""
    return (
        select(
            charge_t.c.invoice_set_id.label("set_id"),
            payment_t.c.payment_id,
            tcol(payment_t.c.paid_at).label("paid_at"),
            func.sum(allocation_t.c.amount_cents).label("cents"),
        )
        .select_from(
            allocation_t.join(charge_t, charge_t.c.id == allocation_t.c.charge_pk).join(
                payment_t, payment_t.c.id == allocation_t.c.payment_pk
            )
        )
        .where(where)
        .group_by(charge_t.c.invoice_set_id, payment_t.c.payment_id, payment_t.c.paid_at)
    )


def _steps(conn: Connection) -> dict[str, list[tuple[int, str]]]:
    rs = RuleSets(conn)
    return {rs.name(i): [(st.day, st.title) for st in rs.get(i).steps] for i in rs.by_id}


# --- the fast path: counts in the database, rows only for sets with refunds or opt-outs ----------


@dataclass
class _Scope:
    """The sets a report covers (entered in [since, until), the filters) and how to group them."""

    dialect: str
    since: datetime
    until: datetime
    tz: ZoneInfo
    names: dict[int, str]  # rule set id -> name
    statuses: list[str] | None
    rule_sets: list[str] | None
    week_seconds: int | None  # `week_bucket_seconds` when grouping by week, else None
    _weeks: dict[Any, date] = field(default_factory=dict)

    def cond(self, s: Any) -> list[Any]:
        c: list[Any] = [s.c.created_at >= self.since, s.c.created_at < self.until]
        if self.statuses:
            c.append(s.c.status.in_(self.statuses))
        if self.rule_sets:
            c.append(s.c.rule_set_id.in_(select(rule_set_t.c.id).where(rule_set_t.c.name.in_(self.rule_sets))))
        return c

    def send_cond(self, d: Any) -> list[Any] | None:
        """`cond` on the set's facts kept on its sends (migration 0018); None when a status filter
        needs the sets themselves (a set's status is not kept on its sends)."""
        if self.statuses:
            return None
        created: Any = d.c.set_created_at
        if self.dialect == "sqlite":
            # `+col`: no index may serve the period, so SQLite scans the covering index made for
            # the query rather than skip-scanning one that is not (what its statistics suggest).
            created = literal_column(f"+{d.name}.set_created_at", UTCDateTime())
        c: list[Any] = [created >= self.since, created < self.until]
        if self.rule_sets:
            c.append(d.c.set_rule_set_id.in_(select(rule_set_t.c.id).where(rule_set_t.c.name.in_(self.rule_sets))))
        return c

    def sql(self, alias: str) -> str:
        """`cond` as SQL text with the bind parameters of `binds`."""
        c = f"{alias}.created_at >= :since AND {alias}.created_at < :until"
        if self.statuses:
            c += f" AND {alias}.status IN :statuses"
        if self.rule_sets:
            c += f" AND {alias}.rule_set_id IN (SELECT id FROM rule_set WHERE name IN :rs_names)"
        return c

    def binds(self) -> list[Any]:
        b = [bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime())]
        if self.statuses:
            b.append(bindparam("statuses", expanding=True))
        if self.rule_sets:
            b.append(bindparam("rs_names", expanding=True))
        return b

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"since": self.since, "until": self.until}
        if self.statuses:
            p["statuses"] = list(self.statuses)
        if self.rule_sets:
            p["rs_names"] = list(self.rule_sets)
        return p

    def rule_set(self, rs_id: int) -> str:
        return self.names.get(rs_id, str(rs_id))

    def week(self, bucket: Any) -> date:
        """The week (practice zone) of a `_bucket` of set creation times."""
        w = self._weeks.get(bucket)
        if w is None:
            w = self._weeks[bucket] = week_of(_bucket_parser(self.dialect, self.week_seconds or 0)(bucket), self.tz)
        return w


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
    attribution: str | None = None,
    attribution_days: int | None = None,
    others: list[Connection] | None = None,
) -> ReportInput:
    """What `Report` needs, read in a few GROUP BY queries: the tallies (`report.Tallies`) of every
    set in scope, the money of the sets without refunds attributed in the database (`paid_facts`),
    and the rows of only the sets with a refund or an opt-out before ``until``. The figures are
    the same as from `read_report_input` (every row), which the tests check. Without
    ``attribution`` and ``attribution_days`` the attribution is made when `Report` asks, in a
    transaction of its own. ``others``: more connections reading the same snapshot as ``conn``
    (`Store.read_together`): the independent reads then run side by side, one per connection."""
    names: dict[int, str] = dict(conn.execute(select(rule_set_t.c.id, rule_set_t.c.name)).all())
    weeks = "week" in by
    sc = _Scope(
        conn.dialect.name,
        since,
        until,
        tz,
        names,
        statuses,
        rule_sets,
        week_bucket_seconds(tz, since, until) if weeks else None,
    )
    reads: dict[str, Callable[[Connection], Any]] = {
        "entered": lambda c: _entered(c, sc, by),
        "messages": lambda c: _messages(c, sc),
        "exceptions": lambda c: (_rows_of_exceptions(c, sc), _steps(c), _arms(c, sc) if experiment else {}),
    }
    if attribution is not None and attribution_days is not None:
        reads["paid"] = lambda c: paid_facts(c, sc, attribution_days, attribution)
    got = _read_side_by_side([conn, *(others or [])], reads)
    (sets, sends, payments, opt_outs), steps, arms = got["exceptions"]
    paid: PaidFacts | Callable[[int, str], PaidFacts]
    if "paid" in got:
        paid = got["paid"]
    else:
        engine = conn.engine

        def paid(days: int, mode: str) -> PaidFacts:
            with engine.connect() as c, c.begin():
                return paid_facts(c, sc, days, mode)

    tallies = Tallies(got["entered"], got["messages"], arms, weeks=weeks)
    return ReportInput(sets, sends, payments, opt_outs, steps, tallies, paid, (attribution, attribution_days))


def _read_side_by_side(conns: list[Connection], reads: dict[str, Callable[[Connection], Any]]) -> dict[str, Any]:
    """Each read's result, the reads shared among the connections (each connection's in turn, on a
    thread of its own when there are several: SQLite leaves Python's lock while it works)."""
    for c in conns:
        if c.dialect.name == "sqlite":
            # Read pages through a memory map rather than a read() call each: most of a scan's
            # system time at a million sets. Read-only use; the connection ends with the command.
            c.exec_driver_sql("PRAGMA mmap_size = 4294967296")
    shares: list[list[str]] = [[] for _ in conns]
    for i, name in enumerate(sorted(reads, key=lambda k: k != "paid")):  # the longest first
        shares[i % len(conns)].append(name)

    def run(i: int) -> dict[str, Any]:
        return {name: reads[name](conns[i]) for name in shares[i]}

    if len(conns) == 1:
        return run(0)
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, Any] = {}
    with ThreadPoolExecutor(len(conns)) as pool:
        for part in pool.map(run, range(len(conns))):
            out.update(part)
    return out


def _split(sc: _Scope, row: Any) -> tuple[str, date | None, tuple[Any, ...]]:
    """(rule set, week, the rest) of a row grouped by `_head`."""
    if sc.week_seconds is None:
        return sc.rule_set(row[0]), None, tuple(row[1:])
    return sc.rule_set(row[0]), sc.week(row[1]), tuple(row[2:])


def _head(conn: Connection, sc: _Scope, s: Any) -> list[Any]:
    if sc.week_seconds is None:
        return [s.c.rule_set_id]
    return [s.c.rule_set_id, _bucket(conn, s.c.created_at, sc.week_seconds)[0].label("bucket")]


def _send_head(conn: Connection, sc: _Scope, d: Any) -> list[Any]:
    """`_head` from the set's facts kept on its sends."""
    rs = d.c.set_rule_set_id.label("rs")
    if sc.week_seconds is None:
        return [rs]
    return [rs, _bucket(conn, d.c.set_created_at, sc.week_seconds)[0].label("bucket")]


def _entered(conn: Connection, sc: _Scope, by: tuple[str, ...]) -> dict[tuple[str, ...], dict[Fine, list[int]]]:
    """Sets entered and their owed: each set once (projection ()), and per distinct step and/or
    method it reached (the projections of ``by``, and ("step",) for the funnel)."""
    whole: dict[Fine, list[int]] = defaultdict(lambda: [0, 0])
    for row in conn.execute(_whole_query(conn, sc)):
        rs, wk, (n, cents) = _split(sc, row)
        e = whole[(rs, wk, None, None)]
        e[0] += int(n)
        e[1] += int(cents or 0)
    entered: dict[tuple[str, ...], dict[Fine, list[int]]] = {(): dict(whole)}
    projections = {projection(by), ("step",)} - {()}
    if not projections:
        return entered
    # ("step",) first: its query also counts the sets that reached any step (each at its first
    # step), so the sets that reached none (no send yet; only step and method rows show them) are
    # the rest.
    reached_any: dict[tuple[str, date | None], list[int]] = defaultdict(lambda: [0, 0])
    fast = sc.send_cond(send_t) is not None
    # The reach kept at write time (store/reach.py) where it covers the scope, with the sets still
    # marked for recomputing counted from their sends.
    stale = fast and _any_marked(conn, reach_stale_t)
    for row in conn.execute(_stale_reached_any_query(conn, sc)) if stale else ():
        rs, wk, (n, cents) = _split(sc, row)
        r = reached_any[(rs, wk)]
        r[0] += int(n)
        r[1] += int(cents or 0)
    for proj in sorted(projections, key=lambda p: p != ("step",)):
        acc: dict[Fine, list[int]] = defaultdict(lambda: [0, 0])
        for query, firsts in _reach_queries(conn, sc, proj, fast, stale):
            for row in conn.execute(query):
                rs, wk, rest = _split(sc, row)
                if firsts:
                    rest, first = rest[:-2], rest[-2:]
                    r = reached_any[(rs, wk)]
                    r[0] += int(first[0])
                    r[1] += int(first[1] or 0)
                e = acc[
                    (rs, wk, (rest[0], rest[1]) if "step" in proj else None, rest[-3] if "method" in proj else None)
                ]
                e[0] += rest[-2]
                e[1] += int(rest[-1] or 0)
        for (rs, wk, _, _), (n, cents) in whole.items():
            got = reached_any.get((rs, wk), [0, 0])
            if n - got[0]:
                e = acc[fine_key(rs, wk, NO_SEND_TOUCH, proj)]
                e[0] += n - got[0]
                e[1] += cents - got[1]
        entered[proj] = dict(acc)
    return entered


def _whole_query(conn: Connection, sc: _Scope) -> Any:
    s = invoice_set_t.alias("s")
    head = _head(conn, sc, s)
    return select(*head, func.count(), func.sum(s.c.owed_cents)).where(*sc.cond(s)).group_by(*head)


def _any_marked(conn: Connection, marks: Any) -> bool:
    """Whether a write outside the store left any set marked in ``marks`` (`report_stale`,
    `reach_stale`): none is after a write through `Store.write`."""
    return conn.execute(select(marks.c.set_id).limit(1)).first() is not None


def _reach_queries(
    conn: Connection, sc: _Scope, proj: tuple[str, ...], fast: bool, stale: bool
) -> list[tuple[Any, bool]]:
    """The queries of the sets (and owed) per distinct touch of ``proj`` they reached, each with
    whether its rows end with the sets counted at their first step (("step",) only)."""
    if not fast:
        return [(_reached_query(conn, sc, proj, first=proj == ("step",)), proj == ("step",))]
    if proj != ("step",):
        return [(_send_reached_query(conn, sc, proj), False)]
    queries = [(_kept_reach_query(conn, sc, stale), True)]
    if stale:
        queries.append((_send_reached_query(conn, sc, proj, only_stale=True), False))
    return queries


def _kept_reach_query(conn: Connection, sc: _Scope, stale: bool) -> Any:
    """Sets in scope (and their owed) that reached each step before --until, and those of them
    counted at their first step (which sum to the sets that reached any), from what is kept
    (store/reach.py): one pass over ix_step_reach_report, no join; ``stale``: leaving out the sets
    marked for recomputing."""
    r = step_reach_t.alias("r")
    head = _head(conn, sc, r)
    where = [*sc.cond(r), or_(r.c.first_at.is_(None), r.c.first_at < sc.until)]
    if stale:
        where.append(r.c.set_id.not_in(select(reach_stale_t.c.set_id)))
    cols = (r.c.step_day, r.c.step_title)
    firsts = (func.sum(r.c.set_first), func.sum(r.c.set_first * r.c.owed_cents))
    return select(*head, *cols, func.count(), func.sum(r.c.owed_cents), *firsts).where(*where).group_by(*head, *cols)


def _reached_rows(d: Any, sc: _Scope, only_stale: bool = False) -> list[Any]:
    """The sends that count as a step reached, on the sets in scope (by their kept facts);
    ``only_stale``: only on the sets whose kept reach is marked for recomputing."""
    rows = [*(sc.send_cond(d) or []), d.c.status.in_(REACHED), d.c.step_index >= 0, _counted(d, sc.until)]
    if only_stale:
        rows.append(d.c.invoice_set_id.in_(select(reach_stale_t.c.set_id)))
    return rows


def _send_reached_query(conn: Connection, sc: _Scope, proj: tuple[str, ...], only_stale: bool = False) -> Any:
    """`_reached_query` (without ``first``) from send alone: each set once per distinct touch,
    in the order of ix_send_report_reached (no join, no sort for the DISTINCT); ``only_stale``:
    only the sets marked for recomputing their kept reach."""
    d = send_t.alias("d")
    cols = [c for dim in proj for c in ({"step": [d.c.step_day, d.c.step_title], "method": [d.c.method]}[dim])]
    head = _send_head(conn, sc, d)
    reached = (
        select(*head, *cols, d.c.invoice_set_id, d.c.set_owed_cents.label("owed"))
        .where(*_reached_rows(d, sc, only_stale))
        .distinct()
        .subquery("r")
    )
    keys = [reached.c[c.name] for c in (*head, *cols)]
    return select(*keys, func.count(), func.sum(reached.c.owed)).group_by(*keys)


def _stale_reached_any_query(conn: Connection, sc: _Scope) -> Any:
    """Sets in scope (and their owed) that reached any step, per rule set (and week), from their
    sends: the sets whose kept reach is marked for recomputing (the others are in `step_reach`)."""
    d = send_t.alias("d")
    head = _send_head(conn, sc, d)
    reached = (
        select(*head, d.c.invoice_set_id, d.c.set_owed_cents.label("owed"))
        .where(*_reached_rows(d, sc, only_stale=True))
        .distinct()
        .subquery("r")
    )
    keys = [reached.c[c.name] for c in head]
    return select(*keys, func.count(), func.sum(reached.c.owed)).group_by(*keys)


def _reached_query(conn: Connection, sc: _Scope, proj: tuple[str, ...], first: bool) -> Any:
    """Sets entered (and their owed) per distinct touch of ``proj`` they reached; ``first``: also
    the sets (and owed) counted at their first such touch, which sum to the sets that reached any."""
    s, d = invoice_set_t.alias("s"), send_t.alias("d")
    head = _head(conn, sc, s)
    cols = [c for dim in proj for c in ({"step": [d.c.step_day, d.c.step_title], "method": [d.c.method]}[dim])]
    reached = (
        select(d.c.invoice_set_id, *cols)
        .where(d.c.status.in_(REACHED), d.c.step_index >= 0, _counted(d, sc.until))
        .distinct()
        .subquery("r0")
    )
    rcols = [reached.c[c.name] for c in cols]
    extra: list[Any] = []
    if first:
        one = (func.row_number().over(partition_by=reached.c.invoice_set_id) == 1).label("first")
        reached = select(reached, one).subquery("r")
        rcols = [reached.c[c.name] for c in cols]
        is_first = case((reached.c.first, 1), else_=0)
        extra = [func.sum(is_first), func.sum(is_first * s.c.owed_cents)]
    return (
        select(*head, *rcols, func.count(), func.sum(s.c.owed_cents), *extra)
        .select_from(reached.join(s, s.c.id == reached.c.invoice_set_id))
        .where(*sc.cond(s))
        .group_by(*head, *rcols)
    )


def _counted(d: Any, until: datetime) -> Any:
    """A send counts when it happened before --until (or has no time at all)."""
    when = func.coalesce(d.c.sent_at, d.c.finished_at, d.c.due_at)
    return or_(when.is_(None), when < until)


def _messages(conn: Connection, sc: _Scope) -> dict[Fine, MsgTally]:
    """Attempted sends by rule set, week, step and method (opt-out confirmations left out)."""
    messages: dict[Fine, MsgTally] = {}
    for row in conn.execute(_messages_query(conn, sc)):
        rs, wk, (day, title, method, n, delivered, failed) = _split(sc, row)
        key = (rs, wk, (day, title), method)
        m = messages.get(key) or messages.setdefault(key, MsgTally())
        m.attempted += n
        m.delivered += int(delivered or 0)
        m.failed += int(failed or 0)
        m.units += n  # no provider reports call durations yet: one minute per call attempt
    return messages


def _messages_query(conn: Connection, sc: _Scope) -> Any:
    s, d = invoice_set_t.alias("s"), send_t.alias("d")
    fast = sc.send_cond(d)
    if fast is not None:  # the set's facts kept on its sends: one pass over ix_send_report_messages
        head = _send_head(conn, sc, d)
        return (
            select(
                *head,
                d.c.step_day,
                d.c.step_title,
                d.c.method,
                func.count(),
                func.sum(case((d.c.status == SendStatus.DELIVERED, 1), else_=0)),
                func.sum(case((d.c.status == SendStatus.FAILED, 1), else_=0)),
            )
            .where(*fast, d.c.status.in_(ATTEMPTED), d.c.step_index >= 0, _counted(d, sc.until))
            .group_by(*head, d.c.step_day, d.c.step_title, d.c.method)
        )
    head = _head(conn, sc, s)
    # Sends joined to their sets: on SQLite, `+d.invoice_set_id` (no index may serve it) makes the
    # planner read the sends in order and look each set up by its ID, rather than search the sends
    # of every set (40 % less time at a million sets). PostgreSQL plans this join well as it is.
    send_set = literal_column("+d.invoice_set_id", Integer) if sc.dialect == "sqlite" else d.c.invoice_set_id
    return (
        select(
            *head,
            d.c.step_day,
            d.c.step_title,
            d.c.method,
            func.count(),
            func.sum(case((d.c.status == SendStatus.DELIVERED, 1), else_=0)),
            func.sum(case((d.c.status == SendStatus.FAILED, 1), else_=0)),
        )
        .select_from(d.join(s, s.c.id == send_set))
        .where(*sc.cond(s), d.c.status.in_(ATTEMPTED), d.c.step_index >= 0, _counted(d, sc.until))
        .group_by(*head, d.c.step_day, d.c.step_title, d.c.method)
    )


def _arms(conn: Connection, sc: _Scope) -> dict[tuple[str, str], list[int]]:
    s = invoice_set_t.alias("s")
    q = (
        select(s.c.experiment, s.c.arm, func.count(), func.sum(s.c.owed_cents))
        .where(*sc.cond(s), s.c.experiment.is_not(None), s.c.experiment != "", s.c.arm.is_not(None), s.c.arm != "")
        .group_by(s.c.experiment, s.c.arm)
    )
    return {(row[0], row[1]): [int(row[2]), int(row[3] or 0)] for row in conn.execute(q)}


def _rows_of_exceptions(
    conn: Connection, sc: _Scope
) -> tuple[list[SetRow], list[SendRow], list[PaymentRow], list[OptOutRow]]:
    """The rows of the sets in scope with a refund (their payments: `report._net_payments`) or an
    opt-out before --until (their sends: attributed per channel): few next to the sets."""
    tcol, parse = _time_reader(conn)
    # Only the sets the kept attribution says have a refund, or has not recomputed yet, can have
    # one (store/attribution.py): their payments alone are grouped, not every payment's.
    maybe = select(set_paid_t.c.set_id).where(set_paid_t.c.refunded == 1).union_all(select(report_stale_t.c.set_id))
    grp = _payment_groups(tcol, and_(payment_t.c.paid_at < sc.until, charge_t.c.invoice_set_id.in_(maybe))).cte("grp")
    refunded = select(grp.c.set_id).where(grp.c.cents < 0)
    pay_rows = [
        PaymentRow(int(set_id), pid, parse(paid_at), int(cents))
        for set_id, pid, paid_at, cents in conn.execute(select(grp).where(grp.c.set_id.in_(refunded)))
    ]
    # (the time is checked on the rows: an index on it would lead the planner to read every event)
    out_rows = [o for o in _opt_outs(conn, event_t.c.invoice_set_id.is_not(None), tcol, parse) if o.at < sc.until]
    candidates = sorted({p.set_id for p in pay_rows} | {o.set_id for o in out_rows})
    sets, sends = _sets_and_sends(conn, sc, candidates)
    scoped = {st.id for st in sets}
    return (
        sets,
        sends,
        [p for p in pay_rows if p.set_id in scoped],
        [o for o in out_rows if o.set_id in scoped],
    )


def _sets_and_sends(conn: Connection, sc: _Scope, candidates: list[int]) -> tuple[list[SetRow], list[SendRow]]:
    """The candidates that are in scope, and their sends that reached a step."""
    tcol, parse = _time_reader(conn)
    s, d = invoice_set_t.alias("s"), send_t.alias("d")
    in_scope = case((and_(*sc.cond(s)), 1), else_=0)  # a column: each set is found by its ID
    sets: list[SetRow] = []
    sends: list[SendRow] = []
    for chunk in _chunks(candidates, 20000):
        cols = (s.c.id, s.c.rule_set_id, s.c.status, tcol(s.c.created_at), s.c.arm, s.c.experiment, s.c.owed_cents)
        found = [
            SetRow(set_id, sc.rule_set(rs_id), status, parse(created), int(o or 0), arm, exp)
            for set_id, rs_id, status, created, arm, exp, o, ok in conn.execute(
                select(*cols, in_scope).where(_ids_in("s.id", chunk))
            )
            if ok
        ]
        sets += found
        if not found:
            continue
        send_cols = (d.c.id, d.c.invoice_set_id, d.c.step_day, d.c.step_title, d.c.method, d.c.status, d.c.attempts)
        q = select(*send_cols, tcol(d.c.sent_at), tcol(d.c.finished_at), tcol(d.c.due_at)).where(
            _ids_in("d.invoice_set_id", [st.id for st in found]), d.c.status.in_(REACHED), d.c.step_index >= 0
        )
        rows = sorted(conn.execute(q), key=lambda r: int(r[0]))  # recorded order (ties at one instant)
        sends += [
            SendRow(set_id, day, title, method, status, attempts or 0, parse(sent or finished or due))
            for _id, set_id, day, title, method, status, attempts, sent, finished, due in rows
        ]
    return sets, sends


# --- the money of the sets without refunds, attributed in the database ------------------------

# One row per payment (allocations summed per set and payment) of the sets in scope that have no
# refund, with the send it is credited to (`touch_id`; NULL: unprompted), then each set's outcome:
# the payment that completed it (the running total reached the owed), else its last. The sets
# with a refund keep the row-by-row path (`report._net_payments`), as refunds are rare.
# The statuses of `REACHED` as SQL text, in a fixed order.
_REACHED_SQL = REACHED_SQL

_PAID_CTES = """
WITH grp AS (
  SELECT c.invoice_set_id AS set_id, p.payment_id AS pay_id, p.paid_at AS paid_at, sum(a.amount_cents) AS cents
  FROM payment p JOIN payment_allocation a ON a.payment_pk = p.id JOIN charge c ON c.id = a.charge_pk
  WHERE p.paid_at < :until AND c.invoice_set_id IS NOT NULL{only}
  GROUP BY c.invoice_set_id, p.payment_id, p.paid_at
),
pay0 AS (
  SELECT g.set_id, g.pay_id, g.paid_at, g.cents, s.rule_set_id AS rs, {wk} AS wk, s.owed_cents AS owed,
    s.created_at AS created_at, s.experiment AS experiment, s.arm AS arm,
    (SELECT d.id FROM send d
      WHERE d.invoice_set_id = g.set_id AND d.status = '{delivered}' AND d.step_index >= 0
        AND {when} >= {start} AND {when} <= g.paid_at
      ORDER BY {when} {dir}, d.id {dir} LIMIT 1) AS touch_id
  FROM grp g JOIN invoice_set s ON s.id = g.set_id
  WHERE g.cents > 0 AND {scope} AND g.set_id NOT IN (SELECT set_id FROM grp WHERE cents < 0)
),
pay AS MATERIALIZED (
  SELECT p.*, t.step_day AS t_day, t.step_title AS t_title, t.method AS t_method
  FROM pay0 p LEFT JOIN send t ON t.id = p.touch_id
),
run AS MATERIALIZED (
  SELECT pay.*, sum(cents) OVER w AS cum, row_number() OVER w AS n
  FROM pay WINDOW w AS (PARTITION BY set_id ORDER BY paid_at, pay_id {c} ROWS UNBOUNDED PRECEDING)
),
s1 AS (
  SELECT set_id, min(CASE WHEN owed > 0 AND cum >= owed THEN n END) AS full_n, max(n) AS last_n,
    sum(cents) AS collected
  FROM run GROUP BY set_id
),
s2 AS MATERIALIZED (
  SELECT s1.set_id, s1.collected, f.paid_at AS full_at,
    CASE WHEN s1.full_n IS NULL THEN s1.last_n
      ELSE (SELECT min(r.n) FROM run r WHERE r.set_id = s1.set_id AND r.paid_at = f.paid_at) END AS key_n
  FROM s1 LEFT JOIN run f ON f.set_id = s1.set_id AND f.n = s1.full_n
),
outc AS MATERIALIZED (
  SELECT k.set_id, k.rs, k.wk, k.created_at, k.experiment, k.arm, k.touch_id, k.t_day, k.t_title, k.t_method,
    s2.full_at, s2.collected
  FROM s2 JOIN run k ON k.set_id = s2.set_id AND k.n = s2.key_n
)
"""
# What the report needs of them, at the finest grouping, in one statement (kind, key..., figures):
# from `run` (one row per payment) and `outc` (one per set), then the funnel.
_PAID_GROUPS = """
SELECT 'pay', r.rs, r.wk, r.t_day, r.t_title, r.t_method, sum(r.cents),
  sum(CASE WHEN r.touch_id IS NULL THEN r.cents ELSE 0 END), NULL
FROM run r
GROUP BY r.rs, r.wk, r.t_day, r.t_title, r.t_method
UNION ALL
SELECT 'set', o.rs, o.wk, o.t_day, o.t_title, o.t_method, count(o.full_at), count(*) - count(o.full_at), {days}
FROM outc o
GROUP BY o.rs, o.wk, o.t_day, o.t_title, o.t_method
UNION ALL
SELECT 'week', NULL, {paid_bucket}, NULL, NULL, NULL, sum(r.cents), 0, NULL FROM run r GROUP BY {paid_bucket}
UNION ALL
SELECT 'arm', NULL, NULL, NULL, o.experiment, o.arm, count(o.full_at), sum(o.collected), NULL
FROM outc o WHERE o.experiment <> '' AND o.arm <> '' GROUP BY o.experiment, o.arm
UNION ALL
"""
_PAID_SELECT = (
    _PAID_GROUPS
    + """
SELECT 'funnel', f.rs, NULL, t.step_day, t.step_title, NULL, count(*), 0, NULL
FROM (
  SELECT o.rs, (
    SELECT min(d.id) FROM send d
    WHERE d.invoice_set_id = o.set_id AND d.status IN ({reached})
      AND d.step_index >= 0 AND {when} <= o.full_at
    GROUP BY d.step_day, d.step_title
    ORDER BY min({when}) DESC, d.step_day DESC, d.step_title {c} DESC LIMIT 1) AS last_id
  FROM outc o WHERE o.full_at IS NOT NULL
) f LEFT JOIN send t ON t.id = f.last_id
GROUP BY f.rs, t.step_day, t.step_title
"""
)


# Last touch from what is kept at write time (store/attribution.py, migration 0020): the same
# figures as `_PAID_CTES` + `_PAID_SELECT` for the sets whose payments all precede --until, with no
# refund, not marked stale; the rest (`_EXCEPTIONS`) go through those, restricted to them. The
# window is applied here: a kept touch (the set's last delivered send at or before the payment)
# older than the window means none inside it. Each kept row carries its set's facts: one pass
# over each table, no join.
_KEPT_OK = "{a}.refunded = 0 AND {plus}{a}.last_paid_at < :until"
_NOT_STALE = " AND {a}.set_id NOT IN (SELECT set_id FROM report_stale)"  # none is, after a store's write
_EXCEPTIONS = (
    " AND c.invoice_set_id IN (SELECT set_id FROM report_stale"
    " UNION ALL SELECT set_id FROM set_paid WHERE last_paid_at >= :until)"
)
_KEPT_SELECT = (
    """
WITH run AS MATERIALIZED (
  SELECT p.rule_set_id AS rs, {wk_p} AS wk, p.paid_at, p.cents, CASE WHEN {p_in} THEN 1 END AS touch_id,
    CASE WHEN {p_in} THEN p.t_day END AS t_day, CASE WHEN {p_in} THEN p.t_title END AS t_title,
    CASE WHEN {p_in} THEN p.t_method END AS t_method
  FROM payment_touch p
  WHERE p.cents > 0 AND {ok_p} AND {scope_p}
),
outc AS MATERIALIZED (
  SELECT q.rule_set_id AS rs, {wk_q} AS wk, q.experiment, q.arm, q.full_at, q.days_us, q.collected,
    q.f_day, q.f_title, CASE WHEN {k_in} THEN q.key_day END AS t_day,
    CASE WHEN {k_in} THEN q.key_title END AS t_title, CASE WHEN {k_in} THEN q.key_method END AS t_method
  FROM set_paid q
  WHERE q.collected > 0 AND {ok_q} AND {scope_q}
)
"""
    + _PAID_GROUPS
    + """
SELECT 'funnel', o.rs, NULL, o.f_day, o.f_title, NULL, count(*), 0, NULL
FROM outc o WHERE o.full_at IS NOT NULL
GROUP BY o.rs, o.f_day, o.f_title
"""
)


def _sql_bucket(dialect: str, col: str, seconds: int) -> str:
    """`_bucket` as SQL text: a time grouped into UTC hours or minutes (0: the time itself); on
    PostgreSQL always a UTC timestamp without zone (`_sql_bucket_parser`), so the branches of a
    UNION agree."""
    if dialect == "sqlite":
        return {3600: f"substr({col}, 1, 13)", 60: f"substr({col}, 1, 16)"}.get(seconds, col)
    if seconds in (3600, 60):
        return f"date_trunc('{'hour' if seconds == 3600 else 'minute'}', timezone('UTC', {col}))"
    return f"timezone('UTC', {col})"


def _sql_bucket_parser(dialect: str, seconds: int) -> Callable[[Any], datetime]:
    if dialect == "sqlite":
        return _bucket_parser(dialect, seconds)
    return lambda v: v.replace(tzinfo=UTC)


def _window_start(dialect: str, paid_at: str, days: int) -> str:
    """SQL for ``paid_at`` less ``days`` days: the start of the attribution window."""
    if dialect == "sqlite":  # UTC text with six-digit microseconds: the same text N days earlier
        return f"datetime({paid_at}, '-{int(days)} days') || substr({paid_at}, 20)"
    return f"{paid_at} - make_interval(secs => {int(days) * 86400})"  # exact seconds, no DST


def _paid_sql(
    sc: _Scope,
    days: int,
    mode: str,
    week_seconds: int | None,
    paid_seconds: int,
    kept: bool | None = None,
    stale: bool = True,
) -> str:
    """The attribution's SQL: computed afresh (``kept`` None: every set; False: only the sets
    `_EXCEPTIONS` names), or read from what is kept (``kept`` True, last touch only; ``stale``:
    some set is marked for recomputing, to be left out)."""
    sqlite = sc.dialect == "sqlite"
    when = "coalesce(d.sent_at, d.finished_at, d.due_at)"
    start = _window_start(sc.dialect, "g.paid_at", days)
    if sqlite:
        us = (
            "(CAST(strftime('%s', o.full_at) AS INTEGER) - CAST(strftime('%s', o.created_at) AS INTEGER)) * 1000000"
            " + CAST(substr(o.full_at, 21) AS INTEGER) - CAST(substr(o.created_at, 21) AS INTEGER)"
        )
        days_sql = f"group_concat(CASE WHEN o.full_at IS NOT NULL THEN {us} END)"
    else:  # exact seconds, not calendar days (no daylight-saving arithmetic)
        us = "round(extract(epoch FROM (o.full_at - o.created_at)) * 1000000)::bigint"
        days_sql = f"string_agg(CASE WHEN o.full_at IS NOT NULL THEN ({us})::text END, ',')"
    wk = _sql_bucket(sc.dialect, "s.created_at", week_seconds) if week_seconds is not None else "NULL"
    if week_seconds is None and not sqlite:
        wk = "CAST(NULL AS timestamp)"
    fmt = {
        "wk": wk,
        "when": when,
        "start": start,
        "dir": "DESC" if mode == "last" else "ASC",
        "scope": sc.sql("s"),
        "c": "" if sqlite else 'COLLATE "C"',
        "days": days_sql,
        "paid_bucket": _sql_bucket(sc.dialect, "r.paid_at", paid_seconds),
        "delivered": SendStatus.DELIVERED.value,
        "reached": _REACHED_SQL,
        "only": "" if kept is None else _EXCEPTIONS,
    }
    if kept:
        window = int(days) * 86400 * 10**6
        for a in "pq":
            fmt[f"ok_{a}"] = _KEPT_OK.format(a=a, plus="+" if sqlite else "") + (_NOT_STALE.format(a=a) * stale)
            fmt[f"scope_{a}"] = sc.sql(a)
            fmt[f"wk_{a}"] = wk.replace("s.created_at", f"{a}.created_at")
        fmt["p_in"] = f"p.touch_age_us <= {window}"
        fmt["k_in"] = f"q.key_age_us <= {window}"
        fmt["days"] = (
            "group_concat(o.days_us)" if sqlite else "string_agg(CAST(o.days_us AS text), ',')"
        )  # NULL unless paid in full
        return _KEPT_SELECT.format(**fmt)
    return (_PAID_CTES + _PAID_SELECT).format(**fmt)


def paid_facts(conn: Connection, sc: _Scope, days: int, mode: str) -> PaidFacts:
    """`PaidFacts` of the sets in scope without a refund, attributed with ``days`` and ``mode``."""
    # Payments may precede --since: the hour buckets must not straddle a week shown from it.
    paid_seconds = week_bucket_seconds(sc.tz, sc.since - timedelta(days=8), sc.until)
    paid_parse = _sql_bucket_parser(sc.dialect, paid_seconds)
    week_parse = _sql_bucket_parser(sc.dialect, sc.week_seconds or 0)
    weeks: dict[Any, date] = {}
    # Last touch: what is kept, plus the few sets it does not cover computed afresh.
    passes = [True, False] if mode == "last" else [None]
    stale = _any_marked(conn, report_stale_t)
    out = PaidFacts()

    def fine(rs_id: int, bucket: Any, day: int | None, title: str | None, method: str | None) -> Fine:
        wk = None
        if sc.week_seconds is not None:
            wk = weeks.get(bucket)
            if wk is None:
                wk = weeks[bucket] = week_of(week_parse(bucket), sc.tz)
        if day is None:
            return (sc.rule_set(rs_id), wk, UNPROMPTED_TOUCH.step, UNPROMPTED_TOUCH.method)
        return (sc.rule_set(rs_id), wk, (day, title or ""), method)

    rows = (
        row
        for kept in passes
        for row in conn.execute(
            text(_paid_sql(sc, days, mode, sc.week_seconds, paid_seconds, kept, stale)).bindparams(*sc.binds()),
            sc.params(),
        )
    )
    for kind, rs_id, bucket, day, title, method, a, b, us in rows:
        if kind == "pay":
            acc = out.facts.get(k := fine(rs_id, bucket, day, title, method)) or out.facts.setdefault(k, Acc())
            acc.collected += int(a)
            acc.unprompted += int(b)
        elif kind == "set":
            acc = out.facts.get(k := fine(rs_id, bucket, day, title, method)) or out.facts.setdefault(k, Acc())
            acc.paid_full += int(a)
            acc.paid_partly += int(b)
            if us:
                acc.days_to_pay += [max(0.0, int(x) / 10**6 / 86400) for x in us.split(",")]
        elif kind == "week":
            wk = week_of(paid_parse(bucket), sc.tz)
            out.weekly[wk] = out.weekly.get(wk, 0) + int(a)
        elif kind == "arm":
            arm = out.arms.setdefault((title, method), [0, 0])
            arm[0] += int(a)
            arm[1] += int(b)
        else:
            rs = sc.rule_set(rs_id)
            step = None if day is None else (day, title)
            after = out.paid_after.setdefault(rs, {})
            after[step] = after.get(step, 0) + int(a)
    return out


def _ids_in(column: str, ids: list[int]) -> Any:
    """``column IN (1,2,...)`` written out: whole numbers only, so nothing to escape; binding tens of
    thousands of parameters one by one costs more than the query."""
    return text(f"{column} IN ({','.join(str(int(i)) for i in ids)})")


def _chunks(ids: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


def _opt_outs(conn: Connection, where: Any, tcol: Callable[[Any], Any], parse: Callable[[Any], Any]) -> list[OptOutRow]:
    kinds: Any = event_t.c.kind.in_(OPT_OUT_KINDS)
    if conn.dialect.name == "sqlite":
        # Opt-outs are rare among events, which SQLite's statistics (rows per kind on average)
        # cannot tell: said so, it searches ix_event_kind_set instead of reading every event.
        kinds = func.likelihood(kinds, literal_column("0.001"))
    out = []
    for set_id, at, kind, detail in conn.execute(
        select(event_t.c.invoice_set_id, tcol(event_t.c.at), event_t.c.kind, event_t.c.detail).where(where, kinds)
    ):
        if kind == "reply" and _keyword(detail) != "stop":
            continue
        out.append(OptOutRow(set_id, parse(at), kind))
    return out


def _bucket(conn: Connection, col: Any, seconds: int) -> tuple[Any, Callable[[Any], datetime]]:
    """(SQL expression, parser to a UTC datetime) grouping times into UTC hours or minutes
    (`report.week_bucket_seconds`; 0: the exact time)."""
    parse = _bucket_parser(conn.dialect.name, seconds)
    if conn.dialect.name == "sqlite":
        raw = type_coerce(col, String)  # UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        if seconds in (3600, 60):
            return func.substr(raw, 1, 13 if seconds == 3600 else 16), parse
        return raw, parse
    if seconds in (3600, 60):
        return func.date_trunc("hour" if seconds == 3600 else "minute", func.timezone("UTC", col)), parse
    return col, parse


def _bucket_parser(dialect: str, seconds: int) -> Callable[[Any], datetime]:
    if dialect == "sqlite":
        if seconds == 3600:
            return lambda v: datetime.fromisoformat(v + ":00").replace(tzinfo=UTC)
        return lambda v: datetime.fromisoformat(v).replace(tzinfo=UTC)
    if seconds in (3600, 60):
        return lambda v: v.replace(tzinfo=UTC)
    return lambda v: v


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

"""`act`: the bulk actions of SPEC section 2, set-based and all-or-nothing by default.

``plan`` decides every selected set's result without writing; ``apply`` writes the changed ones
(status, charges, pending sends, schedule anchor) and their events in the same transaction.
``--dry-run`` runs both and rolls the transaction back, so it prints what a real run prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Integer, String, cast, column, literal, null, select, update
from sqlalchemy import table as sa_table

from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.statuses import (
    CANCELS_PENDING,
    IN_PROGRESS,
    TARGET,
    Action,
    ChargeStatus,
    Result,
    SendStatus,
    Status,
    decide,
)
from outreach_cli.store.bulk import bulk_update, chunks
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import UTCDateTime, charge_t, event_t, invoice_set_t, send_t
from outreach_cli.store.reevaluate import cancel_pending_sends, refresh_sets

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

RESULT_COLUMNS = ["id", "action", "result", "from_status", "to_status", "reason"]
BIG_ACTION = 10_000  # sets; from here SQLite gets a larger page cache for the transaction
BIG_ACTION_CACHE_KB = 65_536


@dataclass
class ActionOutcome:
    id: int
    action: str
    result: Result
    from_status: str | None
    to_status: str | None
    reason: str
    amount_cents: int = 0
    patient_pk: int | None = None

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "result": self.result.value,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "reason": self.reason,
        }


@dataclass
class ActResult:
    outcomes: list[ActionOutcome]
    applied: bool

    def count(self, r: Result) -> int:
        return sum(1 for o in self.outcomes if o.result is r)

    @property
    def blocked(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.result in (Result.INELIGIBLE, Result.NOT_FOUND)]

    @property
    def changed(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if o.result is Result.CHANGED]


def load_ids(conn: Connection, name: str, ids: list[int]) -> None:
    """A temporary table ``name`` (pos, id) holding ``ids`` in their order, for set-based
    statements (SQLite: one executemany; PostgreSQL: COPY). Dropped with the transaction's end
    on PostgreSQL, by `drop_ids` on SQLite."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"CREATE TEMP TABLE {name} (pos INTEGER PRIMARY KEY, id INTEGER NOT NULL)")
        conn.exec_driver_sql(f"INSERT INTO {name} (pos, id) VALUES (?, ?)", list(enumerate(ids)))
        return
    conn.exec_driver_sql(f"CREATE TEMP TABLE {name} (pos integer PRIMARY KEY, id bigint NOT NULL) ON COMMIT DROP")
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cur, cur.copy(f"COPY {name} (pos, id) FROM STDIN") as copy:
        for row in enumerate(ids):
            copy.write_row(row)


def drop_ids(conn: Connection, *names: str) -> None:
    """SQLite: drop the temporary ID tables (PostgreSQL drops them at the transaction's end)."""
    if conn.dialect.name != "sqlite":
        return
    for name in names:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def plan(
    conn: Connection, action: Action, ids: list[int], *, rule_set_id: int | None, reason: str | None
) -> list[ActionOutcome]:
    """Every selected set's result, in the order given: the IDs go into the temporary table
    `act_ids` (which `_apply` uses too) and are read back with their sets in one query."""
    load_ids(conn, "act_ids", ids)
    cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cur.execute(
        "SELECT t.id, s.status, s.rule_set_id, s.amount_outstanding_cents, s.patient_pk"
        " FROM act_ids t LEFT JOIN invoice_set s ON s.id = t.id ORDER BY t.pos"
    )
    rows = cur.fetchall()
    cur.close()
    decided: dict[tuple[str, bool], tuple[Result, str | None, str]] = {}
    out: list[ActionOutcome] = []
    for i, status, rs, cents, ppk in rows:
        if status is None:
            out.append(ActionOutcome(i, action.value, Result.NOT_FOUND, None, None, "no invoice set with this ID"))
            continue
        key = (status, rule_set_id is not None and rs == rule_set_id)
        d = decided.get(key)
        if d is None:
            result, to, why = decide(action, Status(status), same_rule_set=key[1])
            d = decided[key] = (
                result,
                to.value if to else None,
                why if result is not Result.CHANGED else (reason or ""),
            )
        out.append(ActionOutcome(i, action.value, d[0], status, d[1], d[2], cents, ppk))
    _one_in_progress_per_patient(conn, out)
    return out


def _one_in_progress_per_patient(conn: Connection, outcomes: list[ActionOutcome]) -> None:
    """A patient has at most one in-progress set (SPEC section 1). An action that would make a
    second one (change-ruleset on an expired set whose patient has a newer set) is ineligible,
    naming the other set, instead of failing on the database's unique index."""
    in_progress = {s.value for s in IN_PROGRESS}
    reviving = [
        o
        for o in outcomes
        if o.result is Result.CHANGED and o.from_status not in in_progress and o.to_status in in_progress
    ]
    if not reviving:
        return
    holder: dict[int, int] = {}  # patient -> the set that is (or will be) in progress
    pks = sorted({o.patient_pk for o in reviving if o.patient_pk is not None})
    for chunk in chunks(pks, 900):
        for set_id, ppk in conn.execute(
            select(invoice_set_t.c.id, invoice_set_t.c.patient_pk).where(
                invoice_set_t.c.patient_pk.in_(chunk), invoice_set_t.c.status.in_(sorted(in_progress))
            )
        ):
            holder[ppk] = set_id
    for o in reviving:
        if o.patient_pk is None:
            continue
        other = holder.get(o.patient_pk)
        if other is not None and other != o.id:
            o.result = Result.INELIGIBLE
            o.to_status = None
            o.reason = f"patient has in-progress set {other}"
        else:
            holder[o.patient_pk] = o.id


def run_action(
    store: Store,
    action: Action,
    ids: list[int],
    ctx: Context,
    *,
    rule_set: str | None = None,
    reason: str | None = None,
    skip_ineligible: bool = False,
    dry_run: bool = False,
    confirm: Any = None,
) -> ActResult:
    """Plan, confirm (``confirm(outcomes) -> bool``, called before writing), apply."""
    if action is Action.CHANGE_RULESET and not rule_set:
        raise InvalidInput("change-ruleset needs --rule-set NAME")
    if action is not Action.CHANGE_RULESET and rule_set:
        raise InvalidInput("--rule-set only goes with change-ruleset")
    try:
        with store.write() as conn:
            if store.dialect == "sqlite" and len(ids) >= BIG_ACTION:
                # Room for every page a big action dirties (six indexes move): without it SQLite
                # spills pages to the log mid-transaction and writes them again at commit.
                conn.exec_driver_sql(f"PRAGMA cache_size = -{BIG_ACTION_CACHE_KB}")
            rule_sets = RuleSets(conn)
            rs_id = rule_sets.resolve(rule_set) if rule_set else None
            outcomes = plan(conn, action, ids, rule_set_id=rs_id, reason=reason)
            res = ActResult(outcomes, applied=False)
            if (res.blocked and not skip_ineligible) or not res.changed:
                return res
            if not dry_run and confirm is not None and not confirm(res):
                from outreach_cli.domain.errors import Aborted

                raise Aborted("nothing was changed")
            # A dry run applies for real and rolls back: the printed to_status comes from the same
            # re-evaluation as a real run's, so the two cannot drift apart.
            _apply(conn, action, res.changed, ctx, rule_sets, rs_id, rule_set, reason, len(ids))
            if dry_run:
                raise _DryRunRollback(res)
            res.applied = True
        from outreach_cli.store.maintenance import after_big_write

        after_big_write(store, ["invoice_set", "send", "event"], len(res.changed))
        return res
    except _DryRunRollback as rb:
        return rb.result


class _DryRunRollback(Exception):
    def __init__(self, result: ActResult) -> None:
        super().__init__("dry run")
        self.result = result


# Actions whose result depends on the set's status alone and that re-evaluate nothing: applied
# with a few set-based statements over the temporary ID table, whatever the number of sets.
IN_SQL = (Action.PAUSE, Action.CANCEL, Action.COLLECTIONS, Action.WRITE_OFF)


def _apply(
    conn: Connection,
    action: Action,
    changed: list[ActionOutcome],
    ctx: Context,
    rule_sets: RuleSets,
    rs_id: int | None,
    rs_name: str | None,
    reason: str | None,
    n_selected: int,
) -> None:
    ids = [o.id for o in changed]
    if action in IN_SQL:
        # Every selected set changes (the usual bulk case): `act_ids` holds them already.
        table = "act_ids" if len(ids) == n_selected else "act_changed"
        if table == "act_changed":
            load_ids(conn, table, ids)
        _apply_in_sql(conn, action, ctx, reason, table)
        drop_ids(conn, "act_ids", "act_changed")
        return
    drop_ids(conn, "act_ids")
    if action is Action.RESUME:
        _resume(conn, ids, ctx.now)
    elif action is Action.CHANGE_RULESET:
        _change_rule_set(conn, changed, rs_id, ctx.now)
    if action in CANCELS_PENDING:
        cancel_pending_sends(conn, ids, f"{action.value} by {ctx.actor}", ctx.now)
    detail = {"rule_set": rs_name} if action is Action.CHANGE_RULESET else None
    add_events(
        conn,
        [
            event_row(
                ctx,
                "action",
                set_id=o.id,
                patient_pk=o.patient_pk,
                action=action.value,
                from_status=o.from_status,
                to_status=o.to_status,
                reason=reason,
                detail=detail,
            )
            for o in changed
        ],
    )
    after = refresh_sets(conn, ids, ctx, rule_sets)
    for o in changed:
        if o.id in after:
            o.to_status = after[o.id][1]


def _apply_in_sql(conn: Connection, action: Action, ctx: Context, reason: str | None, table: str) -> None:
    """`_apply` for IN_SQL actions on the sets listed in ``table``: their events first (one
    INSERT ... SELECT, in the order given, each with the status it had), then the updates."""
    now = ctx.now
    target = TARGET[action]
    assert target is not None
    ids = sa_table(table, column("id", Integer), column("pos", Integer))
    chosen = select(ids.c.id)
    amount = cast(invoice_set_t.c.amount_outstanding_cents, String)
    detail = ('{"written_off_cents": ' + amount + "}") if action is Action.WRITE_OFF else null()
    events = (
        select(
            invoice_set_t.c.id,
            invoice_set_t.c.patient_pk,
            literal(now, UTCDateTime()),
            literal("action"),
            literal(ctx.actor),
            literal(action.value),
            invoice_set_t.c.status,
            literal(target.value),
            literal(reason, String),
            detail,
        )
        .select_from(ids)
        .join(invoice_set_t, invoice_set_t.c.id == ids.c.id)
        .order_by(ids.c.pos)
    )
    cols = ["invoice_set_id", "patient_pk", "at", "kind", "actor", "action", "from_status", "to_status", "reason"]
    conn.execute(event_t.insert().from_select([*cols, "detail"], events))
    values: dict[str, Any] = {"status": target.value, "status_reason": reason, "next_send_at": None, "updated_at": now}
    if action is Action.PAUSE:
        values["paused_at"] = now
    else:
        values.update(next_step=None, next_methods=None, closed_at=now)
        if action is not Action.CANCEL:
            conn.execute(
                update(charge_t)
                .where(charge_t.c.invoice_set_id.in_(chosen), charge_t.c.status == ChargeStatus.OUTSTANDING)
                .values(
                    {"status": ChargeStatus.WRITTEN_OFF, "outstanding_cents": 0}
                    if action is Action.WRITE_OFF
                    else {"status": ChargeStatus.COLLECTIONS}
                )
            )
        if action is Action.WRITE_OFF:
            values["amount_outstanding_cents"] = 0
        if action is Action.COLLECTIONS:
            values["exported_at"] = None
    conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chosen)).values(**values))
    if action in CANCELS_PENDING:
        conn.execute(
            update(send_t)
            .where(send_t.c.invoice_set_id.in_(chosen), send_t.c.status == SendStatus.PENDING)
            .values(status=SendStatus.CANCELLED, reason=f"{action.value} by {ctx.actor}", finished_at=now)
        )


def _resume(conn: Connection, ids: list[int], now: datetime) -> None:
    rows = []
    for chunk in chunks(ids):
        for set_id, anchor, paused_at in conn.execute(
            select(invoice_set_t.c.id, invoice_set_t.c.anchor_at, invoice_set_t.c.paused_at).where(
                invoice_set_t.c.id.in_(chunk)
            )
        ):
            # Every remaining step moves later by the time spent paused: no burst on resume.
            shift = (now - paused_at) if paused_at is not None and now > paused_at else timedelta(0)
            rows.append(
                {
                    "b_id": set_id,
                    "anchor_at": anchor + shift,
                    "paused_at": None,
                    "status": Status.ACTIVE.value,
                    "status_reason": None,
                    "updated_at": now,
                }
            )
    bulk_update(conn, invoice_set_t, rows)


def _change_rule_set(conn: Connection, changed: list[ActionOutcome], rs_id: int | None, now: datetime) -> None:
    rows = []
    for o in changed:
        paused = o.from_status == Status.PAUSED.value
        rows.append(
            {
                "b_id": o.id,
                "rule_set_id": rs_id,
                "anchor_at": now,
                "next_step_index": 0,
                "expired_at": None,
                "failed_reason": None,
                "will_fail_reason": None,
                "status": Status.PAUSED.value if paused else Status.ACTIVE.value,
                "paused_at": now if paused else None,
                "updated_at": now,
            }
        )
    bulk_update(conn, invoice_set_t, rows)
    for chunk in chunks([o.id for o in changed]):
        conn.execute(
            update(invoice_set_t)
            .where(invoice_set_t.c.id.in_(chunk))
            .values(schedule_gen=invoice_set_t.c.schedule_gen + 1)
        )

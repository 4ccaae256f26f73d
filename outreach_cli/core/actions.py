"""`act`: the bulk actions of SPEC section 2, set-based and all-or-nothing by default.

``plan`` decides every selected set's result without writing; ``apply`` writes the changed ones
(status, charges, pending sends, schedule anchor) and their events in the same transaction.
``--dry-run`` runs both and rolls the transaction back, so it prints what a real run prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from outreach_cli.core.errors import InvalidInput
from outreach_cli.core.models import charge_t, invoice_set_t
from outreach_cli.core.sets import (
    Context,
    RuleSets,
    add_events,
    bulk_update,
    cancel_pending_sends,
    chunks,
    event_row,
    refresh_sets,
)
from outreach_cli.core.statuses import CANCELS_PENDING, IN_PROGRESS, Action, Result, Status, decide

RESULT_COLUMNS = ["id", "action", "result", "from_status", "to_status", "reason"]


@dataclass
class Outcome:
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
    outcomes: list[Outcome]
    applied: bool

    def count(self, r: Result) -> int:
        return sum(1 for o in self.outcomes if o.result is r)

    @property
    def blocked(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result in (Result.INELIGIBLE, Result.NOT_FOUND)]

    @property
    def changed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result is Result.CHANGED]


def plan(
    conn: Connection, action: Action, ids: list[int], *, rule_set_id: int | None, reason: str | None
) -> list[Outcome]:
    found: dict[int, Any] = {}
    for chunk in chunks(ids, 900):
        for r in conn.execute(
            select(
                invoice_set_t.c.id,
                invoice_set_t.c.status,
                invoice_set_t.c.rule_set_id,
                invoice_set_t.c.amount_outstanding_cents,
                invoice_set_t.c.patient_pk,
            ).where(invoice_set_t.c.id.in_(chunk))
        ):
            found[r.id] = r
    out: list[Outcome] = []
    for i in ids:
        row = found.get(i)
        if row is None:
            out.append(Outcome(i, action.value, Result.NOT_FOUND, None, None, "no invoice set with this ID"))
            continue
        status = Status(row.status)
        result, to, why = decide(
            action, status, same_rule_set=(rule_set_id is not None and row.rule_set_id == rule_set_id)
        )
        out.append(
            Outcome(
                i,
                action.value,
                result,
                status.value,
                (to.value if to else None),
                why if result is not Result.CHANGED else (reason or ""),
                row.amount_outstanding_cents,
                row.patient_pk,
            )
        )
    _one_in_progress_per_patient(conn, out)
    return out


def _one_in_progress_per_patient(conn: Connection, outcomes: list[Outcome]) -> None:
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
        for sid, ppk in conn.execute(
            select(invoice_set_t.c.id, invoice_set_t.c.patient_pk).where(
                invoice_set_t.c.patient_pk.in_(chunk), invoice_set_t.c.status.in_(sorted(in_progress))
            )
        ):
            holder[ppk] = sid
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
    store: Any,
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
            rule_sets = RuleSets(conn)
            rs_id = rule_sets.resolve(rule_set) if rule_set else None
            outcomes = plan(conn, action, ids, rule_set_id=rs_id, reason=reason)
            res = ActResult(outcomes, applied=False)
            if (res.blocked and not skip_ineligible) or not res.changed:
                return res
            if not dry_run and confirm is not None and not confirm(res):
                from outreach_cli.core.errors import Aborted

                raise Aborted("nothing was changed")
            # A dry run applies for real and rolls back: the printed to_status comes from the same
            # re-evaluation as a real run's, so the two cannot drift apart.
            _apply(conn, action, res.changed, ctx, rule_sets, rs_id, rule_set, reason)
            if dry_run:
                raise _DryRunRollback(res)
            res.applied = True
        from outreach_cli.core.maintenance import after_big_write

        after_big_write(store, ["invoice_set", "send", "event"], len(res.changed))
        return res
    except _DryRunRollback as rb:
        return rb.result


class _DryRunRollback(Exception):
    def __init__(self, result: ActResult) -> None:
        super().__init__("dry run")
        self.result = result


def _apply(
    conn: Connection,
    action: Action,
    changed: list[Outcome],
    ctx: Context,
    rule_sets: RuleSets,
    rs_id: int | None,
    rs_name: str | None,
    reason: str | None,
) -> None:
    now = ctx.now
    ids = [o.id for o in changed]
    refresh: list[int] = []
    if action in (Action.WRITE_OFF, Action.COLLECTIONS, Action.CANCEL):
        target = {Action.WRITE_OFF: "written-off", Action.COLLECTIONS: "collections", Action.CANCEL: "cancelled"}[
            action
        ]
        for chunk in chunks(ids):
            if action is Action.WRITE_OFF:
                conn.execute(
                    update(charge_t)
                    .where(charge_t.c.invoice_set_id.in_(chunk), charge_t.c.status == "outstanding")
                    .values(status="written-off", outstanding_cents=0)
                )
            elif action is Action.COLLECTIONS:
                conn.execute(
                    update(charge_t)
                    .where(charge_t.c.invoice_set_id.in_(chunk), charge_t.c.status == "outstanding")
                    .values(status="collections")
                )
            values: dict[str, Any] = {
                "status": target,
                "status_reason": reason,
                "next_send_at": None,
                "next_step": None,
                "next_methods": None,
                "closed_at": now,
                "updated_at": now,
            }
            if action is Action.WRITE_OFF:
                values["amount_outstanding_cents"] = 0
            if action is Action.COLLECTIONS:
                values["exported_at"] = None
            conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(**values))
    elif action is Action.PAUSE:
        for chunk in chunks(ids):
            conn.execute(
                update(invoice_set_t)
                .where(invoice_set_t.c.id.in_(chunk))
                .values(status="paused", status_reason=reason, paused_at=now, next_send_at=None, updated_at=now)
            )
    elif action is Action.RESUME:
        rows = []
        for chunk in chunks(ids):
            for sid, anchor, paused_at in conn.execute(
                select(invoice_set_t.c.id, invoice_set_t.c.anchor_at, invoice_set_t.c.paused_at).where(
                    invoice_set_t.c.id.in_(chunk)
                )
            ):
                # Every remaining step moves later by the time spent paused: no burst on resume.
                shift = (now - paused_at) if paused_at is not None and now > paused_at else timedelta(0)
                rows.append(
                    {
                        "b_id": sid,
                        "anchor_at": anchor + shift,
                        "paused_at": None,
                        "status": "active",
                        "status_reason": None,
                        "updated_at": now,
                    }
                )
        bulk_update(conn, invoice_set_t, rows)
        refresh = ids
    elif action is Action.CHANGE_RULESET:
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
                    "status": "paused" if paused else "active",
                    "paused_at": now if paused else None,
                    "updated_at": now,
                }
            )
        bulk_update(conn, invoice_set_t, rows)
        for chunk in chunks(ids):
            conn.execute(
                update(invoice_set_t)
                .where(invoice_set_t.c.id.in_(chunk))
                .values(schedule_gen=invoice_set_t.c.schedule_gen + 1)
            )
        refresh = ids
    if action in CANCELS_PENDING:
        cancel_pending_sends(conn, ids, f"{action.value} by {ctx.actor}", now)
    events = []
    for o in changed:
        detail: dict[str, Any] | None = None
        if action is Action.WRITE_OFF:
            detail = {"written_off_cents": o.amount_cents}
        elif action is Action.CHANGE_RULESET:
            detail = {"rule_set": rs_name}
        events.append(
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
        )
    add_events(conn, events)
    if refresh:
        after = refresh_sets(conn, refresh, ctx, rule_sets)
        for o in changed:
            if o.id in after:
                o.to_status = after[o.id][1]

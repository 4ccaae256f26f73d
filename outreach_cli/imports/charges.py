"""`import charges`, streamed (SPEC sections 8 and 12): validated rows are staged, checked against
the database with a few joins, then written set-based: new invoice sets a page of patients at a
time, the charges in one INSERT ... SELECT, their events and the re-evaluation page by page."""

from __future__ import annotations

import json
import operator
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Integer, String, bindparam, func, insert, literal, select, update
from sqlalchemy import text as sql_text

from outreach_cli.domain.context import Context
from outreach_cli.domain.experiments import Arms, assign, parse_arms
from outreach_cli.domain.money import format_dollars
from outreach_cli.domain.statuses import ChargeStatus
from outreach_cli.imports import stage
from outreach_cli.imports.records import ChargeRecord
from outreach_cli.store.bulk import bulk_update
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import IN_PROGRESS_SQL, UTCDateTime, charge_t, invoice_set_t, patient_t
from outreach_cli.store.reevaluate import recompute_amounts, refresh_sets

STG = stage.staging_table(
    "import_charge",
    Column("line", Integer, primary_key=True),
    Column("charge_id", String, nullable=False),
    Column("patient_id", String, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=True),
    Column("description", String, nullable=False),
    Column("patient_pk", Integer, nullable=True),
    Column("old_id", Integer, nullable=True),
)
STAGED = ("line", "charge_id", "patient_id", "amount_cents", "created_at", "description")
# Patients that need a new invoice set, with the balance of their new charges.
NEED = stage.staging_table(
    "import_need", Column("patient_pk", Integer, primary_key=True), Column("balance", BigInteger, nullable=False)
)
# Existing sets whose charges changed: re-evaluated at the end.
TOUCHED = stage.staging_table("import_touched", Column("id", Integer, primary_key=True))
IN_PROGRESS = sql_text(IN_PROGRESS_SQL.replace("status", "invoice_set.status"))


def staged_row(line: int, n: ChargeRecord) -> tuple[Any, ...]:
    return (line, n["charge_id"], n["patient_id"], n["amount_cents"], n["created_at"], n["description"])


def check(conn: Connection, errs: stage.ErrorLog, skip_invalid: bool) -> tuple[int, int]:
    """Duplicates within the file, unknown patients, charges of another patient, amounts that can
    no longer change. Returns (identical duplicate rows, rows with problems)."""
    stage.index(conn, STG, "charge_id")
    stage.analyze(conn, STG)
    identical, other = stage.duplicates(conn, STG, "charge_id", STAGED[1:], errs)
    conn.execute(update(STG).where(STG.c.patient_id == patient_t.c.patient_id).values(patient_pk=patient_t.c.id))
    conn.execute(update(STG).where(STG.c.charge_id == charge_t.c.charge_id).values(old_id=charge_t.c.id))
    c = charge_t
    stmt = (
        select(
            STG,
            c.c.patient_pk.label("c_patient_pk"),
            c.c.amount_cents.label("c_amount"),
            c.c.outstanding_cents,
            c.c.status,
        )
        .outerjoin(c, c.c.id == STG.c.old_id)
        .where(
            STG.c.patient_pk.is_(None)
            | (
                STG.c.old_id.is_not(None)
                & ((c.c.patient_pk != STG.c.patient_pk) | (c.c.amount_cents != STG.c.amount_cents))
            )
        )
    )
    bad = stage.flag_problems(conn, stmt, STG, _problems, errs, skip_invalid=skip_invalid)
    return identical, other + bad


def _problems(r: Any, errs: stage.ErrorLog) -> bool:
    n0 = len(errs)
    if r.patient_pk is None:
        errs.add(r.line, f"line {r.line}: patient_id: unknown patient {r.patient_id!r} (import patients first)")
    if r.old_id is not None and r.patient_pk is not None and r.c_patient_pk != r.patient_pk:
        errs.add(r.line, f"line {r.line}: patient_id: charge {r.charge_id!r} belongs to another patient")
    if r.old_id is not None and r.c_amount != r.amount_cents:
        delta = r.amount_cents - r.c_amount
        if r.status != ChargeStatus.OUTSTANDING and r.outstanding_cents + delta != 0:
            errs.add(
                r.line, f"line {r.line}: amount: charge {r.charge_id!r} is {r.status}; its amount can no longer change"
            )
        elif r.outstanding_cents + delta < 0:
            errs.add(
                r.line,
                f"line {r.line}: amount: charge {r.charge_id!r} already has "
                f"{format_dollars(r.c_amount - r.outstanding_cents)} paid; the new amount is below that",
            )
    return len(errs) != n0


def apply(conn: Connection, ctx: Context, rule_sets: RuleSets, rule_set_name: str, report: Any) -> None:
    """Write the staged charges: changed ones updated, new ones into in-progress or new sets."""
    stage.create(conn, TOUCHED)
    _update_existing(conn, ctx, report)
    stage.create(conn, NEED)
    new = STG.c.old_id.is_(None)
    conn.execute(
        insert(NEED).from_select(
            ["patient_pk", "balance"],
            select(STG.c.patient_pk, func.sum(STG.c.amount_cents)).where(new).group_by(STG.c.patient_pk),
        )
    )
    held = select(invoice_set_t.c.patient_pk).where(IN_PROGRESS, invoice_set_t.c.patient_pk == NEED.c.patient_pk)
    conn.execute(
        sql_text(
            f"INSERT INTO {TOUCHED.name} (id) SELECT invoice_set.id FROM invoice_set JOIN {NEED.name} n"
            f" ON n.patient_pk = invoice_set.patient_pk WHERE {IN_PROGRESS} ON CONFLICT DO NOTHING"
        )
    )
    conn.execute(NEED.delete().where(held.exists()))
    stage.analyze(conn, NEED)
    report.sets_created += _create_sets(conn, parse_arms(rule_set_name), rule_sets, ctx)
    report.created += _insert_charges(conn, ctx)
    for page in stage.pages(conn, select(TOUCHED.c.id), TOUCHED.c.id):
        ids = [r.id for r in page]
        recompute_amounts(conn, ids)
        report.sets_changed += len(refresh_sets(conn, ids, ctx, rule_sets))
    stage.drop(conn, NEED, TOUCHED)


def _update_existing(conn: Connection, ctx: Context, report: Any) -> None:
    c = charge_t
    stmt = select(
        STG,
        c.c.id,
        c.c.amount_cents.label("c_amount"),
        c.c.outstanding_cents,
        c.c.status,
        c.c.description.label("c_description"),
        c.c.created_at.label("c_created"),
        c.c.invoice_set_id,
        c.c.patient_pk.label("c_patient_pk"),
    ).join(c, c.c.id == STG.c.old_id)
    for page in stage.pages(conn, stmt, STG.c.line):
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        touched: set[int] = set()
        for r in page:
            new_created = r.created_at or r.c_created
            delta = r.amount_cents - r.c_amount
            if delta == 0 and r.description == r.c_description and new_created == r.c_created:
                report.unchanged += 1
                continue
            report.updated += 1
            outstanding = r.outstanding_cents + delta if r.status == ChargeStatus.OUTSTANDING else r.outstanding_cents
            paid = r.status in (ChargeStatus.OUTSTANDING, ChargeStatus.PAID) and outstanding == 0
            updates.append(
                {
                    "b_id": r.id,
                    "amount_cents": r.amount_cents,
                    "outstanding_cents": outstanding,
                    "description": r.description,
                    "created_at": new_created,
                    "status": ChargeStatus.PAID if paid else r.status,
                }
            )
            if r.invoice_set_id is None:
                continue
            touched.add(r.invoice_set_id)
            if delta:
                detail = {"charge_id": r.charge_id, "amount_cents": r.amount_cents, "previous_amount_cents": r.c_amount}
                events.append(
                    event_row(ctx, "charge_changed", set_id=r.invoice_set_id, patient_pk=r.c_patient_pk, detail=detail)
                )
        bulk_update(conn, charge_t, updates)
        add_events(conn, events)
        _touch(conn, sorted(touched))


def _touch(conn: Connection, ids: list[int]) -> None:
    if ids:
        conn.execute(
            sql_text(f"INSERT INTO {TOUCHED.name} (id) VALUES (:id) ON CONFLICT DO NOTHING"), [{"id": i} for i in ids]
        )


def _insert_charges(conn: Connection, ctx: Context) -> int:
    """Every new charge in one statement, into its patient's in-progress set (each has one now),
    in file order; then its `charge_added` event, a page at a time."""
    s, i = STG, invoice_set_t
    cols = ["charge_id", "patient_pk", "invoice_set_id", "amount_cents", "outstanding_cents", "created_at"]
    now = bindparam("now", ctx.now, type_=UTCDateTime())
    rows = (
        select(
            s.c.charge_id,
            s.c.patient_pk,
            i.c.id,
            s.c.amount_cents,
            s.c.amount_cents,
            func.coalesce(s.c.created_at, now),
            s.c.description,
            literal(ChargeStatus.OUTSTANDING.value),
        )
        .join(i, (i.c.patient_pk == s.c.patient_pk) & IN_PROGRESS)
        .where(s.c.old_id.is_(None))
        .order_by(s.c.line)
    )
    count = conn.execute(select(func.count()).where(s.c.old_id.is_(None))).scalar_one()
    if not count:
        return 0
    conn.execute(insert(charge_t).from_select([*cols, "description", "status"], rows))
    added = select(s.c.line, s.c.charge_id, s.c.amount_cents, s.c.patient_pk, i.c.id.label("set_id")).join(
        i, (i.c.patient_pk == s.c.patient_pk) & IN_PROGRESS
    )
    tpl = event_row(ctx, "charge_added")
    for page in stage.pages(conn, added.where(s.c.old_id.is_(None)), s.c.line):
        # detail as json.dumps({"charge_id": ..., "amount_cents": ...}, sort_keys=True) writes it
        events = [
            tpl
            | {
                "invoice_set_id": r.set_id,
                "patient_pk": r.patient_pk,
                "detail": f'{{"amount_cents": {int(r.amount_cents)}, "charge_id": {json.dumps(r.charge_id)}}}',
            }
            for r in page
        ]
        add_events(conn, events)
    return int(count)


# The patient columns that decide a new set's evaluation: all but identity, names and search text
# (contact_of, zones_of and window_of read a subset). Patients equal in these share one
# evaluation (a practice's patients without a phone, say), so they are read as one key.
_NOT_INPUTS = {"id", "patient_id", "first_name", "last_name", "search_name", "search_text", "created_at", "updated_at"}
_INPUTS = operator.itemgetter(*(i for i, c in enumerate(patient_t.c) if c.name not in _NOT_INPUTS))


def _create_sets(conn: Connection, arms: Arms, rule_sets: RuleSets, ctx: Context) -> int:
    """New invoice sets for the patients in NEED, a page at a time, each written once with its
    balance, status and next send already decided. IDs are allocated first, so each set's A/B arm
    (a hash of its ID) is known before it is evaluated."""
    cache: dict[Any, Any] = {}  # equal patients share one evaluation
    stmt = select(patient_t, NEED.c.balance, NEED.c.patient_pk).join(NEED, NEED.c.patient_pk == patient_t.c.id)
    templates: dict[int, dict[str, Any]] = {}  # the `created` event of each rule set
    created = 0
    for page in stage.pages(conn, stmt, NEED.c.patient_pk):
        ids = iter(_allocate_set_ids(conn, len(page)))
        rows = [_new_set(p, next(ids), arms, rule_sets, ctx, cache) for p in page]
        stage.bulk_insert(conn, invoice_set_t, list(rows[0]), [tuple(r.values()) for r in rows])
        events = []
        for r in rows:
            tpl = templates.get(r["rule_set_id"])
            if tpl is None:
                detail: dict[str, Any] = {"rule_set": rule_sets.name(r["rule_set_id"])}
                if arms.is_experiment:
                    detail |= {"experiment": arms.spec, "arm": detail["rule_set"]}
                tpl = templates[r["rule_set_id"]] = event_row(ctx, "created", detail=detail)
            events.append(
                tpl
                | {
                    "invoice_set_id": r["id"],
                    "patient_pk": r["patient_pk"],
                    "to_status": r["status"],
                    "reason": r["status_reason"],
                }
            )
        add_events(conn, events)
        created += len(rows)
        if len(cache) > CACHE_LIMIT:
            cache.clear()
    return created


# Entries kept for equal patients (an entry holds the patient's columns, contact and evaluation:
# a few KB). Patients with their own phone and email never repeat, so a bigger cache only grows:
# at 100,000 entries a 100,000-charge import of such patients peaked at 403 MB.
CACHE_LIMIT = 10_000


def _patient_inputs(p: Any, ctx: Context, cache: dict[Any, Any]) -> tuple[Any, ...]:
    """(contact, zones, window, usable methods) of the patient, shared by equal patients."""
    from outreach_cli.domain.contacts import usable_methods
    from outreach_cli.domain.patient_view import contact_of, window_of, zones_of

    key = _INPUTS(p)
    got = cache.get(key)
    if got is None:
        contact = contact_of(p)
        # window: the patient's state's holidays when sending.state_holidays
        got = (contact, zones_of(p, ctx.practice_tz), window_of(p, ctx), tuple(usable_methods(contact).items()))
        cache[key] = got
    return got


def _new_set(
    p: Any, set_id: int, arms: Arms, rule_sets: RuleSets, ctx: Context, cache: dict[Any, Any]
) -> dict[str, Any]:
    from outreach_cli.domain.evaluation import evaluate, step_applies
    from outreach_cli.domain.statuses import Status

    contact, zones, window, methods = _patient_inputs(p, ctx, cache)
    bal = p.balance
    arm = assign(set_id, arms)
    rule_set_id = rule_sets.resolve(arm)
    rs = rule_sets.get(rule_set_id)
    key = ("evaluation", rule_set_id, zones, window, methods, tuple(step_applies(st, bal) for st in rs.steps))
    view = cache.get(key)
    if view is None:
        view = cache[key] = evaluate(
            status=Status.ACTIVE,
            rule_set=rs,
            next_step_index=0,
            anchor=ctx.now,
            paused=False,
            expired_at=None,
            failed_reason=None,
            balance_cents=bal,
            contact=contact,
            zones=zones,
            window=window,
            now=ctx.now,
        )
    return {
        "id": set_id,
        "patient_pk": p.patient_pk,
        "rule_set_id": rule_set_id,
        "experiment": arms.spec,
        "arm": arm if arms.is_experiment else None,
        "status": view.status.value,
        "status_reason": view.status_reason,
        "will_fail_reason": view.will_fail_reason,
        "expired_at": view.expired_at,
        "amount_outstanding_cents": bal,
        "created_at": ctx.now,
        "anchor_at": ctx.now,
        "updated_at": ctx.now,
        "next_step_index": 0,
        "next_send_at": view.next_send_at,
        "next_step": view.next_step,
        "next_methods": view.next_methods,
        "schedule_gen": 1,
    }


def _allocate_set_ids(conn: Connection, n: int) -> list[int]:
    """IDs for ``n`` new invoice sets, known before the rows are written."""
    if n == 0:
        return []
    if conn.dialect.name == "sqlite":
        # Writers are serialised (BEGIN IMMEDIATE), so IDs can be assigned here: no RETURNING round trips.
        next_id = (conn.execute(select(func.max(invoice_set_t.c.id))).scalar() or 0) + 1
        return list(range(next_id, next_id + n))
    # PostgreSQL: draw from the column's sequence (safe under concurrent writers).
    return list(
        conn.execute(
            sql_text("SELECT nextval(pg_get_serial_sequence('invoice_set', 'id')) FROM generate_series(1, :n)"),
            {"n": n},
        ).scalars()
    )

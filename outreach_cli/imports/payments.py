"""`import payments`, streamed (SPEC sections 8 and 12): validated rows are staged, checked with
joins, then applied by `core.ledger` a group of patients at a time (a patient's payments always in
one group, in the order they were made), so memory stays bounded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Integer, String, func, select, update

from outreach_cli.domain.context import Context
from outreach_cli.domain.payment_rows import NewPayment
from outreach_cli.imports import stage
from outreach_cli.imports.records import PaymentRecord
from outreach_cli.store.ledger import apply_payments_detailed
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import UTCDateTime, charge_t, patient_t, payment_t

STG = stage.staging_table(
    "import_payment",
    Column("line", Integer, primary_key=True),
    Column("payment_id", String, nullable=False),
    Column("patient_id", String, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("paid_at", UTCDateTime(), nullable=False),
    Column("charge_id", String, nullable=True),
    Column("patient_pk", Integer, nullable=True),
    Column("old_id", Integer, nullable=True),
)
STAGED = ("line", "payment_id", "patient_id", "amount_cents", "paid_at", "charge_id")


def staged_row(line: int, n: PaymentRecord) -> tuple[Any, ...]:
    return (line, n["payment_id"], n["patient_id"], n["amount_cents"], n["paid_at"], n["charge_id"])


def check(conn: Connection, errs: stage.ErrorLog, skip_invalid: bool) -> tuple[int, int]:
    """Duplicates within the file, unknown patients and charges, charges of another patient,
    payments recorded before with other values. Returns (identical duplicates, rows with problems)."""
    stage.index(conn, STG, "payment_id")
    stage.analyze(conn, STG)
    identical, other = stage.duplicates(conn, STG, "payment_id", STAGED[1:], errs)
    conn.execute(update(STG).where(STG.c.patient_id == patient_t.c.patient_id).values(patient_pk=patient_t.c.id))
    conn.execute(update(STG).where(STG.c.payment_id == payment_t.c.payment_id).values(old_id=payment_t.c.id))
    c, p = charge_t.alias("c"), payment_t.alias("p")
    stmt = (
        select(
            STG,
            c.c.id.label("c_id"),
            c.c.patient_pk.label("c_patient_pk"),
            p.c.patient_pk.label("p_patient_pk"),
            p.c.amount_cents.label("p_amount"),
            p.c.charge_ref.label("p_charge_ref"),
        )
        .outerjoin(c, c.c.charge_id == STG.c.charge_id)
        .outerjoin(p, p.c.id == STG.c.old_id)
        .where(
            STG.c.patient_pk.is_(None)
            | (STG.c.charge_id.is_not(None) & (c.c.id.is_(None) | (c.c.patient_pk != STG.c.patient_pk)))
            | (
                STG.c.old_id.is_not(None)
                & (
                    (p.c.patient_pk != STG.c.patient_pk)
                    | (p.c.amount_cents != STG.c.amount_cents)
                    | p.c.charge_ref.is_distinct_from(STG.c.charge_id)
                )
            )
        )
    )
    bad = stage.flag_problems(conn, stmt, STG, _problems, errs, skip_invalid=skip_invalid)
    return identical, other + bad


def _problems(r: Any, errs: stage.ErrorLog) -> bool:
    n0 = len(errs)
    if r.patient_pk is None:
        errs.add(r.line, f"line {r.line}: patient_id: unknown patient {r.patient_id!r} (import patients first)")
    if r.charge_id:
        if r.c_id is None:
            errs.add(r.line, f"line {r.line}: charge_id: unknown charge {r.charge_id!r}")
        elif r.patient_pk is not None and r.c_patient_pk != r.patient_pk:
            errs.add(r.line, f"line {r.line}: charge_id: charge {r.charge_id!r} belongs to another patient")
    if r.old_id is not None and r.patient_pk is not None:
        same = r.p_patient_pk == r.patient_pk and r.p_amount == r.amount_cents and r.p_charge_ref == r.charge_id
        if not same:
            errs.add(
                r.line,
                f"line {r.line}: payment_id: payment {r.payment_id!r} was already recorded with other "
                "values; payments cannot change once recorded (a further payment needs a new payment_id)",
            )
    return len(errs) != n0


def apply(conn: Connection, ctx: Context, rule_sets: RuleSets, report: Any) -> None:
    """Payments already recorded (with the same values) are unchanged; new ones are applied by
    the ledger, a group of patients at a time, oldest payment first within each patient."""
    report.unchanged += conn.execute(select(func.count()).where(STG.c.old_id.is_not(None))).scalar_one()
    stage.index(conn, STG, "patient_pk")
    new = STG.c.old_id.is_(None)
    patients = select(STG.c.patient_pk).where(new).distinct()
    credit: list[tuple[Any, int, tuple[str, int, int]]] = []
    for group in stage.pages(conn, patients, STG.c.patient_pk, stage.PAGE // 2):
        rows = conn.execute(
            select(STG)
            .where(new, STG.c.patient_pk.between(group[0].patient_pk, group[-1].patient_pk))
            .order_by(STG.c.paid_at, STG.c.line)
        ).all()
        payments: list[NewPayment] = [
            {
                "payment_id": r.payment_id,
                "patient_pk": r.patient_pk,
                "amount_cents": r.amount_cents,
                "paid_at": r.paid_at,
                "charge_ref": r.charge_id,
            }
            for r in rows
        ]
        report.created += len(payments)
        res = apply_payments_detailed(conn, payments, ctx, rule_sets)
        report.sets_changed += len(res.changed)
        order = {r.payment_id: (r.paid_at, r.line) for r in rows}
        credit += [(*order[u.payment_id], (u.payment_id, u.unapplied_cents, u.amount_cents)) for u in res.unapplied]
    report.unapplied = [u for *_, u in sorted(credit, key=lambda c: (c[0], c[1]))]  # in the order they were made

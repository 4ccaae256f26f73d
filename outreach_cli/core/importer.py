"""`outreach import patients|charges|payments` (SPEC section 8).

Validate everything first (every problem as `line N: column: problem`), then write in one
transaction. Upsert by ID: re-importing the same file changes nothing.

Decisions where the spec is silent (also in the README):
- A column missing from the file leaves that field as it is; a present but empty cell clears it,
  except `phone_type` (empty keeps what we learned, e.g. landline, unless the phone changed) and
  the opt-outs: an import can set an opt-out but never clears one. Opt-outs are the patient's
  word; only the patient clears them (START reply).
- A changed email address clears its bounce/complaint suppression.
- A re-imported charge with a new amount adjusts its outstanding amount by the difference, only
  while the charge is still outstanding and the result is not negative; otherwise it is an error.
- Payments are immutable: the same payment ID with other values is an error.
- A payment pays the named charge first (if any), then the patient's other outstanding charges
  oldest first; what is left is kept as unapplied credit on the payment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select

from outreach_cli.core import contacts
from outreach_cli.core.errors import InvalidInput
from outreach_cli.core.models import (
    allocation_t,
    charge_t,
    invoice_set_t,
    patient_t,
    payment_t,
)
from outreach_cli.core.money import format_dollars, parse_cents, parse_dollars
from outreach_cli.core.readers import Record, decode, detect_format, read_records
from outreach_cli.core.sets import (
    Context,
    RuleSets,
    add_events,
    bulk_update,
    chunks,
    event_row,
    open_set_ids_for_patients,
    recompute_amounts,
    refresh_sets,
)
from outreach_cli.core.statuses import IN_PROGRESS
from outreach_cli.core.timeutil import get_zone, parse_datetime

PATIENT_COLUMNS = (
    "patient_id",
    "first_name",
    "last_name",
    "phone",
    "phone_type",
    "email",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "timezone",
    "sms_opt_out",
    "call_opt_out",
    "email_opt_out",
    "card_token",
)
CHARGE_COLUMNS = ("charge_id", "patient_id", "amount", "amount_cents", "created_at", "description")
PAYMENT_COLUMNS = ("payment_id", "patient_id", "amount", "amount_cents", "paid_at", "charge_id")
KINDS = {"patients": PATIENT_COLUMNS, "charges": CHARGE_COLUMNS, "payments": PAYMENT_COLUMNS}
MAX_ERRORS_SHOWN = 50
MAX_AMOUNT_CENTS = 10_000_000_00  # $10,000,000.00: anything above is a broken file, not a medical bill


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    sets_created: int = 0
    sets_changed: int = 0
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        parts = [f"{self.created} created", f"{self.updated} updated", f"{self.unchanged} unchanged"]
        if self.invalid:
            parts.append(f"{self.invalid} invalid (skipped)")
        if self.kind == "charges":
            parts.append(f"{self.sets_created} new invoice sets")
        return f"{self.kind}: {verb} {self.rows} rows: " + ", ".join(parts)


class _Rollback(Exception):
    pass


def _bool(v: str) -> bool | None:
    s = str(v).strip().lower()
    if s == "":
        return None
    if s in ("true", "yes", "1", "y", "t"):
        return True
    if s in ("false", "no", "0", "n", "f"):
        return False
    raise ValueError(f"expected true/false/yes/no/1/0, got {v!r}")


def _amount(rec: Record, errs: list[str]) -> int | None:
    v = rec.values
    has_d = str(v.get("amount", "")).strip() != ""
    has_c = str(v.get("amount_cents", "")).strip() != ""
    if has_d and has_c:
        errs.append(f"line {rec.line}: amount: give amount or amount_cents, not both")
        return None
    if not has_d and not has_c:
        errs.append(f"line {rec.line}: amount: required (dollars like 120.50, or amount_cents)")
        return None
    try:
        cents = parse_dollars(str(v["amount"])) if has_d else parse_cents(v["amount_cents"])
    except ValueError as exc:
        errs.append(f"line {rec.line}: {'amount' if has_d else 'amount_cents'}: {exc}")
        return None
    if cents <= 0:
        errs.append(f"line {rec.line}: amount: must be greater than zero, got {format_dollars(cents)}")
        return None
    if cents > MAX_AMOUNT_CENTS:
        errs.append(f"line {rec.line}: amount: above {format_dollars(MAX_AMOUNT_CENTS)}, the largest accepted amount")
        return None
    return cents


def _when(rec: Record, col: str, tz: ZoneInfo, now: datetime, errs: list[str]) -> datetime | None:
    raw = str(rec.values.get(col, "")).strip()
    if not raw:
        return now
    try:
        return parse_datetime(raw, tz)
    except ValueError as exc:
        errs.append(f"line {rec.line}: {col}: {exc}")
        return None


def _text(rec: Record, col: str) -> str:
    return str(rec.values.get(col, "")).strip()


def _dedupe(
    recs: list[tuple[Record, dict[str, Any]]], key: str, errs: list[str]
) -> list[tuple[Record, dict[str, Any]]]:
    seen: dict[str, tuple[int, dict[str, Any]]] = {}
    out = []
    for rec, norm in recs:
        k = norm[key]
        if k in seen:
            first_line, first = seen[k]
            if first != norm:
                errs.append(
                    f"line {rec.line}: {key}: {k!r} appears again (first on line {first_line}) with other values"
                )
            continue
        seen[k] = (rec.line, norm)
        out.append((rec, norm))
    return out


# --- patients --------------------------------------------------------------------------------


def _validate_patient(rec: Record, errs: list[str]) -> dict[str, Any] | None:
    v = rec.values
    n0 = len(errs)
    out: dict[str, Any] = {"_cols": set(v)}
    pid = _text(rec, "patient_id")
    if not pid:
        errs.append(f"line {rec.line}: patient_id: required")
    out["patient_id"] = pid
    first = _text(rec, "first_name")
    if not first:
        errs.append(f"line {rec.line}: first_name: required")
    out["first_name"] = first
    out["last_name"] = _text(rec, "last_name")
    phone_raw = _text(rec, "phone")
    out["phone"] = None
    if phone_raw:
        try:
            out["phone"] = contacts.parse_phone(phone_raw)
        except ValueError as exc:
            errs.append(f"line {rec.line}: phone: {exc} (use a format like (617) 555-0100 or +16175550100)")
    ptype = _text(rec, "phone_type").lower()
    if ptype and ptype not in contacts.PHONE_TYPES:
        errs.append(f"line {rec.line}: phone_type: {ptype!r} is not one of {', '.join(contacts.PHONE_TYPES)}")
    out["phone_type"] = ptype or None
    email = _text(rec, "email")
    out["email"] = None
    if email:
        try:
            out["email"] = contacts.check_email(email)
        except ValueError as exc:
            errs.append(f"line {rec.line}: email: not a valid address: {exc}")
    for col in ("address_line1", "address_line2", "city", "postal_code", "card_token"):
        out[col] = _text(rec, col) or None
    out["state"] = _text(rec, "state").upper() or None
    out["country"] = _text(rec, "country").upper() or None
    tz = _text(rec, "timezone")
    out["timezone"] = None
    if tz:
        try:
            get_zone(tz)
            out["timezone"] = tz
        except ValueError as exc:
            errs.append(f"line {rec.line}: timezone: {exc}")
    for col in ("sms_opt_out", "call_opt_out", "email_opt_out"):
        try:
            out[col] = _bool(v.get(col, ""))
        except ValueError as exc:
            errs.append(f"line {rec.line}: {col}: {exc}")
    return out if len(errs) == n0 else None


_CONTACT_FIELDS = (
    "phone",
    "phone_type",
    "email",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "timezone",
    "sms_opt_out",
    "call_opt_out",
    "email_opt_out",
    "card_token",
    "email_suppressed",
)


def _patient_values(norm: dict[str, Any], existing: Any | None) -> dict[str, Any]:
    cols: set[str] = norm["_cols"]
    new: dict[str, Any] = {}
    for col in (
        "first_name",
        "last_name",
        "address_line1",
        "address_line2",
        "city",
        "state",
        "postal_code",
        "country",
        "timezone",
        "card_token",
        "phone",
        "email",
    ):
        if col in cols or existing is None:
            new[col] = norm.get(col) if col != "last_name" else (norm.get(col) or "")
        else:
            new[col] = getattr(existing, col)
    if new["last_name"] is None:
        new["last_name"] = ""
    old_phone = existing.phone if existing is not None else None
    if norm.get("phone_type"):
        new["phone_type"] = norm["phone_type"]
    elif existing is not None and new["phone"] == old_phone:
        new["phone_type"] = existing.phone_type
    else:
        new["phone_type"] = "unknown"
    for col in ("sms_opt_out", "call_opt_out", "email_opt_out"):
        before = bool(getattr(existing, col)) if existing is not None else False
        new[col] = before or bool(norm.get(col))
    if existing is not None and new["email"] == existing.email:
        new["email_suppressed"] = existing.email_suppressed
    else:
        new["email_suppressed"] = None
    new["phone_valid"] = contacts.phone_is_valid(new["phone"]) if new["phone"] else False
    new["email_valid"] = contacts.email_is_valid(new["email"]) if new["email"] else False
    new["phone_tz"] = contacts.phone_zone(new["phone"])
    new["address_tz"] = contacts.address_zone(new["state"], new["country"], new.get("postal_code"))
    new["search_name"] = f"{new['first_name']} {new['last_name']}".strip().lower()
    return new


def _import_patients(
    conn: Connection, recs: list[tuple[Record, dict[str, Any]]], ctx: Context, rule_sets: RuleSets, report: ImportReport
) -> None:
    existing: dict[str, Any] = {}
    ids = [n["patient_id"] for _, n in recs]
    for chunk in chunks(ids):
        for row in conn.execute(select(patient_t).where(patient_t.c.patient_id.in_(chunk))):
            existing[row.patient_id] = row
    inserts, updates = [], []
    touched_contacts: list[int] = []
    contact_events: list[tuple[int, list[str]]] = []
    for _, norm in recs:
        old = existing.get(norm["patient_id"])
        new = _patient_values(norm, old)
        if old is None:
            inserts.append(
                {
                    "patient_id": norm["patient_id"],
                    "created_at": ctx.now,
                    "updated_at": ctx.now,
                    "address_invalid": False,
                    **new,
                }
            )
            report.created += 1
            continue
        diff = [k for k, val in new.items() if getattr(old, k) != val]
        if not diff:
            report.unchanged += 1
            continue
        report.updated += 1
        updates.append({"b_id": old.id, "updated_at": ctx.now, **new})
        changed_contact = [k for k in diff if k in _CONTACT_FIELDS]
        if changed_contact:
            touched_contacts.append(old.id)
            # Field names only: values are PHI and the event log is read widely.
            contact_events.append((old.id, sorted(changed_contact)))
    for chunk in chunks(inserts, 1000):
        conn.execute(insert(patient_t), list(chunk))
    bulk_update(conn, patient_t, updates)
    if touched_contacts:
        set_ids = open_set_ids_for_patients(conn, touched_contacts)
        by_patient: dict[int, list[int]] = defaultdict(list)
        for chunk in chunks(set_ids):
            for sid, ppk in conn.execute(
                select(invoice_set_t.c.id, invoice_set_t.c.patient_pk).where(invoice_set_t.c.id.in_(chunk))
            ):
                by_patient[ppk].append(sid)
        events = []
        for ppk, fields in contact_events:
            for sid in by_patient.get(ppk, []):
                events.append(event_row(ctx, "contact_updated", set_id=sid, patient_pk=ppk, detail={"fields": fields}))
        add_events(conn, events)
        report.sets_changed += len(refresh_sets(conn, set_ids, ctx, rule_sets))


# --- charges ---------------------------------------------------------------------------------


def _validate_charge(rec: Record, tz: ZoneInfo, now: datetime, errs: list[str]) -> dict[str, Any] | None:
    n0 = len(errs)
    cid = _text(rec, "charge_id")
    if not cid:
        errs.append(f"line {rec.line}: charge_id: required")
    pid = _text(rec, "patient_id")
    if not pid:
        errs.append(f"line {rec.line}: patient_id: required")
    cents = _amount(rec, errs)
    created = _when(rec, "created_at", tz, now, errs)
    has_created = bool(_text(rec, "created_at"))
    if len(errs) != n0:
        return None
    return {
        "charge_id": cid,
        "patient_id": pid,
        "amount_cents": cents,
        "created_at": created if has_created else None,
        "description": _text(rec, "description"),
    }


def _patient_map(conn: Connection, pids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    uniq = sorted(set(pids))
    for chunk in chunks(uniq, 900):
        for pk, pid in conn.execute(
            select(patient_t.c.id, patient_t.c.patient_id).where(patient_t.c.patient_id.in_(chunk))
        ):
            out[pid] = pk
    return out


def _charge_map(conn: Connection, cids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    uniq = sorted(set(cids))
    for chunk in chunks(uniq, 900):
        for row in conn.execute(select(charge_t).where(charge_t.c.charge_id.in_(chunk))):
            out[row.charge_id] = row
    return out


def _check_charges(
    conn: Connection, recs: list[tuple[Record, dict[str, Any]]], errs: list[str]
) -> tuple[list[tuple[Record, dict[str, Any]]], dict[str, int], dict[str, Any]]:
    patients = _patient_map(conn, [n["patient_id"] for _, n in recs])
    existing = _charge_map(conn, [n["charge_id"] for _, n in recs])
    good = []
    for rec, n in recs:
        n0 = len(errs)
        if n["patient_id"] not in patients:
            errs.append(f"line {rec.line}: patient_id: unknown patient {n['patient_id']!r} (import patients first)")
        old = existing.get(n["charge_id"])
        if old is not None and n["patient_id"] in patients and old.patient_pk != patients[n["patient_id"]]:
            errs.append(f"line {rec.line}: patient_id: charge {n['charge_id']!r} belongs to another patient")
        if old is not None and old.amount_cents != n["amount_cents"]:
            delta = n["amount_cents"] - old.amount_cents
            if old.status != "outstanding" and old.outstanding_cents + delta != 0:
                errs.append(
                    f"line {rec.line}: amount: charge {n['charge_id']!r} is {old.status}; its amount can no longer change"
                )
            elif old.outstanding_cents + delta < 0:
                errs.append(
                    f"line {rec.line}: amount: charge {n['charge_id']!r} already has "
                    f"{format_dollars(old.amount_cents - old.outstanding_cents)} paid; the new amount is below that"
                )
        if len(errs) == n0:
            good.append((rec, n))
    return good, patients, existing


def _import_charges(
    conn: Connection,
    recs: list[tuple[Record, dict[str, Any]]],
    ctx: Context,
    rule_sets: RuleSets,
    rule_set_name: str,
    report: ImportReport,
    patients: dict[str, int],
    existing: dict[str, Any],
) -> None:
    new_recs = [(r, n) for r, n in recs if n["charge_id"] not in existing]
    updates: list[dict[str, Any]] = []
    touched_sets: set[int] = set()
    events: list[dict[str, Any]] = []
    for _, n in recs:
        old = existing.get(n["charge_id"])
        if old is None:
            continue
        new_created = n["created_at"] or old.created_at
        delta = n["amount_cents"] - old.amount_cents
        if delta == 0 and n["description"] == old.description and new_created == old.created_at:
            report.unchanged += 1
            continue
        report.updated += 1
        outstanding = old.outstanding_cents + delta if old.status == "outstanding" else old.outstanding_cents
        updates.append(
            {
                "b_id": old.id,
                "amount_cents": n["amount_cents"],
                "outstanding_cents": outstanding,
                "description": n["description"],
                "created_at": new_created,
                "status": "paid" if old.status in ("outstanding", "paid") and outstanding == 0 else old.status,
            }
        )
        if old.invoice_set_id is not None:
            touched_sets.add(old.invoice_set_id)
            if delta:
                events.append(
                    event_row(
                        ctx,
                        "charge_changed",
                        set_id=old.invoice_set_id,
                        patient_pk=old.patient_pk,
                        detail={
                            "charge_id": n["charge_id"],
                            "amount_cents": n["amount_cents"],
                            "previous_amount_cents": old.amount_cents,
                        },
                    )
                )
    bulk_update(conn, charge_t, updates)

    if new_recs:
        rule_set_id = rule_sets.resolve(rule_set_name)
        pks = sorted({patients[n["patient_id"]] for _, n in new_recs})
        in_progress: dict[int, int] = {}
        for chunk in chunks(pks):
            for sid, ppk in conn.execute(
                select(invoice_set_t.c.id, invoice_set_t.c.patient_pk).where(
                    invoice_set_t.c.patient_pk.in_(chunk), invoice_set_t.c.status.in_([s.value for s in IN_PROGRESS])
                )
            ):
                in_progress[ppk] = sid
        need = [pk for pk in pks if pk not in in_progress]
        created_sets: set[int] = set()
        if need:
            fresh = _create_sets(conn, need, new_recs, patients, rule_set_id, rule_sets, ctx)
            for ppk, (sid, status, reason) in fresh.items():
                in_progress[ppk] = sid
                events.append(
                    event_row(
                        ctx,
                        "created",
                        set_id=sid,
                        patient_pk=ppk,
                        to_status=status,
                        reason=reason,
                        detail={"rule_set": rule_set_name},
                    )
                )
            report.sets_created += len(need)
            created_sets = {sid for sid, _, _ in fresh.values()}
        charge_rows = []
        for _, n in new_recs:
            ppk = patients[n["patient_id"]]
            sid = in_progress[ppk]
            if sid not in created_sets:  # new sets were evaluated before they were written
                touched_sets.add(sid)
            charge_rows.append(
                {
                    "charge_id": n["charge_id"],
                    "patient_pk": ppk,
                    "invoice_set_id": sid,
                    "amount_cents": n["amount_cents"],
                    "outstanding_cents": n["amount_cents"],
                    "created_at": n["created_at"] or ctx.now,
                    "description": n["description"],
                    "status": "outstanding",
                }
            )
            events.append(
                event_row(
                    ctx,
                    "charge_added",
                    set_id=sid,
                    patient_pk=ppk,
                    detail={"charge_id": n["charge_id"], "amount_cents": n["amount_cents"]},
                )
            )
            if len(charge_rows) >= 5000:  # written as we go: memory stays bounded by the batch
                conn.execute(insert(charge_t), charge_rows)
                add_events(conn, events)
                charge_rows, events = [], []
        if charge_rows:
            conn.execute(insert(charge_t), charge_rows)
        report.created += len(new_recs)
    add_events(conn, events)
    recompute_amounts(conn, touched_sets)
    report.sets_changed += len(refresh_sets(conn, touched_sets, ctx, rule_sets))


def _create_sets(
    conn: Connection,
    need: list[int],
    new_recs: list[tuple[Record, dict[str, Any]]],
    patients: dict[str, int],
    rule_set_id: int,
    rule_sets: RuleSets,
    ctx: Context,
) -> dict[int, tuple[int, str, str | None]]:
    """New invoice sets, written once with their balance, status and next send already decided
    (no second pass over a million rows). Returns {patient_pk: (set_id, status, reason)}."""
    from outreach_cli.core.contacts import usable_methods
    from outreach_cli.core.evaluation import evaluate, step_applies
    from outreach_cli.core.sets import contact_of, window_of, zones_of
    from outreach_cli.core.statuses import Status

    balance: dict[int, int] = defaultdict(int)
    for _, n in new_recs:
        balance[patients[n["patient_id"]]] += n["amount_cents"]
    rs = rule_sets.get(rule_set_id)
    rows: list[dict[str, Any]] = []
    # Every new set starts at step 0 now: its evaluation depends only on the patient's zones,
    # usable methods and which steps the balance admits, so equal patients share one evaluation.
    seen: dict[tuple[Any, ...], Any] = {}
    for chunk in chunks(need, 900):
        for p in conn.execute(select(patient_t).where(patient_t.c.id.in_(chunk))):
            contact, zones, bal = contact_of(p), zones_of(p, ctx.practice_tz), balance[p.id]
            window = window_of(p, ctx)  # the patient's state's holidays when sending.state_holidays
            key = (
                zones,
                window,
                tuple(usable_methods(contact).items()),
                tuple(step_applies(st, bal) for st in rs.steps),
            )
            view = seen.get(key)
            if view is None:
                view = evaluate(
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
                seen[key] = view
            rows.append(
                {
                    "patient_pk": p.id,
                    "rule_set_id": rule_set_id,
                    "status": view.status.value,
                    "status_reason": view.status_reason,
                    "will_fail_reason": view.will_fail_reason,
                    "expired_at": view.expired_at,
                    "amount_outstanding_cents": balance[p.id],
                    "created_at": ctx.now,
                    "anchor_at": ctx.now,
                    "updated_at": ctx.now,
                    "next_step_index": 0,
                    "next_send_at": view.next_send_at,
                    "next_step": view.next_step,
                    "next_methods": view.next_methods,
                    "schedule_gen": 1,
                }
            )
    out: dict[int, tuple[int, str, str | None]] = {}
    if conn.dialect.name == "sqlite":
        # Writers are serialised (BEGIN IMMEDIATE), so IDs can be assigned here: no RETURNING round trips.
        next_id = (conn.execute(select(func.max(invoice_set_t.c.id))).scalar() or 0) + 1
        for i, r in enumerate(rows):
            r["id"] = next_id + i
            out[r["patient_pk"]] = (r["id"], r["status"], r["status_reason"])
        for chunk in chunks(rows, 5000):
            conn.execute(insert(invoice_set_t), list(chunk))
    else:
        for chunk in chunks(rows, 1000):
            res = conn.execute(
                insert(invoice_set_t).returning(
                    invoice_set_t.c.id, invoice_set_t.c.patient_pk, sort_by_parameter_order=True
                ),
                list(chunk),
            )
            by_patient = {r["patient_pk"]: r for r in chunk}
            for sid, ppk in res:
                out[ppk] = (sid, by_patient[ppk]["status"], by_patient[ppk]["status_reason"])
    return out


# --- payments --------------------------------------------------------------------------------


def _validate_payment(rec: Record, tz: ZoneInfo, now: datetime, errs: list[str]) -> dict[str, Any] | None:
    n0 = len(errs)
    pay_id = _text(rec, "payment_id")
    if not pay_id:
        errs.append(f"line {rec.line}: payment_id: required")
    pid = _text(rec, "patient_id")
    if not pid:
        errs.append(f"line {rec.line}: patient_id: required")
    cents = _amount(rec, errs)
    paid_at = _when(rec, "paid_at", tz, now, errs)
    if len(errs) != n0:
        return None
    return {
        "payment_id": pay_id,
        "patient_id": pid,
        "amount_cents": cents,
        "paid_at": paid_at,
        "charge_id": _text(rec, "charge_id") or None,
    }


def _check_payments(
    conn: Connection, recs: list[tuple[Record, dict[str, Any]]], errs: list[str]
) -> tuple[list[tuple[Record, dict[str, Any]]], dict[str, int], dict[str, Any], dict[str, Any]]:
    patients = _patient_map(conn, [n["patient_id"] for _, n in recs])
    charges = _charge_map(conn, [n["charge_id"] for _, n in recs if n["charge_id"]])
    existing: dict[str, Any] = {}
    for chunk in chunks(sorted({n["payment_id"] for _, n in recs}), 900):
        for row in conn.execute(select(payment_t).where(payment_t.c.payment_id.in_(chunk))):
            existing[row.payment_id] = row
    good = []
    for rec, n in recs:
        n0 = len(errs)
        ppk = patients.get(n["patient_id"])
        if ppk is None:
            errs.append(f"line {rec.line}: patient_id: unknown patient {n['patient_id']!r} (import patients first)")
        if n["charge_id"]:
            ch = charges.get(n["charge_id"])
            if ch is None:
                errs.append(f"line {rec.line}: charge_id: unknown charge {n['charge_id']!r}")
            elif ppk is not None and ch.patient_pk != ppk:
                errs.append(f"line {rec.line}: charge_id: charge {n['charge_id']!r} belongs to another patient")
        old = existing.get(n["payment_id"])
        if old is not None and ppk is not None:
            same = old.patient_pk == ppk and old.amount_cents == n["amount_cents"] and old.charge_ref == n["charge_id"]
            if not same:
                errs.append(
                    f"line {rec.line}: payment_id: payment {n['payment_id']!r} was already recorded with other "
                    "values; payments cannot change (record a new payment or an adjustment instead)"
                )
        if len(errs) == n0:
            good.append((rec, n))
    return good, patients, charges, existing


def apply_payments(
    conn: Connection,
    payments: list[dict[str, Any]],
    ctx: Context,
    rule_sets: RuleSets,
) -> dict[int, tuple[str, str]]:
    """Apply new payments (dicts with patient_pk, payment_id, amount_cents, paid_at, charge_ref,
    source). Returns {set_id: (from, to)} for the sets whose status changed (e.g. to paid)."""
    pks = sorted({p["patient_pk"] for p in payments})
    outstanding: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for chunk in chunks(pks):
        for row in conn.execute(
            select(
                charge_t.c.id,
                charge_t.c.charge_id,
                charge_t.c.patient_pk,
                charge_t.c.invoice_set_id,
                charge_t.c.outstanding_cents,
                charge_t.c.created_at,
            )
            .where(
                charge_t.c.patient_pk.in_(chunk), charge_t.c.status == "outstanding", charge_t.c.outstanding_cents > 0
            )
            .order_by(charge_t.c.created_at, charge_t.c.id)
        ):
            outstanding[row.patient_pk].append(dict(row._mapping))
    changed_charges: dict[int, dict[str, Any]] = {}
    allocations: list[tuple[int, int, int]] = []  # (payment index, charge pk, cents)
    per_set: dict[tuple[int, int], int] = defaultdict(int)  # (payment index, set id) -> cents
    unapplied: list[int] = []
    for i, p in enumerate(payments):
        left = p["amount_cents"]
        queue = outstanding[p["patient_pk"]]
        if p.get("charge_ref"):
            queue = sorted(queue, key=lambda c: 0 if c["charge_id"] == p["charge_ref"] else 1)
        for ch in queue:
            if left <= 0:
                break
            if ch["outstanding_cents"] <= 0:
                continue
            take = min(left, ch["outstanding_cents"])
            ch["outstanding_cents"] -= take
            left -= take
            changed_charges[ch["id"]] = ch
            allocations.append((i, ch["id"], take))
            if ch["invoice_set_id"] is not None:
                per_set[(i, ch["invoice_set_id"])] += take
        unapplied.append(left)
    pay_ids: list[int] = []
    rows = [
        {
            "payment_id": p["payment_id"],
            "patient_pk": p["patient_pk"],
            "amount_cents": p["amount_cents"],
            "unapplied_cents": unapplied[i],
            "paid_at": p["paid_at"],
            "charge_ref": p.get("charge_ref"),
            "source": p.get("source", "import"),
            "created_at": ctx.now,
        }
        for i, p in enumerate(payments)
    ]
    for chunk in chunks(rows, 1000):
        res = conn.execute(insert(payment_t).returning(payment_t.c.id, sort_by_parameter_order=True), list(chunk))
        pay_ids.extend(r[0] for r in res)
    alloc_rows = [{"payment_pk": pay_ids[i], "charge_pk": c, "amount_cents": cents} for i, c, cents in allocations]
    for chunk in chunks(alloc_rows, 2000):
        conn.execute(insert(allocation_t), list(chunk))
    bulk_update(
        conn,
        charge_t,
        [
            {
                "b_id": cid,
                "outstanding_cents": ch["outstanding_cents"],
                "status": "paid" if ch["outstanding_cents"] == 0 else "outstanding",
            }
            for cid, ch in changed_charges.items()
        ],
    )
    events = []
    for (i, sid), cents in per_set.items():
        p = payments[i]
        events.append(
            event_row(
                ctx,
                "payment",
                set_id=sid,
                patient_pk=p["patient_pk"],
                detail={
                    "payment_id": p["payment_id"],
                    "applied_cents": cents,
                    "amount_cents": p["amount_cents"],
                    "source": p.get("source", "import"),
                },
            )
        )
    add_events(conn, events)
    touched = {sid for (_, sid) in per_set}
    recompute_amounts(conn, touched)
    return refresh_sets(conn, touched, ctx, rule_sets)


def _import_payments(
    conn: Connection,
    recs: list[tuple[Record, dict[str, Any]]],
    ctx: Context,
    rule_sets: RuleSets,
    report: ImportReport,
    patients: dict[str, int],
    existing: dict[str, Any],
) -> None:
    new = []
    for _, n in recs:
        if n["payment_id"] in existing:
            report.unchanged += 1
            continue
        new.append(
            {
                "payment_id": n["payment_id"],
                "patient_pk": patients[n["patient_id"]],
                "amount_cents": n["amount_cents"],
                "paid_at": n["paid_at"],
                "charge_ref": n["charge_id"],
            }
        )
    new.sort(key=lambda p: p["paid_at"])
    report.created += len(new)
    if new:
        report.sets_changed += len(apply_payments(conn, new, ctx, rule_sets))


# --- entry point -----------------------------------------------------------------------------


def run_import(
    store: Any,
    kind: str,
    data: bytes,
    *,
    source: str,
    ctx: Context,
    input_format: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    rule_set: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    if kind not in KINDS:
        raise InvalidInput(f"unknown import kind {kind!r}; choose patients, charges or payments")
    columns = KINDS[kind]
    text = decode(data, source)
    fmt = detect_format(text, source, input_format)
    errs: list[str] = []
    tz = get_zone(ctx.practice_tz)
    report = ImportReport(kind=kind, dry_run=dry_run)
    recs: list[tuple[Record, dict[str, Any]]] = []
    for rec in read_records(text, fmt, columns=columns, errors=errs):
        report.rows += 1
        if progress is not None and report.rows % 5000 == 0:
            progress(report.rows)
        if kind == "patients":
            norm = _validate_patient(rec, errs)
        elif kind == "charges":
            norm = _validate_charge(rec, tz, ctx.now, errs)
        else:
            norm = _validate_payment(rec, tz, ctx.now, errs)
        if norm is not None:
            recs.append((rec, norm))
    key = {"patients": "patient_id", "charges": "charge_id", "payments": "payment_id"}[kind]
    recs = _dedupe(recs, key, errs)

    try:
        with store.write() as conn:
            rule_sets = RuleSets(conn)
            if kind == "charges":
                name = rule_set or str(ctx.extra.get("default_rule_set") or "")
                if not name:
                    raise InvalidInput("no rule set for new invoice sets: pass --rule-set NAME or set default_rule_set")
                rule_sets.resolve(name)
                recs, patients, existing = _check_charges(conn, recs, errs)
            elif kind == "payments":
                recs, patients, _charges, existing = _check_payments(conn, recs, errs)
            errs.sort(key=_line_of)
            report.errors = errs
            report.invalid = len({_line_of(e) for e in errs})
            if errs and not skip_invalid:
                shown = errs[:MAX_ERRORS_SHOWN]
                more = len(errs) - len(shown)
                raise InvalidInput(
                    f"{source}: {len(errs)} problem(s); nothing was imported"
                    + (" (use --skip-invalid to import the valid rows)" if recs else ""),
                    details=shown + ([f"... and {more} more"] if more else []),
                )
            if kind == "patients":
                _import_patients(conn, recs, ctx, rule_sets, report)
            elif kind == "charges":
                _import_charges(conn, recs, ctx, rule_sets, name, report, patients, existing)
            else:
                _import_payments(conn, recs, ctx, rule_sets, report, patients, existing)
            if dry_run:
                raise _Rollback()
    except _Rollback:
        pass
    return report


def _line_of(err: str) -> int:
    try:
        return int(err.split(":", 1)[0].split()[1])
    except (IndexError, ValueError):
        return 0

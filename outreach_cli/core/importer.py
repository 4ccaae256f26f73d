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
- Payments are applied by `core.ledger` (named charge first, then oldest first, collections
  charges included; written-off charges take recoveries); credit left over is reported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, insert, select
from sqlalchemy import text as sql_text

from outreach_cli.core import contacts
from outreach_cli.core.errors import InvalidInput
from outreach_cli.core.experiments import Arms, assign, parse_arms
from outreach_cli.core.ledger import apply_payments as apply_payments  # re-exported for older callers
from outreach_cli.core.ledger import apply_payments_detailed
from outreach_cli.core.models import (
    charge_t,
    invoice_set_t,
    patient_t,
    payment_t,
)
from outreach_cli.core.money import format_dollars, parse_cents, parse_dollars
from outreach_cli.core.readers import Record, decode, detect_format, read_records
from outreach_cli.core.searchtext import search_text
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
    "stripe_customer_id",
    "stripe_payment_method_id",
)
# The columns every practice system has (no Stripe IDs): the demo's and the tests' files.
BASIC_PATIENT_COLUMNS = PATIENT_COLUMNS[: PATIENT_COLUMNS.index("card_token") + 1]
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
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    # Payments (or parts) that found nothing owed: (payment_id, unapplied cents, amount cents).
    unapplied: list[tuple[str, int, int]] = field(default_factory=list)

    def summary(self) -> str:
        """What happened, counted: `patients: 4 imported (1 created, 3 updated), 0 unchanged,
        8 skipped as invalid`."""

        def n(count: int, word: str) -> str:
            return f"{count:,} {word}{'' if count == 1 else 's'}"

        imported = self.created + self.updated
        verb = "would be imported" if self.dry_run else "imported"
        text = f"{self.kind}{' (dry run)' if self.dry_run else ''}: {imported:,} {verb} "
        text += f"({self.created:,} created, {self.updated:,} updated), {self.unchanged:,} unchanged"
        if self.duplicates:
            text += f", {n(self.duplicates, 'identical duplicate row')} ignored"
        if self.invalid:
            text += f", {self.invalid:,} skipped as invalid"
        if self.kind == "charges":
            text += f"; {n(self.sets_created, 'new invoice set')}"
        return text

    def credit_lines(self) -> list[str]:
        """Payments kept as credit, for stderr: payment IDs and dollars only (no patient data)."""
        if not self.unapplied:
            return []
        total = sum(u for _, u, _ in self.unapplied)
        verb = "would not be applied" if self.dry_run else "not applied"
        head = f"payments: {len(self.unapplied)} payment(s) {verb} ({format_dollars(total)}), kept as credit:"
        lines = [head]
        for pid, left, amount in self.unapplied:
            part = format_dollars(left) if left == amount else f"{format_dollars(left)} of {format_dollars(amount)}"
            lines.append(f"  {pid}: {part} not applied: the patient owes nothing")
        return lines


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
    if not first and "first_name" in v:
        errs.append(f"line {rec.line}: first_name: required")
    # Without a first_name column the row updates an existing patient (checked in _check_patients).
    out["first_name"] = first
    out["last_name"] = _text(rec, "last_name")
    phone_raw = _text(rec, "phone")
    out["phone"] = None
    if phone_raw:
        try:
            if problem := _phone_problem(phone_raw):
                raise ValueError(problem)
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
    if (out["country"] or "US") in US_COUNTRY:
        if out["state"] and out["state"] not in US_STATES:
            errs.append(f"line {rec.line}: state: not a US state code (use the two-letter code, e.g. MA)")
        if out["postal_code"] and not _US_ZIP.fullmatch(out["postal_code"]):
            hint = (
                "; a spreadsheet may have dropped a leading zero"
                if re.fullmatch(r"\d{3,4}", out["postal_code"])
                else ""
            )
            errs.append(f"line {rec.line}: postal_code: not a US ZIP code (use 12345 or 12345-6789{hint})")
    tz = _text(rec, "timezone")
    out["timezone"] = None
    if tz:
        try:
            get_zone(tz)
            out["timezone"] = tz
        except ValueError as exc:
            errs.append(f"line {rec.line}: timezone: {exc}")
    _validate_stripe_ids(rec, out, errs)
    for col in ("sms_opt_out", "call_opt_out", "email_opt_out"):
        try:
            out[col] = _bool(v.get(col, ""))
        except ValueError as exc:
            errs.append(f"line {rec.line}: {col}: {exc}")
    return out if len(errs) == n0 else None


def _validate_stripe_ids(rec: Record, out: dict[str, Any], errs: list[str]) -> None:
    """Stripe card on file: a customer (cus_...) and its saved payment method (pm_...), both or neither."""
    from outreach_cli.core.channels.stripe_provider import CUSTOMER_RE, PAYMENT_METHOD_RE

    for col, pattern, example in (
        ("stripe_customer_id", CUSTOMER_RE, "cus_NffrFeUfNV2Hib"),
        ("stripe_payment_method_id", PAYMENT_METHOD_RE, "pm_1NXWJ2LkdIwHu7ixNy4tBDTs"),
    ):
        val = _text(rec, col)
        out[col] = val or None
        if val and not pattern.match(val):
            errs.append(f"line {rec.line}: {col}: {val[:40]!r} is not a Stripe ID like {example}")
    if bool(out["stripe_customer_id"]) != bool(out["stripe_payment_method_id"]) and {
        "stripe_customer_id",
        "stripe_payment_method_id",
    } <= set(rec.values):
        errs.append(
            f"line {rec.line}: stripe_payment_method_id: give both stripe_customer_id and stripe_payment_method_id "
            "(a saved card belongs to a customer), or neither"
        )


US_COUNTRY = ("US", "USA", "UNITED STATES")
# States, DC, territories (contacts.US_STATE_ZONES) and the military "states" AA, AE, AP.
US_STATES = frozenset(contacts.US_STATE_ZONES) | {"AA", "AE", "AP"}
_US_ZIP = re.compile(r"\d{5}(-\d{4})?")
_EXTENSION = re.compile(r"(?i)(?:ext\.?|extension|x|#)\s*\d+\s*$")


def _phone_problem(raw: str) -> str | None:
    """What phonenumbers would silently accept but a send cannot use (the number is not echoed)."""
    if _EXTENSION.search(raw):
        return "has an extension, which texts and calls cannot dial; give the number without it"
    if re.search(r"[A-Za-z]", raw):
        return "contains letters (like 555-CALL-NOW); give the number in digits"
    return None


def _check_patients(
    conn: Connection, recs: list[tuple[Record, dict[str, Any]]], errs: list[str]
) -> list[tuple[Record, dict[str, Any]]]:
    """Rows without a first_name column may only update patients that exist."""
    partial = [n["patient_id"] for _, n in recs if "first_name" not in n["_cols"]]
    if not partial:
        return recs
    known: set[str] = set()
    for chunk in chunks(partial):
        known.update(
            r[0] for r in conn.execute(select(patient_t.c.patient_id).where(patient_t.c.patient_id.in_(chunk)))
        )
    out = []
    for rec, norm in recs:
        if "first_name" not in norm["_cols"] and norm["patient_id"] not in known:
            errs.append(
                f"line {rec.line}: first_name: required for a new patient ({norm['patient_id']!r} is not in the database)"
            )
            continue
        out.append((rec, norm))
    return out


# What an import may change about a patient's contact data (a change re-evaluates their sets).
_CONTACT_FIELDS = (*PATIENT_COLUMNS[PATIENT_COLUMNS.index("phone") :], "email_suppressed")


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
        "stripe_customer_id",
        "stripe_payment_method_id",
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
    new["search_text"] = search_text(new["first_name"], new["last_name"], new["email"], new["phone"])
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
        arms = parse_arms(rule_set_name)
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
            fresh = _create_sets(conn, need, new_recs, patients, arms, rule_sets, ctx)
            for ppk, (sid, status, reason, arm) in fresh.items():
                in_progress[ppk] = sid
                events.append(
                    event_row(
                        ctx,
                        "created",
                        set_id=sid,
                        patient_pk=ppk,
                        to_status=status,
                        reason=reason,
                        detail={"rule_set": arm}
                        | ({"experiment": arms.spec, "arm": arm} if arms.is_experiment else {}),
                    )
                )
            report.sets_created += len(need)
            created_sets = {v[0] for v in fresh.values()}
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
    arms: Arms,
    rule_sets: RuleSets,
    ctx: Context,
) -> dict[int, tuple[int, str, str | None, str]]:
    """New invoice sets, written once with their balance, status and next send already decided
    (no second pass over a million rows). IDs are allocated first, so each set's A/B arm (a hash
    of its ID) is known before it is evaluated. Returns {patient_pk: (set_id, status, reason, rule set)}."""
    from outreach_cli.core.contacts import usable_methods
    from outreach_cli.core.evaluation import evaluate, step_applies
    from outreach_cli.core.sets import contact_of, window_of, zones_of
    from outreach_cli.core.statuses import Status

    balance: dict[int, int] = defaultdict(int)
    for _, n in new_recs:
        balance[patients[n["patient_id"]]] += n["amount_cents"]
    ids = iter(_allocate_set_ids(conn, len(need)))
    rows: list[dict[str, Any]] = []
    # Every new set starts at step 0 now: its evaluation depends only on the patient's zones,
    # usable methods and which steps the balance admits, so equal patients share one evaluation.
    seen: dict[tuple[Any, ...], Any] = {}
    for chunk in chunks(need, 900):
        for p in conn.execute(select(patient_t).where(patient_t.c.id.in_(chunk))):
            contact, zones, bal = contact_of(p), zones_of(p, ctx.practice_tz), balance[p.id]
            window = window_of(p, ctx)  # the patient's state's holidays when sending.state_holidays
            set_id = next(ids)
            arm = assign(set_id, arms)
            rule_set_id = rule_sets.resolve(arm)
            rs = rule_sets.get(rule_set_id)
            key = (
                rule_set_id,
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
                    "id": set_id,
                    "patient_pk": p.id,
                    "rule_set_id": rule_set_id,
                    "experiment": arms.spec,
                    "arm": arm if arms.is_experiment else None,
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
    out: dict[int, tuple[int, str, str | None, str]] = {}
    for r in rows:
        out[r["patient_pk"]] = (r["id"], r["status"], r["status_reason"], rule_sets.name(r["rule_set_id"]))
    for chunk in chunks(rows, 5000):
        conn.execute(insert(invoice_set_t), list(chunk))
    return out


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
                    "values; payments cannot change once recorded (a further payment needs a new payment_id)"
                )
        if len(errs) == n0:
            good.append((rec, n))
    return good, patients, charges, existing


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
        res = apply_payments_detailed(conn, new, ctx, rule_sets)
        report.sets_changed += len(res.changed)
        report.unapplied = [(u.payment_id, u.unapplied_cents, u.amount_cents) for u in res.unapplied]


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
    phase: Callable[[str], None] | None = None,
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
    if phase is not None:
        phase(f"{report.rows:,} rows read; checking and writing")
    deduped = _dedupe(recs, key, errs)
    report.duplicates = len(recs) - len(deduped) - sum(" appears again " in e for e in errs)
    recs = deduped

    try:
        with store.write() as conn:
            rule_sets = RuleSets(conn)
            if kind == "charges":
                name = rule_set or str(ctx.extra.get("default_rule_set") or "")
                if not name:
                    raise InvalidInput("no rule set for new invoice sets: pass --rule-set NAME or set default_rule_set")
                for arm in parse_arms(name, flag="--rule-set" if rule_set else "default_rule_set").names:
                    rule_sets.resolve(arm)
                recs, patients, existing = _check_charges(conn, recs, errs)
            elif kind == "payments":
                recs, patients, _charges, existing = _check_payments(conn, recs, errs)
            else:
                recs = _check_patients(conn, recs, errs)
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
    else:
        from outreach_cli.core.maintenance import after_big_write

        tables = {"patients": ["patient", "invoice_set"], "charges": ["charge", "invoice_set", "send", "event"]}
        after_big_write(
            store, tables.get(kind, ["payment", "payment_allocation", "charge", "invoice_set"]), report.rows
        )
    return report


def _line_of(err: str) -> int:
    try:
        return int(err.split(":", 1)[0].split()[1])
    except (IndexError, ValueError):
        return 0

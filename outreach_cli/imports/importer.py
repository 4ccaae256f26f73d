"""`outreach import patients|charges|payments` (SPEC sections 8 and 12).

Every problem is reported as `line N: column: problem`; any problem and nothing is written
(`--skip-invalid` writes the valid rows). Upsert by ID: re-importing the same file changes nothing.

Streamed, so a file of any size imports in bounded memory (issue 13): in the import's one
transaction, each row is validated as it is read and staged in a temporary table
(`core.import_stage`); the checks against the database are joins over that table; only then,
still in the same transaction, are the rows written, set-based or a page at a time
(`core.import_patients`, `core.import_charges`, `core.import_payments`).

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

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from outreach_cli.domain import contacts
from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.experiments import parse_arms
from outreach_cli.domain.money import format_dollars, parse_cents, parse_dollars
from outreach_cli.domain.timeutil import get_zone, parse_datetime
from outreach_cli.imports import stage
from outreach_cli.imports.parallel import checked_batches
from outreach_cli.imports.readers import ErrorSink, Record, detect_format, iter_lines, peek_text, read_records
from outreach_cli.imports.records import ChargeRecord, PatientRecord, PaymentRecord
from outreach_cli.store.ledger import apply_payments as apply_payments  # re-exported for older callers
from outreach_cli.store.loaded_rulesets import RuleSets

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

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
MAX_ERRORS_SHOWN = stage.MAX_ERRORS_SHOWN
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


# Amounts and dates repeat across a big file's rows: each distinct text is parsed once (pure
# functions; a text that fails is not cached and fails again with the same message).
_dollars = functools.lru_cache(maxsize=65536)(parse_dollars)
_datetime = functools.lru_cache(maxsize=65536)(parse_datetime)


def _bool(v: str) -> bool | None:
    s = str(v).strip().lower()
    if s == "":
        return None
    if s in ("true", "yes", "1", "y", "t"):
        return True
    if s in ("false", "no", "0", "n", "f"):
        return False
    raise ValueError(f"expected true/false/yes/no/1/0, got {v!r}")


def _amount(rec: Record, errs: ErrorSink) -> int | None:
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
        cents = _dollars(str(v["amount"])) if has_d else parse_cents(v["amount_cents"])
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


def _when(rec: Record, col: str, tz: ZoneInfo, now: datetime, errs: ErrorSink) -> datetime | None:
    raw = str(rec.values.get(col, "")).strip()
    if not raw:
        return now
    try:
        return _datetime(raw, tz)
    except ValueError as exc:
        errs.append(f"line {rec.line}: {col}: {exc}")
        return None


def _text(rec: Record, col: str) -> str:
    return str(rec.values.get(col, "")).strip()


# --- patients --------------------------------------------------------------------------------


def _validate_patient(rec: Record, errs: ErrorSink) -> PatientRecord | None:
    v = rec.values
    n0 = len(errs)
    out: PatientRecord = {"_cols": set(v)}
    pid = _text(rec, "patient_id")
    if not pid:
        errs.append(f"line {rec.line}: patient_id: required")
    out["patient_id"] = pid
    first = _text(rec, "first_name")
    if not first and "first_name" in v:
        errs.append(f"line {rec.line}: first_name: required")
    # Without a first_name column the row updates an existing patient (checked against the database).
    out["first_name"] = first
    out["last_name"] = _text(rec, "last_name")
    _validate_contact(rec, out, errs)
    _validate_address(rec, out, errs)
    _validate_stripe_ids(rec, out, errs)
    for col in ("sms_opt_out", "call_opt_out", "email_opt_out"):
        try:
            out[col] = _bool(v.get(col, ""))
        except ValueError as exc:
            errs.append(f"line {rec.line}: {col}: {exc}")
    return out if len(errs) == n0 else None


def _validate_contact(rec: Record, out: PatientRecord, errs: ErrorSink) -> None:
    """Phone (to E.164), phone type and email; messages never echo the number or address."""
    phone_raw = _text(rec, "phone")
    out["phone"] = None
    if phone_raw:
        try:
            if problem := _phone_problem(phone_raw):
                raise ValueError(problem)
            facts = contacts.phone_facts(phone_raw)  # one parse: E.164, validity and zone
            out["phone"], out["phone_valid"], out["phone_tz"] = facts.e164, facts.valid, facts.zone
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


def _validate_address(rec: Record, out: PatientRecord, errs: ErrorSink) -> None:
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


def _validate_stripe_ids(rec: Record, out: PatientRecord, errs: ErrorSink) -> None:
    """Stripe card on file: a customer (cus_...) and its saved payment method (pm_...), both or neither."""
    from outreach_cli.channels.stripe_provider import CUSTOMER_RE, PAYMENT_METHOD_RE

    for col, pattern, example in (
        ("stripe_customer_id", CUSTOMER_RE, "cus_NffrFeUfNV2Hib"),
        ("stripe_payment_method_id", PAYMENT_METHOD_RE, "pm_1NXWJ2LkdIwHu7ixNy4tBDTs"),
    ):
        val = _text(rec, col)
        out[col] = val or None  # type: ignore[literal-required]  # one of the two Stripe IDs
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


# --- charges ---------------------------------------------------------------------------------


def _validate_charge(rec: Record, tz: ZoneInfo, now: datetime, errs: ErrorSink) -> ChargeRecord | None:
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
    if len(errs) != n0 or cents is None:  # (cents is None only with an error)
        return None
    return {
        "charge_id": cid,
        "patient_id": pid,
        "amount_cents": cents,
        "created_at": created if has_created else None,
        "description": _text(rec, "description"),
    }


# --- payments --------------------------------------------------------------------------------


def _validate_payment(rec: Record, tz: ZoneInfo, now: datetime, errs: ErrorSink) -> PaymentRecord | None:
    n0 = len(errs)
    pay_id = _text(rec, "payment_id")
    if not pay_id:
        errs.append(f"line {rec.line}: payment_id: required")
    pid = _text(rec, "patient_id")
    if not pid:
        errs.append(f"line {rec.line}: patient_id: required")
    cents = _amount(rec, errs)
    paid_at = _when(rec, "paid_at", tz, now, errs)
    if len(errs) != n0 or cents is None or paid_at is None:  # (None only with an error)
        return None
    return {
        "payment_id": pay_id,
        "patient_id": pid,
        "amount_cents": cents,
        "paid_at": paid_at,
        "charge_id": _text(rec, "charge_id") or None,
    }


# --- entry point -----------------------------------------------------------------------------


# --- entry point -----------------------------------------------------------------------------


def _kind_module(kind: str) -> ModuleType:
    from outreach_cli.imports import charges as import_charges
    from outreach_cli.imports import patients as import_patients
    from outreach_cli.imports import payments as import_payments

    return {"patients": import_patients, "charges": import_charges, "payments": import_payments}[kind]


def run_import(
    store: Store,
    kind: str,
    data: bytes | IO[bytes],
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
    """Import the file (bytes, or a binary stream read once, a line at a time)."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown import kind {kind!r}; choose patients, charges or payments")
    head, lines = peek_text(iter_lines(data, source))
    fmt = detect_format(head, source, input_format)
    errs = stage.ErrorLog(keep_all=skip_invalid)
    report = ImportReport(kind=kind, dry_run=dry_run)
    records = read_records(lines, fmt, columns=KINDS[kind], errors=errs)
    first = next(records, None)  # a bad header is reported before anything else
    mod = _kind_module(kind)
    try:
        with store.write() as conn:
            stage.tune(conn)
            try:
                name = _rule_set_name(conn, kind, rule_set, ctx)
                staged = _stage_rows(conn, mod, kind, _chain(first, records), errs, report, ctx, progress)
                if phase is not None:
                    phase(f"{report.rows:,} rows read; checking and writing")
                _check(conn, mod, errs, report, source, skip_invalid, staged)
                _apply(conn, mod, kind, ctx, name, report)
                stage.drop(conn, mod.STG)
            finally:
                stage.untune(conn)
            if dry_run:
                raise _Rollback()
    except _Rollback:
        pass
    else:
        from outreach_cli.store.maintenance import after_big_write

        tables = {"patients": ["patient", "invoice_set"], "charges": ["charge", "invoice_set", "send", "event"]}
        touched = tables.get(kind, ["payment", "payment_allocation", "charge", "invoice_set"])
        after_big_write(store, touched, report.rows, sample=False)
    return report


def _chain(first: Record | None, rest: Iterator[Record]) -> Iterator[Record]:
    if first is not None:
        yield first
        yield from rest


def _rule_set_name(conn: Connection, kind: str, rule_set: str | None, ctx: Context) -> str:
    """The rule set (or A/B spec) for new invoice sets; checked before any row is read."""
    if kind != "charges":
        return ""
    name = rule_set or str(ctx.extra.get("default_rule_set") or "")
    if not name:
        raise InvalidInput("no rule set for new invoice sets: pass --rule-set NAME or set default_rule_set")
    rule_sets = RuleSets(conn)
    for arm in parse_arms(name, flag="--rule-set" if rule_set else "default_rule_set").names:
        rule_sets.resolve(arm)
    return name


@dataclass(frozen=True)
class _RowCheck:
    """One row validated and turned into its staging tuple (picklable: a worker process runs it)."""

    kind: str
    tz: ZoneInfo
    now: datetime

    def __call__(self, rec: Record, errs: ErrorSink) -> tuple[Any, ...] | None:
        norm: PatientRecord | ChargeRecord | PaymentRecord | None
        if self.kind == "patients":
            norm = _validate_patient(rec, errs)
        elif self.kind == "charges":
            norm = _validate_charge(rec, self.tz, self.now, errs)
        else:
            norm = _validate_payment(rec, self.tz, self.now, errs)
        return None if norm is None else _kind_module(self.kind).staged_row(rec.line, norm)


def _counted(
    records: Iterator[Record], report: ImportReport, progress: Callable[[int], None] | None
) -> Iterator[Record]:
    for rec in records:
        report.rows += 1
        if progress is not None and report.rows % 5000 == 0:
            progress(report.rows)
        yield rec


def _stage_rows(
    conn: Connection,
    mod: ModuleType,
    kind: str,
    records: Iterator[Record],
    errs: stage.ErrorLog,
    report: ImportReport,
    ctx: Context,
    progress: Callable[[int], None] | None,
) -> int:
    """Phase 1: every row validated as it is read (on every core for a big file, see
    ``parallel``); the valid ones staged a batch at a time. Returns how many were staged."""
    stage.create(conn, mod.STG)
    check = _RowCheck(kind, get_zone(ctx.practice_tz), ctx.now)
    staged = 0
    for rows in checked_batches(_counted(records, report, progress), check, errs, batch=stage.PAGE):
        stage.bulk_insert(conn, mod.STG, mod.STAGED, rows)
        staged += len(rows)
    return staged


def _check(
    conn: Connection,
    mod: ModuleType,
    errs: stage.ErrorLog,
    report: ImportReport,
    source: str,
    skip_invalid: bool,
    staged: int,
) -> None:
    """Phase 2: the checks against the database; any problem stops here unless --skip-invalid."""
    report.duplicates, invalid_staged = mod.check(conn, errs, skip_invalid)
    report.invalid = errs.lines
    if skip_invalid:
        report.errors = errs.messages()
        return
    if errs.count:
        shown = errs.messages()
        more = errs.count - len(shown)
        valid_rows = staged - report.duplicates - invalid_staged
        raise InvalidInput(
            f"{source}: {errs.count} problem(s); nothing was imported"
            + (" (use --skip-invalid to import the valid rows)" if valid_rows > 0 else ""),
            details=shown + ([f"... and {more} more"] if more else []),
        )


def _apply(conn: Connection, mod: ModuleType, kind: str, ctx: Context, name: str, report: ImportReport) -> None:
    """Phase 3: the writes, in the same transaction."""
    rule_sets = RuleSets(conn)
    if kind == "charges":
        mod.apply(conn, ctx, rule_sets, name, report)
    else:
        mod.apply(conn, ctx, rule_sets, report)


def _line_of(err: str) -> int:
    return stage.line_of(err)

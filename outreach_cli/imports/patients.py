"""`import patients`, streamed (SPEC sections 8 and 12): validated rows are staged, checked with a
join, then merged with what the database holds a page at a time (new patients inserted, changed
ones updated, their search text kept in step, contact changes re-evaluating their open sets)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Boolean, Column, Connection, Integer, String, literal, select, update

from outreach_cli.domain import contacts
from outreach_cli.domain.context import Context
from outreach_cli.domain.searchtext import search_text
from outreach_cli.imports import stage
from outreach_cli.imports.importer import PATIENT_COLUMNS
from outreach_cli.imports.records import PatientRecord
from outreach_cli.store.bulk import bulk_update, chunks
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, patient_t
from outreach_cli.store.reevaluate import open_set_ids_for_patients, refresh_sets

COLUMNS = PATIENT_COLUMNS  # the importer names them once
_OPT_OUTS = ("sms_opt_out", "call_opt_out", "email_opt_out")
FIRST_NAME_BIT = 1 << COLUMNS.index("first_name")
STG = stage.staging_table(
    "import_patient",
    Column("line", Integer, primary_key=True),
    Column("cols", Integer, nullable=False),  # which columns the row has (a bit per COLUMNS entry)
    *(Column(c, Boolean if c in _OPT_OUTS else String, nullable=True) for c in COLUMNS),
    # The phone's validity and zone, from the parse that read it (`contacts.phone_facts`).
    Column("phone_valid", Boolean, nullable=True),
    Column("phone_tz", String, nullable=True),
    Column("old_id", Integer, nullable=True),
)
_COMPARED = ("cols", *COLUMNS)
STAGED = ("line", *_COMPARED, "phone_valid", "phone_tz")
# What an import may change about a patient's contact data (a change re-evaluates their sets).
_CONTACT_FIELDS = (*COLUMNS[COLUMNS.index("phone") :], "email_suppressed")
_KEPT = (
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
)


def staged_row(line: int, n: PatientRecord) -> tuple[Any, ...]:
    cols = sum(1 << i for i, c in enumerate(COLUMNS) if c in n["_cols"])
    fields: Mapping[str, Any] = n  # every one of COLUMNS
    return (line, cols, *(fields[c] for c in COLUMNS), n.get("phone_valid"), n.get("phone_tz"))


def check(conn: Connection, errs: stage.ErrorLog, skip_invalid: bool) -> tuple[int, int]:
    """Duplicates within the file; rows without a first_name column may only update patients
    that exist. Returns (identical duplicate rows, rows with problems)."""
    stage.index(conn, STG, "patient_id")
    stage.analyze(conn, STG)
    identical, other = stage.duplicates(conn, STG, "patient_id", _COMPARED, errs)
    conn.execute(update(STG).where(STG.c.patient_id == patient_t.c.patient_id).values(old_id=patient_t.c.id))
    partial = select(STG.c.line, STG.c.patient_id).where(
        STG.c.old_id.is_(None), STG.c.cols.op("&")(literal(FIRST_NAME_BIT)) == 0
    )
    errs.source()
    bad = 0
    for page in stage.pages(conn, partial, STG.c.line):
        for r in page:
            errs.add(
                r.line,
                f"line {r.line}: first_name: required for a new patient ({r.patient_id!r} is not in the database)",
            )
        bad += len(page)
        if skip_invalid:
            stage.delete_lines(conn, STG, [r.line for r in page])
    return identical, other + bad


class _Existing:
    """A patient row read with `p_`-prefixed labels, seen under its column names."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, "p_" + name)


def apply(conn: Connection, ctx: Context, rule_sets: RuleSets, report: Any) -> None:
    stmt = select(STG, *(c.label("p_" + c.name) for c in patient_t.c)).outerjoin(
        patient_t, patient_t.c.id == STG.c.old_id
    )
    for page in stage.pages(conn, stmt, STG.c.line, stage.PAGE // 2):
        _apply_page(conn, page, ctx, rule_sets, report)


def _apply_page(conn: Connection, page: list[Any], ctx: Context, rule_sets: RuleSets, report: Any) -> None:
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    contact_events: list[tuple[int, list[str]]] = []
    for r in page:
        norm = cast(PatientRecord, {c: getattr(r, c) for c in COLUMNS})
        norm["_cols"] = {c for i, c in enumerate(COLUMNS) if r.cols >> i & 1}
        norm["phone_valid"], norm["phone_tz"] = r.phone_valid, r.phone_tz
        old = _Existing(r) if r.old_id is not None else None
        new = patient_values(norm, old)
        if old is None:
            fixed = {"patient_id": norm["patient_id"], "created_at": ctx.now, "updated_at": ctx.now}
            inserts.append({**fixed, "address_invalid": False, **new})
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
            # Field names only: values are PHI and the event log is read widely.
            contact_events.append((old.id, sorted(changed_contact)))
    if inserts:
        stage.bulk_insert(conn, patient_t, list(inserts[0]), [tuple(r.values()) for r in inserts])
    bulk_update(conn, patient_t, updates)
    if contact_events:
        report.sets_changed += _contacts_changed(conn, contact_events, ctx, rule_sets)


def _contacts_changed(
    conn: Connection, contact_events: list[tuple[int, list[str]]], ctx: Context, rule_sets: RuleSets
) -> int:
    set_ids = open_set_ids_for_patients(conn, [pk for pk, _ in contact_events])
    by_patient: dict[int, list[int]] = defaultdict(list)
    for chunk in chunks(set_ids):
        for set_id, ppk in conn.execute(
            select(invoice_set_t.c.id, invoice_set_t.c.patient_pk).where(invoice_set_t.c.id.in_(chunk))
        ):
            by_patient[ppk].append(set_id)
    events = []
    for ppk, fields in contact_events:
        for set_id in by_patient.get(ppk, []):
            events.append(event_row(ctx, "contact_updated", set_id=set_id, patient_pk=ppk, detail={"fields": fields}))
    add_events(conn, events)
    return len(refresh_sets(conn, set_ids, ctx, rule_sets))


def patient_values(norm: PatientRecord, existing: Any | None) -> dict[str, Any]:
    """The patient's columns after the import: a column missing from the file keeps its value;
    opt-outs are only ever set; derived columns (validity, zones, search text) recomputed."""
    cols: set[str] = norm["_cols"]
    fields: Mapping[str, Any] = norm  # looked up by column name below
    new: dict[str, Any] = {}
    for col in _KEPT:
        if col in cols or existing is None:
            new[col] = fields.get(col) if col != "last_name" else (fields.get(col) or "")
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
    for col in _OPT_OUTS:
        before = bool(getattr(existing, col)) if existing is not None else False
        new[col] = before or bool(fields.get(col))
    if existing is not None and new["email"] == existing.email:
        new["email_suppressed"] = existing.email_suppressed
    else:
        new["email_suppressed"] = None
    phone_valid, new["phone_tz"] = _phone_facts(new["phone"], norm)
    new["phone_valid"] = phone_valid
    if new["email"] and "email" in cols and new["email"] == norm.get("email"):
        new["email_valid"] = True  # this row's address, validated (and normalised) as it was read
    else:
        new["email_valid"] = contacts.email_is_valid(new["email"]) if new["email"] else False
    new["address_tz"] = contacts.address_zone(new["state"], new["country"], new.get("postal_code"))
    new["search_name"] = f"{new['first_name']} {new['last_name']}".strip().lower()
    new["search_text"] = search_text(new["first_name"], new["last_name"], new["email"], new["phone"])
    return new


def _phone_facts(e164: str | None, norm: PatientRecord) -> tuple[bool, str | None]:
    """(phone_valid, phone_tz) of the patient's phone: as the row's phone was parsed when read,
    else (a phone kept from the database) from one parse of its E.164 form."""
    if not e164:
        return False, None
    if e164 == norm.get("phone") and norm.get("phone_valid") is not None:
        return bool(norm["phone_valid"]), norm.get("phone_tz")
    return contacts.e164_facts(e164)

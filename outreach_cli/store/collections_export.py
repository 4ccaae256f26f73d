"""`collections export`: the sets escalated to collections, for the agency.

One CSV row per charge (so each charge has its own readable service date, description and
amounts); the set's columns repeat on each of its rows. The first column is the set ID, named
`id` as in `list`, so the file pipes straight into `outreach act ... -` (duplicate IDs collapse).
Every text cell is neutralised for spreadsheets (`csvsafe.neutralize`): the file is opened in
Excel at the agency.

A payment received after escalation lowers the balance and sets `payment_after_escalation`;
such a set is offered again by the next plain export (once), so the agency learns of it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import select, update

from outreach_cli.domain.context import Context
from outreach_cli.domain.csvsafe import neutralize
from outreach_cli.domain.money import plain_dollars
from outreach_cli.domain.statuses import Status
from outreach_cli.domain.timeutil import get_zone, iso_z
from outreach_cli.store.bulk import chunks
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.models import charge_t, event_t, invoice_set_t, patient_t

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

PATIENT_COLUMNS = [
    "patient_id",
    "first_name",
    "last_name",
    "phone",
    "email",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
]
COLUMNS = [
    "id",
    *PATIENT_COLUMNS,
    "amount_outstanding",
    "amount_outstanding_cents",
    "escalated_at",
    "payment_after_escalation",
    "paid_after_escalation",
    "charge_id",
    "service_date",
    "description",
    "charge_amount",
    "charge_outstanding",
    "charge_status",
]


def export(
    store: Store,
    out: TextIO,
    ctx: Context,
    *,
    include_exported: bool,
    finish: Callable[[], None] | None = None,
) -> int:
    """Writes the CSV; marks the sets exported (unless ``include_exported``). ``finish`` runs
    after the rows are written and before the marks commit (e.g. moving the file into place):
    if it fails, nothing is marked. Returns the number of sets."""
    with store.write() as conn:
        rows = _collections_sets(conn, include_exported)
        ids = [r.id for r in rows]
        charges, after = _charges_and_late_payments(conn, ids)
        tz = get_zone(ctx.practice_tz)
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in _rows(rows, charges, after, tz):
            w.writerow(r)
        out.flush()
        if finish is not None:
            finish()
        if not include_exported and rows:
            for chunk in chunks(ids):
                conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(exported_at=ctx.now))
            add_events(
                conn, [event_row(ctx, "collections_exported", set_id=r.id, patient_pk=r.patient_pk) for r in rows]
            )
        return len(rows)


def _collections_sets(conn: Any, include_exported: bool) -> list[Any]:
    """The sets in collections (not yet exported unless ``include_exported``) with their patients."""
    q = (
        select(
            invoice_set_t.c.id,
            invoice_set_t.c.patient_pk,
            invoice_set_t.c.amount_outstanding_cents,
            invoice_set_t.c.closed_at,
            *[patient_t.c[c] for c in PATIENT_COLUMNS],
        )
        .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
        .where(invoice_set_t.c.status == Status.COLLECTIONS.value)
        .order_by(invoice_set_t.c.id)
    )
    if not include_exported:
        q = q.where(invoice_set_t.c.exported_at.is_(None))
    return list(conn.execute(q).all())


def _charges_and_late_payments(conn: Any, ids: list[int]) -> tuple[dict[int, list[Any]], dict[int, int]]:
    """(each set's charges, cents each set received after escalation to collections)."""
    charges: dict[int, list[Any]] = {}
    after: dict[int, int] = {}
    for chunk in chunks(ids):
        for c in conn.execute(
            select(
                charge_t.c.invoice_set_id,
                charge_t.c.charge_id,
                charge_t.c.created_at,
                charge_t.c.description,
                charge_t.c.amount_cents,
                charge_t.c.outstanding_cents,
                charge_t.c.status,
            )
            .where(charge_t.c.invoice_set_id.in_(chunk))
            .order_by(charge_t.c.created_at, charge_t.c.id)
        ):
            charges.setdefault(c.invoice_set_id, []).append(c)
        for set_id, detail in conn.execute(
            select(event_t.c.invoice_set_id, event_t.c.detail).where(
                event_t.c.invoice_set_id.in_(chunk), event_t.c.kind == "payment"
            )
        ):
            d = json.loads(detail) if detail else {}
            if d.get("after_escalation"):
                after[set_id] = after.get(set_id, 0) + int(d.get("applied_cents", 0))
    return charges, after


def _text(v: Any) -> str:
    return neutralize("" if v is None else str(v))


def _rows(rows: list[Any], charges: dict[int, list[Any]], after: dict[int, int], tz: Any) -> Iterator[list[Any]]:
    for r in rows:
        paid_after = after.get(r.id, 0)
        head = [
            r.id,
            *[_text(getattr(r, c)) for c in PATIENT_COLUMNS],
            plain_dollars(r.amount_outstanding_cents),
            r.amount_outstanding_cents,
            iso_z(r.closed_at) or "",
            "yes" if paid_after else "no",
            plain_dollars(paid_after) if paid_after else "",
        ]
        for c in charges.get(r.id) or [None]:
            if c is None:  # a set without charges still reaches the agency
                yield [*head, "", "", "", "", "", ""]
                continue
            yield [
                *head,
                _text(c.charge_id),
                c.created_at.astimezone(tz).date().isoformat() if c.created_at else "",
                _text(c.description),
                plain_dollars(c.amount_cents),
                plain_dollars(c.outstanding_cents),
                c.status,
            ]

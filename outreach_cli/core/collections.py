"""`collections export`: the sets escalated to collections, for the agency (one CSV row per set)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any, TextIO

from sqlalchemy import select, update

from outreach_cli.core.csvsafe import neutralize
from outreach_cli.core.models import charge_t, invoice_set_t, patient_t
from outreach_cli.core.money import plain_dollars
from outreach_cli.core.sets import Context, add_events, chunks, event_row
from outreach_cli.core.timeutil import iso_z

COLUMNS = [
    "invoice_set_id",
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
    "amount_outstanding",
    "amount_outstanding_cents",
    "charges",
    "escalated_at",
]


def export(store: Any, out: TextIO, ctx: Context, *, include_exported: bool) -> int:
    """Writes the CSV; marks the rows exported (unless ``include_exported``). Returns the count."""
    with store.write() as conn:
        q = (
            select(
                invoice_set_t.c.id,
                invoice_set_t.c.patient_pk,
                invoice_set_t.c.amount_outstanding_cents,
                invoice_set_t.c.closed_at,
                *[patient_t.c[c] for c in COLUMNS[1:12]],
            )
            .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
            .where(invoice_set_t.c.status == "collections")
            .order_by(invoice_set_t.c.id)
        )
        if not include_exported:
            q = q.where(invoice_set_t.c.exported_at.is_(None))
        rows = conn.execute(q).all()
        charges: dict[int, list[str]] = {}
        for chunk in chunks([r.id for r in rows]):
            for c in conn.execute(
                select(
                    charge_t.c.invoice_set_id,
                    charge_t.c.charge_id,
                    charge_t.c.amount_cents,
                    charge_t.c.outstanding_cents,
                )
                .where(charge_t.c.invoice_set_id.in_(chunk))
                .order_by(charge_t.c.created_at, charge_t.c.id)
            ):
                charges.setdefault(c.invoice_set_id, []).append(
                    f"{c.charge_id}:{plain_dollars(c.outstanding_cents)}/{plain_dollars(c.amount_cents)}"
                )
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in _rows(rows, charges):
            w.writerow([neutralize(str(v)) for v in r])  # the agency opens this in a spreadsheet
        if not include_exported and rows:
            ids = [r.id for r in rows]
            for chunk in chunks(ids):
                conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(exported_at=ctx.now))
            add_events(
                conn, [event_row(ctx, "collections_exported", set_id=r.id, patient_pk=r.patient_pk) for r in rows]
            )
        return len(rows)


def _rows(rows: list[Any], charges: dict[int, list[str]]) -> Iterator[list[Any]]:
    for r in rows:
        yield [
            r.id,
            r.patient_id,
            r.first_name,
            r.last_name,
            r.phone or "",
            r.email or "",
            r.address_line1 or "",
            r.address_line2 or "",
            r.city or "",
            r.state or "",
            r.postal_code or "",
            r.country or "",
            plain_dollars(r.amount_outstanding_cents),
            r.amount_outstanding_cents,
            ";".join(charges.get(r.id, [])),
            iso_z(r.closed_at) or "",
        ]

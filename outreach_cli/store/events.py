"""The event log: one row per thing that happened to an invoice set."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from outreach_cli.domain.context import Context
from outreach_cli.store.bulk import chunks
from outreach_cli.store.models import (
    event_t,
)


def event_row(
    ctx: Context,
    kind: str,
    *,
    set_id: int | None = None,
    patient_pk: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "invoice_set_id": set_id,
        "patient_pk": patient_pk,
        "at": at or ctx.now,
        "kind": kind,
        "actor": actor or ctx.actor,
        "action": action,
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
        "detail": json.dumps(detail, sort_keys=True) if detail else None,
    }


def add_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append events (dicts from `event_row`, all with the same keys).

    Straight to the driver's executemany with each column's bind conversion done once per
    distinct value (a bulk action writes 100,000 events sharing one time and actor): SQLAlchemy's
    per-row parameter handling cost more than the inserts themselves.
    """
    if not rows:
        return
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    cols = list(rows[0])
    if mark is None or any(list(r) != cols for r in rows):
        for chunk in chunks(rows, 2000):
            conn.execute(event_t.insert(), list(chunk))
        return
    convert: list[Any] = []
    for c in cols:
        proc = event_t.c[c].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if proc is None:
            convert.append(None)
        else:
            cache: dict[Any, Any] = {}

            def conv(v: Any, proc: Any = proc, cache: dict[Any, Any] = cache) -> Any:
                if v is None:
                    return None
                if v not in cache:
                    cache[v] = proc(v)
                return cache[v]

            convert.append(conv)
    sql = f"INSERT INTO event ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    plain = all(f is None for f in convert)
    for chunk in chunks(rows, 5000):
        if plain:
            params = [tuple(r.values()) for r in chunk]
        else:
            params = [tuple(v if f is None else f(v) for v, f in zip(r.values(), convert, strict=True)) for r in chunk]
        conn.exec_driver_sql(sql, params)

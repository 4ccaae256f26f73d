"""Set-based writes in chunks small enough for every database's parameter limit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, update

CHUNK = 500


def chunks(seq: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def bulk_update(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """executemany UPDATE ... WHERE id = :b_id; every row carries the same keys."""
    if not rows:
        return
    keys = [k for k in rows[0] if k != "b_id"]
    stmt = update(table).where(table.c.id == bindparam("b_id")).values({k: bindparam("v_" + k) for k in keys})
    params = [{"b_id": r["b_id"], **{"v_" + k: r[k] for k in keys}} for r in rows]
    for chunk in chunks(params, 2000):
        conn.execute(stmt, list(chunk))

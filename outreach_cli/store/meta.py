"""The `meta` table: small named values (the payment-link secret, the provider feeds' cursors)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from outreach_cli.store.models import meta_t


def get_meta(conn: Connection, key: str) -> str | None:
    row = conn.execute(select(meta_t.c.value).where(meta_t.c.key == key)).first()
    return str(row[0]) if row else None


def set_meta(conn: Connection, key: str, value: str) -> None:
    """Insert or replace in one statement: two runs storing a cursor at once never collide on the
    key (a check-then-insert could, on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    stmt = upsert(meta_t).values(key=key, value=value)
    conn.execute(stmt.on_conflict_do_update(index_elements=[meta_t.c.key], set_={"value": stmt.excluded.value}))

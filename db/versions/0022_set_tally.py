"""metrics' counts kept at write time (set_tally, set_tally_delta)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the tables hold and why: outreach_cli/store/tally.py. Whoever writes a set, the triggers
# count it in the writing transaction: on SQLite each row adds itself to its (status, day) row;
# on PostgreSQL each statement appends its rows' sums to set_tally_delta (no row two writers
# both update, so concurrent writers never wait on each other), which `tally.fold` moves into
# set_tally.
COLUMNS = "status, created_at, amount_outstanding_cents"
_SQLITE_ADD = (
    "INSERT INTO set_tally (status, day, sets, cents)"
    " VALUES ({r}.status, substr({r}.created_at, 1, 10), {sign}1, {sign}{r}.amount_outstanding_cents)"
    " ON CONFLICT (status, day) DO UPDATE SET sets = sets + excluded.sets, cents = cents + excluded.cents;"
)
SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER set_tally_insert AFTER INSERT ON invoice_set
    BEGIN {_SQLITE_ADD.format(r="NEW", sign="")} END""",
    f"""CREATE TRIGGER set_tally_update AFTER UPDATE OF {COLUMNS} ON invoice_set
    WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in COLUMNS.split(", "))}
    BEGIN {_SQLITE_ADD.format(r="OLD", sign="-")} {_SQLITE_ADD.format(r="NEW", sign="")} END""",
    f"""CREATE TRIGGER set_tally_delete AFTER DELETE ON invoice_set
    BEGIN {_SQLITE_ADD.format(r="OLD", sign="-")} END""",
)
SQLITE_NAMES = [t.split()[2] for t in SQLITE_TRIGGERS]


def _pg_rows(table: str, sign: str) -> str:
    return (
        f"SELECT status, (created_at AT TIME ZONE 'UTC')::date AS day, {sign}1 AS sets,"
        f" {sign}amount_outstanding_cents AS cents FROM {table}"
    )


def _pg_function(name: str, rows: str) -> str:
    return f"""CREATE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    INSERT INTO set_tally_delta (status, day, sets, cents)
        SELECT status, day, sum(sets), sum(cents) FROM ({rows}) AS r
        GROUP BY status, day HAVING sum(sets) <> 0 OR sum(cents) <> 0;
    RETURN NULL;
END
$$ LANGUAGE plpgsql"""


# (trigger and function name, event, transition tables, the rows it counts)
_PG = (
    ("set_tally_insert", "INSERT", "NEW TABLE AS new_rows", _pg_rows("new_rows", "")),
    (
        "set_tally_update",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        _pg_rows("old_rows", "-") + " UNION ALL " + _pg_rows("new_rows", ""),
    ),
    ("set_tally_delete", "DELETE", "OLD TABLE AS old_rows", _pg_rows("old_rows", "-")),
)
PG_FUNCTIONS = tuple(_pg_function(name, rows) for name, _e, _r, rows in _PG)
PG_TRIGGERS = tuple(
    f"CREATE TRIGGER {name} AFTER {event} ON invoice_set REFERENCING {refs}"
    f" FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
    for name, event, refs, _rows in _PG
)
PG_NAMES = [name for name, *_ in _PG]


def upgrade() -> None:
    for name in ("set_tally", "set_tally_delta"):
        op.create_table(
            name,
            sa.Column("status", sa.String(), nullable=False),
            sa.Column("day", sa.Date(), nullable=False),
            sa.Column("sets", sa.BigInteger(), nullable=False),
            sa.Column("cents", sa.BigInteger(), nullable=False),
            *([sa.PrimaryKeyConstraint("status", "day")] if name == "set_tally" else []),
        )
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for sql in (*PG_FUNCTIONS, *PG_TRIGGERS):
            op.execute(sql)
    else:
        for sql in SQLITE_TRIGGERS:
            op.execute(sql)
    from outreach_cli.store import tally

    tally.rebuild(conn)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in PG_NAMES:
            op.execute(f"DROP TRIGGER {name} ON invoice_set")
            op.execute(f"DROP FUNCTION {name}()")
    else:
        for name in SQLITE_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("set_tally_delta")
    op.drop_table("set_tally")

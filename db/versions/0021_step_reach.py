"""the report's reach kept at write time (step_reach, reach_stale)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the table holds and why: outreach_cli/store/reach.py. The triggers only mark a set (a
# primary-key insert), in the writing transaction, whoever writes; `reach.refresh` recomputes it.
REACHED = "'sent', 'delivered', 'failed', 'unknown', 'skipped'"  # store/attribution.REACHED_SQL


def _reached(row: str) -> str:
    return f"({row}.status IN ({REACHED}) AND {row}.step_index >= 0)"


def _moved(same: str) -> str:
    """SQL: a reached send's set, step or time changed (``same``: the dialect's null-safe equality)."""
    when = "coalesce({r}.sent_at, {r}.finished_at, {r}.due_at)"
    pairs = [(f"OLD.{c}", f"NEW.{c}") for c in ("invoice_set_id", "step_day", "step_title")]
    pairs.append((when.format(r="OLD"), when.format(r="NEW")))
    return " OR ".join(f"NOT ({a} {same} {b})" for a, b in pairs)


SEND_COLUMNS = "invoice_set_id, step_index, step_day, step_title, status, sent_at, finished_at, due_at"
SET_COLUMNS = ("rule_set_id", "created_at", "owed_cents")
_SQLITE_MARK = "INSERT OR IGNORE INTO reach_stale (set_id) VALUES ({x});"
SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER reach_send_insert AFTER INSERT ON send
    WHEN {_reached("NEW")}
    BEGIN {_SQLITE_MARK.format(x="NEW.invoice_set_id")} END""",
    f"""CREATE TRIGGER reach_send_update AFTER UPDATE OF {SEND_COLUMNS} ON send
    WHEN {_reached("OLD")} IS NOT {_reached("NEW")} OR ({_reached("NEW")} AND ({_moved("IS")}))
    BEGIN {_SQLITE_MARK.format(x="OLD.invoice_set_id")} {_SQLITE_MARK.format(x="NEW.invoice_set_id")} END""",
    f"""CREATE TRIGGER reach_send_delete AFTER DELETE ON send
    WHEN {_reached("OLD")}
    BEGIN {_SQLITE_MARK.format(x="OLD.invoice_set_id")} END""",
    f"""CREATE TRIGGER reach_set_facts AFTER UPDATE OF {", ".join(SET_COLUMNS)} ON invoice_set
    WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in SET_COLUMNS)}
    BEGIN
        INSERT OR IGNORE INTO reach_stale (set_id)
            SELECT NEW.id WHERE EXISTS (SELECT 1 FROM step_reach WHERE set_id = NEW.id);
    END""",
)
SQLITE_NAMES = [t.split()[2] for t in SQLITE_TRIGGERS]

_PG_MARK = "INSERT INTO reach_stale (set_id) VALUES ({x}) ON CONFLICT DO NOTHING;"
PG_FUNCTIONS = (
    f"""CREATE FUNCTION reach_send() RETURNS trigger AS $$
DECLARE
    was boolean := false;
    now_ boolean := false;
BEGIN
    IF TG_OP <> 'INSERT' THEN was := {_reached("OLD")}; END IF;
    IF TG_OP <> 'DELETE' THEN now_ := {_reached("NEW")}; END IF;
    IF TG_OP = 'UPDATE' AND was = now_ AND NOT (now_ AND ({_moved("IS NOT DISTINCT FROM")})) THEN
        RETURN NULL;
    END IF;
    IF was THEN {_PG_MARK.format(x="OLD.invoice_set_id")} END IF;
    IF now_ THEN {_PG_MARK.format(x="NEW.invoice_set_id")} END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE FUNCTION reach_set_facts() RETURNS trigger AS $$
BEGIN
    INSERT INTO reach_stale (set_id) SELECT NEW.id WHERE EXISTS (SELECT 1 FROM step_reach WHERE set_id = NEW.id)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
)
PG_TRIGGERS = (
    f"""CREATE TRIGGER reach_send AFTER INSERT OR UPDATE OF {SEND_COLUMNS} OR DELETE ON send
    FOR EACH ROW EXECUTE FUNCTION reach_send()""",
    f"""CREATE TRIGGER reach_set_facts AFTER UPDATE OF {", ".join(SET_COLUMNS)} ON invoice_set
    FOR EACH ROW WHEN ({" OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in SET_COLUMNS)})
    EXECUTE FUNCTION reach_set_facts()""",
)
PG_NAMES = [("reach_send", "send"), ("reach_set_facts", "invoice_set")]


def upgrade() -> None:
    op.create_table(
        "step_reach",
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("step_day", sa.Integer(), nullable=False),
        sa.Column("step_title", sa.String(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("set_first", sa.Integer(), nullable=False),
        sa.Column("rule_set_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owed_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("set_id", "step_day", "step_title"),
    )
    op.create_table("reach_stale", sa.Column("set_id", sa.Integer(), nullable=False), sa.PrimaryKeyConstraint("set_id"))
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for sql in (*PG_FUNCTIONS, *PG_TRIGGERS):
            op.execute(sql)
    else:
        for sql in SQLITE_TRIGGERS:
            op.execute(sql)
    # Backfill: every set that reached a step, then the indexes over the rows.
    from outreach_cli.store import reach

    reach.rebuild(conn)
    op.create_index(
        "ix_step_reach_report",
        "step_reach",
        ["rule_set_id", "step_day", "step_title", "created_at", "owed_cents", "first_at", "set_first"],
    )
    if conn.dialect.name == "sqlite":
        op.execute("ANALYZE step_reach")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table in PG_NAMES:
            op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute("DROP FUNCTION reach_send()")
        op.execute("DROP FUNCTION reach_set_facts()")
    else:
        for name in SQLITE_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_index("ix_step_reach_report", table_name="step_reach")
    op.drop_table("reach_stale")
    op.drop_table("step_reach")

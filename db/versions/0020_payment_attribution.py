"""the report's last-touch attribution kept at write time (payment_touch, set_paid, report_stale)

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the tables hold and why: outreach_cli/store/attribution.py. The triggers only mark a set
# stale (a primary-key insert, or a probe of set_paid for a send of a set without payments), in
# the writing transaction, whoever writes; `attribution.refresh` recomputes the stale sets.

# What the kept rows take from their set: its owed (the completing payment), and what the report
# filters and groups by.
SET_COLUMNS = "owed_cents, rule_set_id, created_at, status, experiment, arm"


def _changed(op_: str) -> str:
    return " OR ".join(f"OLD.{c} {op_} NEW.{c}" for c in SET_COLUMNS.split(", "))


SEND_COLUMNS = "invoice_set_id, step_index, step_day, step_title, method, status, sent_at, finished_at, due_at"


def _sqlite_mark(expr: str) -> str:
    return f"INSERT OR IGNORE INTO report_stale (set_id) SELECT {expr} WHERE {expr} IS NOT NULL;"


def _sqlite_mark_paid(expr: str) -> str:
    """Mark the set when it has stored attribution (a send of a set without payments changes none)."""
    return f"INSERT OR IGNORE INTO report_stale (set_id) SELECT set_id FROM set_paid WHERE set_id = {expr};"


def _sqlite_mark_charge(charge: str) -> str:
    return (
        "INSERT OR IGNORE INTO report_stale (set_id) SELECT invoice_set_id FROM charge"
        f" WHERE id = {charge} AND invoice_set_id IS NOT NULL;"
    )


SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER attribution_allocation_insert AFTER INSERT ON payment_allocation
    BEGIN {_sqlite_mark_charge("NEW.charge_pk")} END""",
    f"""CREATE TRIGGER attribution_allocation_delete AFTER DELETE ON payment_allocation
    BEGIN {_sqlite_mark_charge("OLD.charge_pk")} END""",
    f"""CREATE TRIGGER attribution_allocation_update AFTER UPDATE ON payment_allocation
    BEGIN {_sqlite_mark_charge("OLD.charge_pk")} {_sqlite_mark_charge("NEW.charge_pk")} END""",
    """CREATE TRIGGER attribution_payment_update AFTER UPDATE OF paid_at, payment_id ON payment
    BEGIN
        INSERT OR IGNORE INTO report_stale (set_id) SELECT c.invoice_set_id FROM payment_allocation a
            JOIN charge c ON c.id = a.charge_pk WHERE a.payment_pk = NEW.id AND c.invoice_set_id IS NOT NULL;
    END""",
    f"""CREATE TRIGGER attribution_charge_move AFTER UPDATE OF invoice_set_id ON charge
    WHEN OLD.invoice_set_id IS NOT NEW.invoice_set_id
        AND EXISTS (SELECT 1 FROM payment_allocation WHERE charge_pk = NEW.id)
    BEGIN {_sqlite_mark("OLD.invoice_set_id")} {_sqlite_mark("NEW.invoice_set_id")} END""",
    f"""CREATE TRIGGER attribution_charge_delete AFTER DELETE ON charge
    WHEN EXISTS (SELECT 1 FROM payment_allocation WHERE charge_pk = OLD.id)
    BEGIN {_sqlite_mark("OLD.invoice_set_id")} END""",
    f"""CREATE TRIGGER attribution_set_facts AFTER UPDATE OF {SET_COLUMNS} ON invoice_set
    WHEN {_changed("IS NOT")}
    BEGIN {_sqlite_mark_paid("NEW.id")} END""",
    f"""CREATE TRIGGER attribution_send_insert AFTER INSERT ON send
    BEGIN {_sqlite_mark_paid("NEW.invoice_set_id")} END""",
    f"""CREATE TRIGGER attribution_send_update AFTER UPDATE OF {SEND_COLUMNS} ON send
    BEGIN {_sqlite_mark_paid("OLD.invoice_set_id")} {_sqlite_mark_paid("NEW.invoice_set_id")} END""",
    f"""CREATE TRIGGER attribution_send_delete AFTER DELETE ON send
    BEGIN {_sqlite_mark_paid("OLD.invoice_set_id")} END""",
)
SQLITE_NAMES = [t.split()[2] for t in SQLITE_TRIGGERS]

_PG_MARK_CHARGE = (
    "INSERT INTO report_stale (set_id) SELECT invoice_set_id FROM charge"
    " WHERE id = {c} AND invoice_set_id IS NOT NULL ON CONFLICT DO NOTHING;"
)
_PG_MARK = "INSERT INTO report_stale (set_id) SELECT {x} WHERE {x} IS NOT NULL ON CONFLICT DO NOTHING;"
_PG_MARK_PAID = (
    "INSERT INTO report_stale (set_id) SELECT set_id FROM set_paid WHERE set_id = {x} ON CONFLICT DO NOTHING;"
)
PG_FUNCTIONS = (
    f"""CREATE FUNCTION attribution_allocation() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN {_PG_MARK_CHARGE.format(c="OLD.charge_pk")} END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN {_PG_MARK_CHARGE.format(c="NEW.charge_pk")} END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE FUNCTION attribution_payment() RETURNS trigger AS $$
BEGIN
    INSERT INTO report_stale (set_id) SELECT DISTINCT c.invoice_set_id FROM payment_allocation a
        JOIN charge c ON c.id = a.charge_pk WHERE a.payment_pk = NEW.id AND c.invoice_set_id IS NOT NULL
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    f"""CREATE FUNCTION attribution_charge() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM payment_allocation WHERE charge_pk = OLD.id) THEN RETURN NULL; END IF;
    {_PG_MARK.format(x="OLD.invoice_set_id")}
    IF TG_OP = 'UPDATE' THEN {_PG_MARK.format(x="NEW.invoice_set_id")} END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    f"""CREATE FUNCTION attribution_set_facts() RETURNS trigger AS $$
BEGIN
    {_PG_MARK_PAID.format(x="NEW.id")}
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    f"""CREATE FUNCTION attribution_send() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN {_PG_MARK_PAID.format(x="OLD.invoice_set_id")} END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN {_PG_MARK_PAID.format(x="NEW.invoice_set_id")} END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
)
PG_TRIGGERS = (
    """CREATE TRIGGER attribution_allocation AFTER INSERT OR UPDATE OR DELETE ON payment_allocation
    FOR EACH ROW EXECUTE FUNCTION attribution_allocation()""",
    """CREATE TRIGGER attribution_payment AFTER UPDATE OF paid_at, payment_id ON payment
    FOR EACH ROW EXECUTE FUNCTION attribution_payment()""",
    """CREATE TRIGGER attribution_charge_move AFTER UPDATE OF invoice_set_id ON charge
    FOR EACH ROW WHEN (OLD.invoice_set_id IS DISTINCT FROM NEW.invoice_set_id)
    EXECUTE FUNCTION attribution_charge()""",
    """CREATE TRIGGER attribution_charge_delete AFTER DELETE ON charge
    FOR EACH ROW EXECUTE FUNCTION attribution_charge()""",
    f"""CREATE TRIGGER attribution_set_facts AFTER UPDATE OF {SET_COLUMNS} ON invoice_set
    FOR EACH ROW WHEN ({_changed("IS DISTINCT FROM")}) EXECUTE FUNCTION attribution_set_facts()""",
    f"""CREATE TRIGGER attribution_send AFTER INSERT OR UPDATE OF {SEND_COLUMNS} OR DELETE ON send
    FOR EACH ROW EXECUTE FUNCTION attribution_send()""",
)
PG_NAMES = [
    ("attribution_allocation", "payment_allocation"),
    ("attribution_payment", "payment"),
    ("attribution_charge_move", "charge"),
    ("attribution_charge_delete", "charge"),
    ("attribution_set_facts", "invoice_set"),
    ("attribution_send", "send"),
]


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _set_facts() -> list[sa.Column[object]]:
    """The set's facts on a kept row, equal to the set's (a change marks it for recomputing)."""
    return [
        sa.Column("rule_set_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "payment_touch",
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("pay_id", sa.String(), nullable=False),
        sa.Column("paid_at", _time(), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("touch_age_us", sa.BigInteger(), nullable=True),
        sa.Column("t_day", sa.Integer(), nullable=True),
        sa.Column("t_title", sa.String(), nullable=True),
        sa.Column("t_method", sa.String(), nullable=True),
        *_set_facts(),
        sa.Column("refunded", sa.Integer(), nullable=False),
        sa.Column("last_paid_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("set_id", "pay_id"),
    )
    op.create_table(
        "set_paid",
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("last_paid_at", _time(), nullable=False),
        sa.Column("refunded", sa.Integer(), nullable=False),
        sa.Column("collected", sa.BigInteger(), nullable=False),
        sa.Column("full_at", _time(), nullable=True),
        sa.Column("days_us", sa.BigInteger(), nullable=True),
        sa.Column("key_age_us", sa.BigInteger(), nullable=True),
        sa.Column("key_day", sa.Integer(), nullable=True),
        sa.Column("key_title", sa.String(), nullable=True),
        sa.Column("key_method", sa.String(), nullable=True),
        sa.Column("f_day", sa.Integer(), nullable=True),
        sa.Column("f_title", sa.String(), nullable=True),
        *_set_facts(),
        sa.Column("experiment", sa.String(), nullable=True),
        sa.Column("arm", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("set_id"),
    )
    op.create_index("ix_set_paid_last", "set_paid", ["last_paid_at"])
    op.create_table(
        "report_stale", sa.Column("set_id", sa.Integer(), nullable=False), sa.PrimaryKeyConstraint("set_id")
    )
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for sql in (*PG_FUNCTIONS, *PG_TRIGGERS):
            op.execute(sql)
    else:
        for sql in SQLITE_TRIGGERS:
            op.execute(sql)
    # Backfill: every set with payments, computed as the report did.
    from outreach_cli.store import attribution

    attribution.mark_all(conn)
    attribution.refresh(conn)
    if conn.dialect.name == "sqlite":
        op.execute("ANALYZE payment_touch")
        op.execute("ANALYZE set_paid")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table in PG_NAMES:
            op.execute(f"DROP TRIGGER {name} ON {table}")
        for fn in ("attribution_allocation", "attribution_payment", "attribution_charge", "attribution_set_facts"):
            op.execute(f"DROP FUNCTION {fn}()")
        op.execute("DROP FUNCTION attribution_send()")
    else:
        for name in SQLITE_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("report_stale")
    op.drop_index("ix_set_paid_last", table_name="set_paid")
    op.drop_table("set_paid")
    op.drop_table("payment_touch")

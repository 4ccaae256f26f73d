"""invoice sets keep what they owed on entry (owed_cents), kept right by triggers on charge

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The report's "owed" of a set: the total of its charges, void ones excluded. Kept on the set by
# triggers in the database, so every writer (importer, actions, tests, the benchmark's generator)
# keeps it right in the same transaction without code of its own.
SQLITE_TRIGGERS = (
    """CREATE TRIGGER charge_owed_insert AFTER INSERT ON charge
    WHEN NEW.invoice_set_id IS NOT NULL AND NEW.status != 'void'
    BEGIN
        UPDATE invoice_set SET owed_cents = owed_cents + NEW.amount_cents WHERE id = NEW.invoice_set_id;
    END""",
    """CREATE TRIGGER charge_owed_delete AFTER DELETE ON charge
    WHEN OLD.invoice_set_id IS NOT NULL AND OLD.status != 'void'
    BEGIN
        UPDATE invoice_set SET owed_cents = owed_cents - OLD.amount_cents WHERE id = OLD.invoice_set_id;
    END""",
    """CREATE TRIGGER charge_owed_update AFTER UPDATE OF invoice_set_id, amount_cents, status ON charge
    WHEN OLD.invoice_set_id IS NOT NEW.invoice_set_id OR OLD.amount_cents != NEW.amount_cents
        OR (OLD.status = 'void') != (NEW.status = 'void')
    BEGIN
        UPDATE invoice_set SET owed_cents = owed_cents - OLD.amount_cents
            WHERE id = OLD.invoice_set_id AND OLD.status != 'void';
        UPDATE invoice_set SET owed_cents = owed_cents + NEW.amount_cents
            WHERE id = NEW.invoice_set_id AND NEW.status != 'void';
    END""",
)
SEND_COLUMNS = ["invoice_set_id", "step_day", "step_title", "method", "status", "sent_at", "finished_at", "due_at"]
PG_FUNCTION = """CREATE FUNCTION charge_owed() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.invoice_set_id IS NOT NULL AND OLD.status <> 'void' THEN
        UPDATE invoice_set SET owed_cents = owed_cents - OLD.amount_cents WHERE id = OLD.invoice_set_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.invoice_set_id IS NOT NULL AND NEW.status <> 'void' THEN
        UPDATE invoice_set SET owed_cents = owed_cents + NEW.amount_cents WHERE id = NEW.invoice_set_id;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql"""
PG_TRIGGERS = (
    "CREATE TRIGGER charge_owed_write AFTER INSERT OR DELETE ON charge FOR EACH ROW EXECUTE FUNCTION charge_owed()",
    """CREATE TRIGGER charge_owed_update AFTER UPDATE OF invoice_set_id, amount_cents, status ON charge
    FOR EACH ROW WHEN (OLD.invoice_set_id IS DISTINCT FROM NEW.invoice_set_id
        OR OLD.amount_cents <> NEW.amount_cents OR (OLD.status = 'void') <> (NEW.status = 'void'))
    EXECUTE FUNCTION charge_owed()""",
)


def upgrade() -> None:
    # A plain ADD COLUMN (a batch would copy the table: a million rows, and the foreign keys).
    op.add_column("invoice_set", sa.Column("owed_cents", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    op.execute(
        "UPDATE invoice_set SET owed_cents = (SELECT coalesce(sum(c.amount_cents), 0) FROM charge c"
        " WHERE c.invoice_set_id = invoice_set.id AND c.status != 'void')"
        " WHERE id IN (SELECT invoice_set_id FROM charge)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for sql in PG_TRIGGERS:
            op.execute(sql)
    else:
        for sql in SQLITE_TRIGGERS:
            op.execute(sql)
    # The report's counts per rule set (and week) of the sets entered in a period, with their
    # owed: one pass over this index (supersedes 0010's, which lacked the owed).
    op.drop_index("ix_invoice_set_rule_set_created", table_name="invoice_set")
    op.create_index("ix_invoice_set_report", "invoice_set", ["rule_set_id", "created_at", "status", "owed_cents"])
    # 0010's covering index of the sends per set, with the step index (opt-out confirmations,
    # which the report leaves out, have a negative one).
    op.drop_index("ix_send_set_step_method", table_name="send")
    op.create_index("ix_send_set_step_method", "send", [*SEND_COLUMNS, "step_index"])


def downgrade() -> None:
    op.drop_index("ix_send_set_step_method", table_name="send")
    op.create_index("ix_send_set_step_method", "send", SEND_COLUMNS)
    op.drop_index("ix_invoice_set_report", table_name="invoice_set")
    op.create_index("ix_invoice_set_rule_set_created", "invoice_set", ["rule_set_id", "created_at", "status"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER charge_owed_update ON charge")
        op.execute("DROP TRIGGER charge_owed_write ON charge")
        op.execute("DROP FUNCTION charge_owed()")
    else:
        for name in ("charge_owed_update", "charge_owed_delete", "charge_owed_insert"):
            op.execute(f"DROP TRIGGER {name}")
    op.execute("ALTER TABLE invoice_set DROP COLUMN owed_cents")  # SQLite 3.35+: no table copy

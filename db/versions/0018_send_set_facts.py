"""sends carry their set's rule set, creation time and owed (kept by triggers), for the report

Revision ID: 0018
Revises: 0011
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0018"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The report counts sends by their set's rule set (and week of entry) over the sets entered in a
# period, and sets per step with their owed: with those three facts of the set on each send row,
# the counts are one pass over a covering index of send, no join (issue 15). Triggers keep them
# equal to the set's in the same transaction, whoever writes: a send written or moved to another
# set takes its set's; a set whose rule set, creation time or owed changes (0011's triggers on
# charge change the owed) passes them on to its sends.
FACTS = ("rule_set_id", "created_at", "owed_cents")
COPY = "UPDATE send SET set_rule_set_id = s.rule_set_id, set_created_at = s.created_at, set_owed_cents = s.owed_cents"
SQLITE_FILL = (
    "UPDATE send SET (set_rule_set_id, set_created_at, set_owed_cents) ="
    " (SELECT s.rule_set_id, s.created_at, s.owed_cents FROM invoice_set s WHERE s.id = send.invoice_set_id)"
)
SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER send_set_facts_insert AFTER INSERT ON send
    BEGIN
        {SQLITE_FILL} WHERE id = NEW.id;
    END""",
    f"""CREATE TRIGGER send_set_facts_move AFTER UPDATE OF invoice_set_id ON send
    WHEN OLD.invoice_set_id IS NOT NEW.invoice_set_id
    BEGIN
        {SQLITE_FILL} WHERE id = NEW.id;
    END""",
    """CREATE TRIGGER invoice_set_facts_update AFTER UPDATE OF rule_set_id, created_at, owed_cents ON invoice_set
    WHEN OLD.rule_set_id IS NOT NEW.rule_set_id OR OLD.created_at IS NOT NEW.created_at
        OR OLD.owed_cents IS NOT NEW.owed_cents
    BEGIN
        UPDATE send SET set_rule_set_id = NEW.rule_set_id, set_created_at = NEW.created_at,
            set_owed_cents = NEW.owed_cents WHERE invoice_set_id = NEW.id;
    END""",
)
PG_FUNCTIONS = (
    """CREATE FUNCTION send_set_facts() RETURNS trigger AS $$
BEGIN
    SELECT s.rule_set_id, s.created_at, s.owed_cents INTO NEW.set_rule_set_id, NEW.set_created_at, NEW.set_owed_cents
        FROM invoice_set s WHERE s.id = NEW.invoice_set_id;
    RETURN NEW;
END
$$ LANGUAGE plpgsql""",
    """CREATE FUNCTION invoice_set_facts() RETURNS trigger AS $$
BEGIN
    UPDATE send SET set_rule_set_id = NEW.rule_set_id, set_created_at = NEW.created_at,
        set_owed_cents = NEW.owed_cents WHERE invoice_set_id = NEW.id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
)
PG_TRIGGERS = (
    """CREATE TRIGGER send_set_facts BEFORE INSERT OR UPDATE OF invoice_set_id ON send
    FOR EACH ROW EXECUTE FUNCTION send_set_facts()""",
    """CREATE TRIGGER invoice_set_facts AFTER UPDATE OF rule_set_id, created_at, owed_cents ON invoice_set
    FOR EACH ROW WHEN (OLD.rule_set_id IS DISTINCT FROM NEW.rule_set_id
        OR OLD.created_at IS DISTINCT FROM NEW.created_at OR OLD.owed_cents IS DISTINCT FROM NEW.owed_cents)
    EXECUTE FUNCTION invoice_set_facts()""",
)
# Covering indexes, ordered for the report's GROUP BYs: sends per rule set, step and method
# (messages); sets per rule set and step, each set once, with its owed (the funnel, reached).
TIME_COLUMNS = ["step_index", "set_created_at", "sent_at", "finished_at", "due_at"]
MSG_INDEX = ["set_rule_set_id", "step_day", "step_title", "method", "status", *TIME_COLUMNS]
REACH_INDEX = ["set_rule_set_id", "step_day", "step_title", "invoice_set_id", "set_owed_cents", "status", *TIME_COLUMNS]


def upgrade() -> None:
    op.add_column("send", sa.Column("set_rule_set_id", sa.Integer(), nullable=True))
    op.add_column("send", sa.Column("set_created_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("send", sa.Column("set_owed_cents", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"{COPY} FROM invoice_set s WHERE s.id = send.invoice_set_id")
        for sql in (*PG_FUNCTIONS, *PG_TRIGGERS):
            op.execute(sql)
    else:
        op.execute(SQLITE_FILL)
        for sql in SQLITE_TRIGGERS:
            op.execute(sql)
    op.create_index("ix_send_report_messages", "send", MSG_INDEX)
    op.create_index("ix_send_report_reached", "send", REACH_INDEX)
    # Attribution: a payment's send is the set's last (or first) delivered one in the window
    # before it; one seek here, in the order asked for (`report_queries._PAID_CTES`).
    op.execute(
        "CREATE INDEX ix_send_delivered_at ON send (invoice_set_id, coalesce(sent_at, finished_at, due_at), id)"
        " WHERE status = 'delivered' AND step_index >= 0"
    )


def downgrade() -> None:
    op.drop_index("ix_send_delivered_at", table_name="send")
    op.drop_index("ix_send_report_reached", table_name="send")
    op.drop_index("ix_send_report_messages", table_name="send")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER invoice_set_facts ON invoice_set")
        op.execute("DROP TRIGGER send_set_facts ON send")
        op.execute("DROP FUNCTION invoice_set_facts()")
        op.execute("DROP FUNCTION send_set_facts()")
    else:
        for name in ("invoice_set_facts_update", "send_set_facts_move", "send_set_facts_insert"):
            op.execute(f"DROP TRIGGER {name}")
    for col in ("set_owed_cents", "set_created_at", "set_rule_set_id"):
        op.execute(f"ALTER TABLE send DROP COLUMN {col}")  # SQLite 3.35+: no table copy

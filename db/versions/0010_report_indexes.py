"""covering indexes for `outreach report` (issue 15: a million sets within the benchmark's target)

Revision ID: 0010
Revises: 0005
Create Date: 2026-11-26

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The report groups every set of a period by rule set and sums what its charges owe, and counts
    # its sends by step and method: each of these indexes covers one of those reads, so the
    # database reads a compact index instead of the tables' rows (see core/report_queries.py).
    with op.batch_alter_table("invoice_set", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_set_rule_set_created", ["rule_set_id", "created_at", "status"], unique=False)
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.create_index("ix_charge_set_status_amount", ["invoice_set_id", "status", "amount_cents"], unique=False)
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.create_index(
            "ix_send_set_step_method",
            ["invoice_set_id", "step_day", "step_title", "method", "status", "sent_at", "finished_at", "due_at"],
            unique=False,
        )
    # Opt-out events (STOP replies, email complaints) among all the others.
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index("ix_event_kind_set", ["kind", "invoice_set_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_kind_set")
    with op.batch_alter_table("send", schema=None) as batch_op:
        batch_op.drop_index("ix_send_set_step_method")
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.drop_index("ix_charge_set_status_amount")
    with op.batch_alter_table("invoice_set", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_set_rule_set_created")

"""an index over the payments with unapplied credit (`metrics --all` credit totals)

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-26

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # `metrics --all` counts the patients with credit and sums it (ledger.credit_totals): the few
    # payments with unapplied cents are one short range of this index, read without the table,
    # instead of a pass over every payment ever recorded.
    op.create_index("ix_payment_unapplied_patient", "payment", ["unapplied_cents", "patient_pk"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_payment_unapplied_patient", table_name="payment")

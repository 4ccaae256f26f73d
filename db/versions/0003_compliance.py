"""compliance: patient.needs_review, invoice_set.held_by/held_until

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("patient", sa.Column("needs_review", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    op.add_column("invoice_set", sa.Column("held_by", sa.String(), nullable=True))
    op.add_column("invoice_set", sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoice_set") as batch:
        batch.drop_column("held_until")
        batch.drop_column("held_by")
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("needs_review")

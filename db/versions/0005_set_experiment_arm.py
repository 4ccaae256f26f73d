"""invoice sets record their A/B experiment and arm

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The weighted `--rule-set standard:70,gentle:30` a set was created under, and the arm it drew
    # (kept even when an admin later changes the set's rule set, so the experiment stays honest).
    with op.batch_alter_table("invoice_set", schema=None) as batch_op:
        batch_op.add_column(sa.Column("experiment", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("arm", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoice_set", schema=None) as batch_op:
        batch_op.drop_column("arm")
        batch_op.drop_column("experiment")

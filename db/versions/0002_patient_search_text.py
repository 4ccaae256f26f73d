"""patient.search_text: folded names, email and phone digits for --search

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
    # Fill it for the patients already there, in batches (the same function the import uses).
    from outreach_cli.domain.searchtext import search_text

    conn = op.get_bind()
    patient = sa.table(
        "patient",
        sa.column("id", sa.Integer()),
        sa.column("first_name", sa.String()),
        sa.column("last_name", sa.String()),
        sa.column("email", sa.String()),
        sa.column("phone", sa.String()),
        sa.column("search_text", sa.Text()),
    )
    stmt = sa.update(patient).where(patient.c.id == sa.bindparam("b_id")).values(search_text=sa.bindparam("v_text"))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(patient.c.id, patient.c.first_name, patient.c.last_name, patient.c.email, patient.c.phone)
            .where(patient.c.id > last)
            .order_by(patient.c.id)
            .limit(5000)
        ).all()
        if not rows:
            break
        conn.execute(
            stmt, [{"b_id": r.id, "v_text": search_text(r.first_name, r.last_name, r.email, r.phone)} for r in rows]
        )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("search_text")

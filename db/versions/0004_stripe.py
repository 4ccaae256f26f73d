"""stripe: card on file, applied Stripe events, Checkout Session payment links

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_customer_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("stripe_payment_method_id", sa.String(), nullable=True))
    op.create_table(
        "stripe_event",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("object_id", sa.String(), nullable=True),
        sa.Column("invoice_set_id", sa.Integer(), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["invoice_set_id"], ["invoice_set.id"]),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("stripe_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stripe_event_object_id"), ["object_id"], unique=False)
    op.create_table(
        "stripe_checkout",
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("invoice_set_id", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["invoice_set_id"], ["invoice_set.id"]),
        sa.PrimaryKeyConstraint("session_id"),
    )
    with op.batch_alter_table("stripe_checkout", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stripe_checkout_invoice_set_id"), ["invoice_set_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stripe_checkout", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stripe_checkout_invoice_set_id"))
    op.drop_table("stripe_checkout")
    with op.batch_alter_table("stripe_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stripe_event_object_id"))
    op.drop_table("stripe_event")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("stripe_payment_method_id")
        batch_op.drop_column("stripe_customer_id")

"""The analyses and the reads given for them.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analyses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("analysed_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("operating_point", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("calibration", sa.String(32), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("fractured", sa.Boolean, nullable=False),
        sa.Column("findings", sa.JSON, nullable=False),
        sa.Column("body_part", sa.String(64)),
        sa.Column("view", sa.String(64)),
    )
    op.create_table(
        "reads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("analysis_id", sa.String(64), sa.ForeignKey("analyses.id"), nullable=False, index=True),
        sa.Column("read", sa.String(16), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reader", sa.String(32)),
        sa.Column("findings_right", sa.JSON),
    )


def downgrade() -> None:
    op.drop_table("reads")
    op.drop_table("analyses")

"""Jobs belong to the API key that created them; idempotency keys are scoped to that owner.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0001 declared the unique key inline; this names it as Postgres did, SQLite included.
NAMING = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    with op.batch_alter_table("jobs", naming_convention=NAMING) as jobs:
        jobs.add_column(sa.Column("owner", sa.String(length=64), nullable=False, server_default=""))
        jobs.drop_constraint("jobs_idempotency_key_key", type_="unique")
        jobs.create_unique_constraint("uq_jobs_owner_idempotency_key", ["owner", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("jobs", naming_convention=NAMING) as jobs:
        jobs.drop_constraint("uq_jobs_owner_idempotency_key", type_="unique")
        jobs.create_unique_constraint("jobs_idempotency_key_key", ["idempotency_key"])
        jobs.drop_column("owner")

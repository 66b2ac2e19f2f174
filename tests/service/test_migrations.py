"""The migrations make exactly the schema the models declare: nothing `alembic revision
--autogenerate` would still add, drop or change."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from jobs.db import engine_for
from jobs.schema import Base


def test_the_migrated_database_matches_the_models(postgres_url: str) -> None:
    with engine_for(postgres_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []

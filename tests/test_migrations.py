"""Migrations: upgrade from empty, downgrade to nothing, upgrade again, on a database of its own."""
from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tests.conftest import TEST_ENV, USING_POSTGRES


@pytest.fixture()
def empty_database_url(tmp_path):
    if not USING_POSTGRES:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    base = TEST_ENV["DATABASE_URL"]
    name = f"migr_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(redis_server, empty_database_url):
    from flask_migrate import downgrade, upgrade

    from api import create_app
    from shared.database import db, include_object
    app = create_app({"DATABASE_URL": empty_database_url})
    with app.app_context():
        upgrade()
        assert {"users", "jobs"} <= tables(empty_database_url)
        downgrade(revision="base")
        assert tables(empty_database_url) == set()
        upgrade()
        assert {"users", "jobs"} <= tables(empty_database_url)
        # The models and the migrations agree: nothing left for autogenerate to find.
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"include_object": include_object}),
                                    db.metadata) == []
        db.engine.dispose()

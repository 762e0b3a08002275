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


def test_usernames_that_collide_by_case_are_renamed_before_the_unique_index(redis_server, empty_database_url):
    """0005 keeps the oldest `Ada`, renames the later `ada` and `ADA`, then refuses a new `aDa`."""
    import sqlalchemy as sa
    from flask_migrate import upgrade

    from api import create_app
    from shared.database import db
    app = create_app({"DATABASE_URL": empty_database_url})
    with app.app_context():
        upgrade(revision="0004")
        ids = [uuid.uuid4().hex for _ in range(4)]
        insert = text("INSERT INTO users (id, email, password_hash, username, role, status, token_version, "
                      "created_at, updated_at) VALUES (:id, :email, 'x', :name, 'student', 'active', 0, :at, :at)")
        with db.engine.begin() as conn:
            for n, name in enumerate(["Ada", "ada", "ADA", "bob"]):
                conn.execute(insert, {"id": ids[n], "email": f"u{n}@example.com", "name": name,
                                      "at": f"2026-01-0{n + 1} 00:00:00"})
        upgrade()
        with db.engine.begin() as conn:
            names = dict(conn.execute(text("SELECT id, username FROM users")).all())
        assert names[ids[0]] == "Ada" and names[ids[3]] == "bob"
        assert names[ids[1]] == f"ada_{ids[1][:16]}" and names[ids[2]] == f"ADA_{ids[2][:16]}"
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as conn:
            conn.execute(insert, {"id": "9" * 32, "email": "new@example.com", "name": "aDa",
                                  "at": "2026-02-01 00:00:00"})
        db.engine.dispose()

"""The database: Flask-SQLAlchemy's `db`, Flask-Migrate, and SQLite tuning.

SQLite runs in WAL mode with a busy timeout, and write transactions begin with
`BEGIN IMMEDIATE` (see `write_tx`) so that a read transaction never has to upgrade to a
write lock, which is what produces "database is locked" under concurrency. On PostgreSQL
the same code runs unchanged.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase

MIGRATIONS_DIR = str(Path(__file__).resolve().parent / "migrations")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base of every model; constraint and index names follow NAMING."""
    metadata = MetaData(naming_convention=NAMING)


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Autogenerate ignores the full-text search objects that migrations make by hand."""
    if type_ == "table" and name and name.startswith("chunks_fts"):
        return False
    if type_ == "index" and name == "ix_chunks_tsv":
        return False
    if type_ == "column" and name == "tsv" and getattr(obj, "table", None) is not None and obj.table.name == "chunks":
        return False
    return True


# Objects stay usable after commit (no reload per attribute): we commit often and briefly.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate(compare_type=True, render_as_batch=True, include_object=include_object)


def utcnow() -> datetime:
    """Return the current UTC time as a naive datetime, as the database stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_path(url: str) -> str | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return url[len("sqlite:///"):]
    return None


def init_db(app: Flask, url: str) -> None:
    """Bind `db` and Flask-Migrate to `app`."""
    url = normalise_url(url)
    path = _sqlite_path(url)
    options: dict = {"pool_pre_ping": True}
    if path:
        if not os.path.isabs(path):
            path = os.path.abspath(path)
            url = "sqlite:///" + path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        options = {"connect_args": {"timeout": 15, "check_same_thread": False}}
    else:
        options.update(pool_size=10, max_overflow=20, pool_recycle=1800)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    app.config.setdefault("SQLALCHEMY_TRACK_MODIFICATIONS", False)
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_conn, _record):  # pragma: no cover - driver specific
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Under gevent a busy wait inside SQLite would block every greenlet of the process:
        # there write_tx waits for the write lock in Python instead, cooperatively.
        cur.execute(f"PRAGMA busy_timeout={0 if _cooperative() else 15000}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages per connection, not 2
        cur.execute("PRAGMA mmap_size=268435456")  # reads from the mapped file, without a syscall per page
        cur.close()


@event.listens_for(Engine, "begin")
def _sqlite_on_begin(conn):  # pragma: no cover - driver specific
    if conn.dialect.name == "sqlite":
        options = conn.get_execution_options()
        if options.get("single_read"):  # one SELECT: SQLite runs it in a transaction of its own
            return
        # On the driver's connection: exec_driver_sql costs ~0.2 ms of SQLAlchemy around a
        # statement that takes microseconds, twice per job.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")


def _cooperative() -> bool:
    from gevent import monkey
    return monkey.is_module_patched("threading")


LOCK_WAIT_SECONDS = 15.0


def wait_for_write_lock(begin, after_refusal=None) -> None:
    """Call `begin` (a BEGIN IMMEDIATE) until SQLite grants the write lock, up to LOCK_WAIT_SECONDS.

    With a busy timeout SQLite waits inside `begin`; with none (under gevent) the wait is here,
    a cooperative sleep. `after_refusal` cleans up a refused attempt. The driver's error and
    SQLAlchemy's wrapper of it are both a refusal: a BEGIN may run on either.
    """
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.0005
    while True:
        try:
            begin()
            return
        except (OperationalError, sqlite3.OperationalError) as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            if after_refusal is not None:
                after_refusal()
            time.sleep(delay)
            delay = min(delay * 2, 0.02)


def _begin_immediate(session) -> None:
    """Take the write lock up front on the session's connection."""
    wait_for_write_lock(lambda: session.connection(execution_options={"sqlite_immediate": True}), session.rollback)


@contextmanager
def write_tx():
    """A short write transaction: BEGIN IMMEDIATE on SQLite, commit on exit, rollback on error.

    Ends whatever read transaction the session had open first, so that the write lock is
    taken up front instead of by upgrading a read snapshot.
    """
    session = db.session()
    if session.in_transaction():
        session.commit()
    _begin_immediate(session)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise

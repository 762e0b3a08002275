"""Hot write statements run on the database driver's own connection, in a transaction of their own.

SQLAlchemy's session and execution context cost ~0.15 ms around a statement that SQLite runs
in tens of microseconds; a job's claim and its finish are two such statements per job, on
every job (bench/README.md). `Prepared` compiles a Core statement once per dialect and runs it
on a pooled driver connection: values go through the columns' own bind processors and
RETURNING rows through their result processors, so the statement means and reads exactly
what `connection.execute(stmt, values)` would. SQLite takes the write lock up front, as
`write_tx` does (BEGIN IMMEDIATE; under gevent the wait is a cooperative sleep); PostgreSQL
runs the same statement in the driver's implicit transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.database import db, wait_for_write_lock


@dataclass(frozen=True)
class _Compiled:
    compiled: Any                  # SQLAlchemy's compiled statement: it fills in the literal values
    sql: str
    names: tuple[str, ...] | None  # positional drivers: the order of the values; None: by name
    binds: dict[str, Any]          # name -> bind processor
    results: tuple[Any, ...]       # one result processor (or None) per RETURNING column


class Prepared:
    """A Core statement compiled once per dialect; `run(values)` commits it and answers (rowcount, rows)."""

    def __init__(self, stmt) -> None:
        self.stmt = stmt
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect) -> _Compiled:
        done = self._compiled.get(dialect.name)
        if done is None:
            c = self.stmt.compile(dialect=dialect)
            binds = {name: b.type.dialect_impl(dialect).bind_processor(dialect) for name, b in c.binds.items()}
            results = tuple(col.type.dialect_impl(dialect).result_processor(dialect, None)
                            for col in self.stmt.exported_columns)  # the RETURNING columns
            names = tuple(c.positiontup) if dialect.positional else None
            done = self._compiled[dialect.name] = _Compiled(c, c.string, names, binds, results)
        return done

    def run(self, values: dict[str, Any]) -> tuple[int, list[tuple]]:
        """Execute with `values` (every bound name), commit, and answer the rowcount and the RETURNING rows."""
        engine = db.engine
        compiled = self._for(engine.dialect)
        bound = compiled.compiled.construct_params(values)
        for name, value in bound.items():
            if (processor := compiled.binds.get(name)) is not None:
                bound[name] = processor(value)
        params = tuple(bound[n] for n in compiled.names) if compiled.names is not None else bound
        pooled = engine.raw_connection()
        try:
            driver = pooled.driver_connection
            sqlite = engine.dialect.name == "sqlite"
            if sqlite:
                wait_for_write_lock(lambda: driver.execute("BEGIN IMMEDIATE"))
            try:
                cursor = driver.cursor()
                cursor.execute(compiled.sql, params)
                rows = cursor.fetchall() if compiled.results else []
                count = cursor.rowcount
                cursor.close()
                if sqlite:
                    driver.execute("COMMIT")
                else:
                    driver.commit()
            except BaseException:
                driver.rollback()
                raise
        finally:
            pooled.close()
        if compiled.results:
            rows = [tuple(p(v) if p else v for p, v in zip(compiled.results, row, strict=True)) for row in rows]
        return (len(rows) if compiled.results else count), rows

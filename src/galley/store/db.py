"""The store: one SQLAlchemy engine, serialised write transactions, and change signals.

SQLite is the default (a file in the data directory, WAL mode so readers never wait for the
writer). Every write goes through `Store.write()`, one transaction at a time per process; a
`Signal` lets agents and controllers sleep until something they care about changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text

from galley.jsondoc import dumps, loads  # noqa: F401 - the store's JSON codec
from galley.store.schema import metadata


class Signal:
    """A version counter that threads can wait on: bumped after every relevant commit."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.version = 0

    def bump(self) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()

    def wait(self, since: int, timeout: float) -> int:
        """Block until the version differs from `since` or `timeout` passes; return the version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != since, timeout)
            return self.version


class Store:
    """The source of truth. Open with a SQLAlchemy URL (sqlite:///path or postgresql://...)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_size=16, max_overflow=16)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        self._write_lock = threading.Lock()
        # Bumped when tasks' desired state changes (agents wake) or actual state changes
        # (controllers and waiters wake).
        self.desired_changed = Signal()
        self.actual_changed = Signal()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; commits on success, rolls back on any exception."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def add_missing_columns(engine: Engine) -> None:
    """Bring a data directory made by an older Galley up to the current schema.

    Schema changes so far only add tables (create_all makes them) and columns with defaults,
    which this adds in place; anything else would need a real migration step here.
    """
    existing = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                default = column.default.arg if column.default is not None else None
                ddl = f"ALTER TABLE {table.name} ADD COLUMN {column.name} " \
                      f"{column.type.compile(engine.dialect)}"
                if default is not None:
                    ddl += f" NOT NULL DEFAULT {int(default)}"
                conn.execute(text(ddl))

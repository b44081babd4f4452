"""The store: one SQLAlchemy engine, serialised write transactions, and change signals.

SQLite is the default (a file in the data directory, WAL mode so readers never wait for the
writer). Every write goes through `Store.write()`, one transaction at a time per process; a
`Signal` lets agents and controllers sleep until something they care about changed.

`Store.generation()` names the store's current state for read caches: it changes after every
commit through `Store.write()` and, for a SQLite file, after any commit by any other connection or
process too (SQLite's `PRAGMA data_version`). A value computed from the store may be reused while
the generation read *before* computing it is still current. `generation_of(conn)` is the same
for a read about to be made on a connection, None when that read must not be cached.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
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
        self._writes = 0  # commits through write(), bumped after each one
        self._watch: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        _STORES[id(self.engine)] = self
        path = _sqlite_file(self.engine)
        if path is not None:
            # A connection of its own, only ever asked PRAGMA data_version: that number changes
            # whenever any other connection (ours or another process's) commits to the file.
            self._watch = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # Bumped when tasks' desired state changes (agents wake) or actual state changes
        # (controllers and waiters wake).
        self.desired_changed = Signal()
        self.actual_changed = Signal()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; commits on success, rolls back on any exception."""
        with self._write_lock:
            try:
                with self.engine.begin() as conn:
                    yield conn
            finally:
                # After the commit (or rollback): a reader that saw the old generation cached
                # what it read under the old one, so nothing read before this commit survives it.
                self._writes += 1

    def generation(self) -> tuple[int, int] | None:
        """The store's current generation, or None when it cannot be known (a database server
        that other processes may write to without telling this one): then nothing is cached.

        Read it before reading what is to be cached; reuse the cached value only while the
        generation is equal. Any commit changes it, and it is changed before `write()` returns.
        """
        writes = self._writes
        with self._watch_lock:
            if self._watch is None:
                return None
            try:
                # fetchall: the statement is done, so no read transaction stays open on it.
                version = self._watch.execute("PRAGMA data_version").fetchall()[0][0]
            except sqlite3.Error:
                return None  # e.g. busy: then this reader just does not cache
        return writes, version

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None  # closed: generation() is None, nothing is cached
        self.engine.dispose()


_STORES: weakref.WeakValueDictionary[int, Store] = weakref.WeakValueDictionary()


def generation_of(conn: Connection) -> tuple[int, int] | None:
    """The generation to cache a read about to be made on `conn` under (see Store.generation),
    or None when it must not be cached: `conn` is in a transaction that may hold uncommitted
    changes of its own (a write that has already changed something), or its store cannot tell.
    """
    store = _STORES.get(id(conn.engine))
    if store is None:
        return None
    try:
        dbapi = conn.connection.dbapi_connection
    except Exception:  # noqa: BLE001 - closed or invalidated: just do not cache
        return None
    # sqlite3 opens a transaction only for a write (or an explicit BEGIN): until then the
    # connection sees exactly what is committed, which is what the generation names.
    if dbapi is None or getattr(dbapi, "in_transaction", True):
        return None
    return store.generation()


def _sqlite_file(engine: Engine) -> str | None:
    """The file of a SQLite database given by a plain path URL, else None."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:") or engine.url.query.get("uri"):
        return None
    return database


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

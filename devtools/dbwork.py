"""The database's work per task, as a user on a shared database would count it (PostgreSQL).

WAL: the bytes of the WAL records that touch this database's relations, and their commits
(records read back with `pg_walinspect` between two LSNs), so another database on the same
server writing at the same time does not count. Full-page images are counted apart: the
first change of a page after a checkpoint copies the whole page, which depends on when the
checkpoint fell more than on the work. Without `pg_walinspect` the figure is the whole
server's `pg_current_wal_insert_lsn()` difference, and says so.

Row writes: `pg_stat_user_tables` (inserted, updated, of which HOT, deleted) summed over the
database's tables, read once every backend that did the work has gone (a backend flushes its
counters when it ends or idles).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import OperationalError, connection, transaction

STATS = (
    "SELECT COALESCE(SUM(n_tup_ins), 0), COALESCE(SUM(n_tup_upd), 0), "
    "COALESCE(SUM(n_tup_hot_upd), 0), COALESCE(SUM(n_tup_del), 0) FROM pg_stat_user_tables"
)


@dataclass
class Work:
    """What one phase cost the database."""

    wal: int = 0
    fpi: int = 0
    inserted: int = 0
    updated: int = 0
    hot: int = 0
    deleted: int = 0
    seconds: float = 0.0
    whole_server: bool = False

    @property
    def writes(self) -> int:
        return self.inserted + self.updated + self.deleted

    def __add__(self, other: Work) -> Work:
        return Work(
            self.wal + other.wal,
            self.fpi + other.fpi,
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.hot + other.hot,
            self.deleted + other.deleted,
            self.seconds + other.seconds,
            self.whole_server or other.whole_server,
        )


@dataclass
class Phases:
    by_name: dict[str, Work] = field(default_factory=dict)

    def total(self, *names: str) -> Work:
        work = Work()
        for name in names or tuple(self.by_name):
            work = work + self.by_name[name]
        return work


def walinspect() -> bool:
    with connection.cursor() as cursor:
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        except Exception:  # not installed, or not allowed: the server-wide figure instead
            return False
    return True


def _stats() -> tuple[int, int, int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(STATS)
        row = cursor.fetchone()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _settled_stats() -> tuple[int, int, int, int]:
    """The counters once the backends that did the work have flushed them (they do so when
    they end or go idle, within a second or so): read until they stop moving."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    connection.close()
    # A pooled connection's backend stays, idle, and flushes only ten seconds later: end them
    # all (the handler threads' too), so each flushes as it goes.
    close_pool = getattr(connection, "close_pool", None)
    if close_pool is not None:
        close_pool()
    previous = _stats()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = _stats()
        if current == previous:
            return current
        previous = current
    return previous


def _lsn(function: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}()")
        return str(cursor.fetchone()[0])


def _wal_between(start: str, end: str, inspect: bool) -> tuple[int, int, bool]:
    if inspect:
        try:
            with transaction.atomic():
                return _wal_of_this_database(start, end)
        except OperationalError:
            # A phase that wrote more than the server keeps (a checkpoint recycled the first
            # segments before they were read): the whole server's difference instead.
            pass
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(%s, %s)", [end, start])
        return int(cursor.fetchone()[0]), 0, True


def _wal_of_this_database(start: str, end: str) -> tuple[int, int, bool]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        pattern = f"%/{cursor.fetchone()[0]}/%"
        # Records of this database's relations, and every record of their transactions
        # (the commits, which name no relation).
        cursor.execute(
            "WITH r AS (SELECT * FROM pg_get_wal_records_info(%s, %s)), "
            "ours AS (SELECT DISTINCT xid FROM r WHERE block_ref LIKE %s AND xid <> '0') "
            "SELECT COALESCE(SUM(record_length - fpi_length), 0), COALESCE(SUM(fpi_length), 0) "
            "FROM r WHERE block_ref LIKE %s OR xid IN (SELECT xid FROM ours)",
            [start, end, pattern, pattern],
        )
        wal, fpi = cursor.fetchone()
    return int(wal), int(fpi), False


@contextmanager
def measured(phases: Phases, name: str, inspect: bool) -> Iterator[None]:
    """Measure the block's work on the database as phase `name`."""
    before = _settled_stats()
    start = _lsn("pg_current_wal_insert_lsn")
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    after = _settled_stats()
    end = _lsn("pg_current_wal_flush_lsn")
    wal, fpi, whole = _wal_between(start, end, inspect)
    inserted, updated, hot, deleted = (b - a for a, b in zip(before, after, strict=True))
    phases.by_name[name] = Work(
        wal, fpi, inserted, updated, hot, deleted, seconds=seconds, whole_server=whole
    )


def autovacuum(tables: list[str], *, enabled: bool) -> None:
    """Autovacuum off while measuring: its WAL is real, but it falls when it likes."""
    with connection.cursor() as cursor:
        for table in tables:
            value = "true" if enabled else "false"
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = {value})")


def per_task(work: Work, tasks: int) -> str:
    """`1,234 B WAL (+56 B page images), 2.00 row writes (1.00 HOT)` per task."""
    return (
        f"{work.wal / tasks:,.0f} B WAL (+{work.fpi / tasks:,.0f} B page images), "
        f"{work.writes / tasks:.2f} row writes ({work.hot / tasks:.2f} HOT updates)"
    )


def phase_words(phases: Phases, tasks: int, names: list[str]) -> str:
    return "; ".join(
        f"{name} {phases.by_name[name].wal / tasks:,.0f} B, "
        f"{phases.by_name[name].writes / tasks:.2f} writes"
        for name in names
        if name in phases.by_name
    )

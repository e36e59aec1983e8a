"""The default vector cache: one SQLite file in WAL mode, shared by threads and processes.

Why it holds up under load: readers never block in WAL mode; every write is one
``BEGIN IMMEDIATE`` transaction (it takes the write lock up front, so two
writers never deadlock upgrading a read), and a writer that still finds the
database busy retries with jittered backoff instead of surfacing "database is
locked". A process killed mid-write leaves at most an uncommitted WAL tail, which
SQLite discards on the next open, so no half-written vector is ever read.

Least-recently-used eviction keeps the payload (keys, vectors, a row overhead)
under ``max_bytes``. Use times are updated at most once a minute per entry, so a
hot read path writes almost nothing; hit/miss counters are kept in memory and
written with the next write (or every few seconds, and at exit).
"""

from __future__ import annotations

import logging
import math
import os
import random
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ...errors import ZooError
from .base import DEFAULT_MAX_BYTES, CacheConfig, Entry, decode_entry, encode_entry, summarize

__all__ = ["SqliteCache", "CacheBusy", "CacheDamaged", "discard"]

log = logging.getLogger("zoo.cache")
ROW_OVERHEAD = 64  # bytes per row besides key and value: model, config digest, size, time, index entries
TOUCH_EVERY = 60.0  # seconds: LRU resolution
FLUSH_EVERY = 5.0  # seconds between counter writes on a read-only workload
IN_CHUNK = 500  # keys per IN (...) query; well under SQLite's variable limit
EVICT_TO = 0.9  # evict down to this fraction of max_bytes, so eviction is not paid on every write

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS vectors (
        key BLOB PRIMARY KEY,
        model TEXT NOT NULL,
        config BLOB NOT NULL,
        value BLOB NOT NULL,
        size INTEGER NOT NULL,
        last_used REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS vectors_by_use ON vectors (last_used)",
    "CREATE INDEX IF NOT EXISTS vectors_by_model ON vectors (model)",
    """CREATE TABLE IF NOT EXISTS counters (
        model TEXT PRIMARY KEY, hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0)""",
    "CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO totals (id, bytes) VALUES (1, 0)",
]


class CacheBusy(ZooError):
    pass


class CacheDamaged(ZooError):
    """The file is not a readable SQLite cache; ``zoo cache clear`` replaces it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"vector cache {path} is not a readable SQLite cache ({reason}); "
                         "run `zoo cache clear` to replace it with an empty one (cached vectors are only a cache)")
        self.path = path


def discard(path: str | os.PathLike) -> list[str]:
    """Remove a damaged cache file with its WAL and shared-memory files; the names removed."""
    removed = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        f = Path(f"{path}{suffix}")
        if f.exists():
            f.unlink()
            removed.append(f.name)
    return removed


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteCache:
    def __init__(self, path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES, busy_timeout: float = 60.0):
        self.path = Path(path)
        self.location = str(self.path)
        self.max_bytes = max_bytes
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._pending: dict[str, list[int]] = {}  # model -> [hits, misses] not yet written
        self._pending_lock = threading.Lock()
        self._last_flush = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZooError(f"cannot create the cache directory {self.path.parent}: {exc.strerror}") from None
        self._retry(self._use_wal)
        self._write(lambda conn: [conn.execute(statement) for statement in SCHEMA])
        # counters not yet written are written when this object goes away or the process exits
        weakref.finalize(self, _write_pending, self.path, self._pending, self._pending_lock)

    # -- connections and retries ------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never share a connection across fork
            try:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            except sqlite3.Error as exc:
                raise ZooError(f"cannot open the vector cache {self.path}: {exc}") from None
            try:
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _retry(self, fn: Callable[[sqlite3.Connection], object]):
        delay, deadline = 0.002, time.monotonic() + self.busy_timeout
        while True:
            conn = None
            try:
                conn = self._conn()
                return fn(conn)
            except sqlite3.OperationalError as exc:
                if conn is not None and conn.in_transaction:
                    conn.execute("ROLLBACK")
                if not _busy(exc):
                    raise ZooError(f"vector cache {self.path}: {exc}") from None
                if time.monotonic() > deadline:
                    raise CacheBusy(f"vector cache {self.path} stayed locked for {self.busy_timeout:.0f} s; "
                                    "another process holds it (or disable the cache with cache=False)") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)
            except sqlite3.DatabaseError as exc:
                raise CacheDamaged(self.path, str(exc)) from None

    def _write(self, fn: Callable[[sqlite3.Connection], object]):
        def transaction(conn):
            conn.execute("BEGIN IMMEDIATE")
            pending = self._take_counters()
            try:
                result = fn(conn)
                self._write_counters(conn, pending)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for model, (hits, misses) in pending.items():  # retried with the next write
                    self._count(model, hits, misses)
                raise
            return result
        return self._retry(transaction)

    @staticmethod
    def _use_wal(conn) -> None:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file

    # -- counters ----------------------------------------------------------------------------

    def _count(self, model: str, hits: int, misses: int) -> None:
        with self._pending_lock:
            counts = self._pending.setdefault(model, [0, 0])
            counts[0] += hits
            counts[1] += misses

    def _take_counters(self) -> dict[str, list[int]]:
        with self._pending_lock:  # emptied in place: the finalizer holds this very dict
            pending = dict(self._pending)
            self._pending.clear()
            self._last_flush = time.monotonic()
        return pending

    @staticmethod
    def _write_counters(conn, pending: dict[str, list[int]]) -> None:
        if pending:
            conn.executemany(
                "INSERT INTO counters (model, hits, misses) VALUES (?, ?, ?) ON CONFLICT (model) DO UPDATE "
                "SET hits = hits + excluded.hits, misses = misses + excluded.misses",
                [(model, h, m) for model, (h, m) in pending.items()])

    def flush(self) -> None:
        """Write pending hit/miss counters now."""
        if self._pending:
            self._write(lambda conn: None)

    # -- the engine's interface -------------------------------------------------------------------

    def get_many(self, config: CacheConfig, keys: Sequence[bytes]) -> dict[bytes, Entry]:
        found: dict[bytes, Entry] = {}
        stale: list[bytes] = []
        now = time.time()
        for start in range(0, len(keys), IN_CHUNK):
            chunk = list(keys[start:start + IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self._retry(lambda c: c.execute(
                f"SELECT key, value, last_used FROM vectors WHERE key IN ({marks})", chunk).fetchall())
            for key, value, last_used in rows:
                found[key] = decode_entry(value)
                if now - last_used > TOUCH_EVERY:
                    stale.append(key)
        self._count(config.model, len(found), len(keys) - len(found))
        if stale:
            def touch(c):
                for start in range(0, len(stale), IN_CHUNK):
                    chunk = stale[start:start + IN_CHUNK]
                    c.execute(f"UPDATE vectors SET last_used = ? WHERE key IN ({','.join('?' * len(chunk))})",
                              [now, *chunk])
            writes = lambda: self._write(touch)  # noqa: E731
        elif time.monotonic() - self._last_flush > FLUSH_EVERY:
            writes = self.flush
        else:
            return found
        try:  # recency and counters are bookkeeping: a disk that cannot take them must not fail a read
            writes()
        except CacheDamaged:
            raise
        except (ZooError, sqlite3.Error) as exc:
            log.warning("vector cache %s: could not record use (%s)", self.path, exc)
        return found

    def put_many(self, config: CacheConfig, items: Sequence[tuple[bytes, np.ndarray, int]]) -> None:
        if not items:
            return
        now, digest = time.time(), config.digest
        rows = [(key, config.model, digest, encode_entry(vector, flags), now) for key, vector, flags in items]
        sizes = {len(r[0]) + len(r[3]) + ROW_OVERHEAD for r in rows}
        assert len(sizes) == 1, "one configuration has one vector size"
        size = sizes.pop()

        def insert(conn):
            cur = conn.executemany(
                "INSERT OR IGNORE INTO vectors (key, model, config, value, size, last_used) "
                f"VALUES (?, ?, ?, ?, {size}, ?)", rows)
            conn.execute("UPDATE totals SET bytes = bytes + ? WHERE id = 1", (cur.rowcount * size,))
            total = conn.execute("SELECT bytes FROM totals WHERE id = 1").fetchone()[0]
            if total > self.max_bytes:
                self._evict(conn, total, int(self.max_bytes * EVICT_TO))
        self._write(insert)

    def _evict(self, conn, total: int, target: int) -> int:
        """Delete least recently used rows until the payload is at most ``target``; return rows removed."""
        removed = 0
        while total > target:
            avg = conn.execute("SELECT avg(size) FROM vectors").fetchone()[0]
            if not avg:
                break
            n = max(1, math.ceil((total - target) / avg))
            sizes = conn.execute("DELETE FROM vectors WHERE key IN "
                                 "(SELECT key FROM vectors ORDER BY last_used LIMIT ?) RETURNING size",
                                 (n,)).fetchall()
            if not sizes:
                break
            freed = sum(s for (s,) in sizes)
            total -= freed
            removed += len(sizes)
            conn.execute("UPDATE totals SET bytes = bytes - ? WHERE id = 1", (freed,))
        return removed

    # -- administration -------------------------------------------------------------------------

    def stats(self) -> dict:
        self.flush()

        def read(conn):
            total = conn.execute("SELECT bytes FROM totals WHERE id = 1").fetchone()[0]
            per_model = {m: {"entries": n, "bytes": b} for m, n, b in conn.execute(
                "SELECT model, count(*), sum(size) FROM vectors GROUP BY model")}
            for m, hits, misses in conn.execute("SELECT model, hits, misses FROM counters"):
                per_model.setdefault(m, {"entries": 0, "bytes": 0}).update(hits=hits, misses=misses)
            return total, per_model
        total, per_model = self._retry(read)
        files = [self.path, Path(f"{self.path}-wal")]
        return {"backend": "sqlite", "location": self.location, **summarize(per_model), "bytes": total,
                "max_bytes": self.max_bytes, "file_bytes": sum(p.stat().st_size for p in files if p.exists())}

    def clear(self, model: Optional[str] = None) -> int:
        def delete(conn):
            if model is None:
                n = conn.execute("DELETE FROM vectors").rowcount
                conn.execute("DELETE FROM counters")
            else:
                n = conn.execute("DELETE FROM vectors WHERE model = ?", (model,)).rowcount
                conn.execute("DELETE FROM counters WHERE model = ?", (model,))
            conn.execute("UPDATE totals SET bytes = (SELECT coalesce(sum(size), 0) FROM vectors) WHERE id = 1")
            return n
        with self._pending_lock:  # counts not yet written belong to what is cleared
            if model is None:
                self._pending.clear()
            else:
                self._pending.pop(model, None)
        removed = self._write(delete)
        self._compact()
        return removed

    def prune(self, max_bytes: int) -> dict:
        def evict(conn):
            total = conn.execute("SELECT bytes FROM totals WHERE id = 1").fetchone()[0]
            return self._evict(conn, total, max_bytes)
        removed = self._write(evict)
        self._compact()
        return {"removed": removed, **{k: v for k, v in self.stats().items() if k in ("entries", "bytes")}}

    def _compact(self) -> None:
        """Give freed pages back to the file system when no one else is using the cache."""
        try:
            conn = self._conn()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
        except sqlite3.OperationalError:  # busy: free pages are reused by later writes instead
            pass

    def integrity(self) -> str:
        return self._retry(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])


def _write_pending(path: Path, pending: dict[str, list[int]], lock: threading.Lock) -> None:
    """Finalizer: write the hit/miss counters a cache object still holds (best effort)."""
    with lock:
        rows = [(model, h, m) for model, (h, m) in pending.items() if h or m]
        pending.clear()
    if not rows:
        return
    try:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            SqliteCache._write_counters(conn, {model: [h, m] for model, h, m in rows})
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error:  # statistics only: never worth a traceback at exit
        pass

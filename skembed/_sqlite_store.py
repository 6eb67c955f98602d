"""Vectors in an SQLite file that several processes share.

The file is in WAL mode: readers never wait, and a read never writes, so it
never takes the write lock. Writers take turns, and each write is one
transaction, so a process killed mid-write leaves no partial vector. Each
vector is a raw little-endian float32 blob with a CRC-32; one whose length or
checksum is wrong is reported as missing, recomputed and replaced by the next
write.

Why not ``diskcache`` or ``joblib.Memory``: they pickle one value per key and
read keys one at a time, where a cached ``transform`` reads thousands of
vectors in a few ``IN (...)`` queries straight into one array.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import warnings
import zlib
from contextlib import contextmanager

import numpy as np

SCHEMA_NAME = "skembed-embedding-cache"
SCHEMA_VERSION = 1
#: SQLite page size of new cache files (bytes). With 4 KB pages, vectors of
#: 256 dimensions or more spill into overflow pages: 3x the file, slower reads.
PAGE_SIZE = 32768
#: Bytes of a cache file SQLite reads through a memory map.
MMAP_BYTES = 2**30
#: Seconds a writer waits for another process's write to end.
WRITE_TIMEOUT = 120.0
#: Name prefix of the model-file digests kept in ``skembed_meta``.
_DIGEST_PREFIX = "file-digest "
#: Texts per ``IN (...)`` query.
_CHUNK = 900
TABLES = ("skembed_meta", "skembed_models", "skembed_vectors", "skembed_stats")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS skembed_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS skembed_models (
    model BLOB PRIMARY KEY, dim INTEGER NOT NULL, description TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS skembed_vectors (
    model BLOB NOT NULL, text BLOB NOT NULL, vector BLOB NOT NULL, crc INTEGER NOT NULL,
    PRIMARY KEY (model, text)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skembed_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO skembed_meta VALUES ('schema', '{SCHEMA_NAME}');
INSERT OR IGNORE INTO skembed_meta VALUES ('version', '{SCHEMA_VERSION}');
INSERT OR IGNORE INTO skembed_stats VALUES ('hits', 0);
INSERT OR IGNORE INTO skembed_stats VALUES ('misses', 0);
"""


class CacheError(ValueError):
    """A cache file that skembed cannot use: foreign, corrupted, or out of reach."""


class CacheVersionError(CacheError):
    """A cache file written by another version of skembed (``skembed cache clear`` empties it)."""


class CacheUnavailableError(CacheError):
    """A sound cache file that cannot be read or written now: locked past the timeout,
    a full disk or file-size limit, an I/O or permission error.

    Attributes
    ----------
    cause : str
        SQLite's own words.
    """

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


#: SQLite's result codes (prefixes of their names) for a file that is sound but
#: cannot be used now, as opposed to a corrupt or foreign one.
_UNAVAILABLE_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR",
                      "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_NOMEM",
                      "SQLITE_INTERRUPT", "SQLITE_PROTOCOL")
#: ... and their messages, for Python < 3.11, whose errors carry no code.
_UNAVAILABLE_MESSAGES = ("locked", "busy", "disk is full", "disk i/o error", "readonly",
                         "unable to open", "out of memory", "interrupted")


def is_unavailable(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file cannot be used now (not that it is damaged)."""
    name = getattr(exc, "sqlite_errorname", None)
    if name is not None:
        return name.startswith(_UNAVAILABLE_CODES)
    return any(words in str(exc).lower() for words in _UNAVAILABLE_MESSAGES)


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", None)
    if name is not None:
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    return "locked" in str(exc).lower() or "busy" in str(exc).lower()


def retry_while_busy(function, timeout: float):
    """``function()``, tried again while SQLite says the file is busy, for up to ``timeout`` s.

    Some statements (switching a new file to WAL mode) fail at once when
    another connection holds a lock, without waiting for SQLite's busy timeout.
    """
    deadline, delay = time.monotonic() + timeout, 0.001
    while True:
        try:
            return function()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


@contextmanager
def write_transaction(conn):
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any error.

    SQLite may have rolled the transaction back itself (a full disk, an I/O
    error): then there is nothing left to roll back.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:  # the error being raised says more
                pass
        raise


class SQLiteStore:
    """The vectors of one SQLite file; one connection per process."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self._conn = None
        self._pid = None
        self._damaged: dict = {}  # digest -> text keys found damaged, replaced by the next write

    # -- connection and schema ----------------------------------------------------
    def _error(self, exc: sqlite3.Error | str) -> CacheError:
        """The error for ``exc``: a file that cannot be used now, or one that is damaged."""
        if isinstance(exc, sqlite3.Error) and is_unavailable(exc):
            return CacheUnavailableError(
                f"The embedding cache {self.path!r} cannot be used now: {exc}. The file is not "
                "damaged: free disk space, raise the file-size limit or wait for the process "
                "that holds it.", cause=str(exc),
            )
        return CacheError(
            f"{self.path!r} is not a usable skembed embedding cache: {exc}. Delete the "
            "file, or choose another path for the cache."
        )

    def connection(self) -> sqlite3.Connection:
        """The connection of this process (a forked child opens its own)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=WRITE_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CacheError(f"Cannot open the embedding cache {self.path!r}: {exc}.") from None
        try:
            # Only takes effect on a new file: a vector then fits in its leaf
            # page instead of spilling into an overflow page of its own.
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            # Several processes may open a new file at once (a grid search's
            # workers): the switch to WAL mode does not wait for a lock.
            retry_while_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"), WRITE_TIMEOUT)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")  # reads without a copy per page
            retry_while_busy(lambda: self._check_schema(conn), WRITE_TIMEOUT)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._error(exc) from None
        except CacheError:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _check_schema(self, conn) -> None:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            with write_transaction(conn):
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        conn.execute(statement)
            return
        if "skembed_meta" not in tables:
            raise self._error(f"it is a database of other tables ({', '.join(sorted(tables))})")
        meta = dict(conn.execute("SELECT name, value FROM skembed_meta"))
        if meta.get("schema") != SCHEMA_NAME:
            raise self._error(f"unknown schema marker {meta.get('schema')!r}")
        if meta.get("version") != str(SCHEMA_VERSION):
            raise CacheVersionError(
                f"{self.path!r} was written by another version of skembed (cache schema "
                f"{meta.get('version')}, this version reads {SCHEMA_VERSION}). Empty it with "
                f"`skembed cache clear {self.path}`."
            )
        if not set(TABLES) <= tables:
            raise self._error(f"tables {sorted(set(TABLES) - tables)} are missing")

    def _run(self, function, *args):
        """Run ``function(conn, *args)`` under the store's lock, with clear errors."""
        with self.lock:
            conn = self.connection()
            try:
                return function(conn, *args)
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from None

    # -- reads ---------------------------------------------------------------------
    def dimension(self, digest: bytes) -> int | None:
        row = self._run(
            lambda c: c.execute("SELECT dim FROM skembed_models WHERE model=?", (digest,)).fetchone()
        )
        return None if row is None else int(row[0])

    def file_digests(self) -> dict:
        """The model-file digests kept in the file: ``{(path, size, mtime_ns, inode): digest}``."""
        rows = self._run(
            lambda c: c.execute(
                "SELECT name, value FROM skembed_meta WHERE name >= ? AND name < ?",
                (_DIGEST_PREFIX, _DIGEST_PREFIX + "\uffff"),
            ).fetchall()
        )
        known = {}
        for name, digest in rows:
            try:
                known[tuple(json.loads(name[len(_DIGEST_PREFIX) :]))] = digest
            except ValueError:
                continue
        return known

    def lookup(self, digest: bytes, text_keys: list, out: np.ndarray) -> np.ndarray:
        """Write the file's vectors of ``text_keys`` into ``out``; a bool array of those found.

        A vector whose length or checksum is wrong counts as not found, and
        is replaced when its text is next stored.
        """
        index_of = dict(zip(text_keys, range(len(text_keys))))
        found = np.zeros(len(text_keys), dtype=bool)
        nbytes = 4 * out.shape[1]
        crc32, frombuffer = zlib.crc32, np.frombuffer
        damaged = []
        for key, blob, crc in self._run(self._select, digest, text_keys):
            if len(blob) == nbytes and crc32(blob) == crc:
                i = index_of[key]
                out[i] = frombuffer(blob, dtype="<f4")
                found[i] = True
            else:
                damaged.append(key)
        if damaged:
            with self.lock:
                self._damaged.setdefault(digest, set()).update(damaged)
            warnings.warn(
                f"{len(damaged)} vector(s) in the embedding cache {self.path!r} failed their "
                "length or checksum test; they are recomputed.",
                RuntimeWarning,
                stacklevel=4,
            )
        return found

    @staticmethod
    def _select(conn, digest: bytes, keys: list) -> list:
        rows = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows.extend(
                conn.execute(
                    "SELECT text, vector, crc FROM skembed_vectors "
                    f"WHERE model=? AND text IN ({marks})",
                    (digest, *chunk),
                )
            )
        return rows

    # -- writes: one transaction each ------------------------------------------------
    def store(self, digest: bytes, description: dict, text_keys: list, vectors: np.ndarray, *,
              counts: tuple = (0, 0), file_digests: dict | None = None) -> None:
        """Keep vectors (a text already stored keeps its vector, unless damaged).

        The same transaction adds ``counts`` (hits, misses) to the file's
        lifetime counters and keeps ``file_digests``: a read never writes.
        """
        with self.lock:
            damaged = self._damaged.pop(digest, set())

        def insert(conn):
            with write_transaction(conn):
                conn.execute(
                    "INSERT OR IGNORE INTO skembed_models VALUES (?, ?, ?, ?)",
                    (digest, vectors.shape[1], json.dumps(description), time.time()),
                )
                if damaged:
                    conn.executemany("DELETE FROM skembed_vectors WHERE model=? AND text=?",
                                     [(digest, k) for k in damaged])
                conn.executemany(
                    "INSERT OR IGNORE INTO skembed_vectors VALUES (?, ?, ?, ?)",
                    vector_rows(digest, text_keys, vectors),
                )
                self._keep_notes(conn, counts, file_digests)

        self._run(insert)

    @staticmethod
    def _keep_notes(conn, counts: tuple, file_digests: dict | None) -> None:
        """Add lookup counts to the lifetime counters, and keep new model-file digests."""
        hits, misses = counts
        if hits or misses:
            conn.executemany(
                "UPDATE skembed_stats SET value = value + ? WHERE name = ?",
                [(hits, "hits"), (misses, "misses")],
            )
        if file_digests:
            conn.executemany(
                "INSERT OR IGNORE INTO skembed_meta VALUES (?, ?)",
                [(_DIGEST_PREFIX + json.dumps(list(k)), v) for k, v in file_digests.items()],
            )

    def keep_notes(self, counts: tuple, file_digests: dict, timeout: float) -> bool:
        """:meth:`_keep_notes` in a transaction of its own, if the file is free within ``timeout`` s.

        For a process that read but stored nothing, as it exits.
        """
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error:
            return False
        try:
            with write_transaction(conn):
                self._keep_notes(conn, counts, file_digests)
            return True
        except sqlite3.Error:
            return False
        finally:
            conn.close()

    # -- observation and clearing -------------------------------------------------------
    def size_bytes(self) -> int:
        return sum(
            os.path.getsize(self.path + suffix)
            for suffix in ("", "-wal", "-shm")
            if os.path.exists(self.path + suffix)
        )

    def info(self) -> tuple:
        """(one dict per model, with ``dim`` and ``n_vectors``; lifetime ``{hits, misses}``)."""

        def read(conn):
            models = {
                digest: {**json.loads(description), "dim": dim, "n_vectors": 0}
                for digest, dim, description in conn.execute(
                    "SELECT model, dim, description FROM skembed_models ORDER BY created"
                )
            }
            for digest, count in conn.execute(
                "SELECT model, COUNT(*) FROM skembed_vectors GROUP BY model"
            ):
                if digest in models:
                    models[digest]["n_vectors"] = count
            stats = dict(conn.execute("SELECT name, value FROM skembed_stats"))
            return list(models.values()), stats

        return self._run(read)

    def clear(self) -> int | None:
        """Delete every vector; a file of another skembed version is rebuilt empty (None)."""
        with self.lock:
            self._damaged.clear()
            try:
                conn = self.connection()
            except CacheVersionError:
                conn = sqlite3.connect(self.path, timeout=WRITE_TIMEOUT, isolation_level=None)
                with write_transaction(conn):
                    for table in TABLES:
                        conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.close()
                self.connection()
                return None
            with write_transaction(conn):
                (n_vectors,) = conn.execute("SELECT COUNT(*) FROM skembed_vectors").fetchone()
                conn.execute("DELETE FROM skembed_vectors")
                conn.execute("DELETE FROM skembed_models")
                conn.execute("UPDATE skembed_stats SET value = 0")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return n_vectors


def vector_rows(digest: bytes, text_keys: list, vectors: np.ndarray):
    """Rows of the vectors table: (model digest, text key, float32 blob, CRC-32)."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    for key, vector in zip(text_keys, vectors):
        blob = vector.tobytes()
        yield digest, key, blob, zlib.crc32(blob)

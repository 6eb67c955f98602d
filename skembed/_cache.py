"""A cache of sentence embeddings: in memory, or on disk in an SQLite file.

This module knows nothing of scikit-learn. :class:`EmbeddingCache` is a
light handle (it pickles as its path); the stores behind it are process-wide,
so every clone of an estimator in a process shares one store, one SQLite
connection and one set of hit/miss counters.

A vector is stored under two keys:

* the **model key**, a digest of everything that changes a vector: the
  model's identity (files or hub commit, see :mod:`skembed._fingerprint`),
  backend, precision, device type, max_seq_length, pooling, normalisation and
  the format of this key;
* the **text key**, the 16-byte blake2b digest of the text.

The disk store is an SQLite database in WAL mode: readers never wait, writers
take turns, and every write is one transaction, so a process killed mid-write
leaves no partial vector. Each vector is a raw little-endian float32 blob with
a CRC-32; a vector whose length or checksum is wrong is dropped and recomputed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from ._engine import EncoderConfig, get_encoder
from ._fingerprint import file_digests, learn_file_digests, model_identity

SCHEMA_NAME = "skembed-embedding-cache"
SCHEMA_VERSION = 1
#: Bump when the engine's computation changes in a way that changes vectors.
KEY_VERSION = 2  # 2: chunked batching (2026-11-28)
#: SQLite page size of new cache files (bytes). With 4 KB pages, vectors of
#: 256 dimensions or more spill into overflow pages: 3x the file, slower reads.
PAGE_SIZE = 32768
#: Bytes of a cache file SQLite reads through a memory map.
MMAP_BYTES = 2**30
#: Name prefix of the model-file digests kept in ``skembed_meta``.
_DIGEST_PREFIX = "file-digest "
#: Texts per ``IN (...)`` query.
_CHUNK = 900
#: Bytes of vectors a process keeps in memory in front of a cache file.
FRONT_MAX_BYTES = 512 * 2**20
_TABLES = ("skembed_meta", "skembed_models", "skembed_vectors", "skembed_stats")
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
    """A cache file that skembed cannot use: foreign, corrupted or of another version."""


@dataclass(frozen=True)
class ModelKey:
    """Digest of everything that changes a vector, and its readable form."""

    digest: bytes
    description: dict


@functools.lru_cache(maxsize=None)
def _device_type(device: str) -> str:
    if device == "auto":
        from ._engine import resolve_device

        device = resolve_device(device)
    return device.split(":")[0]


def model_key(config: EncoderConfig, *, normalize: bool) -> ModelKey | None:
    """The model key of vectors computed with ``config``; None if the model is unknown yet."""
    identity = model_identity(config.model, config.revision)
    if identity is None:
        return None
    description = {
        "key_version": KEY_VERSION,
        "identity": identity,
        "backend": config.backend,
        "pooling": "model modules" if config.backend == "sentence-transformers" else "mask mean",
        "precision": config.precision,
        "device_type": _device_type(config.device),
        "max_seq_length": config.max_seq_length,
        "normalize": bool(normalize),
        "trust_remote_code": bool(config.trust_remote_code),
    }
    digest = hashlib.blake2b(
        json.dumps(description, sort_keys=True).encode(), digest_size=16
    ).digest()
    return ModelKey(digest, {"model": config.model, **description})


def text_keys(texts: list) -> list:
    """16-byte blake2b digests of texts (of their UTF-8 bytes)."""
    blake2b = hashlib.blake2b
    return [blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts]


def text_key(text: str) -> bytes:
    """16-byte blake2b digest of a text."""
    return text_keys([text])[0]


class _Store:
    """What both stores count; ``fetch`` and ``put`` are theirs."""

    def __init__(self):
        self.hits = 0
        self.misses = 0
        self.lock = threading.RLock()

    def count(self, hits: int, misses: int) -> None:
        with self.lock:
            self.hits += hits
            self.misses += misses

    def load_file_digests(self) -> None:
        """Learn the model-file digests kept by the store (none in memory)."""

    def save_file_digests(self) -> None:
        """Keep this process's model-file digests in the store (not in memory)."""


class _MemoryStore(_Store):
    """Vectors in one growing array per model key, for the life of the process.

    ``index[digest]`` maps a text to its row in ``pools[digest]``, so a lookup
    is one fancy-indexing copy.
    """

    kind = "memory"

    def __init__(self, max_bytes: int | None = None):
        super().__init__()
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.index: dict = {}
        self.pools: dict = {}
        self.dims: dict = {}
        self.descriptions: dict = {}

    def dimension(self, key: ModelKey) -> int | None:
        return self.dims.get(key.digest)

    def fetch(self, key: ModelKey, texts: list, dim: int):
        with self.lock:
            index = self.index.get(key.digest)
            if index is None:
                return np.empty((len(texts), dim), dtype=np.float32), list(range(len(texts)))
            get = index.get
            rows = np.fromiter((get(t, -1) for t in texts), dtype=np.intp, count=len(texts))
            out = self.pools[key.digest][rows]
        return out, np.flatnonzero(rows < 0).tolist()

    def put(self, key: ModelKey, texts: list, vectors: np.ndarray) -> None:
        with self.lock:
            if self.max_bytes is not None and self.nbytes + vectors.nbytes > self.max_bytes:
                self.clear(counts=False)
            dim = self.dims.setdefault(key.digest, vectors.shape[1])
            _check_dim(dim, vectors, key)
            self.descriptions[key.digest] = key.description
            index = self.index.setdefault(key.digest, {})
            if index:
                first: dict = {}
                for i, text in enumerate(texts):
                    if text not in index:
                        first.setdefault(text, i)
                if not first:
                    return
            else:  # a first put: every text is new (a repeated one keeps its last row)
                first = dict(zip(texts, range(len(texts))))
            # All new and distinct (a first read): no fancy-indexing copy.
            new = slice(None) if len(first) == len(texts) else list(first.values())
            pool = self.pools.get(key.digest, np.empty((0, dim), dtype=np.float32))
            size, n_new = len(index), len(first)
            if size + n_new > len(pool):
                grown = np.empty((max(2 * len(pool), size + n_new, 1024), dim), np.float32)
                grown[:size] = pool[:size]
                pool = grown
            pool[size : size + n_new] = vectors[new]
            self.pools[key.digest] = pool
            index.update(zip(first, range(size, size + n_new)))
            self.nbytes += n_new * 4 * dim

    def info(self) -> dict:
        with self.lock:
            models = [
                {**self.descriptions[d], "dim": self.dims[d], "n_vectors": len(index)}
                for d, index in self.index.items()
            ]
        return {
            "path": None,
            "kind": self.kind,
            "size_bytes": sum(m["dim"] * 4 * m["n_vectors"] for m in models),
            "n_vectors": sum(m["n_vectors"] for m in models),
            "models": models,
            "hits": self.hits,
            "misses": self.misses,
        }

    def clear(self, counts: bool = True) -> int:
        with self.lock:
            n_vectors = sum(len(index) for index in self.index.values())
            self.index.clear()
            self.pools.clear()
            self.dims.clear()
            self.descriptions.clear()
            self.nbytes = 0
            if counts:
                self.hits = self.misses = 0
        return n_vectors


def _check_dim(dim: int, vectors: np.ndarray, key: ModelKey) -> None:
    if vectors.shape[1] != dim:
        raise CacheError(
            f"The cache holds {dim}-dimensional vectors for model {key.description['model']!r} "
            f"but the model now gives {vectors.shape[1]} dimensions; clear the cache."
        )


class _SQLiteStore(_Store):
    """Vectors in an SQLite file, shared by every process that opens it."""

    kind = "sqlite"

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._conn = None
        self._pid = None
        # Vectors read or written by this process, served without a query.
        # They are never stale: a model key's vectors never change.
        self.front = _MemoryStore(max_bytes=FRONT_MAX_BYTES)
        self._digests_pid = None
        self._saved_digests: set = set()

    # -- connection and schema ------------------------------------------------
    def _error(self, problem: str) -> CacheError:
        return CacheError(
            f"{self.path!r} is not a usable skembed embedding cache: {problem}. Delete the "
            "file, or choose another path for the cache."
        )

    def _connection(self) -> sqlite3.Connection:
        """The connection of this process (a forked child opens its own)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=120, isolation_level=None, check_same_thread=False
        )
        try:
            # Only takes effect on a new file: a vector then fits in its leaf
            # page instead of spilling into an overflow page of its own.
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")  # reads without a copy per page
            self._check_schema(conn, create=True)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._error(str(exc)) from None
        except CacheError:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _check_schema(self, conn, *, create: bool) -> None:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables and create:
            with _transaction(conn):
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
            raise CacheError(
                f"{self.path!r} was written by another version of skembed (cache schema "
                f"{meta.get('version')}, this version reads {SCHEMA_VERSION}). Empty it with "
                f"`skembed cache clear {self.path}`."
            )
        if not set(_TABLES) <= tables:
            raise self._error(f"tables {sorted(set(_TABLES) - tables)} are missing")

    def _run(self, function, *args):
        """Run ``function(conn, *args)`` under the store's lock, with clear errors."""
        with self.lock:
            conn = self._connection()
            try:
                return function(conn, *args)
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise
                raise self._error(str(exc)) from None

    # -- model-file digests -------------------------------------------------------
    # A new process would hash a 540 MB weight file before its first cached
    # read; the file keeps the digests, valid while path, size, mtime and inode match.
    def load_file_digests(self) -> None:
        if self._digests_pid == os.getpid():
            return
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
        learn_file_digests(known)
        self._saved_digests = set(known)
        self._digests_pid = os.getpid()

    def save_file_digests(self) -> None:
        new = {k: v for k, v in file_digests().items() if k not in self._saved_digests}
        if not new:
            return

        def insert(conn):
            with _transaction(conn):
                conn.executemany(
                    "INSERT OR IGNORE INTO skembed_meta VALUES (?, ?)",
                    [(_DIGEST_PREFIX + json.dumps(list(k)), v) for k, v in new.items()],
                )

        try:
            self._run(insert)
        except sqlite3.OperationalError:  # the file is busy: next time
            return
        self._saved_digests |= set(new)

    # -- vectors ----------------------------------------------------------------
    def dimension(self, key: ModelKey) -> int | None:
        row = self._run(
            lambda c: c.execute(
                "SELECT dim FROM skembed_models WHERE model=?", (key.digest,)
            ).fetchone()
        )
        return None if row is None else int(row[0])

    def fetch(self, key: ModelKey, texts: list, dim: int):
        out, missing = self.front.fetch(key, texts, dim)
        if not missing:
            return out, missing
        everything = len(missing) == len(texts)
        todo = texts if everything else [texts[i] for i in missing]
        rows = np.arange(len(texts)) if everything else np.asarray(missing)
        found = self._fetch_file(key, todo, dim, out, rows)
        if found.all():
            self.front.put(key, todo, out if everything else out[rows])
        elif found.any():
            self.front.put(key, [t for t, f in zip(todo, found) if f], out[rows[found]])
        return out, rows[~found].tolist()

    def _fetch_file(self, key: ModelKey, texts: list, dim: int, out: np.ndarray,
                    rows: np.ndarray) -> np.ndarray:
        """Write the file's vectors of ``texts`` into ``out[rows]``; which were found."""
        keys = text_keys(texts)
        index_of = dict(zip(keys, range(len(keys))))
        out_rows = rows.tolist()
        found = np.zeros(len(texts), dtype=bool)
        nbytes = 4 * dim
        bad = []
        crc32, frombuffer = zlib.crc32, np.frombuffer
        for text, blob, crc in self._run(self._select, key.digest, keys):
            if len(blob) == nbytes and crc32(blob) == crc:
                i = index_of[text]
                out[out_rows[i]] = frombuffer(blob, dtype="<f4")
                found[i] = True
            else:
                bad.append(text)
        if bad:
            warnings.warn(
                f"{len(bad)} vector(s) in the embedding cache {self.path!r} failed their "
                "length or checksum test; they are recomputed.",
                RuntimeWarning,
                stacklevel=4,
            )
            self._run(self._delete, key.digest, bad)
        return found

    @staticmethod
    def _select(conn, model: bytes, keys: list) -> list:
        rows = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows.extend(
                conn.execute(
                    "SELECT text, vector, crc FROM skembed_vectors "
                    f"WHERE model=? AND text IN ({marks})",
                    (model, *chunk),
                )
            )
        return rows

    @staticmethod
    def _delete(conn, model: bytes, keys: list) -> None:
        with _transaction(conn):
            conn.executemany(
                "DELETE FROM skembed_vectors WHERE model=? AND text=?", [(model, k) for k in keys]
            )

    def put(self, key: ModelKey, texts: list, vectors: np.ndarray) -> None:
        self._run(self._insert, key, texts, vectors)
        self.front.put(key, texts, vectors)

    @staticmethod
    def _insert(conn, key: ModelKey, texts: list, vectors: np.ndarray) -> None:
        with _transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO skembed_models VALUES (?, ?, ?, ?)",
                (key.digest, vectors.shape[1], json.dumps(key.description), time.time()),
            )
            (dim,) = conn.execute(
                "SELECT dim FROM skembed_models WHERE model=?", (key.digest,)
            ).fetchone()
            _check_dim(dim, vectors, key)
            conn.executemany(
                "INSERT OR IGNORE INTO skembed_vectors VALUES (?, ?, ?, ?)",
                _vector_rows(key.digest, texts, vectors),
            )

    def flush_counts(self, hits: int, misses: int) -> None:
        """Add to the file's lifetime counters (skipped if the file is read-only or busy)."""

        def update(conn):
            with _transaction(conn):
                conn.executemany(
                    "UPDATE skembed_stats SET value = value + ? WHERE name = ?",
                    [(hits, "hits"), (misses, "misses")],
                )

        try:
            self._run(update)
        except sqlite3.OperationalError:
            pass

    # -- observation ------------------------------------------------------------
    def size_bytes(self) -> int:
        return sum(
            os.path.getsize(self.path + suffix)
            for suffix in ("", "-wal", "-shm")
            if os.path.exists(self.path + suffix)
        )

    def info(self) -> dict:
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

        models, stats = self._run(read)
        return {
            "path": self.path,
            "kind": self.kind,
            "schema_version": SCHEMA_VERSION,
            "size_bytes": self.size_bytes(),
            "n_vectors": sum(m["n_vectors"] for m in models),
            "models": models,
            "hits": int(stats.get("hits", 0)),
            "misses": int(stats.get("misses", 0)),
            "process_hits": self.hits,
            "process_misses": self.misses,
        }

    def clear(self) -> int | None:
        """Delete every vector; a cache of another skembed version is rebuilt empty."""
        with self.lock:
            self.hits = self.misses = 0
            self.front.clear()
            try:
                conn = self._connection()
            except CacheError as exc:
                if "another version" not in str(exc):
                    raise
                conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
                with _transaction(conn):
                    for table in _TABLES:
                        conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.close()
                self._connection()
                return None
            with _transaction(conn):
                (n_vectors,) = conn.execute("SELECT COUNT(*) FROM skembed_vectors").fetchone()
                conn.execute("DELETE FROM skembed_vectors")
                conn.execute("DELETE FROM skembed_models")
                conn.execute("UPDATE skembed_stats SET value = 0")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return n_vectors


def _vector_rows(model: bytes, texts: list, vectors: np.ndarray):
    """Rows of the vectors table: (model, text key, float32 blob, CRC-32)."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    for key, vector in zip(text_keys(texts), vectors):
        blob = vector.tobytes()
        yield model, key, blob, zlib.crc32(blob)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any error."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False


_STORES: dict = {}
_STORES_LOCK = threading.Lock()
_LOADED_IDENTITY: dict = {}
_UNRESOLVED_WARNED: set = set()


class EmbeddingCache:
    """Where embeddings are kept between calls, clones and processes.

    Pass it (or simply a path, or ``"memory"``) as the ``cache`` parameter of
    :class:`~skembed.EmbeddingVectorizer`. A vector is served only when the
    model's files (or hub commit), backend, precision, device type,
    max_seq_length, pooling and normalisation are those it was computed with.

    Parameters
    ----------
    path : str, path-like or None, default=None
        An SQLite file, created if absent and shared safely by several
        processes; None keeps the vectors in this process's memory.

    Attributes
    ----------
    path : str or None
        Absolute path of the file; None for the in-memory cache.

    Examples
    --------
    >>> import tempfile, os
    >>> from skembed import EmbeddingCache, EmbeddingVectorizer
    >>> cache = EmbeddingCache(os.path.join(tempfile.mkdtemp(), "embeddings.sqlite"))
    >>> vectorizer = EmbeddingVectorizer(MINILM, cache=cache)
    >>> X = vectorizer.fit_transform(["A man plays a guitar.", "A dog runs."])
    >>> X = vectorizer.transform(["A dog runs."])  # served by the cache
    >>> cache.info()["n_vectors"], cache.stats()
    (2, {'hits': 1, 'misses': 2})
    """

    def __init__(self, path=None):
        if path is not None and not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"EmbeddingCache(path) takes a str, a path-like or None, got "
                f"{type(path).__name__}."
            )
        self.path = None if path is None else os.path.abspath(os.path.expanduser(path))

    def __reduce__(self):
        return (type(self), (self.path,))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __eq__(self, other):
        return type(other) is type(self) and other.path == self.path

    def __hash__(self):
        return hash((type(self), self.path))

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r})"

    def _store(self):
        with _STORES_LOCK:
            store = _STORES.get(self.path)
            if store is None:
                store = _MemoryStore() if self.path is None else _SQLiteStore(self.path)
                _STORES[self.path] = store
            return store

    # -- used by the estimators ---------------------------------------------------
    def _model_key(self, config: EncoderConfig, normalize: bool) -> ModelKey | None:
        store = self._store()
        store.load_file_digests()
        key = model_key(config, normalize=normalize)
        store.save_file_digests()
        return key

    def dimension(self, config: EncoderConfig, *, normalize: bool) -> int:
        """Dimension of the model's vectors: from the cache if it knows it, else loading it."""
        key = self._model_key(config, normalize)
        dim = None if key is None else self._store().dimension(key)
        if dim is None:
            if key is not None:
                _note_load(config, key)
            dim = get_encoder(config).dimension
        return dim

    def embed(self, config: EncoderConfig, texts: list, *, normalize: bool, encode) -> np.ndarray:
        """Vectors of distinct ``texts``: cached ones read back, the others ``encode``-d and kept.

        ``encode(texts)`` computes the vectors of the texts the cache lacks;
        it is not called (and the model is not loaded) when all are cached.
        """
        key = self._model_key(config, normalize)
        if key is None:
            get_encoder(config).loaded  # noqa: B018 - download the model, then read its commit
            key = self._model_key(config, normalize)
        if key is None:
            if config.model not in _UNRESOLVED_WARNED:
                _UNRESOLVED_WARNED.add(config.model)
                warnings.warn(
                    f"The commit of hub model {config.model!r} cannot be resolved, so its "
                    "vectors are not cached.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return encode(texts)
        store = self._store()
        dim = store.dimension(key)
        if not texts:
            return encode(texts) if dim is None else np.empty((0, dim), dtype=np.float32)
        if dim is None:
            out, missing = None, list(range(len(texts)))
        else:
            out, missing = store.fetch(key, texts, dim)
        store.count(len(texts) - len(missing), len(missing))
        if missing:
            todo = [texts[i] for i in missing]
            _note_load(config, key)
            computed = encode(todo)
            if out is None:
                out = np.empty((len(texts), computed.shape[1]), dtype=np.float32)
            out[missing] = computed
            if _LOADED_IDENTITY[config] == key.description["identity"]:
                store.put(key, todo, computed)
            else:
                warnings.warn(
                    f"The files of model {config.model!r} changed since it was loaded in "
                    "this process; its new vectors are not cached.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        if isinstance(store, _SQLiteStore):
            store.flush_counts(len(texts) - len(missing), len(missing))
        return out

    # -- observation ----------------------------------------------------------------
    def stats(self) -> dict:
        """Hits and misses of this cache in this process since it was opened or cleared."""
        store = self._store()
        return {"hits": store.hits, "misses": store.misses}

    def info(self) -> dict:
        """What the cache holds: vectors per model, size on disk and lifetime hit/miss counts."""
        return self._store().info()

    def clear(self) -> int | None:
        """Delete every vector; returns how many (None for a file of another version).

        A file written by another version of skembed is emptied and rebuilt.
        """
        return self._store().clear()


def _note_load(config: EncoderConfig, key: ModelKey) -> None:
    """Remember the identity of the files the process's encoder loads (or loaded)."""
    if get_encoder(config).is_loaded:
        _LOADED_IDENTITY.setdefault(config, key.description["identity"])
    else:
        _LOADED_IDENTITY[config] = key.description["identity"]


def resolve_cache(cache) -> EmbeddingCache | None:
    """The cache meant by an estimator's ``cache`` parameter."""
    if cache is None or isinstance(cache, EmbeddingCache):
        return cache
    if isinstance(cache, str) and cache == "memory":
        return EmbeddingCache(None)
    if isinstance(cache, str | os.PathLike):
        return EmbeddingCache(cache)
    raise TypeError(
        "cache must be None, 'memory', a path or an EmbeddingCache, got "
        f"{type(cache).__name__}."
    )

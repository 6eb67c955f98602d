"""A cache of sentence embeddings: in memory, or on disk in an SQLite file.

The cache only stores. The vectorizer asks it for a :func:`model_key`, then
``lookup(key, texts) -> (vectors, missing)``, encodes what is missing and
``store``-s it; the cache never loads a model and imports neither the engine,
torch nor scikit-learn.

A vector is stored under two keys:

* the **model key**, a digest of everything that changes a vector: the
  identity of the model's files (or hub commit, see :mod:`skembed._fingerprint`),
  the device type, the model options that change vectors (marked in
  :mod:`skembed._config`) and the version of this key. Normalisation is not in
  it: vectors are stored as the model gives them and normalised after reading,
  so normalised and raw uses share them;
* the **text key**, the 16-byte blake2b digest of the text.

:class:`EmbeddingCache` is a light handle (it pickles as its path); the state
behind it is process-wide, so every clone of an estimator in a process shares
one store, one SQLite connection and one set of hit/miss counters.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
from dataclasses import dataclass

import numpy as np

from ._fingerprint import file_digests, learn_file_digests, model_identity
from ._memory_store import MemoryStore
from ._warnings import warn
from ._config import EncoderConfig, cache_key_options, load_arguments
from ._sqlite_store import (  # noqa: F401 - PAGE_SIZE and CacheVersionError re-exported
    PAGE_SIZE,
    SCHEMA_VERSION,
    CacheError,
    CacheUnavailableError,
    CacheVersionError,
    SQLiteStore,
)

#: Bump when the engine's computation changes in a way that changes vectors.
KEY_VERSION = 3  # 3: prompts and truncate_dim, texts no longer stripped, raw vectors (2026-12-01)
#: Bytes of vectors a process keeps in memory in front of a cache file.
FRONT_MAX_BYTES = 512 * 2**20
#: Bytes of vectors a process keeps to store again after a write failed.
UNSAVED_MAX_BYTES = 256 * 2**20
#: The file a cache folder holds (``cache="my_folder/"``).
FILE_IN_FOLDER = "skembed-cache.sqlite"
#: Seconds a process waits, as it exits, to write its last counts and digests to a file.
EXIT_WRITE_TIMEOUT = 0.5


class CacheWarning(RuntimeWarning):
    """A cache file that could not be read or written this time; the vectors were computed.

    A cache is an optimisation: a locked, full or failing disk never costs
    the work of a ``transform``. Only a corrupt or foreign file is an error.
    """


@dataclass(frozen=True)
class ModelKey:
    """Digest of everything that changes a vector, and its readable form."""

    digest: bytes
    description: dict


def model_key(config: EncoderConfig, device_type: str) -> ModelKey | None:
    """The model key of vectors computed with ``config`` on a ``device_type``.

    None if the model is unknown yet (a hub model neither downloaded nor reachable).
    """
    identity = model_identity(config.model, load_arguments(config))
    if identity is None:
        return None
    description = {
        "key_version": KEY_VERSION,
        "identity": identity,
        "device_type": device_type,
        **cache_key_options(config),
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


class _State:
    """What a process holds for one cache path: its stores and its counters."""

    def __init__(self, path: str | None):
        self.lock = threading.Lock()
        self.hits = self.misses = 0
        self.pending = (0, 0)  # counts not yet in the file
        self.saved_digests: set = set()
        self.unsaved: list = []  # (key, texts, vectors) a failed write could not store
        self.digests_pid = None
        self.opened_pid = None
        if path is None:
            self.front, self.file = MemoryStore(), None
        else:
            self.front, self.file = MemoryStore(FRONT_MAX_BYTES), SQLiteStore(path)

    def count(self, hits: int, misses: int) -> None:
        with self.lock:
            self.hits += hits
            self.misses += misses
            self.pending = (self.pending[0] + hits, self.pending[1] + misses)

    def take_pending(self) -> tuple:
        with self.lock:
            pending, self.pending = self.pending, (0, 0)
        return pending

    def take_new_digests(self) -> dict:
        """The model-file digests this process knows and the file does not keep yet."""
        with self.lock:
            new = {k: v for k, v in file_digests().items() if k not in self.saved_digests}
            self.saved_digests |= set(new)
        return new

    def give_back(self, pending: tuple, digests: dict) -> None:
        """Counts and digests taken for a write that failed: they go with the next one."""
        with self.lock:
            self.pending = (self.pending[0] + pending[0], self.pending[1] + pending[1])
            self.saved_digests -= set(digests)

    def keep_unsaved(self, key, texts: list, vectors: np.ndarray) -> None:
        """Vectors a write could not store, for the next write (the newest, within a bound)."""
        with self.lock:
            self.unsaved.append((key, texts, vectors))
            while sum(v.nbytes for _, _, v in self.unsaved) > UNSAVED_MAX_BYTES:
                self.unsaved.pop(0)

    def take_unsaved(self) -> list:
        with self.lock:
            unsaved, self.unsaved = self.unsaved, []
        return unsaved


_STATES: dict = {}
_STATES_LOCK = threading.Lock()


def _state(path: str | None) -> _State:
    with _STATES_LOCK:
        state = _STATES.get(path)
        if state is None:
            state = _STATES[path] = _State(path)
        return state


@atexit.register
def _write_notes_at_exit() -> None:
    """Write what this process's reads learnt (counts, digests) to each file, if it is free."""
    for state in list(_STATES.values()):
        if state.file is None or state.digests_pid != os.getpid():
            continue
        pending, digests = state.take_pending(), state.take_new_digests()
        if any(pending) or digests:
            state.file.keep_notes(pending, digests, EXIT_WRITE_TIMEOUT)


def _cache_file(path) -> str:
    """The SQLite file a ``cache`` path means: a folder holds :data:`FILE_IN_FOLDER`."""
    given = os.path.expanduser(os.fspath(path))
    path = os.path.abspath(given)
    if os.path.isdir(path) or given.endswith((os.sep, "/")):
        return os.path.join(path, FILE_IN_FOLDER)
    return path


class EmbeddingCache:
    """Where embeddings are kept between calls, clones and processes.

    Pass it (or simply a path, or ``"memory"``) as the ``cache`` parameter of
    :class:`~skembed.EmbeddingVectorizer`. A vector is served only when the
    model's files (or hub commit), backend, precision, device type,
    max_seq_length, prompt and truncate_dim are those it was computed with;
    vectors are stored as the model gives them, and normalised after reading.

    Parameters
    ----------
    path : str, path-like or None, default=None
        An SQLite file, created if absent and shared safely by several
        processes, or a folder, which then holds the file
        ``skembed-cache.sqlite``; None keeps the vectors in this process's
        memory.

    Attributes
    ----------
    path : str or None
        Absolute path of the file; None for the in-memory cache.

    Examples
    --------
    >>> from skembed import EmbeddingCache, EmbeddingVectorizer
    >>> cache = EmbeddingCache(TMP)  # a folder (here pytest's): the file goes inside
    >>> cache.path.endswith("skembed-cache.sqlite")
    True
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
        self.path = None if path is None else _cache_file(path)

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

    @property
    def _state(self) -> _State:
        return _state(self.path)

    # -- used by the estimators ----------------------------------------------------
    def open(self) -> None:
        """Create or open the file now; a :class:`CacheError` if it cannot be used.

        Estimators call it before any text is embedded, so a cache out of
        reach never costs the work done before the first write; every other
        use of the cache opens it too.
        """
        if self.path is None:
            return
        remedy = "Choose another path for the cache, or make this one writable."
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"Cannot create the folder {folder!r} of the embedding cache "
                f"{self.path!r}: {exc.strerror or exc}. {remedy}"
            ) from None
        if os.path.exists(self.path) and (
            not os.path.isfile(self.path)
            or not os.access(self.path, os.W_OK)
            or not os.stat(self.path).st_mode & 0o222
        ):
            what = "not a file" if not os.path.isfile(self.path) else "read-only"
            raise CacheError(f"The embedding cache {self.path!r} is {what}. {remedy}")
        if not os.access(folder, os.W_OK):
            raise CacheError(
                f"The folder {folder!r} of the embedding cache is not writable (SQLite writes "
                f"its journal beside the file). {remedy}"
            )
        self._state.file.connection()
        self._state.opened_pid = os.getpid()

    def _ensure_open(self) -> None:
        """:meth:`open` once per process (every use of the cache starts here)."""
        if self.path is not None and self._state.opened_pid != os.getpid():
            self.open()

    def model_key(self, config: EncoderConfig, device_type: str) -> ModelKey | None:
        """The model key of ``config`` run on ``device_type``; None if the model is unknown yet.

        A cache file keeps the digests of model files, so that a new process
        need not read a 540 MB weight file again before its first cached read.
        """
        self._ensure_open()
        state = self._state
        if state.file is not None and state.digests_pid != os.getpid():
            known = state.file.file_digests()
            learn_file_digests(known)
            state.saved_digests, state.digests_pid = set(known), os.getpid()
        return model_key(config, device_type)

    def dimension(self, key: ModelKey) -> int | None:
        """Dimension of the vectors stored under ``key``; None if none are."""
        self._ensure_open()
        state = self._state
        dim = state.front.dimension(key.digest)
        if dim is None and state.file is not None:
            dim = state.file.dimension(key.digest)
        return dim

    def lookup(self, key: ModelKey, texts: list) -> tuple:
        """``(vectors, missing)``: float32 rows of the distinct ``texts``, and the positions
        of those it lacks (their rows are undefined). ``vectors`` is None when the cache
        holds nothing of ``key``.
        """
        state = self._state
        dim = self.dimension(key)
        if dim is None:
            state.count(0, len(texts))
            return None, list(range(len(texts)))
        out = np.empty((len(texts), dim), dtype=np.float32)
        missing = state.front.lookup(key.digest, texts, out)
        if missing and state.file is not None:
            rows = np.asarray(missing, dtype=np.intp)
            todo = [texts[i] for i in missing]
            part = np.empty((len(todo), dim), dtype=np.float32)
            try:
                found = state.file.lookup(key.digest, text_keys(todo), part)
            except CacheUnavailableError as exc:
                warn(f"The embedding cache {self.path!r} could not be read ({exc.cause}): "
                     f"the {len(todo)} vectors not in memory are computed.", CacheWarning)
                found = np.zeros(len(todo), dtype=bool)
            out[rows[found]] = part[found]
            if found.any():
                state.front.store(key.digest, key.description,
                                  [t for t, f in zip(todo, found) if f], part[found])
            missing = rows[~found].tolist()
        state.count(len(texts) - len(missing), len(missing))
        return out, missing

    def store(self, key: ModelKey, texts: list, vectors: np.ndarray) -> None:
        """Keep the vectors of distinct ``texts`` under ``key``."""
        state = self._state
        dim = self.dimension(key)
        if dim is not None and vectors.shape[1] != dim:
            raise CacheError(
                f"The cache holds {dim}-dimensional vectors for model "
                f"{key.description['model']!r} but the model now gives {vectors.shape[1]} "
                "dimensions; clear the cache."
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        state.front.store(key.digest, key.description, texts, vectors)
        if state.file is None:
            return
        # What an earlier write could not store goes first, in transactions of its own;
        # after a failure the rest waits for the next write (a lock would make each wait).
        todo = [*state.take_unsaved(), (key, texts, vectors)]
        for position, (item_key, item_texts, item_vectors) in enumerate(todo):
            pending, digests = state.take_pending(), state.take_new_digests()
            try:
                state.file.store(item_key.digest, item_key.description, text_keys(item_texts),
                                 item_vectors, counts=pending, file_digests=digests)
            except CacheUnavailableError as exc:
                state.give_back(pending, digests)
                for item in todo[position:]:
                    state.keep_unsaved(*item)
                n_vectors = sum(len(item[1]) for item in todo[position:])
                warn(f"The embedding cache {self.path!r} could not store {n_vectors} new "
                     f"vectors ({exc.cause}). They were computed and are returned; the file "
                     "is intact (the write was rolled back), and this process keeps them to "
                     "store with its next write.", CacheWarning)
                return

    # -- observation -------------------------------------------------------------------
    def stats(self) -> dict:
        """Hits and misses of this cache in this process since it was opened or cleared."""
        state = self._state
        return {"hits": state.hits, "misses": state.misses}

    def info(self) -> dict:
        """What the cache holds: vectors per model, size on disk, lifetime hit/miss counts.

        A file's lifetime counts are written along with the vectors a process
        stores, and when it exits (if the file is free then): a read never
        writes to the file.
        """
        self._ensure_open()
        state = self._state
        if state.file is None:
            models = state.front.info()
            return {
                "path": None, "kind": "memory",
                "size_bytes": sum(m["dim"] * 4 * m["n_vectors"] for m in models),
                "n_vectors": sum(m["n_vectors"] for m in models),
                "models": models, "hits": state.hits, "misses": state.misses,
            }
        models, counts = state.file.info()
        return {
            "path": self.path, "kind": "sqlite",
            "schema_version": SCHEMA_VERSION,
            "size_bytes": state.file.size_bytes(),
            "n_vectors": sum(m["n_vectors"] for m in models),
            "models": models,
            "hits": int(counts.get("hits", 0)) + state.pending[0],
            "misses": int(counts.get("misses", 0)) + state.pending[1],
            "process_hits": state.hits,
            "process_misses": state.misses,
        }

    def clear(self) -> int | None:
        """Delete every vector; returns how many (None for a file of another version).

        A file written by another version of skembed is emptied and rebuilt.
        """
        state = self._state
        with state.lock:
            state.hits = state.misses = 0
            state.pending = (0, 0)
        n_memory = state.front.clear()
        return n_memory if state.file is None else state.file.clear()


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

"""Vectors kept in this process's memory, under a model digest and a text.

The store of ``cache="memory"``, and the front of every SQLite store (the
vectors a process read or wrote are served again without a query). It only
stores: keys, counting and errors are the cache's.
"""

from __future__ import annotations

import threading

import numpy as np


class MemoryStore:
    """One growing array per model digest, and a text-to-row map beside it.

    Parameters
    ----------
    max_bytes : int or None
        Once its arrays would pass this size, the store starts again empty
        (it is a front: the file still has them). None: no limit. What counts
        is the memory the arrays hold, room to grow included, not only the
        vectors in them.
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes
        self.nbytes = 0  # bytes the arrays hold, spare rows included
        self.lock = threading.Lock()
        self._rows: dict = {}  # digest -> {text: row}
        self._pools: dict = {}  # digest -> (rows, dim) float32 array
        self._descriptions: dict = {}

    def dimension(self, digest: bytes) -> int | None:
        pool = self._pools.get(digest)
        return None if pool is None else pool.shape[1]

    def lookup(self, digest: bytes, texts: list, out: np.ndarray) -> list:
        """Write the vectors of ``texts`` it holds into ``out``; the positions it lacks."""
        with self.lock:
            rows_of = self._rows.get(digest)
            if rows_of is None:
                return list(range(len(texts)))
            get = rows_of.get
            rows = np.fromiter((get(t, -1) for t in texts), dtype=np.intp, count=len(texts))
            found = rows >= 0
            if found.all():
                out[:] = self._pools[digest][rows]
            else:
                out[found] = self._pools[digest][rows[found]]
        return np.flatnonzero(~found).tolist()

    def store(self, digest: bytes, description: dict, texts: list, vectors: np.ndarray) -> None:
        """Keep the vectors of distinct ``texts``; a text already held keeps its vector."""
        with self.lock:
            if self.max_bytes is not None and self.nbytes + self._growth(digest, vectors) \
                    > self.max_bytes:
                self._clear()
            rows_of = self._rows.setdefault(digest, {})
            self._descriptions[digest] = description
            if rows_of:
                new = [i for i, text in enumerate(texts) if text not in rows_of]
                if not new:
                    return
            else:  # a first store: every text is new
                new = slice(None)
            fresh = vectors[new]
            pool = self._pools.get(digest, np.empty((0, vectors.shape[1]), dtype=np.float32))
            size = len(rows_of)
            if size + len(fresh) > len(pool):
                grown = np.empty((self._capacity(len(pool), size + len(fresh)), vectors.shape[1]),
                                 np.float32)
                grown[:size] = pool[:size]
                self.nbytes += grown.nbytes - pool.nbytes
                pool = grown
            pool[size : size + len(fresh)] = fresh
            self._pools[digest] = pool
            new_texts = texts if isinstance(new, slice) else [texts[i] for i in new]
            rows_of.update(zip(new_texts, range(size, size + len(fresh))))

    @staticmethod
    def _capacity(rows: int, needed: int) -> int:
        """Rows of a pool grown from ``rows`` to hold ``needed``: doubling, as lists grow."""
        return max(2 * rows, needed, 1024)

    def _growth(self, digest: bytes, vectors: np.ndarray) -> int:
        """Bytes the store would add to hold ``vectors`` (at most: all of them new)."""
        pool = self._pools.get(digest)
        rows, size = (0, 0) if pool is None else (len(pool), len(self._rows[digest]))
        if size + len(vectors) <= rows:
            return 0
        return (self._capacity(rows, size + len(vectors)) - rows) * 4 * vectors.shape[1]

    def info(self) -> list:
        """One dict per model: its description, ``dim`` and ``n_vectors``."""
        with self.lock:
            return [
                {**self._descriptions[d], "dim": self._pools[d].shape[1], "n_vectors": len(rows)}
                for d, rows in self._rows.items()
            ]

    def clear(self) -> int:
        """Forget every vector; returns how many there were."""
        with self.lock:
            return self._clear()

    def _clear(self) -> int:
        n_vectors = sum(len(rows) for rows in self._rows.values())
        self._rows.clear()
        self._pools.clear()
        self._descriptions.clear()
        self.nbytes = 0
        return n_vectors

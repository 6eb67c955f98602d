"""Pairs of rows drawn for fine-tuning, in memory and time that grow with the pairs drawn.

Drawing ``n_pairs`` pairs among ``n`` rows never builds the ``n * (n - 1) / 2``
candidates: a pair is drawn uniformly among those of one class (or of two
classes) by drawing its rows, and duplicates are rejected. Only when the pool of
candidate pairs is small (at most twice the pairs asked for) is it listed, and
then used up before any pair repeats.
"""

from __future__ import annotations

import numpy as np


class _Classes:
    """The rows of each class: ``members[starts[c]:starts[c + 1]]`` are class ``c``'s."""

    def __init__(self, label_ids: np.ndarray):
        self.n = len(label_ids)
        self.sizes = np.bincount(label_ids)
        self.members = np.argsort(label_ids, kind="stable")
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])

    def pool(self, same: bool) -> int:
        """How many unordered pairs of distinct rows are of one class (or of two)."""
        within = int((self.sizes * (self.sizes - 1) // 2).sum())
        return within if same else self.n * (self.n - 1) // 2 - within

    def member(self, classes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return self.members[self.starts[classes] + positions]

    def candidates(self, same: bool, m: int, rng) -> tuple:
        """``m`` pairs, each uniform among the pool's (repeats possible)."""
        sizes = self.sizes.astype(np.float64)
        if same:  # a class by its number of pairs, then two distinct members of it
            c = rng.choice(len(sizes), size=m, p=sizes * (sizes - 1) / (sizes * (sizes - 1)).sum())
            p = rng.integers(0, self.sizes[c])
            q = rng.integers(0, self.sizes[c] - 1)
            q += q >= p
            return self.member(c, p), self.member(c, q)
        # A row by the number of rows outside its class, then a row of another class:
        # each pair of rows of two classes has probability 2 / (2 * pool).
        weights = sizes * (self.n - sizes)
        c = rng.choice(len(sizes), size=m, p=weights / weights.sum())
        first = self.member(c, rng.integers(0, self.sizes[c]))
        d = rng.choice(len(sizes), size=m, p=sizes / sizes.sum())
        while (clash := d == c).any():
            d[clash] = rng.choice(len(sizes), size=int(clash.sum()), p=sizes / sizes.sum())
        return first, self.member(d, rng.integers(0, self.sizes[d]))

    def listing(self, same: bool) -> np.ndarray:
        """Every pair of the pool, as rows ``(first, second)`` (a small pool only)."""
        parts = []
        groups = [self.members[self.starts[c]:self.starts[c + 1]] for c in range(len(self.sizes))]
        for c, rows in enumerate(groups):
            if same:
                i, j = np.triu_indices(len(rows), k=1)
                parts.append(np.stack([rows[i], rows[j]], axis=1))
            else:
                for other in groups[c + 1:]:
                    parts.append(np.stack(np.meshgrid(rows, other, indexing="ij"),
                                          axis=-1).reshape(-1, 2))
        return np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.intp)


def _draw(classes: _Classes, same: bool, count: int, rng) -> np.ndarray:
    """``count`` pairs of the pool, none twice while unused ones remain."""
    pool = classes.pool(same)
    if count == 0:
        return np.empty((0, 2), dtype=np.intp)
    if pool == 0:
        raise ValueError("Sampling pairs needs two texts of one class and two classes.")
    if pool <= 2 * count:  # small: listed, and used up before any pair repeats
        listing = classes.listing(same)
        rounds = -(-count // pool)
        order = np.concatenate([rng.permutation(pool) for _ in range(rounds)])[:count]
        return listing[order]
    seen: dict = {}
    while len(seen) < count:
        first, second = classes.candidates(same, 2 * (count - len(seen)), rng)
        for a, b in zip(first.tolist(), second.tolist()):
            seen.setdefault((min(a, b), max(a, b)), None)
            if len(seen) == count:
                break
    return np.array(list(seen), dtype=np.intp)


def sample_pairs(label_ids, n_pairs: int, seed: int) -> tuple:
    """``(first, second, same)``: ``n_pairs`` pairs of distinct rows, half of one class.

    Half of the pairs (rounded up) are of one class, as SetFit's oversampling
    makes them, the others of two; within each half every pair is equally
    likely, none is drawn twice while unused ones remain, and a row is never
    paired with itself. Memory and time grow with ``n_pairs``, not with the
    square of the rows.

    >>> first, second, same = sample_pairs(np.array([0, 0, 1, 1]), 4, seed=0)
    >>> sorted(zip(first.tolist(), second.tolist(), same.tolist()))
    [(0, 1, True), (0, 2, False), (1, 2, False), (2, 3, True)]
    """
    rng = np.random.default_rng(seed)
    label_ids = np.unique(np.asarray(label_ids), return_inverse=True)[1].ravel()
    classes = _Classes(label_ids)
    n_same = (n_pairs + 1) // 2
    pairs = np.concatenate([_draw(classes, True, n_same, rng),
                            _draw(classes, False, n_pairs - n_same, rng)])
    pairs = pairs[rng.permutation(len(pairs))]
    first, second = pairs[:, 0], pairs[:, 1]
    return first, second, label_ids[first] == label_ids[second]


def sample_any_pairs(n_rows: int, n_pairs: int, seed: int) -> tuple:
    """``(first, second)``: ``n_pairs`` pairs of distinct rows, each equally likely, none
    twice while unused ones remain (memory and time linear in ``n_pairs``).

    >>> first, second = sample_any_pairs(3, 3, seed=0)
    >>> sorted(zip(first.tolist(), second.tolist()))
    [(0, 1), (0, 2), (1, 2)]
    """
    rng = np.random.default_rng(seed)
    pairs = _draw(_Classes(np.zeros(n_rows, dtype=np.intp)), True, n_pairs, rng)
    return pairs[:, 0], pairs[:, 1]

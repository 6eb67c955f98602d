"""Where benchmarks keep what they build: a per-user cache folder, never a fixed /tmp path.

The full-size random copy of the default model (540 MB) and the test suite's tiny
model are built once into ``$SKEMBED_BENCH_CACHE`` (default:
``$XDG_CACHE_HOME/skembed-benchmarks``, else ``~/.cache/skembed-benchmarks``) and reused
by later runs; everything else a benchmark writes goes to a temporary folder it removes.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The folder benchmarks keep their built models in (created if absent)."""
    explicit = os.environ.get("SKEMBED_BENCH_CACHE")
    if explicit:
        folder = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "skembed-benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def random_distiluse_dir() -> Path:
    """Where the full-size random-weight copy of the default model lives (maybe not built)."""
    return cache_dir() / "distiluse-random"


def tiny_model_dir() -> Path:
    """Where the test suite's tiny model lives (maybe not built)."""
    return cache_dir() / "tiny-distilbert"

"""Warnings that point at the user's own line, not at skembed's or scikit-learn's insides."""

from __future__ import annotations

import sys
import warnings


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside skembed and scikit-learn: the user's call."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
        ("skembed", "sklearn")
    ):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type) -> None:
    """Issue ``message`` as a ``category`` warning located at the user's call."""
    warnings.warn(message, category, stacklevel=caller_stacklevel())

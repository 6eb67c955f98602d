"""Every private scikit-learn name skembed uses, imported here and nowhere else.

scikit-learn's parameter validation and feature-name checks are what its own
estimators use, but they live in private modules that may move between
releases: should one move, this is the one file to mend. The module imports
nothing of skembed, so every layer may use it.
"""

from __future__ import annotations

import re

from sklearn.base import _fit_context  # noqa: F401 - re-exported
from sklearn.utils._param_validation import (  # noqa: F401 - re-exported
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import (  # noqa: F401 - re-exported
    _check_feature_names,
    _check_feature_names_in,
    _check_y,
)


class MatchesPattern(Options):
    """A str that fully matches a regular expression, e.g. ``cuda:<index>``.

    scikit-learn's validation takes only its own constraint classes: this one
    is an :class:`Options` (of no fixed value) that matches a pattern instead.

    >>> MatchesPattern(r"cuda:\\d+", "'cuda:<index>'").is_satisfied_by("cuda:1")
    True
    """

    def __init__(self, pattern: str, description: str):
        super().__init__(str, set())
        self.pattern = re.compile(pattern)
        self.description = description

    def is_satisfied_by(self, val) -> bool:
        return isinstance(val, str) and self.pattern.fullmatch(val) is not None

    def __str__(self) -> str:
        return f"a str of the form {self.description}"

"""What fitting means, for both estimators: all or nothing, frozen after, no side effects.

- :func:`all_or_nothing`: a fit that raises (or is interrupted) leaves the
  estimator exactly as it was: still fitted from before, or unfitted.
- :class:`FrozenParameters`: the parameters that decide the vectors are
  captured at fit; using the estimator after one of them changed is an
  error that names it (:class:`ParameterChangedError`), never a silent change.
- :func:`fine_tune`: one fine-tuning lifecycle: a fresh folder, the global
  random generators (``random``, NumPy's, torch's CPU and CUDA) as they were,
  a seed from the estimator's ``random_state`` alone, a
  :class:`~skembed._tuned.TunedEncoder` on success and nothing left on failure.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import shutil
import tempfile
from numbers import Integral

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from ._registry import release_later
from ._tuned import TunedEncoder


class ParameterChangedError(NotFittedError):
    """A parameter that decides the vectors changed after ``fit``: refit, or set it back."""


# -- all or nothing ---------------------------------------------------------------
@contextlib.contextmanager
def all_or_nothing(estimator):
    """Restore ``estimator``'s attributes if the block raises: no half-fitted estimator."""
    before = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(before)
        raise


# -- frozen at fit ------------------------------------------------------------------
def _same(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, os.PathLike | str) and isinstance(b, os.PathLike | str):
        return os.fspath(a) == os.fspath(b)
    if isinstance(a, np.random.RandomState) or isinstance(b, np.random.RandomState):
        return False  # a generator is the same only as itself
    try:
        equal = a == b
    except Exception:  # noqa: BLE001 - incomparable values are different values
        return False
    return bool(equal) if isinstance(equal, bool | np.bool_) else False


_PARAMETER_NAMES: dict = {}


def _parameters(estimator, prefix: str = "") -> dict:
    """``estimator.get_params(deep=True)``, with each class's parameter names read once.

    scikit-learn reads them from ``__init__``'s signature on every call (a
    tenth of a millisecond): too slow for a check made on every transform.
    """
    cls = type(estimator)
    names = _PARAMETER_NAMES.get(cls)
    if names is None:
        names = _PARAMETER_NAMES[cls] = tuple(cls._get_param_names())
    params = {}
    for name in names:
        value = getattr(estimator, name)
        params[prefix + name] = value
        if hasattr(value, "get_params") and not isinstance(value, type):
            params.update(_parameters(value, f"{prefix}{name}__"))
    return params


class FrozenParameters:
    """The parameters of a fitted estimator that decide what it computes.

    Every parameter is frozen but the ``live`` ones (how vectors are computed:
    batch size, device, progress bars, the cache). With ``fine_tune`` off,
    ``fine_tune_params`` and ``random_state`` decide nothing and are not
    frozen. Nested estimators' parameters (``vectorizer__device``) follow the
    same rules.
    """

    def __init__(self, estimator, live: frozenset):
        self._live = live
        self.values = self._frozen(estimator)

    def _frozen(self, estimator) -> dict:
        params = _parameters(estimator)
        ignored = set(self._live)
        for name, value in params.items():
            if name.rpartition("__")[2] == "fine_tune" and not value:
                prefix = name[: -len("fine_tune")]
                ignored |= {prefix + "fine_tune_params", prefix + "random_state"}
        frozen = {}
        for name, value in params.items():
            if name in ignored:
                continue
            if hasattr(value, "get_params"):  # its own parameters are compared one by one
                value = type(value).__name__
            elif isinstance(value, dict | list):
                value = copy.deepcopy(value)  # an edit in place is a change too
            frozen[name] = value
        return frozen

    def __getitem__(self, name):
        return self.values[name]

    def check(self, estimator) -> None:
        """Raise :class:`ParameterChangedError` naming each frozen parameter that changed."""
        now = self._frozen(estimator)
        # A name frozen on one side only (fine_tune_params once fine_tune flips) follows a
        # change that is itself named.
        changed = [name for name in sorted(set(now) & set(self.values))
                   if not _same(now[name], self.values[name])]
        if changed:
            details = "; ".join(f"{name}={self.values.get(name)!r} at fit, {now.get(name)!r} now"
                                for name in changed)
            raise ParameterChangedError(
                f"{type(estimator).__name__}'s parameter(s) {changed} changed after fit "
                f"({details}). They decide the vectors, which fit fixed: fit the estimator "
                "again, or set them back. Only how vectors are computed may change after fit: "
                f"{sorted(name for name in self._live if '__' not in name)}."
            )


# -- one fine-tuning lifecycle ----------------------------------------------------------
def fine_tuning_constraints(*recipe_classes) -> dict:
    """The ``_parameter_constraints`` of the fine-tuning parameters both estimators have."""
    return {
        "fine_tune": ["boolean"],
        "fine_tune_params": [dict, str, *recipe_classes, None],
        "fine_tune_dir": [str, os.PathLike, None],
        "random_state": ["random_state"],
    }


#: The docstring entries of ``fine_tune_dir`` and ``random_state``, the same in both
#: estimators (each formats its docstring with it).
FINE_TUNING_DOC = """\
    fine_tune_dir : str, path-like or None, default=None
        A folder where :meth:`fit` also saves a copy of the fine-tuned
        encoder (a plain sentence-transformers folder, its files replacing
        what is there). The fitted estimator never depends on it: it keeps
        its own copy, and its pickle carries the weights.
    random_state : int, RandomState instance or None, default=None
        Seeds fine-tuning (shuffling, batches, dropout); an int makes it
        reproducible whatever the global random state, which fitting leaves
        untouched.
"""


def training_seed(random_state) -> int:
    """The training seed of an estimator's ``random_state``, drawn without touching NumPy's
    global generator: None draws fresh entropy.

    ``SimilarityRegressor(random_state=n)`` and ``skembed fine-tune --seed n``
    both draw it from ``RandomState(n)``, so they train the same model.

    >>> training_seed(0) == training_seed(np.random.RandomState(0))
    True
    """
    bound = np.iinfo(np.int32).max
    if random_state is None:
        return int(np.random.default_rng().integers(bound))
    if isinstance(random_state, Integral):
        random_state = np.random.RandomState(random_state)
    return int(check_random_state(random_state).randint(bound))


@contextlib.contextmanager
def global_random_state_kept():
    """The global generators of ``random``, NumPy and torch (CPU and every initialised CUDA
    device) are, after the block, as they were before it."""
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def fine_tune(train, *, info: dict, random_state, copy_to=None) -> tuple:
    """Run ``train(folder, seed)`` (it saves a model to ``folder`` and returns its history)
    into a fresh folder; ``(TunedEncoder, history)``.

    The global random generators are kept; the seed comes from
    ``random_state`` alone. On failure the folder is removed and nothing else
    changed. ``copy_to`` (the estimator's ``fine_tune_dir``) also gets a copy.
    """
    seed = training_seed(random_state)
    folder = tempfile.mkdtemp(prefix="skembed-finetuned-")
    try:
        with global_random_state_kept():
            history = train(folder, seed)
        tuned = TunedEncoder.adopt(folder, info)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        release_later(folder)
        raise
    if copy_to is not None:
        tuned.save(copy_to)
    return tuned, history

"""The process's loaded models: each copy of the weights loaded once, shared, released.

:func:`load_model` returns the process-wide :class:`~skembed._loaded_model.LoadedModel`
of an :class:`~skembed._config.EncoderConfig`, keyed by its
:class:`~skembed._loading.LoadRequest`: the weights of one model, on one
device, in one precision, with one set of loader arguments. Configs that
differ only in how texts are fed to the model (``max_seq_length``,
``prompt``, ``prompt_name``, ``truncate_dim``) share it, so a grid search over
those holds one copy of the weights. A local folder is known by its files'
sizes and modification times: a folder saved again is loaded again.
"""

from __future__ import annotations

import os
import threading

from ._config import EncoderConfig
from ._loaded_model import LoadedModel
from ._loading import (
    check_model_location,
    load_request,
    open_sentence_transformer,
    quiet_transformers,
)

_MODELS: dict = {}
_LOCK = threading.Lock()
#: Folders whose models are to be released at the registry's next use (see release_later).
_RELEASE_LATER: list = []

#: How many times this process has loaded a model's weights (read by tests and
#: tools, e.g. on Dask workers, to check that a model loads once per process).
MODEL_LOADS = 0


def load_model(config: EncoderConfig) -> LoadedModel:
    """The process's :class:`LoadedModel` of ``config``, loaded on first use.

    A folder whose files changed since it was loaded is loaded again, and the
    stale copy released.
    """
    global MODEL_LOADS
    _release_pending()
    request = load_request(config)
    check_model_location(config.model)
    key = request.key()
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = LoadedModel(request)
            for stale in [k for k in _MODELS if _superseded_by(k, key)]:
                del _MODELS[stale]
            _MODELS[key] = model
            MODEL_LOADS += 1
        return model


def _superseded_by(old: tuple, new: tuple) -> bool:
    """Whether ``old`` holds an earlier version of the folder ``new`` loads, run alike."""
    (old_backend, old_identity, *old_run), (backend, identity, *run) = old, new
    return (
        identity[0] == old_identity[0] == "folder"
        and old_identity[1][0] == identity[1][0]  # the same real path
        and (old_backend, old_run) == (backend, run)
    )


def is_loaded(config: EncoderConfig) -> bool:
    """Whether ``config``'s weights are loaded in this process (nothing is loaded)."""
    try:
        key = load_request(config).key()
    except (OSError, ValueError):
        return False
    with _LOCK:
        return key in _MODELS


def _same_model(key: tuple, model: str | os.PathLike) -> bool:
    identity = key[1]
    local = os.path.expanduser(os.fspath(model))
    if identity[0] == "folder":
        return os.path.realpath(local) == identity[1][0]
    return identity[1] == os.fspath(model)


def release_later(model: str | os.PathLike) -> None:
    """Have the models of ``model`` released at the registry's next use.

    Safe where :func:`unload_models` is not: in a finalizer, which the
    garbage collector may run while this thread holds the registry's lock.
    """
    _RELEASE_LATER.append(os.fspath(model))


def _release_pending() -> None:
    while _RELEASE_LATER:
        unload_models(_RELEASE_LATER.pop())


def unload_models(model: str | os.PathLike | None = None) -> int:
    """Release the models this process loaded: all of them, or those of ``model``.

    skembed keeps each model it loads for the life of the process, so that
    clones, folds and pickles share it. This frees its memory (and the GPU's,
    once nothing else holds it); the next use loads it again.

    Parameters
    ----------
    model : str, path-like or None, default=None
        A hub name or a local folder; None releases every model.

    Returns
    -------
    int
        How many loaded models were released.

    Examples
    --------
    >>> from skembed import EmbeddingVectorizer, unload_models
    >>> _ = EmbeddingVectorizer(MINILM, device="cpu").fit(["a text"])
    >>> unload_models(MINILM)
    1
    """
    with _LOCK:
        gone = [k for k in _MODELS if model is None or _same_model(k, model)]
        for key in gone:
            del _MODELS[key]
    if gone:
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    return len(gone)


def save_model(config: EncoderConfig, path: str | os.PathLike) -> str:
    """Save the model of ``config`` to the folder ``path``; returns its absolute path.

    A local folder is copied file for file (exact, no model load); a hub model
    is loaded on the CPU in float32 and saved. Stale copies of ``path`` that
    this process loaded are released.
    """
    import shutil

    destination = os.path.realpath(os.fspath(path))
    source = os.path.expanduser(config.model)
    if os.path.isdir(source):
        if os.path.realpath(source) != destination:
            shutil.copytree(source, destination, dirs_exist_ok=True)
    else:
        model = open_sentence_transformer(load_request(config, device="cpu"))
        with quiet_transformers():
            model.float().save(destination)
    unload_models(destination)
    return destination

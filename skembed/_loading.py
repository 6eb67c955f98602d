"""How a model's files are found and opened: the one way skembed loads a model.

:func:`load_request` turns an :class:`~skembed._config.EncoderConfig` into a
:class:`LoadRequest`: the loaders' keyword arguments (the options marked
``loads``) and the key of the loaded copy in the registry. Every loader goes
through it: :func:`open_sentence_transformer` (inference, fine-tuning,
saving) and the transformers backend's ``from_pretrained`` calls and file
reads. This module also owns every error about a model's location
(:class:`ModelLoadError`) and keeps the libraries quiet while they load.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ._config import EncoderConfig, load_arguments
from ._devices import resolve_device
from ._fingerprint import folder_signature


class ModelLoadError(OSError):
    """A model that cannot be loaded; the message names it and the remedies."""


@dataclass(frozen=True)
class LoadRequest:
    """What loading one copy of a model's weights takes.

    Attributes
    ----------
    model : str
        Hub name or local folder.
    backend, precision : str
        As the config says.
    device : str
        The resolved device (``"auto"`` is never one).
    arguments : tuple of (str, object)
        The loaders' keyword arguments, sorted by name.
    int8_model : path-like or None
        ``precision="int8"``: the quantised OpenVINO model made at fit.
    """

    model: str
    backend: str
    device: str
    precision: str
    arguments: tuple
    int8_model: object = None

    @property
    def kwargs(self) -> dict:
        """The loaders' keyword arguments."""
        return dict(self.arguments)

    def key(self) -> tuple:
        """The registry's key: equal keys share one loaded copy of the weights.

        A local folder is known by its files' signature (sizes, modification
        times), so a folder saved again is another key.
        """
        local = os.path.expanduser(self.model)
        identity = ("folder", folder_signature(local)) if os.path.isdir(local) else (
            "hub", self.model)
        return (self.backend, identity, self.device, self.precision, self.arguments,
                self.int8_model)


def load_request(config: EncoderConfig, device: str | None = None) -> LoadRequest:
    """The :class:`LoadRequest` of ``config``, on ``device`` (default: the config's, resolved).

    ``backend="openvino"`` runs on the CPU: ``device`` must be ``"auto"`` or ``"cpu"``.
    """
    device = config.device if device is None else device
    if config.backend == "openvino":
        if device not in ("auto", "cpu"):
            raise ValueError(
                f"backend='openvino' runs on the CPU, so device={device!r} does not apply: "
                "use device='auto' or 'cpu', or backend='sentence-transformers' on a GPU."
            )
        device = "cpu"
    if config.precision == "int8" and config.backend not in ("openvino", "auto"):
        raise ValueError(
            f"precision='int8' runs on backend='openvino' (or 'auto'), not "
            f"backend={config.backend!r}."
        )
    return LoadRequest(
        model=config.model,
        backend=config.backend,
        device=resolve_device(device),
        precision=config.precision,
        arguments=tuple(sorted(load_arguments(config).items())),
        int8_model=config.int8_model,
    )


@contextmanager
def quiet_transformers():
    """Inside the block, no progress bar from transformers (loading weights, writing shards)
    and no notice from sentence-transformers' logger (such as the default prompt it applies,
    which skembed documents): estimators are quiet unless asked."""
    import logging as std_logging

    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    logger = std_logging.getLogger("sentence_transformers")
    level = logger.level
    logger.setLevel(max(level, std_logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)
        if shown:
            logging.enable_progress_bar()


def check_model_location(model: str) -> None:
    """Fail clearly when ``model`` can only be a local folder and is not one.

    Hub names are ``name`` or ``owner/name`` and never start with ``.``; left
    to the hub client, a mistyped path gets an error about repository ids.

    >>> check_model_location("sentence-transformers/all-MiniLM-L6-v2")
    >>> check_model_location("./no-such-folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: No model folder at './no-such-folder' (a hub model is named like 'owner/name').
    """
    path = os.path.expanduser(model)
    if os.path.isfile(path):
        raise NotADirectoryError(
            f"{model!r} is a file; a model is the folder that SentenceTransformer.save writes."
        )
    separators = path.count("/") + path.count("\\")
    looks_local = path.startswith((".", "/", "\\")) or separators > 1 or model.startswith("~")
    if looks_local and not os.path.isdir(path):
        raise FileNotFoundError(
            f"No model folder at {model!r} (a hub model is named like 'owner/name')."
        )


def model_load_error(request: LoadRequest, exc: BaseException) -> ModelLoadError:
    """The error for a model that the hub client or transformers could not load."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    revision = request.kwargs.get("revision")
    at = f" at revision {revision!r}" if revision else ""
    return ModelLoadError(
        f"Could not load the model {request.model!r}{at}: {first_line} It is not a local "
        "folder, so it was looked for on the Hugging Face Hub and in its local cache. "
        "Remedies: give the path of a folder saved by SentenceTransformer.save; check the "
        "name and the revision; without a network, load it once online (it is then cached) "
        "and set HF_HUB_OFFLINE=1."
    )


@contextmanager
def load_errors(request: LoadRequest):
    """Quiet libraries inside the block, and a :class:`ModelLoadError` for a hub model
    that cannot be found (a local folder's own errors pass unchanged)."""
    try:
        with quiet_transformers():
            yield
    except OSError as exc:
        if os.path.isdir(os.path.expanduser(request.model)) or isinstance(exc, ModelLoadError):
            raise
        raise model_load_error(request, exc) from exc


def open_sentence_transformer(request: LoadRequest):
    """``SentenceTransformer(model, device=..., **loader arguments)``, quietly.

    Its weights keep the checkpoint's dtype: callers cast them.
    """
    from sentence_transformers import SentenceTransformer

    check_model_location(request.model)
    with load_errors(request):
        return SentenceTransformer(request.model, device=request.device, **request.kwargs)


def model_file(request: LoadRequest, name: str) -> Path | None:
    """Path of a file of the model, local or from the hub cache; None if absent."""
    local = Path(os.path.expanduser(request.model))
    if local.is_dir():
        path = local / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(request.model, name,
                                    **accepted_arguments(hf_hub_download, request.kwargs)))
    except Exception:  # noqa: BLE001 - a missing optional file is not an error
        return None


def accepted_arguments(function, kwargs: dict) -> dict:
    """The items of ``kwargs`` that ``function`` has a parameter for (all, if it takes ``**``)."""
    import inspect

    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return dict(kwargs)
    names = {p.name for p in parameters}
    return {name: value for name, value in kwargs.items() if name in names}


def read_json(path: Path | None) -> dict | list | None:
    """The JSON content of ``path``; None when it is None, absent or not JSON."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def module_class(type_name: str):
    """The class a ``modules.json`` entry names (legacy names too); None if unknown."""
    from sentence_transformers.util import import_from_string

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return import_from_string(type_name)
    except ImportError:
        return None


def position_limit(model_config) -> int | None:
    """The number of position embeddings of a transformers config; None if it has none."""
    limit = getattr(model_config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def capped_max_length(asked: int | None, own: int | None, positions: int | None) -> int | None:
    """Tokens read per text: ``asked`` (None: the model's ``own``), never past ``positions``.

    >>> capped_max_length(None, 256, 512), capped_max_length(1000, 256, 512)
    (256, 512)
    """
    if asked is None:
        return own
    return min(v for v in (asked, positions) if isinstance(v, int) and v > 0)

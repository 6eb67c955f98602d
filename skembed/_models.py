"""Load sentence-transformers models once per process and learn how to run them.

This module knows nothing of scikit-learn. :func:`load_model` returns the
process-wide :class:`LoadedModel` of an :class:`~skembed._options.EncoderConfig`:
the weights of one model, on one device, in one precision. Configs that differ
only in how texts are fed to the model (``max_seq_length``, ``prompt``,
``prompt_name``, ``truncate_dim``) share it, so a grid search over those holds
one copy of the weights. A local folder is known by its files' sizes and
modification times: a folder saved again is loaded again.

A loaded model also says whether skembed's own batching can run it (a
transformers network, then pooling, dense and normalisation modules), or why
not: every other module stack is encoded by ``SentenceTransformer.encode``.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

from ._fingerprint import folder_signature
from ._options import EncoderConfig


class ModelLoadError(OSError):
    """A model that cannot be loaded; the message names it and the remedies."""


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to the best available torch device, and check the others.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device.")
        index = device.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was asked for, but torch sees {torch.cuda.device_count()} "
                "CUDA device(s)."
            )
    if device == "mps" and not has_mps:
        raise ValueError("device='mps' was asked for, but torch sees no MPS device.")
    return device


def device_type(device: str) -> str:
    """``"cuda"`` for ``"cuda:1"``, and so on; ``"auto"`` is resolved first."""
    return resolve_device(device).split(":")[0]


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


def _torch_dtype(precision: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        precision
    ]


def warn_if_bfloat16_is_slow(setting: str, instead: str, device: str) -> None:
    """Warn that ``setting`` is emulated, slower than ``instead``, on this CPU ``device``."""
    import torch

    if torch.device(device).type == "cpu" and not _cpu_has_fast_bfloat16():
        warnings.warn(
            f"{setting} on a CPU without AVX512-BF16 or AMX instructions "
            f"is emulated and much slower than {instead}.",
            RuntimeWarning,
            stacklevel=3,
        )


def _cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


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


def model_load_error(model: str, revision: str | None, exc: BaseException) -> ModelLoadError:
    """The error for a model that the hub client or transformers could not load."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    at = f" at revision {revision!r}" if revision else ""
    return ModelLoadError(
        f"Could not load the model {model!r}{at}: {first_line} It is not a local folder, so it "
        "was looked for on the Hugging Face Hub and in its local cache. Remedies: give the path "
        "of a folder saved by SentenceTransformer.save; check the name and the revision; "
        "without a network, load it once online (it is then cached) and set HF_HUB_OFFLINE=1."
    )


def resolve_prompt(prompt, prompt_name, prompts: dict, default_prompt_name) -> str | None:
    """The text put before every input, as ``SentenceTransformer.encode`` chooses it.

    ``prompt`` wins, then the model's prompt named ``prompt_name``, then the
    model's ``default_prompt_name``; an empty string means no prompt.

    >>> resolve_prompt(None, None, {"query": "query: "}, "query")
    'query: '
    >>> resolve_prompt("", None, {"query": "query: "}, "query")
    ''
    """
    if prompt is not None:
        if prompt_name is not None:
            raise ValueError(
                f"Give prompt or prompt_name, not both (got prompt={prompt!r} and "
                f"prompt_name={prompt_name!r})."
            )
        return prompt
    if prompt_name is not None:
        if prompt_name not in prompts:
            known = sorted(prompts) or "none"
            raise ValueError(f"prompt_name={prompt_name!r} is not a prompt of this model; "
                             f"its prompts are {known}.")
        return prompts[prompt_name]
    if default_prompt_name is not None:
        return prompts.get(default_prompt_name)
    return None


def _model_file(model: str, revision: str | None, name: str) -> Path | None:
    """Path of a file of the model, local or from the hub cache; None if absent."""
    local = Path(os.path.expanduser(model))
    if local.is_dir():
        path = local / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, name, revision=revision))
    except Exception:  # noqa: BLE001 - a missing optional file is not an error
        return None


def _read_json(path: Path | None) -> dict | list | None:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _module_class(type_name: str):
    """The class a ``modules.json`` entry names (legacy names too); None if unknown."""
    from sentence_transformers.util import import_from_string

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return import_from_string(type_name)
    except ImportError:
        return None


def _st_classes():
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    return Transformer, Pooling, Dense, Normalize


class LoadedModel:
    """The weights of one model on one device in one precision, and how to run them.

    Attributes
    ----------
    prompts, default_prompt_name, truncate_dim : the model's own settings
        As its ``config_sentence_transformers.json`` gives them.
    tokenizer : transformers tokenizer or None
        The tokenizer of the first module, when it is a transformers network.
    own_max_length : int or None
        Tokens the model reads by default; None when it reads whole texts.
    position_limit : int or None
        Positions of the network: no ``max_seq_length`` goes past it.
    dimension : int
        Dimension of the vectors before any ``truncate_dim``.
    include_prompt : bool
        Whether pooling reads the prompt's tokens (INSTRUCTOR-like models do not).
    fast_path_problem : str or None
        Why skembed's own batching cannot run this model (its vectors then
        come from ``SentenceTransformer.encode``); None when it can.
    """

    def __init__(self, config: EncoderConfig, device: str):
        self.name = config.model
        self.device = device
        self.dtype = _torch_dtype(config.precision)
        self.lock = threading.RLock()  # held while a call changes a setting of st
        self.st = None
        self.network = None
        self.tail: list = []
        self.lowercase = False  # the transformers backend's do_lower_case
        self._rust = None  # a private copy of the fast tokenizer, see rust_token_ids
        self._rust_lock = threading.Lock()
        try:
            with quiet_transformers():
                if config.backend == "sentence-transformers":
                    self._load_sentence_transformers(config)
                else:
                    self._load_transformers(config)
        except OSError as exc:
            if os.path.isdir(os.path.expanduser(config.model)) or isinstance(exc, ModelLoadError):
                raise
            raise model_load_error(config.model, config.revision, exc) from exc
        if self.tokenizer is not None:
            self._rust = _own_rust_tokenizer(self.tokenizer, lowercase=self.lowercase)
        # Always cast: transformers 5 loads a checkpoint in its stored dtype.
        for module in [self.st, self.network, *self.tail]:
            if module is not None:
                module.to(device=device, dtype=self.dtype).eval()
        if config.precision == "bfloat16":
            warn_if_bfloat16_is_slow("precision='bfloat16'", "precision='float32'", device)

    # -- the sentence-transformers backend ----------------------------------------
    def _load_sentence_transformers(self, config: EncoderConfig) -> None:
        from sentence_transformers import SentenceTransformer

        Transformer, Pooling, _, _ = _st_classes()
        st = SentenceTransformer(
            config.model,
            device=self.device,
            revision=config.revision,
            trust_remote_code=config.trust_remote_code,
        )
        self.st = st
        self.prompts = dict(st.prompts or {})
        self.default_prompt_name = st.default_prompt_name
        # skembed passes the truncation to every call: the shared model keeps none.
        self.truncate_dim, st.truncate_dim = st.truncate_dim, None
        first = st[0]
        if isinstance(first, Transformer):
            self.tokenizer = first.tokenizer
            self.network = None  # runs inside st
            self.own_max_length = st.max_seq_length
            self.position_limit = _position_limit(first.auto_model.config)
        else:
            self.tokenizer = None
            self.own_max_length = None
            self.position_limit = None
        self.include_prompt = all(m.include_prompt for m in st if isinstance(m, Pooling))
        self.fast_path_problem = _sentence_transformers_problem(st)
        self.dimension = st.get_embedding_dimension()
        if self.dimension is None:  # a module that does not say: ask the model
            self.dimension = int(st.encode([""], convert_to_numpy=True).shape[1])

    # -- the transformers backend -------------------------------------------------
    def _load_transformers(self, config: EncoderConfig) -> None:
        from transformers import AutoModel, AutoTokenizer

        Transformer, Pooling, Dense, Normalize = _st_classes()
        kwargs = dict(revision=config.revision, trust_remote_code=config.trust_remote_code)
        entries = _read_json(_model_file(config.model, config.revision, "modules.json"))
        entries = entries or [{"type": "sentence_transformers.models.Transformer", "path": ""}]
        classes = [(_module_class(e.get("type", "")), e.get("path", ""), e) for e in entries]
        first_class, subfolder, _ = classes[0]
        if not (first_class and issubclass(first_class, Transformer)):
            raise ValueError(self.refusal(f"its first module is {entries[0].get('type')!r}"))
        if subfolder:
            kwargs["subfolder"] = subfolder
        st_config = _read_json(
            _model_file(config.model, config.revision, f"{subfolder}/sentence_bert_config.json"
                        if subfolder else "sentence_bert_config.json")
        ) or {}
        modalities = st_config.get("modality_config", {"text": None})
        if set(modalities) != {"text"} or st_config.get("processing_kwargs"):
            raise ValueError(self.refusal("its transformers module reads more than plain text"))
        self.tokenizer = AutoTokenizer.from_pretrained(config.model, **kwargs)
        self.network = AutoModel.from_pretrained(config.model, **kwargs)
        self.position_limit = _position_limit(self.network.config)
        limits = [st_config.get("max_seq_length") or self.tokenizer.model_max_length,
                  self.position_limit]
        self.own_max_length = min(v for v in limits if isinstance(v, int) and v > 0)
        self.lowercase = bool(st_config.get("do_lower_case", False))
        settings = _read_json(
            _model_file(config.model, config.revision, "config_sentence_transformers.json")
        ) or {}
        self.prompts = _prompts(settings.get("prompts"))
        self.default_prompt_name = settings.get("default_prompt_name")
        self.truncate_dim = settings.get("truncate_dim")
        self.dimension = int(self.network.config.hidden_size)
        self.include_prompt = True
        hub = dict(revision=config.revision, trust_remote_code=config.trust_remote_code)
        pooled = False
        for cls, path, entry in classes[1:]:
            if cls is not None and issubclass(cls, Pooling) and not pooled:
                pooling = Pooling.load(config.model, subfolder=path, revision=config.revision)
                if pooling.pooling_mode not in ("mean", ["mean"], ("mean",)):
                    raise ValueError(self.refusal(f"its pooling is {pooling.pooling_mode!r}"))
                self.include_prompt = pooling.include_prompt
                pooled = True
            elif cls is not None and pooled and issubclass(cls, Dense):
                dense = Dense.load(config.model, subfolder=path, **hub)
                self.tail.append(dense)
                self.dimension = dense.get_embedding_dimension()
            elif cls is not None and pooled and issubclass(cls, Normalize):
                self.tail.append(Normalize())
            else:
                raise ValueError(self.refusal(f"it has a {entry.get('type')!r} module"))
        self.fast_path_problem = None

    def refusal(self, problem: str) -> str:
        """The error message of the transformers backend refusing this model for ``problem``."""
        return (
            f"backend='transformers' runs a transformers network, mean pooling, Dense and "
            f"Normalize modules; model {self.name!r} cannot be run so: {problem}. Use "
            "backend='sentence-transformers'."
        )

    # -- running it ---------------------------------------------------------------
    def max_length(self, max_seq_length: int | None) -> int | None:
        """Tokens read per text with the setting ``max_seq_length`` (None: the model's own)."""
        if max_seq_length is None:
            return self.own_max_length
        if self.tokenizer is None:
            raise ValueError(
                f"max_seq_length={max_seq_length} does not apply to model {self.name!r}: its "
                f"first module ({type(self.st[0]).__name__}) reads whole texts."
            )
        # Never past the position embeddings: the network has no position beyond.
        limits = [max_seq_length, self.position_limit]
        return min(v for v in limits if isinstance(v, int) and v > 0)

    @property
    def has_rust_tokenizer(self) -> bool:
        """Whether the tokenizer is a fast one, whose Rust backend skembed calls directly."""
        return self._rust is not None

    def rust_token_ids(self, texts: list, max_length: int | None) -> list:
        """Token ids of ``texts`` from the Rust tokenizer, truncated to ``max_length`` (None: not).

        One private copy serves every ``max_length``: it is set for each call,
        under a lock (setting it costs microseconds; a copy of a large
        vocabulary, a fifth of a second).
        """
        rust = self._rust
        encode = getattr(rust, "encode_batch_fast", None) or rust.encode_batch  # fast: no offsets
        with self._rust_lock:
            if max_length is None:
                rust.no_truncation()
            else:
                rust.enable_truncation(
                    max_length, stride=0, strategy="longest_first",
                    direction=getattr(self.tokenizer, "truncation_side", "right"),
                )
            return [encoding.ids for encoding in encode(texts)]

    def forward(self, input_ids, attention_mask):
        """Sentence embeddings of one right-padded batch (the fast path).

        ``attention_mask`` may be None when no row is padded.
        """
        if self.st is not None:
            features = {"input_ids": input_ids}
            if attention_mask is not None:
                features["attention_mask"] = attention_mask
            return self.st(features)["sentence_embedding"]
        hidden = self.network(input_ids=input_ids, attention_mask=attention_mask)[0]
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        features = {"sentence_embedding": pooled}
        for module in self.tail:
            features = module(features)
        return features["sentence_embedding"]

    def encode_with_sentence_transformers(self, texts: list, *, prompt: str, batch_size: int,
                                          truncate_dim: int | None, max_length: int | None):
        """``SentenceTransformer.encode`` of ``texts`` as float32, with these settings."""
        import numpy as np

        st = self.st
        with self.lock:
            saved = st.max_seq_length
            if self.tokenizer is not None and max_length != saved:
                st.max_seq_length = max_length
            try:
                vectors = st.encode(
                    texts, prompt=prompt, batch_size=batch_size, truncate_dim=truncate_dim,
                    convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False,
                )
            finally:
                if self.tokenizer is not None and max_length != saved:
                    st.max_seq_length = saved
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def _prompts(saved: dict | None) -> dict:
    """The prompts ``SentenceTransformer`` gives a model that saved ``saved``.

    It starts from its class defaults (``query`` and ``document``, empty), so
    that ``prompt_name="query"`` works on every model.
    """
    from sentence_transformers import SentenceTransformer

    prompts = dict(getattr(SentenceTransformer, "_default_prompts", {}))
    prompts.update(saved or {})
    return {name: "" if text is None else text for name, text in prompts.items()}


def _position_limit(model_config) -> int | None:
    limit = getattr(model_config, "max_position_embeddings", None)
    return limit if isinstance(limit, int) and limit > 0 else None


def _sentence_transformers_problem(st) -> str | None:
    """Why skembed's batching cannot run ``st``: None for transformers + pooling/dense/normalize."""
    Transformer, Pooling, Dense, Normalize = _st_classes()
    first, rest = st[0], list(st)[1:]
    if not isinstance(first, Transformer):
        return f"its first module is {type(first).__name__}, not a transformers network"
    if set(getattr(first, "modality_config", {"text": None})) != {"text"}:
        return "its transformers module reads more than plain text"
    if getattr(first, "transformer_task", "feature-extraction") != "feature-extraction":
        return f"its transformers module is a {first.transformer_task!r} model"
    if getattr(first, "query_expansion", None) or getattr(first, "processing_kwargs", None):
        return "its transformers module has its own tokenizer settings"
    tokenizer = first.tokenizer
    if tokenizer is None or getattr(tokenizer, "padding_side", "right") != "right":
        return "its tokenizer pads on the left"
    others = [type(m).__name__ for m in rest if not isinstance(m, Pooling | Dense | Normalize)]
    if others:
        return f"it has {', '.join(others)} module(s)"
    return None


def _own_rust_tokenizer(tokenizer, *, lowercase: bool = False):
    """A private copy of a fast tokenizer's Rust backend, never padding; None if slow.

    A copy, because transformers reconfigures the shared backend on every
    call. ``lowercase`` puts a lowercasing step first, as sentence-transformers
    does for ``do_lower_case``.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is None:
        return None
    from tokenizers import Tokenizer
    from tokenizers.normalizers import Lowercase, Sequence

    rust = Tokenizer.from_str(backend.to_str())
    rust.no_padding()
    if lowercase:
        steps = [] if rust.normalizer is None else [rust.normalizer]
        rust.normalizer = Sequence([Lowercase(), *steps])
    return rust


# -- the process's models --------------------------------------------------------
_MODELS: dict = {}
_LOCK = threading.Lock()
#: Folders whose models are to be released at the registry's next use (see release_later).
_RELEASE_LATER: list = []

#: How many times this process has loaded a model's weights (read by tests and
#: tools, e.g. on Dask workers, to check that a model loads once per process).
MODEL_LOADS = 0


def _weights_identity(model: str, revision: str | None) -> tuple:
    local = os.path.expanduser(model)
    if os.path.isdir(local):
        return ("folder", folder_signature(local))
    return ("hub", model, revision)


def _registry_key(config: EncoderConfig, device: str) -> tuple:
    identity = _weights_identity(config.model, config.revision)
    return (config.backend, identity, device, config.precision, config.trust_remote_code)


def load_model(config: EncoderConfig) -> LoadedModel:
    """The process's :class:`LoadedModel` of ``config``, loaded on first use.

    A folder whose files changed since it was loaded is loaded again, and the
    stale copy released.
    """
    global MODEL_LOADS
    _release_pending()
    device = resolve_device(config.device)
    check_model_location(config.model)
    key = _registry_key(config, device)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = LoadedModel(config, device)
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
        key = _registry_key(config, resolve_device(config.device))
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
        from sentence_transformers import SentenceTransformer

        try:
            with quiet_transformers():
                model = SentenceTransformer(config.model, device="cpu", revision=config.revision,
                                            trust_remote_code=config.trust_remote_code)
                model.save(destination)
        except OSError as exc:
            raise model_load_error(config.model, config.revision, exc) from exc
    unload_models(destination)
    return destination

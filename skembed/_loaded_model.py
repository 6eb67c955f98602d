"""One loaded copy of a model's weights, and how to run it.

A :class:`LoadedModel` is built from a :class:`~skembed._loading.LoadRequest`
by one of three backends: ``"sentence-transformers"`` loads the model's own
module stack, ``"transformers"`` loads ``AutoModel`` and runs mean pooling and
the folder's Dense and Normalize modules itself (refusing any other module),
``"openvino"`` loads the module stack, converts all of it but the final
Normalize modules to OpenVINO (:mod:`skembed._openvino`) and runs that
(refusing what skembed's batching cannot run).
It also says whether skembed's own batching can run it (a transformers
network, then pooling, dense and normalisation modules), or why not: every
other module stack is encoded by ``SentenceTransformer.encode``.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from ._devices import torch_dtype, warn_if_bfloat16_is_slow
from ._fingerprint import model_identity
from ._loading import (
    LoadRequest,
    accepted_arguments,
    capped_max_length,
    load_errors,
    model_file,
    module_class,
    open_sentence_transformer,
    position_limit,
    read_json,
)
from ._prompts import saved_prompts


def _st_classes():
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    return Transformer, Pooling, Dense, Normalize


class UnsupportedModelError(ValueError):
    """A model that the backend asked for cannot run (the message names what stops it)."""


#: Texts that probe a conversion (several lengths, so that the batch is padded).
_PROBE_TEXTS = ("a", "Hola, ¿qué tal? Una frase algo más larga, con acentos: ñandú.",
                "x y z 123")


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
    openvino_folder : Path or None
        ``backend="openvino"``: the folder of the float32 conversion (what an
        int8 model is quantised from); None otherwise.
    """

    def __init__(self, request: LoadRequest):
        self.name = request.model
        self.backend = request.backend
        self.device = request.device
        # OpenVINO computes in its own precision; the torch modules kept (Normalize) in float32.
        self.dtype = torch_dtype("float32" if self.backend == "openvino" else request.precision)
        self.lock = threading.RLock()  # held while a call changes a setting of st
        self.st = None
        self.network = None
        self.tail: list = []  # the transformers backend's modules after pooling
        self.final: list = []  # the Normalize modules that end the stack (see finish)
        self.lowercase = False  # the transformers backend's do_lower_case
        self._rust = None  # a private copy of the fast tokenizer, see rust_token_ids
        self._rust_lock = threading.Lock()
        self.runner = None  # backend="openvino": the compiled model (see forward)
        self.openvino_folder = None
        if request.backend == "sentence-transformers":
            self._load_sentence_transformers(request)
        elif request.backend == "openvino":
            self._load_openvino(request)
        else:
            with load_errors(request):
                self._load_transformers(request)
        if self.tokenizer is not None:
            self._rust = _own_rust_tokenizer(self.tokenizer, lowercase=self.lowercase)
        # Always cast: transformers 5 loads a checkpoint in its stored dtype.
        for module in [self.st, self.network, *self.tail, *self.final]:
            if module is not None:
                module.to(device=self.device, dtype=self.dtype).eval()
        if request.precision == "bfloat16":
            warn_if_bfloat16_is_slow("precision='bfloat16'", "precision='float32'", self.device)

    # -- the sentence-transformers backend ----------------------------------------
    def _load_sentence_transformers(self, request: LoadRequest) -> None:
        Transformer, Pooling, _, _ = _st_classes()
        st = open_sentence_transformer(request)
        self.st = st
        self.prompts = dict(st.prompts or {})
        self.default_prompt_name = st.default_prompt_name
        # skembed passes the truncation to every call: the shared model keeps none.
        self.truncate_dim, st.truncate_dim = st.truncate_dim, None
        first = st[0]
        if isinstance(first, Transformer):
            self.tokenizer = first.tokenizer
            self.own_max_length = st.max_seq_length
            self.position_limit = position_limit(first.auto_model.config)
        else:
            self.tokenizer = None
            self.own_max_length = None
            self.position_limit = None
        self.include_prompt = all(m.include_prompt for m in st if isinstance(m, Pooling))
        self.fast_path_problem = _sentence_transformers_problem(st)
        self._body, self.final = _split_final_normalize(list(st))
        self.dimension = st.get_embedding_dimension()
        if self.dimension is None:  # a module that does not say: ask the model
            self.dimension = int(st.encode([""], convert_to_numpy=True).shape[1])

    # -- the openvino backend -----------------------------------------------------
    def _load_openvino(self, request: LoadRequest) -> None:
        from . import _openvino

        _openvino.require()
        if request.precision == "float16":
            raise ValueError("backend='openvino' runs in precision 'float32', 'bfloat16' or "
                             "'int8' on the CPU, not 'float16'.")
        if request.precision == "int8" and request.int8_model is None:
            raise ValueError(
                "precision='int8' runs a model quantised on the texts given to fit: fit an "
                "EmbeddingVectorizer with precision='int8' (its fitted vectorizer holds it)."
            )
        self._load_sentence_transformers(request)
        if self.fast_path_problem is not None:
            raise UnsupportedModelError(self.refusal(self.fast_path_problem))
        if request.int8_model is not None:
            folder = os.fspath(request.int8_model)
        else:
            identity = model_identity(request.model, request.kwargs)
            key = _openvino.conversion_key(identity or f"unknown:{request.model}",
                                           request.arguments)
            with load_errors(request):
                folder = _openvino.converted_model(self._body, self.name, key,
                                                   self._probe_batches())
            self.openvino_folder = folder
        self.runner = _openvino.CompiledModel(folder, request.precision)
        self.st, self._body = None, []  # the torch weights: OpenVINO holds its own copy

    def _probe_batches(self) -> list:
        """``(input_ids, attention_mask)`` int64 batches of probe texts: padded, then not,
        then one as long as the model reads."""
        limit = self.own_max_length or self.position_limit or 512
        ids = [i[:limit] for i in self.raw_token_ids(list(_PROBE_TEXTS), special_tokens=True)]
        width = max(map(len, ids))
        input_ids = np.array([i + [self.pad_id] * (width - len(i)) for i in ids],
                             dtype=np.int64)
        mask = np.array([[1] * len(i) + [0] * (width - len(i)) for i in ids], dtype=np.int64)
        longest = int(np.argmax([len(i) for i in ids]))
        # And one text as long as the model reads: positions a short probe never reaches.
        body = ids[longest][1:-1] or ids[longest]
        full = (ids[longest][:1] + body * limit)[: limit - 1]
        full = np.array([full + ids[longest][-1:]], dtype=np.int64)
        return [(input_ids, mask), (input_ids[longest:longest + 1], mask[longest:longest + 1]),
                (full, np.ones_like(full))]

    # -- the transformers backend -------------------------------------------------
    def _load_transformers(self, request: LoadRequest) -> None:
        from transformers import AutoModel, AutoTokenizer

        Transformer, Pooling, Dense, Normalize = _st_classes()
        entries = read_json(model_file(request, "modules.json"))
        entries = entries or [{"type": "sentence_transformers.models.Transformer", "path": ""}]
        classes = [(module_class(e.get("type", "")), e.get("path", ""), e) for e in entries]
        first_class, subfolder, _ = classes[0]
        if not (first_class and issubclass(first_class, Transformer)):
            raise UnsupportedModelError(
                self.refusal(f"its first module is {entries[0].get('type')!r}"))
        kwargs = {**request.kwargs, **({"subfolder": subfolder} if subfolder else {})}
        st_config = read_json(model_file(
            request, f"{subfolder}/sentence_bert_config.json" if subfolder
            else "sentence_bert_config.json")) or {}
        modalities = st_config.get("modality_config", {"text": None})
        if set(modalities) != {"text"} or st_config.get("processing_kwargs"):
            raise UnsupportedModelError(
                self.refusal("its transformers module reads more than plain text"))
        self.tokenizer = AutoTokenizer.from_pretrained(request.model, **kwargs)
        self.network = AutoModel.from_pretrained(request.model, **kwargs)
        self.position_limit = position_limit(self.network.config)
        limits = [st_config.get("max_seq_length") or self.tokenizer.model_max_length,
                  self.position_limit]
        self.own_max_length = min(v for v in limits if isinstance(v, int) and v > 0)
        self.lowercase = bool(st_config.get("do_lower_case", False))
        settings = read_json(model_file(request, "config_sentence_transformers.json")) or {}
        self.prompts = saved_prompts(settings.get("prompts"))
        self.default_prompt_name = settings.get("default_prompt_name")
        self.truncate_dim = settings.get("truncate_dim")
        self.dimension = int(self.network.config.hidden_size)
        self.include_prompt = True
        pooled = False
        for cls, path, entry in classes[1:]:
            if cls is not None and issubclass(cls, Pooling) and not pooled:
                pooling = Pooling.load(request.model, subfolder=path,
                                       **accepted_arguments(Pooling.load, request.kwargs))
                if pooling.pooling_mode not in ("mean", ["mean"], ("mean",)):
                    raise UnsupportedModelError(
                        self.refusal(f"its pooling is {pooling.pooling_mode!r}"))
                self.include_prompt = pooling.include_prompt
                pooled = True
            elif cls is not None and pooled and issubclass(cls, Dense):
                dense = Dense.load(request.model, subfolder=path,
                                   **accepted_arguments(Dense.load, request.kwargs))
                self.tail.append(dense)
                self.dimension = dense.get_embedding_dimension()
            elif cls is not None and pooled and issubclass(cls, Normalize):
                self.tail.append(Normalize())
            else:
                raise UnsupportedModelError(self.refusal(f"it has a {entry.get('type')!r} module"))
        self.tail, self.final = _split_final_normalize(self.tail)
        self.fast_path_problem = None

    def refusal(self, problem: str) -> str:
        """The error message of this backend refusing this model for ``problem``."""
        runs = ("converts a transformers network followed by Pooling, Dense and Normalize "
                "modules" if self.backend == "openvino" else
                "runs a transformers network, mean pooling, Dense and Normalize modules")
        return (
            f"backend={self.backend!r} {runs}; model {self.name!r} cannot be run so: "
            f"{problem}. Use backend='sentence-transformers'."
        )

    # -- running it ---------------------------------------------------------------
    @functools.cached_property
    def pad_id(self) -> int:
        """The tokenizer's padding id (read once: the tokenizer's attribute is slow)."""
        return self.tokenizer.pad_token_id or 0

    def max_length(self, max_seq_length: int | None) -> int | None:
        """Tokens read per text with the setting ``max_seq_length`` (None: the model's own)."""
        if max_seq_length is not None and self.tokenizer is None:
            raise ValueError(
                f"max_seq_length={max_seq_length} does not apply to model {self.name!r}: its "
                f"first module ({type(self.st[0]).__name__}) reads whole texts."
            )
        return capped_max_length(max_seq_length, self.own_max_length, self.position_limit)

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

    def raw_token_ids(self, texts: list, *, special_tokens: bool) -> list:
        """Token ids of whole ``texts`` (no truncation), with or without special tokens."""
        if self._rust is not None:
            with self._rust_lock:
                self._rust.no_truncation()
                encode = getattr(self._rust, "encode_batch_fast", None) or self._rust.encode_batch
                return [e.ids for e in encode(texts, add_special_tokens=special_tokens)]
        return self.tokenizer(texts, add_special_tokens=special_tokens, truncation=False,
                              return_attention_mask=False)["input_ids"]

    def special_tokens_around(self) -> tuple | None:
        """``(prefix, suffix)``: the special tokens the tokenizer puts around any text.

        None when they depend on the text (no window could be built like a text).
        """
        found = set()
        for probe in ("a", "Hola, ¿qué tal? 123 tokens"):
            whole, bare = self.raw_token_ids([probe], special_tokens=True)[0], \
                self.raw_token_ids([probe], special_tokens=False)[0]
            starts = [i for i in range(len(whole) - len(bare) + 1)
                      if whole[i:i + len(bare)] == bare]
            if len(starts) != 1:
                return None
            found.add((tuple(whole[:starts[0]]), tuple(whole[starts[0] + len(bare):])))
        return found.pop() if len(found) == 1 else None

    def forward(self, input_ids, attention_mask, *, finish: bool = True):
        """Sentence embeddings of one right-padded batch (the fast path).

        ``attention_mask`` may be None when no row is padded. With
        ``finish=False`` the stack stops before its final Normalize modules:
        :meth:`finish` applies them (what ``long_texts="chunk"`` does after
        pooling a text's windows); both together are the whole stack, op for op.
        """
        features = {"input_ids": input_ids}
        if attention_mask is not None:
            features["attention_mask"] = attention_mask
        if self.runner is not None:
            import torch

            ids = input_ids.numpy()
            mask = (np.ones_like(ids) if attention_mask is None else attention_mask.numpy())
            features = {"sentence_embedding": torch.from_numpy(self.runner(ids, mask))}
        elif self.st is not None:
            for module in self._body:  # the modules SentenceTransformer.forward runs, in turn
                features = module(features)
        else:
            hidden = self.network(input_ids=input_ids, attention_mask=attention_mask)[0]
            if attention_mask is None:
                pooled = hidden.mean(dim=1)
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            features = {"sentence_embedding": pooled}
            for module in self.tail:
                features = module(features)
        vectors = features["sentence_embedding"]
        return self.finish(vectors) if finish else vectors

    def finish(self, vectors):
        """The stack's final Normalize modules applied to ``vectors`` (as the stack applies them)."""
        for module in self.final:
            vectors = module({"sentence_embedding": vectors})["sentence_embedding"]
        return vectors

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


def _split_final_normalize(modules: list) -> tuple:
    """``(body, final)``: ``modules`` without the Normalize modules that end them, and those."""
    _, _, _, Normalize = _st_classes()
    end = len(modules)
    while end and isinstance(modules[end - 1], Normalize):
        end -= 1
    return modules[:end], modules[end:]


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

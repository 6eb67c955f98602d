"""Load sentence-transformers models once per process and encode text with them.

This module knows nothing of scikit-learn. :class:`EncoderConfig` says which
model and how to run it; :func:`get_encoder` returns the process-wide
:class:`Encoder` for a config, which loads its weights on first use only.

Encoding sorts the texts by (characters, text), cuts them into chunks and
each chunk into batches of rows of similar token length, so batches, and
therefore vectors, do not depend on the order of the input.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "mrm8488/distiluse-base-multilingual-cased-v2-finetuned-stsb_multi_mt-es"
BACKENDS = ("sentence-transformers", "transformers")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything that decides how a model is loaded and run."""

    model: str = DEFAULT_MODEL
    backend: str = "sentence-transformers"
    device: str = "auto"
    precision: str = "float32"
    max_seq_length: int | None = None
    revision: str | None = None
    trust_remote_code: bool = False


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to the best available torch device, and check the others.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device.")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError("device='mps' was asked for, but torch sees no MPS device.")
    return device


def _torch_dtype(precision: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        precision
    ]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _model_file(config: EncoderConfig, name: str) -> Path | None:
    """Path of a file of the model, local or from the hub cache; None if absent."""
    local = Path(os.path.expanduser(config.model))
    if local.is_dir():
        path = local / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(config.model, name, revision=config.revision))
    except Exception:  # noqa: BLE001 - a missing optional file is not an error
        return None


class _LoadedModel:
    """The loaded network and what encoding needs to know about it."""

    def __init__(self, config: EncoderConfig, device: str):
        import torch

        check_model_location(config.model)
        self.device = device
        self.dtype = _torch_dtype(config.precision)
        if config.backend == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(
                config.model,
                device=device,
                revision=config.revision,
                trust_remote_code=config.trust_remote_code,
            )
            if config.max_seq_length is not None:
                # As the transformers backend: never past the position embeddings.
                model_config = getattr(getattr(st[0], "auto_model", None), "config", None)
                limits = [
                    config.max_seq_length,
                    st.tokenizer.model_max_length,
                    getattr(model_config, "max_position_embeddings", None),
                ]
                st.max_seq_length = min(v for v in limits if isinstance(v, int) and v > 0)
            first = st[0]
            self.tokenizer = st.tokenizer
            self.max_length = st.max_seq_length or self.tokenizer.model_max_length
            self.do_lower_case = bool(getattr(first, "do_lower_case", False))
            get_dimension = getattr(st, "get_embedding_dimension", None) or getattr(
                st, "get_sentence_embedding_dimension"
            )
            self.dimension = int(get_dimension())
            self.network = st
            self._forward = self._forward_sentence_transformers
        else:
            from transformers import AutoModel, AutoTokenizer

            subfolder = ""
            modules = _model_file(config, "modules.json")
            if modules is not None:
                for module in _read_json(modules) or []:
                    if module.get("type", "").endswith("Transformer"):
                        subfolder = module.get("path", "")
            kwargs = dict(revision=config.revision, trust_remote_code=config.trust_remote_code)
            if subfolder:
                kwargs["subfolder"] = subfolder
            self.tokenizer = AutoTokenizer.from_pretrained(config.model, **kwargs)
            model = AutoModel.from_pretrained(config.model, **kwargs)
            st_config = _model_file(config, "sentence_bert_config.json")
            st_config = (_read_json(st_config) if st_config else None) or {}
            limits = [
                self.tokenizer.model_max_length,
                getattr(model.config, "max_position_embeddings", None),
                st_config.get("max_seq_length"),
                config.max_seq_length,
            ]
            self.max_length = min(v for v in limits if isinstance(v, int) and v > 0)
            self.do_lower_case = bool(st_config.get("do_lower_case", False))
            self.dimension = int(model.config.hidden_size)
            self.network = model.to(device)
            self._forward = self._forward_transformers
        # Always cast: transformers 5 loads a checkpoint in its stored dtype.
        self.network.to(self.dtype)
        self.network.eval()
        self.pad_id = self.tokenizer.pad_token_id or 0
        self._rust, self._rust_encode = _own_rust_tokenizer(self.tokenizer, self.max_length)
        self.no_grad = torch.inference_mode
        if config.precision == "bfloat16":
            warn_if_bfloat16_is_slow("precision='bfloat16'", "precision='float32'", device)

    def _forward_sentence_transformers(self, input_ids, attention_mask):
        features = {"input_ids": input_ids}
        if attention_mask is not None:
            features["attention_mask"] = attention_mask
        return self.network(features)["sentence_embedding"]

    def _forward_transformers(self, input_ids, attention_mask):
        hidden = self.network(input_ids=input_ids, attention_mask=attention_mask)[0]
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)

    def tokenize(self, texts: list) -> _Tokens:
        """Token ids of ``texts``, truncated, without padding, in compact arrays.

        Texts go to the (parallel, Rust) fast tokenizer in chunks of at most
        ``TOKENIZE_CHUNK`` texts and ``TOKENIZE_CHUNK_CHARS`` characters (the
        tokenizer holds ~40 bytes a character of a chunk while it works), and
        each chunk's ids are packed into int32 arrays at once, so memory stays
        near 4 bytes a token whatever the number of texts.
        """
        lengths, flats = [], []
        for start, stop in _chunks(texts):
            chunk = [t.strip() for t in texts[start:stop]]
            if self.do_lower_case:
                chunk = [t.lower() for t in chunk]
            elif self._rust is not None:
                chunk = [t if t.isascii() else _fresh_copy(t) for t in chunk]
            ids = self._token_ids(chunk)
            chunk_lengths = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
            lengths.append(chunk_lengths)
            flats.append(
                np.fromiter(
                    itertools.chain.from_iterable(ids),
                    dtype=np.int32,
                    count=int(chunk_lengths.sum()),
                )
            )
            del ids
        return _Tokens(
            np.concatenate(flats) if flats else np.empty(0, np.int32),
            np.concatenate(lengths) if lengths else np.empty(0, np.int32),
        )

    def _token_ids(self, texts: list) -> list:
        """Lists of token ids, as ``tokenizer(texts, truncation=True)`` gives them."""
        if self._rust is None:
            return self.tokenizer(
                texts,
                truncation=True,
                max_length=self.max_length,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
        # Straight to the Rust tokenizer: it releases the GIL while it works on
        # all cores, and skips the Python objects transformers would build.
        return [encoding.ids for encoding in self._rust_encode(texts)]

    def forward(self, input_ids, attention_mask):
        """Sentence embeddings of one padded batch of torch tensors on ``self.device``.

        ``attention_mask`` may be None when no row is padded.
        """
        return self._forward(input_ids, attention_mask)


class _Tokens:
    """Ragged token ids: all ids end to end (int32) and each text's length."""

    def __init__(self, flat: np.ndarray, lengths: np.ndarray):
        self.flat = flat
        self.lengths = lengths
        self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, rows: np.ndarray, pad_id: int) -> tuple:
        """(input_ids, attention_mask) int64 arrays of ``rows``, right-padded."""
        lengths = self.lengths[rows]
        width = int(lengths.max())
        mask = np.arange(width) < lengths[:, None]
        positions = (self.offsets[rows][:, None] + np.arange(width))[mask]
        input_ids = np.full(mask.shape, pad_id, dtype=np.int64)
        input_ids[mask] = self.flat[positions]
        return input_ids, mask.astype(np.int64)


def _fresh_copy(text: str) -> str:
    """An equal string that is a new object.

    The Rust tokenizer reads a non-ASCII string through its UTF-8 form, which
    CPython then keeps inside the string object for as long as it lives: as
    much memory again as the caller's texts (500 MB for 200,000 long Spanish
    texts). Handing it a short-lived copy frees that form with the chunk.
    """
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")


def _own_rust_tokenizer(tokenizer, max_length: int):
    """A private copy of a fast tokenizer's Rust backend, truncating, never padding.

    Returns ``(None, None)`` for a slow (Python) tokenizer. A copy, because
    transformers reconfigures the shared backend on every call.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is None:
        return None, None
    from tokenizers import Tokenizer

    rust = Tokenizer.from_str(backend.to_str())
    rust.no_padding()
    rust.enable_truncation(
        max_length, stride=0, strategy="longest_first",
        direction=getattr(tokenizer, "truncation_side", "right"),
    )
    encode = getattr(rust, "encode_batch_fast", None) or rust.encode_batch  # fast: no offsets
    return rust, encode


def _pin(tensor):
    return tensor.pin_memory()


def _new_event():
    import torch

    return torch.cuda.Event()


class _Transfers:
    """Copies between host and device: plain on a CPU, asynchronous on CUDA.

    Asynchronous copies need page-locked host memory and an event per copy
    back; ``_pin`` and ``_new_event`` make them, and tests replace both to run
    this logic on a CPU.
    """

    def __init__(self, device: str, asynchronous: bool):
        self.device = device
        self.asynchronous = asynchronous

    def host(self, array: np.ndarray):
        """A torch tensor of ``array``, ready to be sent to the device."""
        import torch

        tensor = torch.from_numpy(array)
        return _pin(tensor) if self.asynchronous else tensor

    def upload(self, tensor):
        return tensor.to(self.device, non_blocking=self.asynchronous)

    def download(self, on_device) -> tuple:
        """Start copying a float tensor to host memory; ``(host tensor, event or None)``."""
        import torch

        on_device = on_device.float()
        if not self.asynchronous:
            return on_device.cpu(), None
        host = _pin(torch.empty(on_device.shape, dtype=torch.float32))
        host.copy_(on_device, non_blocking=True)
        event = _new_event()
        event.record()
        return host, event


def _prepared_chunks(model, ordered: list, batch_size: int, transfers: _Transfers):
    """Yield, chunk after chunk of ``ordered``, its padded batches.

    A batch is ``(positions in ordered, input_ids, attention_mask)``, its rows
    sorted by token length within the chunk so batches carry little padding;
    the mask is None when no row is padded (the model then needs none).
    """
    for start, stop in _chunks(ordered):
        tokens = model.tokenize(ordered[start:stop])
        by_length = np.argsort(tokens.lengths, kind="stable")
        batches = []
        for first in range(0, len(by_length), batch_size):
            rows = by_length[first : first + batch_size]
            input_ids, mask = tokens.padded(rows, model.pad_id)
            mask = None if mask.all() else transfers.host(mask)
            batches.append((start + rows, transfers.host(input_ids), mask))
        yield batches


_DONE = object()


def _prefetch(iterable, depth: int):
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead.

    With ``depth=0`` this is plain iteration. An exception in the thread is
    raised again here; leaving the loop early stops the thread.
    """
    if depth <= 0:
        yield from iterable
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in iterable:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer
            put(exc)

    thread = threading.Thread(target=produce, name="skembed-batches", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


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


#: Texts given to the tokenizer at once (its Python lists live for one chunk only).
TOKENIZE_CHUNK = 4096
#: ... and characters: a chunk of long texts costs the tokenizer ~40 bytes a character.
TOKENIZE_CHUNK_CHARS = 500_000


def _chunks(texts: list):
    """``(start, stop)`` of consecutive chunks within both tokenizer limits."""
    start, chars = 0, 0
    for i, text in enumerate(texts):
        if i > start and (i - start >= TOKENIZE_CHUNK or chars + len(text) > TOKENIZE_CHUNK_CHARS):
            yield start, i
            start, chars = i, 0
        chars += len(text)
    if start < len(texts):
        yield start, len(texts)
#: Chunks tokenised and batched ahead of the model by a background thread (0: no thread).
PREFETCH_CHUNKS = 1
#: Embeddings kept on the device before one copy back to host memory.
OUTPUT_CHUNK = 8192


class Encoder:
    """Encode texts with one model; the weights load on first use.

    Parameters
    ----------
    config : EncoderConfig
        Which model, backend, device and precision.
    """

    def __init__(self, config: EncoderConfig):
        self.config = config
        self._lock = threading.Lock()
        self._loaded: _LoadedModel | None = None

    @property
    def loaded(self) -> _LoadedModel:
        global MODEL_LOADS
        with self._lock:
            if self._loaded is None:
                self._loaded = _LoadedModel(self.config, resolve_device(self.config.device))
                MODEL_LOADS += 1
            return self._loaded

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    @property
    def dimension(self) -> int:
        return self.loaded.dimension

    def encode(
        self,
        texts: list,
        *,
        batch_size: int = 32,
        normalize: bool = False,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed distinct ``texts`` into a float32 array, row ``i`` for ``texts[i]``.

        Texts are sorted by (characters, text) and cut into chunks; a
        background thread tokenises each chunk and pads it into batches of
        rows of similar token length while the model runs on the previous
        one. Chunks, and therefore batches and vectors, depend on the set of
        texts only, never on their order. On CUDA the batches are pinned and
        copied asynchronously, and the vectors come back ``OUTPUT_CHUNK`` rows
        at a time.
        """
        import torch
        from tqdm.auto import tqdm

        model = self.loaded
        texts = list(texts)
        out = np.empty((len(texts), model.dimension), dtype=np.float32)
        if not texts:
            return out
        by_characters = sorted(range(len(texts)), key=lambda i: (len(texts[i]), texts[i]))
        ordered = [texts[i] for i in by_characters]
        order = np.array(by_characters)
        cuda = torch.device(model.device).type == "cuda"
        transfers = _Transfers(model.device, asynchronous=cuda)
        chunks = _prefetch(
            _prepared_chunks(model, ordered, batch_size, transfers), PREFETCH_CHUNKS
        )
        progress = tqdm(
            total=len(texts), disable=not show_progress_bar, desc="Embedding", unit="text",
            leave=False,
        )
        copies = []  # (rows of out, host tensor, event or None) being copied back
        pending_rows, pending = [], []  # vectors still on the device, and their rows

        def send_back():
            copies.append((np.concatenate(pending_rows), *transfers.download(torch.cat(pending))))
            pending_rows.clear()
            pending.clear()

        def finish_copies(keep: int):
            while len(copies) > keep:
                rows, host, event = copies.pop(0)
                if event is not None:
                    event.synchronize()
                out[rows] = host.numpy()

        with model.no_grad(), progress:
            for batches in chunks:
                for positions, input_ids, attention_mask in batches:
                    pending.append(
                        model.forward(
                            transfers.upload(input_ids),
                            None if attention_mask is None else transfers.upload(attention_mask),
                        )
                    )
                    pending_rows.append(order[positions])
                    progress.update(len(positions))
                    if sum(map(len, pending_rows)) >= OUTPUT_CHUNK:
                        send_back()
                        # One copy stays in flight while the next batches run.
                        finish_copies(keep=1)
            if pending:
                send_back()
            finish_copies(keep=0)
        if normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out


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


_ENCODERS: dict = {}
_ENCODERS_LOCK = threading.Lock()

#: How many times this process has loaded a model's weights (read by tests and
#: tools, e.g. on Dask workers, to check that a model loads once per process).
MODEL_LOADS = 0


def get_encoder(config: EncoderConfig) -> Encoder:
    """Return the process-wide encoder of ``config`` (created, not loaded, on first call)."""
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.get(config)
        if encoder is None:
            encoder = _ENCODERS[config] = Encoder(config)
        return encoder

"""Encode text with a loaded model: skembed's own batching, or ``SentenceTransformer.encode``.

This module knows nothing of scikit-learn. :func:`encode` returns the vectors
``SentenceTransformer.encode`` gives for a config (its prompt, truncation and
``truncate_dim``, never normalised: callers do that), in the order of the
texts given.

Texts are sorted by (characters, text) first, so batches, and therefore
vectors, depend on the set of texts only, never on their order. For a model
skembed understands (a transformers network, then pooling, dense and
normalisation modules) the sorted texts are cut into chunks, each tokenised
by a background thread into batches of rows of similar token length while the
model runs on the previous chunk. Any other model is encoded by
``SentenceTransformer.encode`` itself, chunk by chunk.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from ._config import EncoderConfig
from ._devices import resolve_device
from ._loaded_model import LoadedModel, UnsupportedModelError
from ._prompts import resolve_prompt
from ._registry import load_model
from ._warnings import caller_stacklevel
from ._windows import WindowPlan, cut


class TruncationWarning(UserWarning):
    """Texts longer than the model reads were cut to its ``max_seq_length``."""


class ModelReleasedError(RuntimeError):
    """The model of a plan was released (:func:`~skembed.unload_models`): prepare it again."""


@dataclass(frozen=True)
class Plan:
    """How one config runs on its loaded model: prepared once, used for every call.

    It holds its model weakly: the registry owns the weights, so that
    :func:`~skembed.unload_models` frees them whatever plans exist; a plan
    whose model was released is no longer :attr:`live`.
    """

    model_ref: weakref.ref
    prompt: str
    max_length: int | None
    truncate_dim: int | None
    engine: str
    windows: WindowPlan | None = None  # long_texts="chunk": how texts are cut
    asked_max_length: int | None = None  # the config's max_seq_length, for the warning

    @property
    def model(self) -> LoadedModel:
        model = self.model_ref()
        if model is None:
            raise ModelReleasedError("This plan's model was released; prepare the plan again.")
        return model

    @property
    def live(self) -> bool:
        """Whether its model is still loaded."""
        return self.model_ref() is not None

    @property
    def dimension(self) -> int:
        if self.truncate_dim is None:
            return self.model.dimension
        return min(self.model.dimension, self.truncate_dim)


def prepare(config: EncoderConfig) -> Plan:
    """The :class:`Plan` of ``config``: its model loaded, its prompt, lengths and windows
    resolved. Callers that encode many times keep it (``encode(..., plan=plan)``)."""
    model = load_model(config)
    prompt = resolve_prompt(
        config.prompt, config.prompt_name, model.prompts, model.default_prompt_name
    ) or ""
    engine = "skembed" if model.fast_path_problem is None else "sentence-transformers"
    if prompt and not model.include_prompt:
        if model.st is None:
            raise UnsupportedModelError(
                model.refusal("its pooling leaves the prompt's tokens out"))
        engine = "sentence-transformers"  # it needs the prompt's length, as encode measures it
    truncate_dim = config.truncate_dim if config.truncate_dim is not None else model.truncate_dim
    max_length = model.max_length(config.max_seq_length)
    windows = None
    if config.long_texts == "chunk":
        windows = _window_plan(model, engine, prompt, max_length, config)
    return Plan(weakref.ref(model), prompt, max_length, truncate_dim, engine, windows,
                config.max_seq_length)


def _window_plan(model: LoadedModel, engine: str, prompt: str, max_length: int,
                 config: EncoderConfig) -> WindowPlan:
    """How ``long_texts="chunk"`` cuts texts for ``model``, or a ValueError saying why it cannot."""
    if model.tokenizer is None:
        raise ValueError(
            f"long_texts='chunk' does not apply to model {model.name!r}: its first module "
            f"({type(model.st[0]).__name__}) reads whole texts, so it has no window to cut "
            "them into. Use long_texts='truncate' (the model already reads every token)."
        )
    around = model.special_tokens_around()
    if engine != "skembed" or around is None:
        why = (model.fast_path_problem or "its pooling leaves the prompt's tokens out"
               if engine != "skembed" else "its tokenizer's special tokens depend on the text")
        raise ValueError(
            f"long_texts='chunk' embeds windows of tokens with skembed's own batching, which "
            f"cannot run model {model.name!r}: {why}. Use long_texts='truncate'."
        )
    prompt_ids = tuple(model.raw_token_ids([prompt], special_tokens=False)[0]) if prompt else ()
    plan = WindowPlan(*around, prompt_ids, max_length, config.window_overlap,
                      config.max_windows)
    plan.check(model.name)
    return plan


def resolve_backend(config: EncoderConfig) -> str:
    """The backend ``config`` runs on: ``backend="auto"`` is ``"openvino"`` where it runs the
    model exactly on this machine (OpenVINO installed, the CPU, a convertible model),
    otherwise ``"sentence-transformers"``; any other backend is itself.

    On a CPU, OpenVINO in float32 is faster than torch and as exact
    (docs/openvino). ``precision="int8"`` is OpenVINO's alone.
    """
    from . import _openvino

    if config.backend != "auto":
        return config.backend
    if config.precision == "int8":
        return "openvino"
    if (config.precision == "float16" or not _openvino.available()
            or resolve_device(config.device) != "cpu"):
        return "sentence-transformers"
    try:
        prepare(replace(config, backend="openvino"))
    except (UnsupportedModelError, _openvino.UnconvertibleModelError):
        return "sentence-transformers"
    return "openvino"


def calibrate(config: EncoderConfig, texts: list, *, show_progress_bar: bool = False) -> tuple:
    """``(folder, n_texts)``: ``config``'s model on OpenVINO quantised to int8, calibrated on
    a deterministic sample of the distinct ``texts`` (as the model reads them: prompt,
    truncation), in a new folder the caller owns; and how many texts calibrated it.

    Fewer than ``MIN_CALIBRATION_TEXTS`` texts still calibrate it, with a
    :class:`~skembed.CalibrationWarning`.
    """
    from . import _openvino

    plan = prepare(replace(config, backend="openvino", precision="float32", int8_model=None))
    sample = _openvino.calibration_sample(texts)
    if len(sample) < _openvino.MIN_CALIBRATION_TEXTS:
        warnings.warn(
            f"precision='int8' calibrated the model on {len(sample)} distinct texts, fewer "
            f"than the {_openvino.MIN_CALIBRATION_TEXTS} it should have (it takes up to "
            f"{_openvino.MAX_CALIBRATION_TEXTS}): its vectors may stray further from float32. "
            "Fit on more texts of the kind it will embed (no labels needed).",
            _openvino.CalibrationWarning,
            stacklevel=caller_stacklevel(),
        )
    samples = [(np.array([ids], dtype=np.int64), np.ones((1, len(ids)), dtype=np.int64))
               for ids in token_ids(plan, sample)]
    folder = _openvino.quantize(plan.model.openvino_folder, samples,
                                show_progress_bar=show_progress_bar)
    return folder, len(sample)


def dimension(config: EncoderConfig) -> int:
    """Dimension of the vectors of ``config`` (after ``truncate_dim``); loads the model."""
    return prepare(config).dimension


def engine(config: EncoderConfig) -> str:
    """``"skembed"`` or ``"sentence-transformers"``: which code computes the vectors of
    ``config`` (skembed's batching, or ``SentenceTransformer.encode``); loads the model."""
    return prepare(config).engine


def encode(config: EncoderConfig | None, texts: list, *, batch_size: int = 32,
           show_progress_bar: bool = False, warn_on_truncation: bool = True,
           plan: Plan | None = None) -> np.ndarray:
    """Embed distinct ``texts`` into a float32 array, row ``i`` for ``texts[i]``.

    Parameters
    ----------
    config : EncoderConfig or None
        The model and how to run it (None with ``plan``).
    texts : list of str
        Distinct texts.
    batch_size : int
        Texts per forward pass.
    show_progress_bar : bool
        Show a progress bar on stderr.
    warn_on_truncation : bool
        Issue a :class:`TruncationWarning` when texts are longer than the
        model reads.
    plan : Plan or None
        ``prepare(config)``, prepared once by the caller (``config`` is then
        not read).
    """
    plan = prepare(config) if plan is None else plan
    model = plan.model  # a strong reference for the call: the plan's own is weak
    texts = list(texts)
    out = np.empty((len(texts), plan.dimension), dtype=np.float32)
    if not texts:
        return out
    by_characters = sorted(range(len(texts)), key=lambda i: (len(texts[i]), texts[i]))
    ordered = [texts[i] for i in by_characters]
    order = np.array(by_characters)
    progress = _progress_bar(len(texts)) if show_progress_bar else contextlib.nullcontext(
        _NO_PROGRESS)
    with progress as progress:
        if plan.engine == "skembed" and _fits_one_batch(plan, ordered, batch_size):
            longest = _encode_one_batch(plan, ordered, order, out)
            progress.update(len(texts))
        elif plan.engine == "skembed":
            longest = _encode_in_batches(plan, ordered, order, out, batch_size, progress)
        else:
            longest = _encode_with_sentence_transformers(plan, ordered, order, out, batch_size,
                                                         progress)
    if warn_on_truncation and plan.max_length is not None and model.tokenizer is not None:
        _warn_about_truncation(plan, [ordered[i] for i in longest], len(texts),
                               plan.asked_max_length)
    return out


class _NoProgress:
    """What a progress bar is told when none is shown (building a disabled tqdm costs more
    than a small call's work)."""

    def update(self, n: int) -> None:
        pass


_NO_PROGRESS = _NoProgress()


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Embedding", unit="text", leave=False)


# -- skembed's batching -----------------------------------------------------------
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


def token_ids(plan: Plan, texts: list, *, truncate: bool = True) -> list:
    """Lists of token ids of ``texts`` (prompt included), as the model's tokenizer gives them."""
    model = plan.model
    max_length = plan.max_length if truncate else None
    if plan.prompt:
        texts = [plan.prompt + t for t in texts]  # a new string: no copy needed
    if not model.has_rust_tokenizer:
        return model.tokenizer(
            texts, truncation=max_length is not None, max_length=max_length, padding=False,
            return_attention_mask=False, return_token_type_ids=False,
        )["input_ids"]
    if not plan.prompt:
        texts = [t if t.isascii() else _fresh_copy(t) for t in texts]
    # Straight to the Rust tokenizer: it releases the GIL while it works on
    # all cores, and skips the Python objects transformers would build.
    return model.rust_token_ids(texts, max_length)


def tokenize(plan: Plan, texts: list) -> _Tokens:
    """Token ids of ``texts``, truncated, without padding, in compact arrays.

    Texts go to the (parallel, Rust) fast tokenizer in chunks of at most
    ``TOKENIZE_CHUNK`` texts and ``TOKENIZE_CHUNK_CHARS`` characters (the
    tokenizer holds ~40 bytes a character of a chunk while it works), and
    each chunk's ids are packed into int32 arrays at once, so memory stays
    near 4 bytes a token whatever the number of texts.
    """
    parts = [_packed(token_ids(plan, texts[start:stop])) for start, stop in _chunks(texts)]
    return _Tokens(
        np.concatenate([p.flat for p in parts]) if parts else np.empty(0, np.int32),
        np.concatenate([p.lengths for p in parts]) if parts else np.empty(0, np.int32),
    )


def _packed(ids: list) -> _Tokens:
    """Lists of token ids as one compact :class:`_Tokens`."""
    lengths = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32,
                       count=int(lengths.sum()))
    return _Tokens(flat, lengths)


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
        from torch import from_numpy

        tensor = from_numpy(array)
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


@dataclass
class _Chunk:
    """One chunk of the sorted texts, tokenised and cut into padded batches."""

    start: int
    batches: list  # (rows, input_ids, attention_mask or None)
    full_rows: np.ndarray  # positions of the texts that filled max_length (maybe cut)
    #: With long_texts="chunk", the rows are windows: each row's text (position in the
    #: chunk), weight and whether it is a whole text; None when each row is a text.
    windows: object = None


def _prepare_chunk(plan: Plan, ordered: list, span: tuple, batch_size: int,
                   transfers: _Transfers) -> _Chunk:
    """Tokenise ``ordered[start:stop]`` and pad it into batches of similar token length.

    With ``long_texts="chunk"`` a text longer than the model reads becomes
    several rows, its windows, which are batched with the rest by length. The
    mask is None when no row of a batch is padded (the model then needs none).
    """
    start, stop = span
    windows = None
    if plan.windows is None:
        tokens = tokenize(plan, ordered[start:stop])
        first = start
    else:
        windows = cut(token_ids(plan, ordered[start:stop], truncate=False), plan.windows)
        tokens = _packed(windows.ids)
        windows.ids = None  # packed: the lists go
        first = 0
    pad_id = plan.model.pad_id
    by_length = np.argsort(tokens.lengths, kind="stable")
    batches = []
    for begin in range(0, len(by_length), batch_size):
        rows = by_length[begin : begin + batch_size]
        input_ids, mask = tokens.padded(rows, pad_id)
        mask = None if mask.all() else transfers.host(mask)
        batches.append((first + rows, transfers.host(input_ids), mask))
    if windows is not None:
        full = windows.capped
    else:
        full = np.flatnonzero(tokens.lengths == plan.max_length) if plan.max_length else []
    return _Chunk(start, batches, start + np.asarray(full, dtype=np.intp), windows)


def _prefetched(function, items, depth: int):
    """``function(item)`` for each of ``items``, computed ``depth`` items ahead in a thread.

    With ``depth=0`` this is plain mapping. An exception is raised again at
    its item; leaving the loop early cancels what was not started.
    """
    if depth <= 0:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="skembed-batches") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _encode_in_batches(plan: Plan, ordered: list, order: np.ndarray, out: np.ndarray,
                       batch_size: int, progress) -> list:
    """Fill ``out`` by skembed's batching; the positions of texts that may have been cut.

    On CUDA the batches are pinned and copied asynchronously, and the vectors
    come back ``OUTPUT_CHUNK`` rows at a time.
    """
    import torch

    model = plan.model
    cuda = torch.device(model.device).type == "cuda"
    transfers = _Transfers(model.device, asynchronous=cuda)
    spans = list(_chunks(ordered, extra_chars=len(plan.prompt)))
    chunks = _prefetched(
        lambda span: _prepare_chunk(plan, ordered, span, batch_size, transfers),
        spans,
        PREFETCH_CHUNKS if len(spans) > 1 else 0,  # one chunk: nothing to overlap
    )
    copies = []  # (rows of out, host tensor, event or None) being copied back
    pending_rows, pending = [], []  # vectors still on the device, and their rows
    full_rows = []

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

    def keep(vectors, positions):
        """Queue the finished vectors of the texts at ``positions`` of the sorted texts."""
        if plan.truncate_dim is not None:
            vectors = vectors[:, : plan.truncate_dim]
        pending.append(vectors)
        pending_rows.append(order[positions])
        progress.update(len(positions))
        if sum(map(len, pending_rows)) >= OUTPUT_CHUNK:
            send_back()
            finish_copies(keep=1)  # one copy stays in flight while the next batches run

    with torch.inference_mode():
        for chunk in chunks:
            full_rows.extend(chunk.full_rows.tolist())
            if chunk.windows is None:  # each row is a text
                for positions, input_ids, attention_mask in chunk.batches:
                    keep(model.forward(
                        transfers.upload(input_ids),
                        None if attention_mask is None else transfers.upload(attention_mask),
                    ), positions)
            else:
                _encode_windows(model, chunk, transfers, keep)
        if pending:
            send_back()
        finish_copies(keep=0)
    return full_rows


#: Whether a call of at most one batch of texts on the CPU takes the short path (tests
#: turn it off to compare both paths).
ONE_BATCH_PATH = True


def _fits_one_batch(plan: Plan, ordered: list, batch_size: int) -> bool:
    return (ONE_BATCH_PATH and len(ordered) <= batch_size and plan.windows is None
            and plan.model.device == "cpu"
            and sum(map(len, ordered)) + len(ordered) * len(plan.prompt) <= TOKENIZE_CHUNK_CHARS)


def _encode_one_batch(plan: Plan, ordered: list, order: np.ndarray, out: np.ndarray) -> list:
    """Fill ``out`` for texts that make one batch on the CPU: the batch
    :func:`_encode_in_batches` builds (rows sorted stably by token length, padded to
    the longest, no mask when none is padded), without its chunks, threads and copies,
    whose cost a service answering one text per call would pay on every call."""
    import torch

    model = plan.model
    ids = token_ids(plan, ordered)
    lengths = [len(i) for i in ids]
    rows = sorted(range(len(ids)), key=lengths.__getitem__)  # stable, as np.argsort's
    width = lengths[rows[-1]]
    input_ids = np.full((len(rows), width), model.pad_id, dtype=np.int64)
    for row, i in enumerate(rows):
        input_ids[row, : lengths[i]] = ids[i]
    mask = None
    if lengths[rows[0]] != width:
        row_lengths = np.array([lengths[i] for i in rows])
        mask = torch.from_numpy((np.arange(width) < row_lengths[:, None]).astype(np.int64))
    with torch.inference_mode():
        vectors = model.forward(torch.from_numpy(input_ids), mask)
        if plan.truncate_dim is not None:
            vectors = vectors[:, : plan.truncate_dim]
        out[order[rows]] = vectors.float().numpy()
    return [i for i in range(len(ids)) if lengths[i] == plan.max_length]


def _encode_windows(model: LoadedModel, chunk: _Chunk, transfers: _Transfers, keep) -> None:
    """Embed a chunk whose rows are windows: whole texts go out as they come, the windows of a
    longer text are summed by their weights on the device, and its mean is finished last."""
    import torch

    windows = chunk.windows
    long = np.unique(windows.owner[~windows.whole])  # the chunk's texts that are cut
    sums = torch.zeros((len(long), model.dimension), dtype=torch.float32, device=model.device)
    totals = np.zeros(len(long))
    for rows, input_ids, attention_mask in chunk.batches:
        body = model.forward(
            transfers.upload(input_ids),
            None if attention_mask is None else transfers.upload(attention_mask),
            finish=False,
        )
        whole = windows.whole[rows]
        if whole.all():
            keep(model.finish(body), chunk.start + windows.owner[rows])
            continue
        if whole.any():
            selected = torch.from_numpy(np.flatnonzero(whole)).to(model.device)
            keep(model.finish(body.index_select(0, selected)),
                 chunk.start + windows.owner[rows[whole]])
        parts = rows[~whole]
        slots = np.searchsorted(long, windows.owner[parts])
        weights = windows.weight[parts]
        np.add.at(totals, slots, weights)
        selected = torch.from_numpy(np.flatnonzero(~whole)).to(model.device)
        scaled = body.index_select(0, selected).float() * torch.from_numpy(
            weights.astype(np.float32)).to(model.device)[:, None]
        sums.index_add_(0, torch.from_numpy(slots).to(model.device), scaled)
    if len(long):
        means = sums / torch.from_numpy(totals.astype(np.float32)).to(model.device)[:, None]
        keep(model.finish(means), chunk.start + long)


# -- SentenceTransformer.encode ---------------------------------------------------------
#: Texts given to ``SentenceTransformer.encode`` at once (the progress bar moves per chunk).
ENCODE_CHUNK = 4096


def _encode_with_sentence_transformers(plan: Plan, ordered: list, order: np.ndarray,
                                       out: np.ndarray, batch_size: int, progress) -> list:
    """Fill ``out`` by ``SentenceTransformer.encode``; the positions of every text."""
    for start in range(0, len(ordered), ENCODE_CHUNK):
        chunk = ordered[start : start + ENCODE_CHUNK]
        out[order[start : start + len(chunk)]] = plan.model.encode_with_sentence_transformers(
            chunk, prompt=plan.prompt, batch_size=batch_size, truncate_dim=plan.truncate_dim,
            max_length=plan.max_length,
        )
        progress.update(len(chunk))
    return list(range(len(ordered)))


def _warn_about_truncation(plan: Plan, candidates: list, n_texts: int,
                           asked: int | None) -> None:
    """Warn once if texts of ``candidates`` are longer than the model reads.

    They are tokenised again, whole, chunk by chunk (as for encoding, so
    memory stays bounded); only their lengths are kept. ``asked`` is the
    ``max_seq_length`` the user set, which the model's positions may cap.
    """
    windows = plan.windows
    n_cut, longest = 0, 0
    for start, stop in _chunks(candidates, extra_chars=len(plan.prompt)):
        for ids in token_ids(plan, candidates[start:stop], truncate=False):
            cut_off = (len(ids) > plan.max_length if windows is None
                       else windows.max_windows is not None
                       and windows.n_windows(len(ids)) > windows.max_windows)
            if cut_off:
                n_cut, longest = n_cut + 1, max(longest, len(ids))
    if not n_cut:
        return
    prompt = ", its prompt included" if plan.prompt else ""
    if windows is not None:
        size = windows.text_tokens()
        kept = windows.max_windows * (size - windows.overlap) + windows.overlap
        warnings.warn(
            f"{n_cut} of {n_texts} texts need more than max_windows={windows.max_windows} "
            f"windows of {plan.max_length} tokens (the longest has {longest} tokens{prompt}): "
            f"only their first {windows.max_windows} windows (their first {kept} text tokens) "
            "were embedded. To read more, raise max_windows or set it to None; "
            "warn_on_truncation=False silences this.",
            TruncationWarning,
            stacklevel=caller_stacklevel(),
        )
        return
    limit = plan.model.position_limit
    more = (f"raise max_seq_length (up to {limit}, the model's positions)"
            if limit and limit > plan.max_length else "shorten the texts")
    if asked is not None and asked > plan.max_length:
        more += f" (max_seq_length={asked} is past them: the model has no position beyond)"
    if plan.engine == "skembed":
        more += ", or set long_texts='chunk' to embed each text whole, window by window"
    warnings.warn(
        f"{n_cut} of {n_texts} texts are longer than the {plan.max_length} tokens that "
        f"model {plan.model.name!r} reads (the longest has {longest} tokens{prompt}): only "
        f"their first {plan.max_length} tokens were embedded, as sentence-transformers does. "
        f"To read more, {more}; warn_on_truncation=False silences this.",
        TruncationWarning,
        stacklevel=caller_stacklevel(),
    )


#: Texts given to the tokenizer at once (its Python lists live for one chunk only).
TOKENIZE_CHUNK = 4096
#: ... and characters: a chunk of long texts costs the tokenizer ~40 bytes a character.
TOKENIZE_CHUNK_CHARS = 500_000
#: Chunks tokenised and batched ahead of the model by a background thread (0: no thread).
PREFETCH_CHUNKS = 1
#: Embeddings kept on the device before one copy back to host memory.
OUTPUT_CHUNK = 8192


def _chunks(texts: list, extra_chars: int = 0):
    """``(start, stop)`` of consecutive chunks within both tokenizer limits.

    ``extra_chars`` is added to each text's length (a prompt put before it).
    """
    start, chars = 0, 0
    for i, text in enumerate(texts):
        size = len(text) + extra_chars
        if i > start and (i - start >= TOKENIZE_CHUNK or chars + size > TOKENIZE_CHUNK_CHARS):
            yield start, i
            start, chars = i, 0
        chars += size
    if start < len(texts):
        yield start, len(texts)

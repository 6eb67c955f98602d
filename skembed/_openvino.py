"""OpenVINO: a model's torch modules converted once, cached on disk, and run on the CPU.

Knows nothing of scikit-learn nor of how skembed batches texts: it turns a
list of sentence-transformers modules (a transformers network, then pooling
and Dense modules) into an OpenVINO model whose inputs are ``input_ids`` and
``attention_mask`` and whose output is the sentence embedding, runs it, and
quantises it to int8 on calibration batches.

The conversion goes through OpenVINO's PyTorch frontend directly (what
``openvino.convert_model`` calls), from the torch modules already loaded: no
second loader, no optimum. It is checked against the torch modules on probe
batches before it is kept (:data:`EXACT_TOLERANCE`), so a model that converts
but computes something else is refused, never served.

Nothing here phones home: importing OpenVINO (its OVC tools) or NNCF starts
OpenVINO's telemetry, which writes a client id to the home folder and sends
events from ``openvino.convert_model`` and ``nncf.quantize``. So both are
imported with the telemetry's own switches off (:func:`_import`), and
``convert_model`` is not called.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

#: Bump when the graph skembed builds changes (its inputs, what it ends with).
GRAPH_VERSION = 2
#: Where converted models are kept, when set; else ``$XDG_CACHE_HOME/skembed/openvino``.
CACHE_ENV = "SKEMBED_OPENVINO_CACHE"
GRAPH_FILE = "openvino_model.xml"
WEIGHTS_FILE = "openvino_model.bin"
_DONE_FILE = "skembed-conversion.json"
#: Largest difference allowed between the converted model's float32 vectors and torch's.
EXACT_TOLERANCE = 1e-5
#: The texts an int8 model is calibrated on: at most this many of the fit texts ...
MAX_CALIBRATION_TEXTS = 300
#: ... and fewer than this many is thin calibration, which fit warns about.
MIN_CALIBRATION_TEXTS = 32
_HINTS = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}


class UnconvertibleModelError(ValueError):
    """A model that OpenVINO cannot run exactly as torch does; the message says why."""


class CalibrationWarning(UserWarning):
    """An int8 model was calibrated on fewer texts than it should be."""


def require() -> None:
    """An ImportError naming the extra to install, when OpenVINO is missing."""
    try:
        _import("openvino")
    except ImportError as exc:
        raise ImportError(
            "backend='openvino' needs OpenVINO: pip install 'skembed[openvino]' "
            f"(openvino, and nncf for precision='int8'). ({exc})"
        ) from exc


def available() -> bool:
    """Whether OpenVINO can be imported."""
    try:
        require()
    except ImportError:
        return False
    return True


def versions() -> dict:
    """The versions of the libraries that shape a converted model."""
    import openvino
    import sentence_transformers
    import torch
    import transformers

    return {"openvino": openvino.get_version(), "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence-transformers": sentence_transformers.__version__}


def cache_dir() -> Path:
    """The folder of converted models (:data:`CACHE_ENV`, else the user's cache folder)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "skembed", "openvino")


_CORE = None
_CORE_LOCK = threading.Lock()


def _core():
    """The process's ``openvino.Core`` (one per process, as OpenVINO advises)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino

            _CORE = openvino.Core()
        return _CORE


class _Graph:
    """The torch modules as one module of ``(input_ids, attention_mask) -> embedding``."""

    @staticmethod
    def build(modules: list):
        import torch

        class Graph(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.stack = torch.nn.ModuleList(modules)

            def forward(self, input_ids, attention_mask):
                features = {"input_ids": input_ids, "attention_mask": attention_mask}
                for module in self.stack:
                    features = module(features)
                return features["sentence_embedding"]

        return Graph().eval()


def conversion_key(identity: str, arguments: tuple) -> str:
    """The name of a model's conversion in the cache: its files' identity, its loader
    arguments, the graph's version and the versions of the libraries that build it."""
    description = {"identity": identity, "arguments": repr(arguments),
                   "graph_version": GRAPH_VERSION, **versions()}
    return hashlib.blake2b(json.dumps(description, sort_keys=True).encode(),
                           digest_size=16).hexdigest()


#: Conversions this process made (a test reads it: a second process converts nothing).
CONVERSIONS = 0


def converted_model(modules: list, name: str, key: str, probes: list) -> Path:
    """The folder of ``modules`` converted to OpenVINO, from the cache or converted now.

    ``probes`` are ``(input_ids, attention_mask)`` int64 batches: the first
    (padded) traces the modules, and every one is run by both torch and the
    converted model, which must agree within :data:`EXACT_TOLERANCE`. A
    conversion lands in the cache whole or not at all (written aside, then
    renamed), so processes may share the cache.
    """
    global CONVERSIONS
    folder = cache_dir() / key
    if (folder / _DONE_FILE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    try:
        graph = _Graph.build(modules)
        model = _convert(graph, probes[0], name)
        import openvino

        openvino.save_model(model, str(work / GRAPH_FILE), compress_to_fp16=False)
        _check_exact(graph, work, probes, name)
        (work / _DONE_FILE).write_text(json.dumps({"model": name, **versions()}))
        CONVERSIONS += 1
        try:
            os.replace(work, folder)
        except OSError:  # another process converted it first: theirs is as good
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


def _convert(graph, example: tuple, name: str):
    import torch
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    example = tuple(torch.from_numpy(a) for a in example)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing notes about Python control flow
            decoder = TorchScriptPythonDecoder(graph, example_input=example, shared_memory=False)
            frontend = FrontEndManager().load_by_framework("pytorch")
            model = frontend.convert(frontend.load(decoder))
    except Exception as exc:  # any failure of the tracer or of the frontend
        raise UnconvertibleModelError(
            f"backend='openvino' could not convert model {name!r}: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''} "
            "Use backend='sentence-transformers'."
        ) from exc
    import openvino
    from openvino._offline_transformations import apply_moc_transformations

    # What openvino.convert_model does after the frontend (its graph simplifications).
    apply_moc_transformations(model, cf=False, smart_reshape=True)
    for port, input_name in zip(model.inputs, ("input_ids", "attention_mask")):
        port.get_tensor().set_names({input_name})
    model.reshape({"input_ids": openvino.PartialShape([-1, -1]),
                   "attention_mask": openvino.PartialShape([-1, -1])})
    return model


def _check_exact(graph, folder: Path, probes: list, name: str) -> None:
    import torch

    compiled = CompiledModel(folder, "float32")
    worst = 0.0
    for input_ids, attention_mask in probes:
        with torch.inference_mode():
            expected = graph(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        difference = np.abs(compiled(input_ids, attention_mask) - expected.float().numpy())
        # NaN or infinity anywhere is the worst difference (max() would pass over a NaN).
        worst = max(worst, float(difference.max()) if np.isfinite(difference).all()
                    else float("inf"))
    if not worst <= EXACT_TOLERANCE:
        raise UnconvertibleModelError(
            f"backend='openvino' converted model {name!r}, but its vectors differ from "
            f"torch's by up to {worst:.2e} (more than {EXACT_TOLERANCE:g}), so it is not "
            "used. Use backend='sentence-transformers'."
        )


class CompiledModel:
    """A converted model compiled for this CPU in one precision; call it on int64 batches.

    ``precision`` is the inference precision of the float operations:
    ``"float32"`` (exact), ``"bfloat16"``, or ``"int8"`` for a quantised
    model (its remaining float operations in float32). Each thread gets its
    own inference request: calls from several threads are safe.
    """

    def __init__(self, folder: str | os.PathLike, precision: str):
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        self.folder = Path(folder)
        self.compiled = _core().compile_model(str(self.folder / GRAPH_FILE), "CPU", config)
        self._requests = threading.local()

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The float32 embeddings of one right-padded batch."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        result = request.infer({"input_ids": input_ids, "attention_mask": attention_mask},
                               share_inputs=True)
        return np.asarray(result[0], dtype=np.float32)


def calibration_sample(texts: list, size: int = MAX_CALIBRATION_TEXTS) -> list:
    """At most ``size`` of the distinct ``texts``, the same for the same set of texts
    (whatever their order or repetitions), in a fixed order.

    >>> first = calibration_sample(["b", "a", "c", "a"], size=2)
    >>> first == calibration_sample(["c", "a", "b"], size=2), len(first)
    (True, 2)
    """
    distinct = sorted(set(texts))
    if len(distinct) <= size:
        return distinct
    chosen = np.random.RandomState(0).choice(len(distinct), size=size, replace=False)
    return [distinct[i] for i in sorted(chosen)]


def quantize(folder: str | os.PathLike, samples: list, *, show_progress_bar: bool) -> str:
    """A new folder holding the model of ``folder`` quantised to int8 (NNCF's static
    post-training quantisation, transformer preset), calibrated on ``samples``: one
    ``(input_ids, attention_mask)`` batch per text. The caller owns the folder."""
    nncf = _import_nncf()
    import openvino

    model = _core().read_model(str(Path(folder) / GRAPH_FILE))
    dataset = nncf.Dataset([{"input_ids": ids, "attention_mask": mask} for ids, mask in samples])
    with _nncf_quiet(show_progress_bar):
        quantized = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(samples))
    _canonical_names(quantized)
    out = tempfile.mkdtemp(prefix="skembed-int8-")
    openvino.save_model(quantized, os.path.join(out, GRAPH_FILE))
    return out


_AUTOMATIC_NAME = re.compile(r"[A-Za-z]+_\d+")


def _canonical_names(model) -> None:
    """Name the operations OpenVINO named by a process-wide counter (``Constant_103792``)
    by their place in the graph instead, so that the same calibration writes the same
    files (and so the same fingerprint) in any process."""
    model.set_friendly_name("skembed")
    for index, op in enumerate(model.get_ordered_ops()):
        if _AUTOMATIC_NAME.fullmatch(op.get_friendly_name()):
            op.set_friendly_name(f"{op.get_type_name()}_{index}")


def nncf_version() -> str:
    return _import_nncf().__version__


def _import(name: str):
    """The module ``name`` (openvino or nncf), imported with OpenVINO's telemetry off.

    OpenVINO's telemetry starts as ``openvino`` (its OVC tools) or ``nncf`` is
    imported, and declines to where ``CI`` is true; NNCF uses a stub instead
    where ``NNCF_CI`` is set. Both are read at import only, so both are set
    for the import only: nothing is sent nor written to the user's home folder.
    (Where the user imported them first, their own settings hold.)
    """
    if name in sys.modules:
        return sys.modules[name]
    with _environment(CI="true", NNCF_CI="1"):
        return importlib.import_module(name)


def _import_nncf():
    """NNCF, imported with its telemetry off (:func:`_import`)."""
    try:
        _import("openvino")
        nncf = _import("nncf")
    except ImportError as exc:
        raise ImportError(
            "precision='int8' needs NNCF: pip install 'skembed[openvino]'. "
            f"({exc})"
        ) from exc
    return nncf


@contextlib.contextmanager
def _environment(**values):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _nncf_quiet(show_progress_bar: bool):
    """NNCF's progress bars (written to stdout) only when asked, and its logger at errors."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if show_progress_bar:
                yield
            else:
                with contextlib.redirect_stdout(io.StringIO()):
                    yield
    finally:
        logger.setLevel(level)

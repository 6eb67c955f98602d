"""Save a fitted estimator to a folder that loads safely anywhere: :func:`save` and :func:`load`.

The folder holds::

    skembed.json         what is there: format, versions, a SHA-256 of every file
    estimator.skops      the estimator, in skops' format (no pickle: nothing runs on load)
    encoders/encoder-N/  each fine-tuned encoder, an ordinary sentence-transformers
                         folder (safetensors weights) that SentenceTransformer loads
    README.md            a short model card

:func:`load` checks every file against ``skembed.json`` before it reads any,
refuses a type that is neither skembed's nor trusted by skops (naming it), and
refuses an encoder folder that would run code (a module outside
sentence-transformers, weights in a pickle-based format).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._cache import EmbeddingCache
from ._finetune import FineTuneConfig
from ._heads import MonotoneInterpolation
from ._label_tuning import LabelFineTuneConfig, SetFitConfig
from ._lifecycle import FrozenParameters
from ._number_tuning import NumericFineTuneConfig
from ._regressor import SimilarityRegressor
from ._openvino import GRAPH_FILE, WEIGHTS_FILE
from ._tuned import QuantizedModel, TunedEncoder, loading, saving
from ._vectorizer import EmbeddingVectorizer

FORMAT = "skembed-estimator"
FORMAT_VERSION = 1
MANIFEST = "skembed.json"
ESTIMATOR_FILE = "estimator.skops"
#: The types of skembed that a saved estimator may hold, beside those skops trusts.
TRUSTED_TYPES = tuple(
    f"{cls.__module__}.{cls.__qualname__}"
    for cls in (EmbeddingVectorizer, SimilarityRegressor, MonotoneInterpolation,
                FrozenParameters, TunedEncoder, QuantizedModel, FineTuneConfig,
                LabelFineTuneConfig, SetFitConfig, NumericFineTuneConfig, EmbeddingCache,
                frozenset)
)
#: Weight files that are read with pickle (torch.load): never loaded from a saved folder.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class SavedEstimatorError(ValueError):
    """A saved estimator's folder that :func:`load` refuses: the message says why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_hashes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): _sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def save(estimator, folder, *, metrics: dict | None = None, overwrite: bool = False) -> str:
    """Save a fitted estimator (or pipeline) holding skembed estimators to a folder.

    The folder loads with :func:`load` in another process or on another
    machine. Its fine-tuned encoders are ordinary sentence-transformers
    folders (``SentenceTransformer(folder)`` loads each on its own); the rest
    is in skops' format, which loads without running arbitrary code. A model
    that was not fine-tuned is saved as its name (or path) and fingerprint,
    as in a pickle: a hub model is pinned to its commit at fit.

    Parameters
    ----------
    estimator : fitted estimator
        An :class:`~skembed.EmbeddingVectorizer`, a
        :class:`~skembed.SimilarityRegressor`, or any scikit-learn estimator
        (a ``Pipeline``, a ``ColumnTransformer``) that holds them.
    folder : str or path-like
        Where to save; it must not exist, or be empty, unless ``overwrite``.
    metrics : dict or None, default=None
        Figures to write in the model card (e.g. ``{"test accuracy": 0.91}``).
    overwrite : bool, default=False
        Replace what ``folder`` holds.

    Returns
    -------
    str
        The absolute path of the folder.

    Examples
    --------
    >>> import skembed
    >>> from skembed import EmbeddingVectorizer
    >>> vectorizer = EmbeddingVectorizer(MINILM).fit(["a text"])
    >>> folder = skembed.save(vectorizer, TMP + "/saved")
    >>> skembed.load(folder).transform(["a text"]).shape
    (1, 384)
    """
    import skops.io

    try:
        check_is_fitted(estimator)
    except NotFittedError as exc:
        raise NotFittedError(f"skembed.save saves fitted estimators: {exc}") from None
    target = Path(folder).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{str(target)!r} is a file; skembed.save writes a folder.")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{str(target)!r} is a folder that is not empty; pass "
                              "overwrite=True to replace what it holds.")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        encoders: dict = {}

        def register(encoder: TunedEncoder) -> str:
            if encoder.fingerprint not in encoders:
                reference = f"encoders/encoder-{len(encoders)}"
                encoder.save(work / reference)
                encoders[encoder.fingerprint] = (reference, encoder)
            return encoders[encoder.fingerprint][0]

        with saving(register):
            skops.io.dump(estimator, work / ESTIMATOR_FILE)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "versions": _versions(),
            "estimator": {"file": ESTIMATOR_FILE, "type": _type_name(type(estimator)),
                          "sha256": _sha256(work / ESTIMATOR_FILE)},
            "encoders": {reference: {"fingerprint": fingerprint, "info": encoder.info,
                                     "files": _file_hashes(work / reference)}
                         for fingerprint, (reference, encoder) in encoders.items()},
        }
        (work / "README.md").write_text(_model_card(estimator, manifest, metrics or {}),
                                        encoding="utf-8")
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return str(target)


def _replace(work: Path, target: Path) -> None:
    """Put the finished folder ``work`` in ``target``'s place (the old one goes last)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        target.rename(old)
    work.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in
            ("skembed", "scikit-learn", "sentence-transformers", "transformers", "torch", "skops")}


def _type_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _skembed_estimators(obj, seen=None) -> list:
    """The skembed estimators inside ``obj`` (its parameters and fitted attributes)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    found = [obj] if isinstance(obj, EmbeddingVectorizer | SimilarityRegressor) else []
    if isinstance(obj, list | tuple):
        children = obj
    elif isinstance(obj, dict):
        children = obj.values()
    elif hasattr(obj, "get_params"):
        children = vars(obj).values()
    else:
        children = ()
    for child in children:
        found.extend(_skembed_estimators(child, seen))
    return found


def _model_card(estimator, manifest: dict, metrics: dict) -> str:
    lines = ["# A fitted skembed estimator", "",
             f"Saved by skembed {manifest['versions']['skembed']}: "
             f"`{manifest['estimator']['type']}`. Load it with "
             "`skembed.load(folder)`; each folder under `encoders/` also loads with "
             "`SentenceTransformer(folder)`.", "", "## Models", ""]
    for vectorizer in _skembed_estimators(estimator):
        if isinstance(vectorizer, EmbeddingVectorizer):
            model = vectorizer.get_params()["model"]
            tuned = getattr(vectorizer, "fine_tuned_model_", None) or (
                model if isinstance(model, TunedEncoder) else None)
            if tuned is None:
                lines.append(f"- `{os.fspath(model)}` (not fine-tuned; not copied here)")
    for reference, encoder in manifest["encoders"].items():
        info = encoder["info"]
        if info.get("kind") == "openvino-int8":
            lines.append(f"- `{reference}`: `{info.get('base_model')}` quantised to int8 for "
                         f"OpenVINO {info.get('openvino')} (NNCF {info.get('nncf')}), "
                         f"calibrated on {info.get('n_calibration_texts')} texts")
            continue
        lines += [f"- `{reference}`: `{info.get('base_model')}` fine-tuned on "
                  f"{info.get('n_examples')} {info.get('target', 'examples')}",
                  f"  - recipe: `{json.dumps(info.get('recipe', {}), sort_keys=True)}`"]
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in metrics.items()]
    lines += ["", "## Versions", ""]
    lines += [f"- {name} {version}" for name, version in manifest["versions"].items()]
    return "\n".join(lines) + "\n"


def load(folder, *, trusted=()):
    """Load an estimator saved by :func:`save`, after checking every file of the folder.

    Nothing from the folder runs: the estimator is read by skops, which
    builds only the types it trusts (scikit-learn's, NumPy's, skembed's and
    those named in ``trusted``), and each fine-tuned encoder must be
    safetensors weights and sentence-transformers modules.

    Parameters
    ----------
    folder : str or path-like
        A folder written by :func:`save` (moved or copied anywhere).
    trusted : sequence of str, default=()
        Further types to build, by their full names, as skops names them
        (e.g. ``"mypackage.MyTransformer"``): your own estimators in the pipeline.

    Returns
    -------
    estimator
        The fitted estimator, exactly as saved.

    Raises
    ------
    SavedEstimatorError
        The folder is not a saved estimator, a file differs from what was
        saved (changed, missing or added), a type is not trusted, or an
        encoder would run code.
    """
    import skops.io

    root = Path(folder).expanduser().resolve()
    manifest = _read_manifest(root)
    estimator_file = root / manifest["estimator"]["file"]
    if _sha256(estimator_file) != manifest["estimator"]["sha256"]:
        raise SavedEstimatorError(
            f"{estimator_file.name} in {str(root)!r} is not the file that was saved (its "
            "SHA-256 differs from skembed.json's): it was changed or replaced.")
    checked = {reference: _check_encoder(root, reference, entry)
               for reference, entry in manifest["encoders"].items()}
    untrusted = set(skops.io.get_untrusted_types(file=estimator_file))
    # scikit-learn's own classes are trusted as a whole: skops' list of them lags its
    # releases (scikit-learn 1.6's ColumnTransformer holds _RemainderColsList).
    refused = sorted(name for name in untrusted - set(TRUSTED_TYPES) - set(trusted)
                     if not name.startswith("sklearn."))
    if refused:
        raise SavedEstimatorError(
            f"{estimator_file.name} in {str(root)!r} holds types that are not trusted: "
            f"{refused}. skembed builds only scikit-learn's, NumPy's and its own types; "
            "if you trust these, pass them as skembed.load(folder, trusted=[...]).")

    def resolve(reference: str, fingerprint: str) -> str:
        if reference not in checked or manifest["encoders"][reference]["fingerprint"] != (
                fingerprint):
            raise SavedEstimatorError(
                f"The estimator refers to an encoder {reference!r} that skembed.json does not "
                "list with that fingerprint.")
        return checked[reference]

    with loading(resolve):
        return skops.io.load(estimator_file, trusted=sorted(untrusted))


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SavedEstimatorError(
            f"{str(root)!r} is not a folder written by skembed.save: it has no {MANIFEST}."
        ) from None
    except ValueError as exc:
        raise SavedEstimatorError(f"{path} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise SavedEstimatorError(
            f"{path} describes format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this skembed reads {FORMAT!r} version "
            f"{FORMAT_VERSION}.")
    return manifest


def _check_encoder(root: Path, reference: str, entry: dict) -> str:
    """The encoder folder's path, once its files are exactly those saved and safe to load."""
    folder = (root / reference).resolve()
    if root not in folder.parents:
        raise SavedEstimatorError(f"skembed.json names an encoder outside the folder: "
                                  f"{reference!r}.")
    if not folder.is_dir():
        raise SavedEstimatorError(f"The encoder folder {reference!r} is missing from "
                                  f"{str(root)!r}.")
    found, saved = _file_hashes(folder), entry["files"]
    changed = sorted(name for name in set(found) & set(saved) if found[name] != saved[name])
    missing, added = sorted(set(saved) - set(found)), sorted(set(found) - set(saved))
    if changed or missing or added:
        what = "; ".join(f"{label}: {names}" for label, names in
                         (("changed", changed), ("missing", missing), ("added", added)) if names)
        raise SavedEstimatorError(
            f"The encoder {reference!r} in {str(root)!r} is not what was saved ({what}): "
            "its files were changed after skembed.save.")
    if entry.get("info", {}).get("kind") == "openvino-int8":
        # OpenVINO reads its .bin as raw weights, never with pickle; nothing else may be there.
        expected = {GRAPH_FILE, WEIGHTS_FILE}
        if set(found) != expected or set(saved) != expected:
            raise SavedEstimatorError(
                f"The int8 OpenVINO model {reference!r} in {str(root)!r} must hold exactly "
                f"{sorted(expected)}; it holds {sorted(found)}.")
        return str(folder)
    unsafe = sorted(name for name in found if name.endswith(_PICKLE_SUFFIXES + (".py",)))
    if unsafe:
        raise SavedEstimatorError(
            f"The encoder {reference!r} holds files that would run code when loaded: {unsafe} "
            "(skembed saves safetensors weights and no code).")
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8")) if (
        folder / "modules.json").is_file() else []
    foreign = sorted({m.get("type", "") for m in modules
                      if not str(m.get("type", "")).startswith("sentence_transformers.")})
    if foreign:
        raise SavedEstimatorError(
            f"The encoder {reference!r} names modules outside sentence-transformers in its "
            f"modules.json: {foreign}; loading them would import and run their code.")
    return str(folder)

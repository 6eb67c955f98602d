"""Weights made at fit as values: they travel with the estimator that made them.

:class:`TunedEncoder` is a fine-tuned encoder; :class:`QuantizedModel` an
OpenVINO model quantised to int8 on the fit texts. What follows says it of
the first; the second is the same kind of value, for its own folder.

Fine-tuning writes a sentence-transformers folder; :class:`TunedEncoder` owns
it. The folder lives while a :class:`TunedEncoder` of its content lives in
this process, and is removed after (or when the process exits). Pickling a
:class:`TunedEncoder` carries the model's files (safetensors weights,
tokenizer, configs: exactly the files its fingerprint covers), so an
estimator pickled in one process loads in another, or on another machine,
with no hub and no folder of the old one: there the files are written to a
fresh folder on first use, and checked against the fingerprint.

Inside :func:`saving` (what :func:`skembed.save` uses) it pickles as a
reference to a folder of the save instead, and inside :func:`loading` it is
restored from one.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

from ._fingerprint import folder_fingerprint, model_files
from ._registry import release_later


def _remove(path: str) -> None:
    """Delete a folder of this process (a finalizer: it takes no lock)."""
    shutil.rmtree(path, ignore_errors=True)
    release_later(path)


class _Folder:
    """A folder holding one encoder's files; an owned one is removed once unreferenced."""

    def __init__(self, path: str, *, owned: bool):
        self.path = path
        if owned:
            weakref.finalize(self, _remove, path)


#: The folders of this process, by fingerprint: copies of one encoder share one folder
#: (and so one loaded model).
_LIVE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOCK = threading.Lock()
#: Set by :func:`saving` and :func:`loading`: how a TunedEncoder pickles and unpickles there.
_SAVING: contextvars.ContextVar = contextvars.ContextVar("skembed_saving", default=None)
_LOADING: contextvars.ContextVar = contextvars.ContextVar("skembed_loading", default=None)


class TunedEncoder(os.PathLike):
    """A fine-tuned sentence-transformers model: an immutable value that pickles with its weights.

    ``os.fspath(encoder)`` is a folder that ``SentenceTransformer`` and
    ``EmbeddingVectorizer(model=...)`` load (written on first use in a new
    process). Two encoders of equal files are equal.

    Attributes
    ----------
    fingerprint : str
        Digest of its files (the same as a copy of its folder would have).
    info : dict
        How it was made: ``base_model``, ``recipe``, ``n_examples``, ``target``.
    """

    #: What it is, in messages (and in a saved estimator's manifest).
    KIND = "fine-tuned encoder"

    def __init__(self, fingerprint: str, info: dict):
        self.fingerprint = fingerprint
        self.info = dict(info)
        self._folder: _Folder | None = None
        self._files: dict | None = None

    @classmethod
    def adopt(cls, folder: str | os.PathLike, info: dict) -> TunedEncoder:
        """The encoder of a folder that fine-tuning just wrote; it now owns (and removes) it."""
        folder = os.path.realpath(folder)
        encoder = cls(folder_fingerprint(folder), info)
        with _LOCK:
            live = _LIVE.get(encoder.fingerprint)
            if live is None:
                live = _LIVE[encoder.fingerprint] = _Folder(folder, owned=True)
            else:  # the same weights again (the same seed): share the folder already here
                _remove(folder)
        encoder._folder = live
        return encoder

    @property
    def path(self) -> str:
        """The folder of its files, written now if this process has none."""
        return self._materialised().path

    def __fspath__(self) -> str:
        return self.path

    def _materialised(self) -> _Folder:
        with _LOCK:
            if self._folder is None:
                live = _LIVE.get(self.fingerprint)
                if live is None:
                    if self._files is None:
                        raise ValueError(f"{self!r} has neither a folder nor its files.")
                    live = _LIVE[self.fingerprint] = _Folder(self._write_files(), owned=True)
                self._folder, self._files = live, None
            return self._folder

    def _write_files(self) -> str:
        folder = tempfile.mkdtemp(prefix="skembed-tuned-")
        for relative, content in self._files.items():
            target = Path(folder, *relative.split("/"))
            if ".." in target.relative_to(folder).parts:
                raise ValueError(f"A {self.KIND}'s file {relative!r} is outside its folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        found = folder_fingerprint(folder)
        if found != self.fingerprint:
            _remove(folder)
            raise ValueError(
                f"The files of {self.KIND} {self.fingerprint[:12]} do not match its "
                f"fingerprint (they give {found[:12]}): the pickle is damaged."
            )
        return folder

    def files(self) -> dict:
        """Its files, ``{relative path: bytes}``, read from its folder and checked."""
        if self._files is not None:
            return dict(self._files)
        folder = self.path
        self.check_folder()
        return {relative: Path(path).read_bytes() for relative, path in model_files(folder)}

    def check_folder(self) -> None:
        """A clear error when its folder is gone or its files changed since they were written."""
        folder = self._materialised().path
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"The folder {folder!r} of {self.KIND} {self.fingerprint[:12]} no longer "
                "exists (it was deleted by hand)."
            )
        found = folder_fingerprint(folder)
        if found != self.fingerprint:
            raise ValueError(
                f"The files of {self.KIND} {self.fingerprint[:12]} in {folder!r} were "
                f"changed after it was made (they now give {found[:12]}): refit the estimator."
            )

    def save(self, path: str | os.PathLike) -> str:
        """Write its files to the folder ``path`` (created, or its files replaced); a plain
        sentence-transformers folder. Returns the folder's absolute path."""
        destination = os.path.realpath(os.fspath(path))
        source = self.path
        self.check_folder()
        if destination != os.path.realpath(source):
            shutil.copytree(source, destination, dirs_exist_ok=True)
        release_later(destination)  # this process may hold the folder's previous weights
        return destination

    # -- a value: copies share it, pickles carry its files ----------------------
    def __eq__(self, other):
        return type(other) is type(self) and other.fingerprint == self.fingerprint

    def __hash__(self):
        return hash(self.fingerprint)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        base = self.info.get("base_model")
        return f"{type(self).__name__}({self.fingerprint[:12]}, base_model={base!r})"

    def __getstate__(self):
        state = {"fingerprint": self.fingerprint, "info": self.info}
        register = _SAVING.get()
        if register is not None:
            return {**state, "folder": register(self)}
        return {**state, "files": self.files()}

    def __setstate__(self, state):
        self.__init__(state["fingerprint"], state["info"])
        if "files" in state:
            self._files = dict(state["files"])
            return
        resolve = _LOADING.get()
        if resolve is None:
            raise ValueError(
                f"This {self.KIND} was saved by skembed.save, which keeps its weights "
                "in a folder beside the estimator: load it with skembed.load(folder)."
            )
        path = resolve(state["folder"], self.fingerprint)
        with _LOCK:
            live = _LIVE.get(self.fingerprint)
            if live is None:
                live = _LIVE[self.fingerprint] = _Folder(path, owned=False)
        self._folder = live


class QuantizedModel(TunedEncoder):
    """An OpenVINO model quantised to int8 at fit: an immutable value that pickles with its
    files (``openvino_model.xml`` and ``.bin``), exactly as a :class:`TunedEncoder` does.

    ``info`` says how it was made: ``base_model``, ``n_calibration_texts``, and the
    versions of OpenVINO and NNCF that made it.
    """

    KIND = "int8 OpenVINO model"


@contextlib.contextmanager
def saving(register):
    """Inside the block, a pickled :class:`TunedEncoder` is ``register(encoder)``'s reference
    (a string) instead of its files."""
    token = _SAVING.set(register)
    try:
        yield
    finally:
        _SAVING.reset(token)


@contextlib.contextmanager
def loading(resolve):
    """Inside the block, a :class:`TunedEncoder` saved inside :func:`saving` is restored from
    ``resolve(reference, fingerprint)``: the path of a folder already checked."""
    token = _LOADING.set(resolve)
    try:
        yield
    finally:
        _LOADING.reset(token)

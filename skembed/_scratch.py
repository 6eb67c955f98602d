"""Folders of fine-tuned encoders: temporary ones live and die with their estimator.

An estimator that fine-tunes saves the weights to a folder and keeps only
its path (a pickle stays small). A temporary folder is removed when its
estimator is garbage-collected or fitted again, or when the process exits;
a folder the user chose (``fine_tune_dir``) is kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

from ._registry import release_later

#: Temporary folders of fine-tuned encoders, by estimator.
_SCRATCH = weakref.WeakKeyDictionary()


def _remove(folder: str) -> None:
    """Delete a temporary folder (a finalizer: it takes no lock)."""
    shutil.rmtree(folder, ignore_errors=True)
    release_later(folder)


def folder_for_fit(owner, chosen) -> tuple:
    """``(folder, discard)``: where ``owner``'s fit saves its fine-tuned encoder.

    The temporary folder of ``owner``'s previous fit goes now. ``chosen``
    (a path, or None for a new temporary folder) is the estimator's
    ``fine_tune_dir``. ``discard()`` removes a temporary folder at once (a
    fit that failed has nothing worth keeping); it leaves a chosen one.
    """
    previous = _SCRATCH.pop(owner, None)
    if previous is not None:
        previous()
    if chosen is not None:
        return os.fspath(chosen), lambda: None
    folder = tempfile.mkdtemp(prefix="skembed-finetuned-")
    _SCRATCH[owner] = discard = weakref.finalize(owner, _remove, folder)
    return folder, discard


def check_folder_exists(folder: str) -> None:
    """A clear error when a fitted estimator's fine-tuned encoder folder is gone."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(
            f"The fine-tuned encoder folder {folder!r} no longer exists (a temporary folder "
            "is deleted with the estimator that made it, or when its process exits). Save it "
            "with save_encoder(path) or fit with fine_tune_dir=path before pickling."
        )

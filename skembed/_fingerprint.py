"""Identity of a model's weights, obtained from files without loading them.

A local folder is identified by a digest of its weight, tokenizer and config
files; a hub model by the commit its revision resolves to. File digests are
memoised per process by (path, size, mtime, inode), so the weights of a
540 MB model are read once per process, whatever the number of clones.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

#: Sub-folders of a sentence-transformers folder that the torch backend never reads.
_SKIPPED_DIRS = frozenset({"onnx", "openvino", "__pycache__"})
_CHUNK = 1 << 20
_COMMIT = re.compile(r"^[0-9a-f]{40}$")

_FILE_DIGESTS: dict = {}
_FOLDER_DIGESTS: dict = {}
_LISTINGS: dict = {}
_HUB_COMMITS: dict = {}
_LOCK = threading.Lock()


def _is_model_file(name: str) -> bool:
    """Whether a file can change a vector (documentation and VCS files cannot)."""
    lower = name.lower()
    return not (
        name.startswith(".")
        or lower.endswith((".md", ".rst"))
        or lower.startswith(("license", "readme"))
    )


def file_digest(path: str | os.PathLike) -> str:
    """blake2b digest of a file's content, computed once per (path, size, mtime, inode).

    >>> path = os.path.join(TMP, "weights.bin")  # TMP: a folder (here pytest's)
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"weights")
    >>> file_digest(path) == hashlib.blake2b(b"weights", digest_size=20).hexdigest()
    True
    """
    path = os.path.abspath(path)
    st = os.stat(path)
    memo_key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    with _LOCK:
        digest = _FILE_DIGESTS.get(memo_key)
    if digest is None:
        digest = _hash_file(path)
        with _LOCK:
            _FILE_DIGESTS[memo_key] = digest
    return digest


def _hash_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digests() -> dict:
    """The file digests this process knows: ``{(path, size, mtime_ns, inode): digest}``."""
    with _LOCK:
        return dict(_FILE_DIGESTS)


def learn_file_digests(digests: dict) -> None:
    """Take digests computed by another process (e.g. kept in a cache file).

    They are used only for a file whose path, size, modification time (ns)
    and inode all still match.
    """
    with _LOCK:
        for memo_key, digest in digests.items():
            _FILE_DIGESTS.setdefault(tuple(memo_key), digest)


def model_files(folder: str) -> list:
    """(relative path, path) of the files of a folder that can change a vector.

    The listing is kept while the modification times of its folders stay the
    same (adding, removing or renaming a file changes its folder's).
    """
    with _LOCK:
        cached = _LISTINGS.get(folder)
    if cached is not None:
        folders, files = cached
        try:
            if all(os.stat(d).st_mtime_ns == mtime for d, mtime in folders):
                return files
        except OSError:
            pass
    folders, files = [], []
    for root, dirs, names in os.walk(folder):
        folders.append((root, os.stat(root).st_mtime_ns))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for name in sorted(names):
            if _is_model_file(name):
                path = os.path.join(root, name)
                files.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    with _LOCK:
        _LISTINGS[folder] = (folders, files)
    return files


def folder_signature(folder: str | os.PathLike) -> tuple:
    """What changes whenever a file of a model folder is rewritten, without reading any.

    The folder's real path and each model file's relative path, size,
    modification time (ns) and inode: cheap enough to ask before every use.
    """
    folder = os.path.realpath(folder)
    entries = []
    for rel, path in model_files(folder):
        st = os.stat(path)
        entries.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    return (folder, *entries)


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """Digest of every file of a model folder that can change a vector.

    The digest depends on the files' relative paths and contents, not on the
    folder's location: two copies of a model share their fingerprint. It is
    recomputed only when a file's size, modification time or inode changes.
    """
    folder = os.path.abspath(folder)
    files = model_files(folder)
    if not files:
        raise ValueError(f"Model folder {folder!r} holds no model file.")
    stats = [(rel, os.stat(path)) for rel, path in files]
    signature = (folder, *((rel, s.st_size, s.st_mtime_ns, s.st_ino) for rel, s in stats))
    with _LOCK:
        digest = _FOLDER_DIGESTS.get(signature)
    if digest is None:
        entries = [f"{rel}\0{file_digest(path)}" for rel, path in files]
        digest = hashlib.blake2b("\n".join(entries).encode(), digest_size=20).hexdigest()
        with _LOCK:
            _FOLDER_DIGESTS[signature] = digest
    return digest


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or flag.upper() in {"1", "ON", "YES", "TRUE"}


def _local_commit(repo: str, revision: str) -> str | None:
    """Commit of ``revision`` in the local Hugging Face cache, read from its refs."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    ref = folder / "refs" / revision
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if _COMMIT.match(commit) and (folder / "snapshots" / commit).is_dir() else None


def hub_commit(repo: str, revision: str | None = None) -> str | None:
    """The commit a hub model's revision resolves to; None when unknown.

    Online, the hub is asked once per process (what a load would download);
    offline, or when the hub cannot be reached, the local cache's refs are
    read (what a load would use).
    """
    revision = revision or "main"
    if _COMMIT.match(revision):
        return revision
    with _LOCK:
        commit = _HUB_COMMITS.get((repo, revision))
    if commit is not None:
        return commit
    if not _offline():
        try:
            from huggingface_hub import model_info

            commit = model_info(repo, revision=revision, timeout=10).sha
        except Exception:  # noqa: BLE001 - no network: fall back on the local cache
            commit = None
    if commit is None:
        commit = _local_commit(repo, revision)
    if commit is not None:
        with _LOCK:
            _HUB_COMMITS[(repo, revision)] = commit
    return commit


def model_identity(model: str, load_arguments: dict) -> str | None:
    """A string that changes whenever the model's weights or configs change.

    ``"folder:<digest>"`` for a local folder, ``"hub:<repo>@<commit>"`` for a
    hub model (the commit its loader argument ``revision`` resolves to), None
    when a hub model's commit cannot be resolved yet (not downloaded and no
    network).
    """
    local = os.path.expanduser(model)
    if os.path.isdir(local):
        return "folder:" + folder_fingerprint(local)
    commit = hub_commit(model, load_arguments.get("revision"))
    return None if commit is None else f"hub:{model}@{commit}"

"""The layers of skembed, enforced: the import-linter contracts of pyproject.toml.

input -> options/engine -> cache -> estimators -> command line / Dask, with no
import running back up (docs/architecture.rst draws it). The contracts must
hold on the package, and each must break when a forbidden import is planted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.extras  # import-linter is a test dependency

ROOT = Path(__file__).resolve().parent.parent


def _lint(root: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the package found under ``root``, with ``root``'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                          text=True)


def test_the_package_keeps_every_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


PLANTED = [
    ("_engine.py", "import sklearn", "The engine knows nothing of sklearn"),
    ("_models.py", "from ._cache import EmbeddingCache", "The engine knows nothing"),
    ("_cache.py", "from . import _engine", "The cache only stores"),
    ("_sqlite_store.py", "import torch", "The cache only stores"),
    ("_input.py", "from ._options import DEFAULT_MODEL", "Input validation imports nothing"),
    ("_vectorizer.py", "from . import _cli", "Estimators never import the command line"),
    ("_cli.py", "from ._vectorizer import EmbeddingVectorizer", "The command line uses the public API"),
]


@pytest.mark.slow
@pytest.mark.parametrize("module, line, contract", PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copytree(ROOT / "skembed", tmp_path / "skembed",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "skembed" / module, "a", encoding="utf-8") as handle:
        handle.write(f"\n{line}  # planted by the test\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert len(broken) == 1 and broken[0].startswith(contract), result.stdout

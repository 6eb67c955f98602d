"""The layers of skembed, enforced: the import-linter contracts of pyproject.toml.

One ordered, exhaustive ``layers`` contract (docs/architecture.rst draws it), a
no-cycles contract, and forbidden contracts for third-party packages. The
contracts must hold on the package, and each must break when a forbidden
import is planted: one across every layer boundary (read from pyproject.toml,
so a new layer gets its plant), one between siblings of every layer, and the
imports that once slipped through.
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
LAYERS = "The layers, top to bottom"
CYCLES = "No import cycles"


def _contracts() -> list:
    try:
        import tomllib
    except ImportError:  # Python 3.10: pip's own copy of the same parser
        from pip._vendor import tomli as tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["importlinter"]["contracts"]


def _layers() -> list:
    (contract,) = [c for c in _contracts() if c["type"] == "layers"]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def _lint(root: Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the package found under ``root``, with ``root``'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                          text=True)


def test_the_package_keeps_every_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


def test_every_module_has_a_layer():
    modules = {path.stem for path in (ROOT / "skembed").glob("*.py")} - {"__init__"}
    layered = {name for layer in _layers() for name in layer}
    assert modules == layered


def _plants() -> list:
    """(module, import line, contracts that must break) for each planted import."""
    layers = _layers()
    plants = []
    for upper, lower in zip(layers, layers[1:]):  # every boundary, upwards
        plants.append((lower[0], f"from . import {upper[0]}", {LAYERS}))
    for layer in layers:  # every group of siblings
        if len(layer) > 1:
            plants.append((layer[-1], f"from . import {layer[0]}", {LAYERS}))
    plants += [
        # Imports that once slipped through hand-kept lists.
        ("_registry", "from . import _engine", {LAYERS}),
        ("_heads", "from . import _regressor", {LAYERS}),
        ("_plotting", "from . import _evaluation", {LAYERS}),
        ("_cache", "from . import _registry", {"The cache only stores"}),
        # A cycle breaks the order and the no-cycles contract.
        ("_vectorizer", "from . import _similarity", {LAYERS, CYCLES}),
        # Third-party packages.
        ("_engine", "import sklearn", {"The engine and the model loaders"}),
        ("_sqlite_store", "import torch", {"The cache only stores"}),
        ("_input", "import torch", {"Input validation needs no model library"}),
        ("_cli", "from ._vectorizer import EmbeddingVectorizer",
         {"The command line uses the public API"}),
    ]
    return plants


PLANTS = _plants()


@pytest.mark.slow
@pytest.mark.parametrize("module, line, contracts", PLANTS,
                         ids=[f"{p[0]}:{p[1]}" for p in PLANTS])
def test_a_planted_forbidden_import_breaks_its_contract(tmp_path, module, line, contracts):
    shutil.copytree(ROOT / "skembed", tmp_path / "skembed",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "skembed" / f"{module}.py", "a", encoding="utf-8") as handle:
        handle.write(f"\n{line}  # planted by the test\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = {line.removesuffix(" BROKEN") for line in result.stdout.splitlines()
              if line.endswith(" BROKEN")}
    # Others may break too (an upward import that closes a cycle, or brings in torch).
    assert {c for c in contracts for b in broken if b.startswith(c)} == set(contracts), \
        result.stdout

"""Print the oldest versions pyproject.toml declares, as pip pins, one per line.

The minimum-versions run installs them (with the ``test-core`` extra) to
prove that every floor of the core dependencies is real; the optional extras'
tests are marked ``extras`` and left out there. torch is the exception:
its old wheels on the registry are multi-GB CUDA builds, so that run keeps the
local CPU wheel the README installs (torch==2.13.0, within the declared range).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip's own copy of the same parser
    from pip._vendor import tomli as tomllib

EXTRAS = ("test-core", "openvino")
KEPT = {"torch": "torch==2.13.0"}


def pins(pyproject: Path) -> list:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    out = []
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+).*", requirement)
        if match is None:
            raise SystemExit(f"no floor in {requirement!r}: every dependency needs one")
        name, version = match.group(1), match.group(3)
        out.append(KEPT.get(name, f"{name}=={version}"))
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(pins(root / "pyproject.toml")))
    sys.exit(0)

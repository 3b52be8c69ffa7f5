"""The package layout holds: one namespace, torch-free store and data, and the demo behind its plugins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = ("groundzero", "data", "store", "model", "training", "indexer", "search")


def test_store_and_data_import_without_torch():
    code = ("import importlib, pkgutil, sys\n"
            "import groundzero.store, groundzero.data\n"
            "for pkg in (groundzero.store, groundzero.data):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__):\n"
            "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'transformers' not in sys.modules, 'transformers was imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_core_never_imports_the_demo():
    """Only the CLI's `synth` command and the demo itself name groundzero.synthetic."""
    pattern = re.compile(r"^\s*(from|import)\s+groundzero\.synthetic\b", re.MULTILINE)
    offenders = [str(f.relative_to(REPO)) for folder in CORE for f in (REPO / folder).rglob("*.py")
                 if pattern.search(f.read_text())]
    assert offenders == []


def test_the_installed_package_is_one_namespace():
    import tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "groundzero" or p.startswith("groundzero.") for p in setup["packages"])
    assert set(setup["package-dir"]) == {p for p in setup["packages"] if p.count(".") <= 1}

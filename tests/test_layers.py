"""The architecture's rules: imports go one way (api → indexers → engine), the engine never
imports a deep-learning framework, and each package's ``__all__`` names what it exports."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("torch", "torchvision", "sentence_transformers", "transformers", "open_clip")
FORBIDDEN = {
    "engine": ("kinsight.indexers", "kinsight.api", *FRAMEWORKS),
    "indexers": ("kinsight.api",),
}


def imported_modules(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against kinsight.<package>
                parts = f"kinsight.{package}".split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_what_is_above_it(layer):
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for module in imported_modules(path, layer):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_nothing_outside_api_imports_api():
    for layer in ("engine", "indexers"):
        for path in (ROOT / layer).rglob("*.py"):
            assert not any(m.startswith("kinsight.api") for m in imported_modules(path, layer))


def test_importing_the_engine_loads_no_framework():
    code = ("import sys, kinsight.engine, kinsight.engine.search, kinsight.engine.evaluation\n"
            f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("package", ["kinsight.engine", "kinsight.engine.storage",
                                     "kinsight.indexers", "kinsight.api", "kinsight.api.http"])
def test_exported_members_exist_and_are_listed(package):
    module = importlib.import_module(package)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ lists missing {name}"


# The engine's floors (DESIGN.md): vocabulary modules every floor may use, then storage, then the
# indexes, then the operations, then the facade (collection, store); a floor imports nothing from
# the floors above it.
VOCABULARY = {"errors", "schema", "encoders", "spaces", "filters", "options"}
INDEXES = ("index_policy", "kernels", "vector_index", "index_sync", "lexical", "analysers",
           "indexed_collection")
FACADE = {"collection", "store"}
FLOORS = {
    "storage": VOCABULARY | {"storage"},
    "indexes": VOCABULARY | {"storage", *INDEXES},
    "operations": {path.stem for path in (ROOT / "engine").glob("*.py")} - FACADE
    | {"storage", "mismatch"},
}
FLOOR_MODULES = {
    "storage": sorted((ROOT / "engine" / "storage").glob("*.py")),
    "indexes": [ROOT / "engine" / f"{m}.py" for m in INDEXES],
    "operations": sorted(path for path in [*(ROOT / "engine").glob("*.py"),
                                           *(ROOT / "engine" / "mismatch").glob("*.py")]
                         if path.stem not in {*FACADE, *INDEXES, *VOCABULARY, "__init__"}),
}


def engine_imports(path: Path) -> set[str]:
    """The engine modules (first name under ``kinsight.engine``) that a file imports."""
    package = ["kinsight", *path.relative_to(ROOT).with_suffix("").parts[:-1]]
    package[1] = "engine"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names = [".".join([*base, node.module] if node.module else base)]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["kinsight", "engine"] and len(parts) > 2:
                found.add(parts[2])
    return found


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_an_engine_floor_imports_nothing_above_it(floor):
    offenders = [f"{path.relative_to(ROOT)} imports engine.{module}"
                 for path in FLOOR_MODULES[floor] for module in engine_imports(path)
                 if module not in FLOORS[floor]]
    assert not offenders, "\n".join(offenders)


def test_the_api_uses_only_the_engines_public_surface():
    """The api layer imports engine names from ``kinsight.engine`` (its ``__all__``), never from
    the engine's modules, so the engine can move code between its modules freely."""
    offenders = [f"{path.relative_to(ROOT)} imports {module}"
                 for path in sorted((ROOT / "api").rglob("*.py"))
                 for module in imported_modules(path, "api")
                 if module.startswith("kinsight.engine.")]
    assert not offenders, "\n".join(offenders)

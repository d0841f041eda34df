"""Every third-party package the code under src/ imports is declared in pyproject.toml (issue 22).

``pip install .`` installs ``[project] dependencies`` only; an import that works in the
development environment because some other package happened to pull it in (``click`` came with
the ``[dev]`` extras) kills the ``prunescope`` command of a bare install. This test parses every
module under src/ (``ast``, nothing is imported), collects its absolute imports, module-level and
inside functions alike, maps each import name to its distribution with
:func:`importlib.metadata.packages_distributions` and checks the declaration: an import guarded by
``try: ... except ImportError`` may come from an optional extra (``[ray]``, ``[parquet]``), any
other from the core dependencies.
"""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the extras of pyproject.toml that hold test tools, not run-time options of the package
TOOL_EXTRAS = frozenset({"dev"})
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


@dataclass(frozen=True)
class Import:
    """One absolute import of a third-party top-level module in one source file."""

    module: str  # top-level import name, e.g. "yaml"
    where: str  # "path:line"
    guarded: bool  # inside `try:` with an `except ImportError` (or ModuleNotFoundError)


def normalise(name: str) -> str:
    """PEP 503 distribution name: ``PyYAML`` -> ``pyyaml``, ``torch_pruning`` -> ``torch-pruning``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _IMPORT_ERRORS for t in types)


def _imports(tree: ast.AST, guarded: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """``(Import or ImportFrom node, guarded)`` of every import in ``tree``, at any depth."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, guarded
        elif isinstance(node, ast.Try):
            catches = any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), guarded or catches)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                yield from _imports(part, guarded)
        else:
            yield from _imports(node, guarded)


def third_party_imports(src: Path, own: str) -> list[Import]:
    """The imports of modules outside the standard library and outside package ``own`` in every
    ``*.py`` under ``src`` (relative imports are the package's own)."""
    found = []
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, guarded in _imports(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level or node.module is None:
                    continue
                modules = [node.module]
            else:
                modules = [alias.name for alias in node.names]
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in (own, "__future__"):
                    continue
                found.append(Import(top, f"{path.relative_to(src.parent)}:{node.lineno}", guarded))
    return found


def declared(pyproject: Path) -> tuple[set[str], set[str]]:
    """``(core distributions, distributions of the run-time extras)`` of ``pyproject``,
    normalised names."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]

    def names(reqs: list[str]) -> set[str]:
        return {normalise(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r)[0]) for r in reqs}

    extras = project.get("optional-dependencies", {})
    return (names(project.get("dependencies", [])),
            set().union(*(names(v) for k, v in extras.items() if k not in TOOL_EXTRAS)))


def undeclared(src: Path, pyproject: Path, own: str = "prunescope") -> list[str]:
    """One line per import of ``src`` whose distribution ``pyproject`` does not declare where
    the import needs it (core for an unguarded import, core or a run-time extra for a guarded
    one); an import name no installed distribution provides is reported too."""
    core, optional = declared(pyproject)
    provides = packages_distributions()
    problems = []
    for imp in third_party_imports(src, own):
        dists = {normalise(d) for d in provides.get(imp.module, [])}
        allowed = core | optional if imp.guarded else core
        if not dists:
            problems.append(f"{imp.where}: import {imp.module}: no installed distribution "
                            "provides it, so it cannot be checked against pyproject.toml")
        elif not dists & allowed:
            where = "dependencies or a run-time extra" if imp.guarded else "dependencies"
            problems.append(f"{imp.where}: import {imp.module} needs {' or '.join(sorted(dists))}, "
                            f"which pyproject.toml's [project] {where} do not declare")
    return problems


def test_every_third_party_import_of_the_package_is_declared():
    problems = undeclared(ROOT / "src", ROOT / "pyproject.toml")
    assert not problems, "undeclared imports:\n" + "\n".join(problems)


def test_the_package_imports_the_libraries_the_check_must_see():
    """The walk finds imports at module level and inside functions (the CLI imports torch in
    its commands), so a pass above is not a walk that saw nothing."""
    found = {(i.module, i.guarded) for i in third_party_imports(ROOT / "src", "prunescope")}
    assert {("torch", False), ("click", False), ("typer", False), ("numpy", False),
            ("ray", True)} <= found


def _tree(tmp_path: Path, code: str, deps: list[str], extras: dict[str, list[str]]) -> list[str]:
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(code, encoding="utf-8")
    lines = [f"dependencies = {deps!r}", "[project.optional-dependencies]"]
    lines += [f"{k} = {v!r}" for k, v in extras.items()]
    (tmp_path / "pyproject.toml").write_text("[project]\n" + "\n".join(lines) + "\n",
                                             encoding="utf-8")
    return undeclared(tmp_path / "src", tmp_path / "pyproject.toml", own="pkg")


def test_an_undeclared_import_is_reported(tmp_path):
    """The defect of issue 22: ``click`` imported, not declared (``typer`` no longer brings it)."""
    code = "import os\nimport typer\nfrom . import x\n\ndef f():\n    from click import echo\n"
    problems = _tree(tmp_path, code, ["typer>=0.12"], {})
    assert len(problems) == 1 and "import click" in problems[0] and "pkg/__init__.py:6" in problems[0]
    assert _tree(tmp_path / "b", code, ["typer>=0.12", "Click>=8"], {}) == []


def test_an_optional_import_must_be_guarded_and_in_a_run_time_extra(tmp_path):
    guarded = "try:\n    import ray\nexcept (ImportError, OSError):\n    ray = None\n"
    assert _tree(tmp_path / "a", guarded, [], {"ray": ["ray>=2"]}) == []
    # the same import unguarded needs ray in the core dependencies
    assert len(_tree(tmp_path / "b", "import ray\n", [], {"ray": ["ray>=2"]})) == 1
    # a test-tool extra does not make a run-time import optional
    assert len(_tree(tmp_path / "c", guarded, [], {"dev": ["ray>=2"]})) == 1
    # an import in the except branch is not guarded by its own try
    fallback = "try:\n    import os\nexcept ImportError:\n    import ray\n"
    assert len(_tree(tmp_path / "d", fallback, [], {"ray": ["ray>=2"]})) == 1

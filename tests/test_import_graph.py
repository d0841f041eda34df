"""The import graph between prunescope's packages is one-way (docs/architecture.md, "Import
rule"): no circle, the catalog at the bottom, the pure layers never above the torch ones."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "prunescope"
#: edges that are not dependencies: a worker process's entry point imports nothing of ours at
#: load (so the process is tied to its driver before torch loads) and then calls the executor's
#: worker loop (docs/reliability.md)
ENTRY_POINTS = {("_worker_start", "study")}


def _graph() -> dict[str, set[str]]:
    """``{unit: units it imports}``; a unit is a top-level package or module of prunescope;
    every import counts, those inside functions included."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        unit = path.relative_to(ROOT).with_suffix("").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prunescope"):
                names = ([f"prunescope.{a.name}" for a in node.names]
                         if node.module == "prunescope" else [node.module])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("prunescope.")]
            else:
                continue
            edges[unit] |= {n.split(".")[1] for n in names if n.split(".")[1] != unit
                            and (unit, n.split(".")[1]) not in ENTRY_POINTS}
    return edges


def test_the_package_graph_has_no_circle():
    edges = _graph()
    done: set[str] = set()

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, f"import circle: {' -> '.join((*path, unit))}"
        if unit in done:
            return
        for nxt in sorted(edges.get(unit, ())):
            visit(nxt, (*path, unit))
        done.add(unit)

    for unit in sorted(edges):
        visit(unit, ())


def test_the_catalog_is_the_bottom_and_the_pure_layers_stay_pure():
    edges = _graph()
    assert edges["catalog"] <= {"errors"}
    assert edges["stats"] <= {"choices"}  # generic: names and orders come as arguments
    for pure in ("metrics", "stats", "analysis", "catalog", "choices"):
        assert not edges[pure] & {"train", "prune", "models", "study", "audit", "report", "cli"}, pure
    assert not edges["report"] & {"train", "prune", "models", "audit", "cli"}

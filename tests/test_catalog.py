"""The catalog (issue 24): one record per method and per architecture, read by every layer;
adding either is the two files docs/architecture.md names."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prunescope.catalog import architectures, methods
from prunescope.report.style import METHOD_COLORS, METHOD_LABELS
from prunescope.analysis import family_orders

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_layer_reads_the_registry():
    orders = family_orders()  # what the SPEC 5 families and the report order by
    METHOD_ORDER, LEVEL_ORDER, ARCH_ORDER = orders.methods, orders.levels, orders.arch_sizes
    assert methods.names() == ("mp", "gp", "up", "rp", "lth", "l1-filter", "chip", "mp-at-up")
    assert methods.names("one-shot") == METHOD_ORDER == ("mp", "gp", "up", "rp", "mp-at-up")
    assert methods.names(needs_gradients=True) == ("gp", "up", "mp-at-up")
    assert methods.names("structured") == ("l1-filter", "chip")
    assert methods.names(needs_feature_maps=True) == ("chip",)
    assert LEVEL_ORDER["method"] == ("mp", "up", "gp", "rp", "lth", "chip", "l1-filter",
                                     "mp-at-up")
    assert all(methods.method(m.keep_as).kind == "one-shot"
               for m in methods.REGISTRY if m.keep_as is not None)
    assert METHOD_LABELS["l1-filter"] == "L1-filter" and METHOD_COLORS["up"] == "#D55E00"
    assert len({m.colour for m in methods.REGISTRY}) == len(methods.REGISTRY)
    assert sorted(m.order for m in methods.REGISTRY) == list(range(len(methods.REGISTRY)))
    assert ARCH_ORDER == ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
    assert LEVEL_ORDER["arch"][:2] == ("lenet5-shrinkbench", "lenet5")
    assert orders.dataset_archs == {
        "mnist": ("lenet5-shrinkbench", "lenet5"), "fashion-mnist": ("lenet5-shrinkbench", "lenet5"),
        "cifar10": ("resnet56",), "cifar100": ("resnet56",)}
    with pytest.raises(ValueError, match="choose one of mp, gp"):
        methods.method("magnitude")


def test_no_layer_tests_a_method_or_architecture_name():
    """Outside catalog/, no code (docstrings aside) spells a method's or architecture's name:
    every layer asks the records."""
    names = set(methods.names()) | set(architectures.names())
    found = []
    for path in sorted((SRC / "prunescope").rglob("*.py")):
        if "catalog" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and n.body and isinstance(n.body[0], ast.Expr)
                and isinstance(n.body[0].value, ast.Constant)}
        found += [f"{path.relative_to(SRC)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)
                  and id(n) not in docs and n.value in names]
    assert not found, found


def test_the_spec_and_the_catalog_import_no_torch():
    """Validating a study spec counts parameters from the catalog's layouts: neither
    prunescope.catalog nor prunescope.study.spec imports torch (or pandas)."""
    code = ("import sys, prunescope.catalog, prunescope.study.spec\n"
            "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr[-2000:])


TOY_MODEL = '''
"""A toy architecture: one hidden Linear layer."""
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, hidden=16):
        super().__init__()
        self.hidden = nn.Linear(in_channels * image_size * image_size, hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.classifier(self.hidden(x.flatten(1)).relu())


def gradient_magnitude(theta, g, eps, gen):
    """GM: ``|g|``."""
    return g.abs()
'''


def test_adding_a_method_and_an_architecture_is_two_files_each(tmp_path):
    """docs/architecture.md's worked examples, applied before anything else is imported: a
    score function and a Method record; a model file and an Architecture record."""
    (tmp_path / "toy_zoo.py").write_text(TOY_MODEL)
    script = textwrap.dedent('''
        import torch
        from prunescope.catalog import architectures, methods

        methods.REGISTRY += (methods.Method("gm", "GM", "#332288", "one-shot", True, 8,
                                            "toy_zoo:gradient_magnitude"),)

        def tiny_layout(num_classes, in_channels, image_size):
            L = architectures.Layer
            n_in = in_channels * image_size * image_size
            return (L("hidden", "linear", n_in * 16, 16),
                    L("classifier", "linear", 16 * num_classes, num_classes))

        architectures.REGISTRY += (architectures.Architecture(
            "tinynet", "toy_zoo:TinyNet", (("hidden", 16),), (28, 28, 1), True,
            "torch_default", "lenet", 9, None, None, tiny_layout),)

        from prunescope.models import build_model
        from prunescope.prune import count_parameters, prunable, score
        from prunescope.report.style import method_color, method_label
        from prunescope.analysis import level_order
        from prunescope.study import make_plan, parse_spec
        from prunescope.train import Recipe

        spec = parse_spec("""
        name = "toy"
        models = 1
        datasets = ["mnist"]
        architectures = ["tinynet"]
        methods = ["mp", "gm"]
        ratios = [4, 40]
        """, source="toy.toml")
        jobs = make_plan(spec).jobs
        gm_jobs = [j for j in jobs if j.method == "gm" and j.kind == "prune_finetune"]
        grads = [j for j in jobs if j.kind == "gradients"]
        assert len(gm_jobs) == 2 and len(grads) == 1
        assert all(j.arch == "tinynet" for j in jobs)
        assert gm_jobs[0].args.gradients == grads[0].id and grads[0].id in gm_jobs[0].deps
        assert spec.recipe("tinynet", "train") == Recipe.paper_lenet()
        model = build_model("tinynet", 10, 1, seed=0, image_size=28)
        assert count_parameters(model) == architectures.architecture("tinynet").param_count()
        params = prunable(model)
        assert list(params) == ["hidden.weight"]
        g = {n: torch.full_like(p, -2.0) for n, p in params.items()}
        s = score("gm", model, params, grads=g)
        assert all(bool((v == 2.0).all()) for v in s.values())
        assert method_color("gm") == "#332288" and method_label("gm") == "GM"
        assert level_order()["method"][-1] == "gm" and level_order()["arch"][-1] == "tinynet"
        try:  # the ratio check counts from the record: 40000 is beyond this model
            parse_spec("""
            name = "toy"
            models = 1
            datasets = ["mnist"]
            architectures = ["tinynet"]
            methods = ["gm"]
            ratios = [40000]
            """, source="toy.toml")
        except ValueError as e:
            assert "ratios" in str(e) and "tinynet on mnist" in str(e), e
        else:
            raise AssertionError("an unreachable ratio passed")
        print("ok")
    ''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]

"""The method registry: every layer reads one record per method (issue 15, item 1)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prunescope import methods
from prunescope.prune import GRADIENT_METHODS, METHODS
from prunescope.report.style import METHOD_COLORS, METHOD_LABELS
from prunescope.stats import LEVEL_ORDER, METHOD_ORDER
from prunescope.study import spec

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_layer_reads_the_registry():
    assert spec.METHODS == ("mp", "gp", "up", "rp", "lth", "l1-filter", "chip")
    assert METHODS == spec.ONE_SHOT_METHODS == METHOD_ORDER == ("mp", "gp", "up", "rp")
    assert GRADIENT_METHODS == spec.GRADIENT_METHODS == ("gp", "up")
    assert spec.STRUCTURED_METHODS == ("l1-filter", "chip")
    assert LEVEL_ORDER["method"] == ("mp", "up", "gp", "rp", "lth", "chip", "l1-filter")
    assert METHOD_LABELS["l1-filter"] == "L1-filter" and METHOD_COLORS["up"] == "#D55E00"
    assert len({m.colour for m in methods.REGISTRY}) == len(methods.REGISTRY)
    assert sorted(m.order for m in methods.REGISTRY) == list(range(len(methods.REGISTRY)))


def test_adding_a_method_is_one_function_and_one_record(tmp_path):
    """docs/architecture.md's worked example, applied before anything else is imported."""
    script = textwrap.dedent('''
        import torch
        from prunescope import methods

        gm = methods.Method("gm", "GM", "#332288", "one-shot", True, 7, "gradient_magnitude")
        methods.REGISTRY += (gm,)
        methods.BY_NAME["gm"] = gm

        from prunescope.prune import scores

        def gradient_magnitude(theta, g, eps, gen):
            return g.abs()

        scores.gradient_magnitude = gradient_magnitude

        from prunescope.models import build_model
        from prunescope.prune import prunable, score
        from prunescope.report.style import method_color, method_label
        from prunescope.stats import LEVEL_ORDER
        from prunescope.study import make_plan, parse_spec

        spec = parse_spec("""
        name = "gm"
        models = 1
        datasets = ["mnist"]
        architectures = ["lenet5"]
        methods = ["mp", "gm"]
        ratios = [4]
        """, source="gm.toml")
        jobs = make_plan(spec).jobs
        gm_jobs = [j for j in jobs if j.method == "gm" and j.kind == "prune_finetune"]
        grads = [j for j in jobs if j.kind == "gradients"]
        assert len(gm_jobs) == 1 and len(grads) == 1
        assert gm_jobs[0].args.gradients == grads[0].id and grads[0].id in gm_jobs[0].deps
        model = build_model("lenet5", 10, 1, seed=0, image_size=28)
        params = prunable(model)
        g = {n: torch.full_like(p, -2.0) for n, p in params.items()}
        s = score("gm", model, params, grads=g)
        assert all(bool((v == 2.0).all()) for v in s.values())
        assert method_color("gm") == "#332288" and method_label("gm") == "GM"
        assert LEVEL_ORDER["method"][-1] == "gm"
        print("ok")
    ''')
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]

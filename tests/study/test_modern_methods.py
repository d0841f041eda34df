"""Study methods beyond one-shot pruning (issue 9): ``lth`` (iterative magnitude pruning with
rewinding, one ``lth_level`` job per level) and ``l1-filter``/``chip`` (structured channel
removal). Real MNIST, LeNet-5, a few SGD steps per fit: the whole module runs in ~15 s."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunescope.catalog import architectures
from prunescope.data import info
from prunescope.models import build_model
from prunescope.prune import count_parameters
from prunescope.prune.iterative import imp_schedule
from prunescope.prune.narrow import load_structured_checkpoint
from prunescope.study import SpecError, load_results, make_plan, parse_spec, run_study
from prunescope.study.executors import LocalExecutor
from prunescope.train import load_checkpoint

from .conftest import mnist_available

pytestmark = pytest.mark.skipif(not mnist_available(),
                                reason="MNIST is not cached: run `prunescope data fetch mnist`")

#: 1 LeNet-5 model: MP and LTH at ratio 2 (LTH: 4 levels), L1-filter and CHIP at 2 and 4
MODERN = """
name = "modern-tiny"
seed = 5
models = 1
n_val = 200
test_subset = 200
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp", "lth"]
ratios = [2]
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["l1-filter", "chip"]
ratios = [2, 4]
[lth]
rewind_steps = 3
[structured]
chip_images = 16
[train]
schedule = [[1, 0.05]]
max_steps_per_epoch = 12
[finetune]
schedule = [[1, 0.01]]
max_steps_per_epoch = 2
[executor]
threads = 1
"""


def _spec(folder: Path, text: str = MODERN):
    folder.mkdir(parents=True, exist_ok=True)
    return parse_spec(text, base_dir=folder, source=str(folder / "modern.toml"))


def _digests(spec, kinds=("lth_level", "rewind")) -> dict[str, str]:
    jobs = load_results(spec).jobs
    out = {}
    for _, row in jobs[jobs["kind"].isin(kinds)].iterrows():
        for name, path in (row["artifacts"] or {}).items():
            out[f"{row['id']}/{name}"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``(spec, results)`` of one uninterrupted run of the tiny modern study."""
    spec = _spec(tmp_path_factory.mktemp("modern"))
    summary = run_study(spec)
    assert summary.failed == 0, summary.errors
    return spec, load_results(spec)


def test_plan_has_one_job_per_level_and_ids_hash_the_new_settings(tmp_path):
    spec = _spec(tmp_path)
    plan = make_plan(spec)
    counts = plan.counts()
    # LeNet-5 reaches ratio 2 at LTH level 4 (imp_schedule); 4 structured models
    assert counts == {"train": 1, "rewind": 1, "gradients": 0, "prune_finetune": 1,
                      "structured": 4, "lth_level": 4, "evaluate": 1 + 1 + 4 + 4}
    levels = [j for j in plan.jobs if j.kind == "lth_level"]
    assert [j.level for j in levels] == [1, 2, 3, 4]
    assert levels[0].deps[0] == next(j.id for j in plan.jobs if j.kind == "train")
    assert all(b.deps[0] == a.id for a, b in zip(levels, levels[1:]))  # a chain
    assert levels[-1].ratio == 2.0 and levels[0].ratio == pytest.approx(1.2445744, rel=1e-6)
    ids = {j.id for j in plan.jobs}
    # rewind_steps changes the rewind and level jobs (and their evaluations) only
    other = {j.id for j in make_plan(_spec(tmp_path, MODERN.replace("rewind_steps = 3",
                                                                    "rewind_steps = 4"))).jobs}
    changed = {j.kind for j in plan.jobs if j.id not in other}
    assert changed == {"rewind", "lth_level", "evaluate"}
    assert all(j.method == "lth" for j in plan.jobs if j.id not in other and j.kind == "evaluate")
    # chip_images changes the CHIP jobs only
    other = {j.id for j in make_plan(_spec(tmp_path, MODERN.replace("chip_images = 16",
                                                                    "chip_images = 32"))).jobs}
    assert {j.method for j in plan.jobs if j.id not in other} == {"chip"}
    assert len(ids - other) == 2 + 2


def test_lth_stores_one_row_per_level_with_nested_masks(reference):
    spec, res = reference
    nominal = res.frame[res.frame["distribution"] == "nominal"]
    lth = nominal[nominal["method"] == "lth"]
    per_level = lth.groupby("level")["achieved_ratio"].first()
    assert list(per_level.index) == [1.0, 2.0, 3.0, 4.0]
    inf = info("mnist")
    model = build_model("lenet5", inf.num_classes, inf.shape_hwc[2])
    expected = imp_schedule(model, target_ratio=2.0)
    assert per_level.to_list() == pytest.approx(expected, rel=1e-12)
    assert per_level.is_monotonic_increasing and per_level.iloc[-1] >= 2.0
    assert nominal[nominal["method"] != "lth"]["level"].isna().all()
    # the checkpoints: masks shrink level by level, each a subset of the previous one
    jobs = res.jobs[res.jobs["kind"] == "lth_level"].sort_values("level")
    prev = None
    n_total = count_parameters(model)
    for (_, row), ratio in zip(jobs.iterrows(), expected):
        net, meta, masks = load_checkpoint(row["artifacts"]["weights"])
        assert meta["level"] == row["level"] and row["info"]["level"] == row["level"]
        kept = sum(int(m.sum()) for m in masks.values())
        n_fixed = n_total - sum(m.numel() for m in masks.values())
        assert n_total / (n_fixed + kept) == pytest.approx(ratio, rel=1e-12)
        for name, m in masks.items():  # pruned weights are exactly zero after retraining
            assert not dict(net.named_parameters())[name][~m].any()
            if prev is not None:
                assert not (m & ~prev[name]).any(), f"level {row['level']} revived {name}"
        prev = masks
    # the rewind state is the dense run's state after 3 steps: not the init, not the end
    rewind = res.jobs[res.jobs["kind"] == "rewind"].iloc[0]
    state = load_file(rewind["artifacts"]["rewind"])
    init = build_model("lenet5", inf.num_classes, inf.shape_hwc[2], seed=int(rewind["seed"]))
    dense, _, _ = load_checkpoint(res.jobs[res.jobs["kind"] == "train"].iloc[0]
                                  ["artifacts"]["weights"])
    w = state["conv1.weight"]
    assert not torch.equal(w, init.conv1.weight.detach())
    assert not torch.equal(w, dense.conv1.weight.detach())
    # ... and it is the state of the train job's own run after step 3 (not step 2 or 4)
    from prunescope.prune.iterative import RewindCapture
    from prunescope.study.worker import _train_val
    from prunescope.train import Recipe, fit

    train_job = res.jobs[res.jobs["kind"] == "train"].iloc[0]
    tp = train_job["params"]
    tr, va = _train_val(tp, None, "cpu")
    caps = {k: RewindCapture(init, k) for k in (2, 3, 4)}
    fit(init, tr, va, Recipe.from_dict(tp["recipe"]), tp["seed"],
        progress=lambda s_, t_, i_: [c(s_, t_, i_) for c in caps.values()])
    close = {k: torch.allclose(c.state["conv1.weight"], w, rtol=0, atol=1e-6)
             for k, c in caps.items()}
    assert close == {2: False, 3: True, 4: False}


def test_report_per_level_table_reads_the_lth_frame(reference):
    from prunescope.report import tables
    from prunescope.report.render import analyse

    _, res = reference
    an = analyse(res.frame)
    table = tables.level_table(an.alphas, an.ci)
    lth = table[table["method"] == "lth"]
    assert lth["level"].to_list() == [1, 2, 3, 4]
    assert lth["ratio"].iloc[-1] == 2.0 and lth["achieved ratio"].is_monotonic_increasing
    # structured methods: one row per requested ratio, no level; MP is not in the table
    rest = table[table["method"] != "lth"]
    assert sorted(zip(rest["method"], rest["ratio"])) == [
        ("chip", 2.0), ("chip", 4.0), ("l1-filter", 2.0), ("l1-filter", 4.0)]
    assert rest["level"].isna().all()
    assert (table["models"] == 1).all() and table["mean α"].notna().all()
    # MP at ratio 2 and the LTH level labelled 2 share a ratio cell
    ratios = an.alphas.groupby("method")["ratio"].apply(set)
    assert 2.0 in ratios["mp"] and 2.0 in ratios["lth"]


def test_structured_models_are_smaller_by_their_achieved_ratio(reference):
    spec, res = reference
    jobs = res.jobs[res.jobs["kind"] == "structured"]
    assert len(jobs) == 4 and set(jobs["method"]) == {"l1-filter", "chip"}
    inf = info("mnist")
    n_dense = count_parameters(build_model("lenet5", inf.num_classes, inf.shape_hwc[2]))
    for _, row in jobs.iterrows():
        net, meta = load_structured_checkpoint(row["artifacts"]["weights"])
        n = count_parameters(net)
        assert n_dense / n == pytest.approx(row["achieved_ratio"], rel=1e-12)
        assert meta["structured"]["method"] == row["method"]
        assert row["info"]["structured"]["n_after"] == n
        assert abs(row["achieved_ratio"] - row["ratio"]) < 0.5  # closest reachable prefix
    ev = res.frame[res.frame["method"].isin(["l1-filter", "chip"])]
    assert len(ev.groupby(["method", "ratio"])) == 4
    assert (ev.groupby(["method", "ratio"])["support"].sum() == 200).all()
    # layer scope: the same widths for both criteria at one ratio
    by = jobs.set_index(["method", "ratio"])["achieved_ratio"]
    assert by[("chip", 2.0)] == by[("l1-filter", 2.0)]


def test_spec_errors_for_unreachable_ratios_and_unsupported_archs(tmp_path, monkeypatch):
    base = MODERN.replace("ratios = [2, 4]", "ratios = [2, 5]")
    with pytest.raises(SpecError, match=r"'ratios' = 5\.0.*structured.*at most 4\.34978"):
        _spec(tmp_path, base)
    with pytest.raises(SpecError, match=r"'ratios' = 60\.0.*largest reachable ratio is 57\.3"):
        _spec(tmp_path, MODERN.replace("ratios = [2]", "ratios = [2, 60]"))
    with pytest.raises(SpecError, match=r"'lth.rewind_steps' = 13.*at most the 12 optimiser"):
        _spec(tmp_path, MODERN.replace("rewind_steps = 3", "rewind_steps = 13"))
    with pytest.raises(SpecError, match=r"'lth.prune_fraction' = 1\.0"):
        _spec(tmp_path, MODERN.replace("rewind_steps = 3", "prune_fraction = 1.0"))
    with pytest.raises(SpecError, match=r"unknown key 'structured.images'"):
        _spec(tmp_path, MODERN.replace("chip_images = 16", "images = 16"))
    # an architecture the structured code has no channel groups for: a catalog record of a
    # plain MLP (docs/architecture.md, "Add an architecture")
    (tmp_path / "toy_mlp.py").write_text(
        "from torch import nn\n\n\nclass Mlp(nn.Sequential):\n"
        "    def __init__(self, num_classes, in_channels, image_size):\n"
        "        super().__init__(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 32),\n"
        "                         nn.ReLU(), nn.Linear(32, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def mlp_layout(num_classes, in_channels, image_size):
        n_in = in_channels * image_size ** 2
        return (architectures.Layer("1", "linear", n_in * 32, 32),
                architectures.Layer("3", "linear", 32 * num_classes, num_classes))

    mlp = architectures.Architecture("mlp", "toy_mlp:Mlp", (), (28, 28, 1), True,
                                     "torch_default", "lenet", 9, None, None, mlp_layout)
    monkeypatch.setattr(architectures, "REGISTRY", (*architectures.REGISTRY, mlp))
    with pytest.raises(SpecError, match=r"structured methods only on architectures"):
        _spec(tmp_path, MODERN.replace('methods = ["mp", "lth"]', "methods = []")
              .replace('architectures = ["lenet5"]', 'architectures = ["mlp"]'))


def test_killed_lth_run_redoes_only_the_level_in_flight(reference, tmp_path):
    """A run interrupted after LTH level 2 resumes at level 3 and ends bit-identical."""
    ref_spec, _ = reference
    spec = _spec(tmp_path)

    class KilledAfterLevel2(LocalExecutor):
        def wait(self):
            out = super().wait()
            for pack, _ in out:
                if pack.kind == "lth_level" and pack.jobs[0].level == 2:
                    raise KeyboardInterrupt  # the driver dies; level 2's result is lost too
            return out

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, executor=KilledAfterLevel2())
    jobs = load_results(spec).jobs.set_index("id")
    levels = jobs[jobs["kind"] == "lth_level"].sort_values("level")
    assert levels["status"].to_list() == ["done", "running", "pending", "pending"]
    started = levels["started"].iloc[0]
    todo = int((jobs["status"] != "done").sum())

    summary = run_study(spec)
    assert summary.failed == 0
    jobs = load_results(spec).jobs.set_index("id")
    levels = jobs[jobs["kind"] == "lth_level"].sort_values("level")
    assert (levels["status"] == "done").all()
    # level 1 was kept; level 2 (in flight when killed) ran twice, levels 3-4 once
    assert levels["started"].iloc[0] == started
    assert levels["attempts"].to_list() == [1, 2, 1, 1]
    assert summary.ran == todo and summary.already_done == len(jobs) - todo
    assert _digests(spec) == _digests(ref_spec)
    ref = load_results(ref_spec).frame
    new = load_results(spec).frame
    cols = ["method", "ratio", "level", "cls", "achieved_ratio", "support", "predicted",
            "correct"]
    assert new[cols].equals(ref[cols])


def test_lth_levels_stack_into_packs_and_structured_jobs_never_do(tmp_path):
    text = MODERN.replace("models = 1", "models = 2").replace("[executor]",
                                                             "[executor]\npack_size = 2")
    spec = _spec(tmp_path, text)
    summary = run_study(spec)
    assert summary.failed == 0, summary.errors
    jobs = load_results(spec).jobs
    sizes = {k: {(i or {}).get("pack_size", 1) for i in g}
             for k, g in jobs.groupby("kind")["info"]}
    assert sizes["lth_level"] == {2} and sizes["structured"] == {1}
    for _, chain in jobs[jobs["kind"] == "lth_level"].groupby("model"):
        prev = None
        for _, row in chain.sort_values("level").iterrows():
            _, _, masks = load_checkpoint(row["artifacts"]["weights"])
            if prev is not None:
                assert all(not (m & ~prev[n]).any() for n, m in masks.items())
            prev = masks


@pytest.mark.parametrize("name, counts", [
    ("modern", {"train": 5, "rewind": 5, "prune_finetune": 15, "lth_level": 55,
                "structured": 20, "evaluate": 95}),
    ("paper-modern", {"train": 30, "rewind": 30, "prune_finetune": 150, "lth_level": 570,
                      "structured": 240, "evaluate": 990}),
])
def test_shipped_modern_studies_plan(name, counts):
    from prunescope.study import load_spec

    path = Path(__file__).resolve().parents[2] / "studies" / f"{name}.toml"
    plan = make_plan(load_spec(path))
    assert {k: v for k, v in plan.counts().items() if v} == counts
    # their dense models and MP jobs are those of quick.toml / paper-corrected.toml (shared ids)
    base = make_plan(load_spec(path.with_name("quick.toml" if name == "modern"
                                              else "paper-corrected.toml")))
    base_ids = {j.id for j in base.jobs}
    assert all(j.id in base_ids for j in plan.jobs if j.kind in ("train", "prune_finetune"))


def _cifar_available() -> bool:
    from prunescope.data import list_datasets

    return any(s.name == "cifar10" and s.cached for s in list_datasets())


@pytest.mark.slow
@pytest.mark.skipif(not _cifar_available(), reason="CIFAR-10 is not cached")
def test_a_structured_config_runs_through_the_study(tmp_path):
    """``[structured] config`` reaches the worker: CHIP's published 0.24M ResNet-56 at the
    paper's label 3.33 is built (3.553 achieved), fine-tuned, saved and evaluated."""
    spec = _spec(tmp_path, """
name = "cfg-run"
seed = 1
models = 1
n_val = 64
test_subset = 64
datasets = ["cifar10"]
architectures = ["resnet56"]
methods = ["chip"]
ratios = [3.33]
[structured]
chip_images = 8
config = "chip-resnet56"
[train]
batch_size = 16
schedule = [[1, 0.01]]
max_steps_per_epoch = 1
[finetune]
batch_size = 16
schedule = [[1, 0.01]]
max_steps_per_epoch = 1
[executor]
threads = 1
""")
    summary = run_study(spec)
    assert summary.failed == 0, summary.errors
    res = load_results(spec)
    row = res.jobs[res.jobs["kind"] == "structured"].iloc[0]
    assert row["info"]["structured"]["config"] == "chip-resnet56"
    net, meta = load_structured_checkpoint(row["artifacts"]["weights"])
    assert meta["structured"]["setting"] == "chip-0.24M"
    assert count_parameters(net) == 240086 and net.layer1[0].conv2.out_channels == 9
    assert meta["structured"]["achieved_ratio"] == pytest.approx(3.553, abs=5e-4)


def test_lth_retrain_rewind_continues_the_dense_schedule_from_the_rewinding_step(tmp_path):
    """``[lth] retrain = "rewind"`` (Frankle et al. 2020): every level retrains with the
    [train] recipe from step rewind_steps to its end (9 of the 12 steps here), not from step 0;
    the other settings keep their job ids (start_step 0 is left out of the id: the pinned ids
    of studies/modern.toml, tests/study/test_job_ids.py)."""
    text = MODERN.replace("rewind_steps = 3", 'rewind_steps = 3\nretrain = "rewind"').replace(
        'methods = ["l1-filter", "chip"]', "methods = []")
    spec = _spec(tmp_path, text)
    levels = [j for j in make_plan(spec).jobs if j.kind == "lth_level"]
    assert {j.args.start_step for j in levels} == {3}
    assert {j.args.recipe for j in levels} == {spec.recipe("lenet5", "train")}
    summary = run_study(spec)
    assert summary.failed == 0, summary.errors
    jobs = load_results(spec).jobs
    for info in jobs[jobs["kind"] == "lth_level"]["info"]:
        assert [h["steps"] for h in info["history"]] == [9]  # steps 4..12 of the one epoch
    with pytest.raises(SpecError, match=r"'lth.rewind_steps' = 12.*minus one"):
        _spec(tmp_path / "e", text.replace("rewind_steps = 3", "rewind_steps = 12"))

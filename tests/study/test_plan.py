"""The plan: content-addressed job ids, shared gradients, model seeds (issue 5; SPEC 3, SPEC 4)."""
from __future__ import annotations

from pathlib import Path

from prunescope.study import RESULTS_VERSION, estimate_work, job_id, load_spec, make_plan, parse_spec
from prunescope.study.plan import canonical_json, model_seed

STUDIES = Path(__file__).resolve().parents[2] / "studies"

SPEC = """
name = "p"
seed = 3
models = 3
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp", "gp", "up", "rp"]
ratios = [2, 10]
distributions = ["nominal", "contrast-1"]
"""


def _plan(text=SPEC, tmp=None, **kw):
    return make_plan(parse_spec(text, base_dir=tmp, **kw))


def test_job_counts_and_dependency_order(tmp_path):
    plan = _plan(tmp=tmp_path)
    # 3 models: 3 dense, 3 gradients (GP and UP share one), 3 * 4 methods * 2 ratios pruned,
    # every dense and pruned model on 2 distributions
    assert plan.counts() == {"train": 3, "rewind": 0, "gradients": 3, "prune_finetune": 24,
                             "structured": 0, "lth_level": 0, "evaluate": 2 * (3 + 24)}
    seen = set()
    for j in plan.jobs:
        assert all(d in seen for d in j.deps), "parents must come before children"
        seen.add(j.id)
    assert len(seen) == len(plan.jobs)


def test_gp_and_up_share_one_gradient_job(tmp_path):
    plan = _plan(tmp=tmp_path)
    for m in range(3):
        grads = {j.params["gradients"] for j in plan.jobs
                 if j.kind == "prune_finetune" and j.model == m and j.method in ("gp", "up")}
        assert len(grads) == 1
        assert not any("gradients" in j.params for j in plan.jobs
                       if j.kind == "prune_finetune" and j.method in ("mp", "rp"))


def test_ids_hash_exactly_the_result_determinants(tmp_path):
    a = _plan(tmp=tmp_path)
    # not part of the id: output folder, study name, device, executor settings
    b = _plan(SPEC.replace('name = "p"', 'name = "other"') + 'device = "cpu"\n'
              '[executor]\npack_size = 4\n', tmp=tmp_path / "elsewhere")
    assert [j.id for j in a.jobs] == [j.id for j in b.jobs]
    # a changed fine-tuning recipe keeps dense ids and changes every pruned id (and below)
    c = _plan(SPEC + "[finetune]\nmax_steps_per_epoch = 5\n", tmp=tmp_path)
    kinds = {j.id: j.kind for j in a.jobs}
    same = {j.id for j in a.jobs} & {j.id for j in c.jobs}
    assert {kinds[i] for i in same} == {"train", "gradients", "evaluate"}
    assert sum(kinds[i] == "evaluate" for i in same) == 2 * 3  # evaluations of dense models
    # a changed training recipe changes everything
    d = _plan(SPEC + "[train]\nepochs = 2\n", tmp=tmp_path)
    assert not {j.id for j in a.jobs} & {j.id for j in d.jobs}
    # the id is the sha256 of the canonical params, which carry the version constant
    j = a.jobs[0]
    assert j.params["version"] == RESULTS_VERSION and job_id(j.params) == j.id
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == '{"a":[1.5,"x"],"b":1}'


def test_prunable_set_flags_change_only_pruned_ids(tmp_path):
    a = _plan(tmp=tmp_path)
    b = _plan(SPEC + "prune_classifier = true\n", tmp=tmp_path)
    kinds = {j.id: j.kind for j in a.jobs}
    same = {j.id for j in a.jobs} & {j.id for j in b.jobs}
    assert {kinds[i] for i in same} == {"train", "gradients", "evaluate"}
    assert all(j.params["prune_classifier"] for j in b.jobs if j.kind == "prune_finetune")
    # the classifier widens the prunable set, so ratios beyond the default maximum are reachable
    spec = parse_spec(SPEC.replace("ratios = [2, 10]", "ratios = [100]")
                      + "prune_classifier = true\nprune_biases = true\n", base_dir=tmp_path)
    assert spec.prune_classifier and spec.prune_biases


GRID = """
name = "g"
models = 2
ratios = [2, 50]
[[grid]]
datasets = ["mnist", "fashion-mnist"]
architectures = ["lenet5"]
methods = ["mp"]
[[grid]]
datasets = ["cifar10"]
architectures = ["resnet20"]
methods = ["mp"]
"""


def test_a_grid_entry_sets_the_prunable_set_of_its_cells_only(tmp_path):
    """SPEC 3: prune_classifier/prune_biases settable per grid cell; they enter the ids of the
    pruned jobs of that cell only, every other job keeps its id."""
    base = _plan(GRID, tmp=tmp_path)
    text = GRID.replace('methods = ["mp"]\n[[grid]]',
                        'methods = ["mp"]\nprune_classifier = true\nprune_biases = true\n[[grid]]')
    wide = _plan(text, tmp=tmp_path)
    assert [(c.arch, c.pruning.prune_classifier, c.pruning.prune_biases)
            for c in wide.spec.cells] == [
        ("lenet5", True, True), ("lenet5", True, True), ("resnet20", False, False)]
    base_ids = {j.id for j in base.jobs}
    for j in wide.jobs:
        lenet_pruned = j.arch == "lenet5" and j.method == "mp"
        if j.kind == "prune_finetune":
            assert ("prune_classifier" in j.params) == lenet_pruned
            assert ("prune_biases" in j.params) == lenet_pruned
        assert (j.id in base_ids) == (not lenet_pruned), (j.kind, j.arch, j.method)
    # the study-wide value is the default that an entry overrides
    flipped = _plan("prune_classifier = true\n" + GRID.replace(
        'architectures = ["resnet20"]\nmethods = ["mp"]',
        'architectures = ["resnet20"]\nmethods = ["mp"]\nprune_classifier = false'), tmp=tmp_path)
    assert [c.pruning.prune_classifier for c in flipped.spec.cells] == [True, True, False]
    assert ({j.id for j in flipped.jobs if j.arch == "resnet20"}
            == {j.id for j in base.jobs if j.arch == "resnet20"})


def test_paper_grid_prunes_as_the_authors_code_and_the_corrected_grid_as_spec():
    """studies/paper.toml: the authors' code (SPEC 8): every classifier protected, biases never
    masked but counted; studies/paper-corrected.toml: SPEC's defaults. Issue 13's upstream
    variant (last layer and biases prunable) is studies/paper-lenet-upstream.toml."""
    paper = load_spec(STUDIES / "paper.toml")
    corrected = load_spec(STUDIES / "paper-corrected.toml")
    upstream = load_spec(STUDIES / "paper-lenet-upstream.toml")
    assert {(c.pruning.prune_classifier, c.pruning.prune_biases, c.pruning.keep_rule)
            for c in paper.cells} == {(False, False, "shrinkbench")}
    assert {(c.pruning.prune_classifier, c.pruning.prune_biases, c.pruning.keep_rule)
            for c in corrected.cells} == {(False, False, "exact")}
    flags = {(c.dataset, c.arch): (c.pruning.prune_classifier, c.pruning.prune_biases)
             for c in upstream.cells}
    assert flags[("mnist", "lenet5-shrinkbench")] == (True, True)


def test_paper_lenet_is_the_lenet_half_of_paper():
    """studies/paper-lenet.toml's MP jobs are those of studies/paper.toml's LeNet cells (same
    ids: a run of the one counts for the other), although paper.toml sets the fork's per-block
    ResNet recipes and augmented gradient batch; its ResNet gradient jobs are augmented."""
    paper = make_plan(load_spec(STUDIES / "paper.toml"))
    lenet = make_plan(load_spec(STUDIES / "paper-lenet.toml"))
    ids = {j.id for j in paper.jobs}
    mp = [j for j in lenet.jobs if j.method in ("dense", "mp") and j.kind != "gradients"]
    assert mp and all(j.id in ids for j in mp)
    grads = [j for j in paper.jobs if j.kind == "gradients"]
    assert {j.arch for j in grads if j.params.get("augment")} == {
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"} == {j.arch for j in grads}
    assert not [j for j in lenet.jobs if "augment" in j.params]


def test_model_index_is_a_label_not_part_of_the_id(tmp_path):
    # 5 models contain the 3 models of the 3-model study with the same ids
    three = _plan(tmp=tmp_path)
    five = _plan(SPEC.replace("models = 3", "models = 5"), tmp=tmp_path)
    assert {j.id for j in three.jobs} < {j.id for j in five.jobs}
    for j in three.jobs:
        assert "model" not in j.params


def test_model_seeds_deterministic_distinct_and_recorded(tmp_path):
    plan = _plan(tmp=tmp_path)
    seeds = {j.model: j.seed for j in plan.jobs if j.kind == "train"}
    assert seeds == {m: model_seed(3, m) for m in range(3)}
    assert len(set(seeds.values())) == 3
    assert all(j.params["seed"] == j.seed for j in plan.jobs if j.kind == "train")
    assert model_seed(3, 0) == model_seed(3, 0) != model_seed(4, 0)
    assert all(0 <= model_seed(s, m) < 2**31 for s in range(3) for m in range(50))


def test_estimate_counts_epochs_and_images(tmp_path):
    plan = _plan(SPEC + "n_val = 1000\n[train]\nepochs = 2\n[finetune]\nepochs = 1\n"
                 "max_steps_per_epoch = 10\n", tmp=tmp_path)
    w = estimate_work(plan)
    assert w["train"] == {"jobs": 3, "epochs": 6, "images": 3 * 2 * (59000 + 1000)}
    assert w["prune_finetune"]["images"] == 24 * 1 * (10 * 128 + 1000)
    assert w["gradients"]["images"] == 3 * 59000
    assert w["evaluate"]["images"] == 54 * 10000


def test_paper_grid_size():
    # SPEC 4: 8 (dataset, arch) cells x 30 models; pruned per model: LeNet MP 5 x2 datasets,
    # 4 ResNets MP+UP+MP@UP 15 each, ResNet-56/CIFAR-10 MP+UP+GP+RP+MP@UP 25, ResNet-56/
    # CIFAR-100 MP+UP+MP@UP 15; the same grid in both protocols
    for name in ("paper.toml", "paper-corrected.toml"):
        plan = make_plan(load_spec(STUDIES / name))
        assert plan.counts()["train"] == 240
        assert plan.counts()["prune_finetune"] == 30 * (5 + 5 + 4 * 15 + 25 + 15)
        assert plan.counts()["gradients"] == 30 * 6
        assert plan.counts()["evaluate"] == 240 + 30 * 110


def test_lowratio_shares_ids_with_paper_corrected():
    paper = {j.id for j in make_plan(load_spec(STUDIES / "paper-corrected.toml")).jobs}
    low = make_plan(load_spec(STUDIES / "lowratio.toml"))
    shared = [j for j in low.jobs if j.id in paper]
    assert {j.kind for j in shared} == {"train", "gradients", "prune_finetune", "evaluate"}
    assert {j.ratio for j in shared if j.kind == "prune_finetune"} == {2.0, 4.0, 10.0}
    assert not {j.id for j in low.jobs} & {j.id for j in make_plan(load_spec(
        STUDIES / "paper.toml")).jobs}


def test_estimate_of_every_gradient_mode(tmp_path):
    """Issue 14 item 1: `shrinkbench` (no n_batches) planned and estimated without a TypeError:
    one batch of the training batch size; `batches` n of them; `full` the whole split. The ids
    of a shrinkbench study keep their `n_batches: null` (existing stores stay valid)."""
    base = SPEC + "n_val = 1000\n[train]\nbatch_size = 64\n[gradients]\n"
    images = {}
    for mode, extra in (("full", ""), ("batches", "n_batches = 3\n"), ("shrinkbench", "")):
        plan = _plan(base + f'mode = "{mode}"\n' + extra, tmp=tmp_path)
        images[mode] = estimate_work(plan)["gradients"]["images"]
        if mode == "shrinkbench":
            grads = [j for j in plan.jobs if j.kind == "gradients"]
            assert grads and all(j.params["n_batches"] is None for j in grads)
    assert images == {"full": 3 * 59000, "batches": 3 * 3 * 64, "shrinkbench": 3 * 64}


def test_corrupted_evaluations_name_their_pixel_quantisation(tmp_path):
    """Issue 13 item 3: corrupted test sets are truncated to uint8 as the published CIFAR-10-C
    (no longer rounded), so their evaluations carry ``quantize`` and get ids no rounded result
    has; nominal evaluations (every shipped study's) keep theirs."""
    plan = _plan(tmp=tmp_path)  # distributions nominal and contrast-1
    evals = [j for j in plan.jobs if j.kind == "evaluate"]
    assert {j.params.get("quantize") for j in evals if j.distribution == "contrast-1"} == {"truncate"}
    assert all("quantize" not in j.params for j in evals if j.distribution == "nominal")

"""Study spec validation (issue 5; SPEC 3 ratios, SPEC 4 grid and recipes)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from prunescope.catalog.protocol import PruneOptions
from prunescope.study import SpecError, load_spec, parse_spec
from prunescope.train import Recipe
from prunescope.train.pack import PackOptions

STUDIES = Path(__file__).resolve().parents[2] / "studies"

BASE = """
name = "t"
models = 2
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp", "up"]
ratios = [4, 2]
"""


def test_minimal_spec_defaults(tmp_path):
    spec = parse_spec(BASE, base_dir=tmp_path)
    assert spec.name == "t" and spec.models == 2 and spec.seed == 0
    assert [(c.dataset, c.arch, c.methods) for c in spec.cells] == [
        ("mnist", "lenet5", (("mp", (2.0, 4.0)), ("up", (2.0, 4.0))))]
    assert spec.scope == "global" and spec.distributions == ("nominal",)
    assert spec.gradients.mode == "full" and spec.n_val == 5000
    assert spec.output == str((tmp_path / "runs" / "t").resolve())
    assert spec.artifacts == str(Path(spec.output) / "artifacts")
    # SPEC 4 recipes by default
    assert spec.recipe("lenet5", "train") == Recipe.paper_lenet()
    assert spec.recipe("lenet5", "finetune") == Recipe.paper_lenet_finetune()


def test_recipe_overrides_general_and_per_arch(tmp_path):
    spec = parse_spec(BASE + """
[train]
epochs_scale = 0.1
batch_size = 64
[finetune]
schedule = [[2, 0.05], [1, 0.005]]
max_steps_per_epoch = 7
[train.lenet5]
weight_decay = 1e-4
""", base_dir=tmp_path)
    tr = spec.recipe("lenet5", "train")
    assert tr.epochs == 3 and tr.batch_size == 64 and tr.weight_decay == 1e-4  # 30 * 0.1
    ft = spec.recipe("lenet5", "finetune")
    assert ft.schedule == ((2, 0.05), (1, 0.005)) and ft.max_steps_per_epoch == 7


def test_recipe_family_tables_sit_between_general_and_arch(tmp_path):
    """``[train.resnet]`` sets every ResNet's recipe (not the LeNet's); ``[train.<arch>]`` wins
    over it, ``[train]`` loses to it."""
    spec = parse_spec("""
name = "t"
models = 2
ratios = [2]
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
[[grid]]
datasets = ["cifar10"]
architectures = ["resnet20", "resnet32"]
methods = ["mp"]
[train]
weight_decay = 0
select = "val_loss"
[train.resnet]
select = "val_loss_per_block"
restart_momentum = true
[train.resnet32]
restart_momentum = false
""", base_dir=tmp_path)
    fork = dict(weight_decay=0, select="val_loss_per_block", restart_momentum=True)
    assert spec.recipe("resnet20", "train") == dataclasses.replace(Recipe.paper_resnet(), **fork)
    assert spec.recipe("resnet32", "train") == dataclasses.replace(
        Recipe.paper_resnet(), **fork | {"restart_momentum": False})
    assert spec.recipe("lenet5", "train") == dataclasses.replace(Recipe.paper_lenet(),
                                                                 weight_decay=0)
    assert spec.recipe("resnet20", "finetune") == Recipe.paper_resnet_finetune()
    with pytest.raises(SpecError, match=r"\[train.<family>\] with <family> one of lenet, resnet"):
        parse_spec(BASE + "[train.vgg]\nweight_decay = 0\n", base_dir=tmp_path)


def test_resnet_recipe_scaled_keeps_spec4_shape(tmp_path):
    spec = parse_spec("""
name = "r"
models = 1
datasets = ["cifar10"]
architectures = ["resnet20"]
methods = ["mp"]
ratios = [2]
[train]
epochs = 6
""", base_dir=tmp_path)
    assert spec.recipe("resnet20", "train") == Recipe.paper_resnet().with_epochs(6)
    assert spec.recipe("resnet20", "finetune") == Recipe.paper_resnet_finetune()


@pytest.mark.parametrize("extra, key, words", [
    ("colour = 1", "colour", "allowed keys"),
    ("[train]\nepochz = 3", "train.epochz", "allowed keys"),
    ("[gradients]\nmode = 'half'", "gradients.mode", "full, batches, shrinkbench"),
    ("[gradients]\nmode = 'batches'", "gradients.n_batches", ">= 1"),
    ("[gradients]\naugment = true", "gradients.augment", "false unless gradients.mode"),
    ("[train]\nbatch_size = 'big'", "train.batch_size", "int"),
    ("[train]\nnesterov = 1", "train.nesterov", "bool"),
    ("[train]\nmomentum = 1.5", "train", "momentum"),
    ("[train]\nschedule = [[0.5]]", "train.schedule", "[epochs, lr]"),
    ("[executor]\npack_size = 0", "executor.pack_size", "from 1 to"),
    ("[executor]\nworkers = 0", "executor.workers", "from 1 to"),
    ("[executor]\npack_size = 'big'", "executor.pack_size", "auto"),
    ("[executor]\ngpus_per_pack = 1.5", "executor.gpus_per_pack", "fraction"),
    ("[executor]\ndeterministic = 'yes'", "executor.deterministic", '"auto"'),
    ("[executor.pack_options]\nfp8 = true", "executor.pack_options.fp8", "allowed keys"),
    ("[executor.pack_options]\ncompile = 1", "executor.pack_options.compile", "true or false"),
    ("[executor.pack_options]\ncompile = false\ncuda_graphs = true", "executor.pack_options",
     "needs compile"),
    ("device = 'cpu'\n[executor.pack_options]\nbf16 = true", "executor.pack_options",
     "need a CUDA device"),
    ("scope = 'row'", "scope", "global, layer"),
    ("prune_biases = 'yes'", "prune_biases", "bool"),
    ("distributions = ['fog-3']", "distributions[0]", "gaussian_noise"),
    ("device = 'tpu'", "device", "cuda:N"),
    ("n_val = 0", "n_val", ">= 1"),
    ("n_val = 60000", "n_val", "fewer than the 60000"),
])
def test_invalid_values_name_key_and_allowed(tmp_path, extra, key, words):
    with pytest.raises(SpecError) as e:
        parse_spec(BASE + extra, base_dir=tmp_path)
    assert f"'{key}" in str(e.value) or key in str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize("replace, key, words", [
    ('models = 2', 'models = 0', "from 1 to"),
    ('ratios = [4, 2]', 'ratios = [4, 1]', "> 1"),
    ('ratios = [4, 2]', 'ratios = [4, "2"]', "> 1"),
    ('methods = ["mp", "up"]', 'methods = ["magnitude"]', "mp, gp, up, rp, lth, l1-filter, chip"),
    ('datasets = ["mnist"]', 'datasets = ["svhn"]', "cifar100"),
    ('architectures = ["lenet5"]', 'architectures = ["resnet56"]', "fits mnist"),
    ('name = "t"', 'name = "a b"', "letters"),
    ('ratios = [4, 2]', 'ratios = [4, 100000]', "largest reachable ratio"),
])
def test_impossible_values_fail_before_work(tmp_path, replace, key, words):
    with pytest.raises(SpecError, match=words):
        parse_spec(BASE.replace(replace, key), base_dir=tmp_path)


def test_pack_size_auto(tmp_path):
    from prunescope.study.run import pack_size

    spec = parse_spec(BASE + "[executor]\npack_size = 'auto'", base_dir=tmp_path)
    assert spec.executor.pack_size == "auto"
    assert pack_size(spec, "mnist", "lenet5", "cpu") >= 1
    assert pack_size(parse_spec(BASE, base_dir=tmp_path), "mnist", "lenet5", "cpu") == 1


def test_deterministic_policy(tmp_path):
    """``[executor] deterministic``: "auto" = deterministic algorithms on the CPU, speed
    (autotuned cuDNN, no deterministic restriction) on CUDA; an explicit value wins; the
    worker restores the process's settings afterwards. (The "cuda" branch sets flags only, so it
    runs on a CPU machine too.)"""
    from prunescope.study.worker import job_settings
    from prunescope.train.options import device_profile

    assert parse_spec(BASE, base_dir=tmp_path).executor.deterministic is None  # "auto"
    spec = parse_spec(BASE + "[executor]\ndeterministic = false", base_dir=tmp_path)
    assert spec.executor.deterministic is False
    assert spec.executor.profile("cuda").deterministic is False
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    seen = {}
    for device, on in (("cpu", None), ("cuda", None), ("cpu", False), ("cuda", True)):
        profile = device_profile(device, deterministic=on)
        assert profile.deterministic is (device == "cpu" if on is None else on)
        with job_settings(profile):
            seen[device, on] = (torch.are_deterministic_algorithms_enabled(),
                                torch.backends.cudnn.benchmark)
        assert (torch.are_deterministic_algorithms_enabled(),
                torch.backends.cudnn.benchmark) == before
    assert seen == {("cpu", None): (True, before[1]), ("cuda", None): (False, True),
                    ("cpu", False): (False, before[1]), ("cuda", True): (True, before[1])}


def test_pack_options_in_the_spec(tmp_path, monkeypatch):
    """``[executor.pack_options]`` overrides the device's PackOptions in the pack-size estimate
    (tests/study/test_packs.py shows them reaching the workers' packs); on a machine without
    CUDA a CUDA-only switch stops the run before any job runs."""
    import prunescope.study.run as run

    spec = parse_spec(BASE + "[executor]\npack_size = 'auto'\n[executor.pack_options]\n"
                      "compile = false\nbf16 = false", base_dir=tmp_path)
    assert spec.executor.pack_options == (("bf16", False), ("compile", False))
    seen = {}

    def fake_auto(arch, device, **kw):
        seen["auto"] = device.pack_options
        return 3

    monkeypatch.setattr("prunescope.train.pack.auto_pack_size", fake_auto)
    assert run.pack_size(spec, "mnist", "lenet5", "cuda") == 3
    assert seen["auto"] == PackOptions(channels_last=True, fused_optimizer=True)
    if not torch.cuda.is_available():
        cuda_only = parse_spec(BASE + "[executor.pack_options]\nbf16 = true", base_dir=tmp_path)
        with pytest.raises(RuntimeError, match="pack_options.*cannot run on cpu"):
            run.run_study(cuda_only)


def test_missing_required_key_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match="missing required key 'models'"):
        parse_spec(BASE.replace("models = 2", ""), base_dir=tmp_path)
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec("name = ", base_dir=tmp_path)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.toml")


def test_grid_entries_merge_per_cell_methods(tmp_path):
    spec = parse_spec("""
name = "g"
models = 1
ratios = [2, 4]
[[grid]]
datasets = ["cifar10"]
architectures = ["resnet20", "resnet56"]
methods = ["mp", "up"]
[[grid]]
datasets = ["cifar10"]
architectures = ["resnet56"]
methods = ["gp", "rp"]
ratios = [10]
""", base_dir=tmp_path)
    cells = {(c.dataset, c.arch): dict(c.methods) for c in spec.cells}
    assert cells[("cifar10", "resnet20")] == {"mp": (2.0, 4.0), "up": (2.0, 4.0)}
    assert cells[("cifar10", "resnet56")] == {"mp": (2.0, 4.0), "gp": (10.0,), "up": (2.0, 4.0),
                                             "rp": (10.0,)}
    with pytest.raises(SpecError, match="absent when \\[\\[grid\\]\\]"):
        parse_spec(BASE + "[[grid]]\ndatasets = ['mnist']\narchitectures = ['lenet5']",
                   base_dir=tmp_path)


def test_distributions_canonical_nominal_first(tmp_path):
    spec = parse_spec(BASE + "distributions = ['noise-.10', 'nominal', 'contrast-2']",
                      base_dir=tmp_path)
    assert spec.distributions == ("nominal", "contrast-2", "noise-0.1")


def test_output_relative_to_spec_file_and_override(tmp_path):
    (tmp_path / "s").mkdir()
    f = tmp_path / "s" / "x.toml"
    f.write_text(BASE + 'output = "../out/x"\nartifacts = "memory://arts/x"')
    spec = load_spec(f)
    assert spec.output == str((tmp_path / "out" / "x").resolve())
    assert spec.artifacts == "memory://arts/x"
    assert spec.path == str(f.resolve()) and spec.text == f.read_text()
    assert load_spec(f, output=str(tmp_path / "o2")).output == str(tmp_path / "o2")
    f.write_text(BASE + 'output = "s3://bucket/x"')
    with pytest.raises(SpecError, match="local folder"):
        load_spec(f)


def test_grid_entries_naming_one_cell_must_agree_on_its_prunable_set(tmp_path):
    text = """
name = "t"
models = 1
ratios = [2]
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["mp"]
[[grid]]
datasets = ["mnist"]
architectures = ["lenet5"]
methods = ["rp"]
prune_classifier = true
"""
    with pytest.raises(SpecError, match=r"grid\[1\]\.prune_classifier.*one prunable set"):
        parse_spec(text, base_dir=tmp_path)
    spec = parse_spec(text.replace('["mp"]', '["mp"]\nprune_classifier = true'), base_dir=tmp_path)
    assert [(c.methods, c.pruning.prune_classifier) for c in spec.cells] == [
        ((("mp", (2.0,)), ("rp", (2.0,))), True)]
    with pytest.raises(SpecError, match=r"grid\[0\]\.prune_biases.*bool"):
        parse_spec(text.replace('["mp"]', '["mp"]\nprune_biases = 1'), base_dir=tmp_path)


def test_lenet5_shrinkbench_fits_mnist_only(tmp_path):
    text = BASE.replace('["lenet5"]', '["lenet5-shrinkbench"]')
    assert parse_spec(text, base_dir=tmp_path).cells[0].arch == "lenet5-shrinkbench"
    assert (parse_spec(text, base_dir=tmp_path).recipe("lenet5-shrinkbench", "train")
            == Recipe.paper_lenet())
    with pytest.raises(SpecError, match="resnet"):
        parse_spec(text.replace('"mnist"', '"cifar10"'), base_dir=tmp_path)


def test_shipped_studies_are_valid():
    quick = load_spec(STUDIES / "quick.toml")
    assert quick.models >= 5 and quick.cells[0].dataset == "mnist"
    assert dict(quick.cells[0].methods) == {m: (2.0, 4.0, 10.0, 20.0, 50.0)
                                            for m in ("mp", "gp", "up", "rp")}
    paper = load_spec(STUDIES / "paper.toml")
    assert paper.models == 30
    cells = {(c.dataset, c.arch): set(dict(c.methods)) for c in paper.cells}
    lenet = {(c.dataset, c.arch): c for c in paper.cells if c.arch == "lenet5-shrinkbench"}
    assert cells[("mnist", "lenet5-shrinkbench")] == cells[("fashion-mnist", "lenet5-shrinkbench")] \
        == {"mp"}
    # SPEC 8: the authors' code protects every classifier and masks no bias, counting them
    fork = PruneOptions(keep_rule="shrinkbench", up_score="signed-5e-4", rp_count="binomial")
    assert all(c.pruning == fork for c in paper.cells) and len(lenet) == 2
    assert (paper.validation, paper.normalisation, paper.gradients.mode) == (
        "test", "fork", "shrinkbench")
    corrected = load_spec(STUDIES / "paper-corrected.toml")
    assert all(c.pruning == PruneOptions() for c in corrected.cells)
    assert [(c.dataset, c.arch, c.methods) for c in corrected.cells] == [
        (c.dataset, c.arch, c.methods) for c in paper.cells]
    upstream = load_spec(STUDIES / "paper-lenet-upstream.toml")
    assert all(c.pruning.prune_classifier and c.pruning.prune_biases
               for c in upstream.cells if c.arch == "lenet5-shrinkbench")
    for depth in (20, 32, 44, 110):
        assert cells[("cifar10", f"resnet{depth}")] == {"mp", "up", "mp-at-up"}
    assert cells[("cifar10", "resnet56")] == {"mp", "gp", "up", "rp", "mp-at-up"}
    assert cells[("cifar100", "resnet56")] == {"mp", "up", "mp-at-up"}
    # the fork: weight decay 0, and per schedule block a fresh optimiser whose best loss starts
    # at 1 (ResNets only: the LeNet's one block keeps the recipe, and ids, of paper-lenet.toml)
    fork_blocks = dict(weight_decay=0, select="val_loss_per_block", restart_momentum=True)
    for phase, base in (("train", Recipe.paper_resnet()),
                        ("finetune", Recipe.paper_resnet_finetune())):
        assert paper.recipe("resnet56", phase) == dataclasses.replace(base, **fork_blocks)
    assert paper.recipe("lenet5-shrinkbench", "train") == dataclasses.replace(
        Recipe.paper_lenet(), weight_decay=0)
    assert paper.gradients.augment
    assert corrected.recipe("resnet56", "train") == Recipe.paper_resnet()
    low = load_spec(STUDIES / "lowratio.toml")
    assert dict(low.cells[0].methods) == {"mp": (2.0, 4.0, 6.0, 8.0, 10.0),
                                          "up": (2.0, 4.0, 6.0, 8.0, 10.0)}

"""Published per-layer structured configs for ResNet-56 (issue 13 item 6): CHIP's README settings
(residual streams of stages 1-2 narrowed too) and Li et al.'s ResNet-56-pruned-A/-B (per-stage
rates, sensitive layers skipped), scaled for other ratios; the uniform config stays as it was.
Ratio = all parameters before / all parameters after (SPEC 3 "Pruning ratio")."""
import copy
import math

import pytest
import torch
from torch import nn

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.prune import UnreachableRatioError, apply_masks, count_parameters
from prunescope.prune.channel_groups import channel_groups
from prunescope.prune.channel_scores import chip_scores, l1_filter_scores, nuclear_drop
from prunescope.prune.narrow import load_structured_checkpoint
from prunescope.prune.structured import (
    config_widths,
    structured_max_ratio,
    structured_meta,
    structured_prune,
    structured_prune_model,
)
from prunescope.catalog.structured_configs import STRUCTURED_CONFIGS, chip_sparsity
from prunescope.study import SpecError, make_plan, parse_spec
from prunescope.train import save_checkpoint

N_RESNET56 = 853018  # all parameters of ResNet-56 with 10 classes (3 input channels)


def randomise_bn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
    return model


@pytest.fixture(scope="module")
def resnet56():
    return randomise_bn(build_model("resnet56", 10, seed=1)).eval()


def random_scores(model, seed):
    """Scores in a random order per group (streams included), except that the channels the
    shortcut from the previous stage carries into a stream score lowest: a selection by score
    alone would drop them."""
    gen = torch.Generator().manual_seed(seed)
    groups = channel_groups(model, streams=True)
    out = {g.name: torch.rand(g.channels, generator=gen, dtype=torch.float64) for g in groups}
    for g in groups:
        if g.shortcut is not None:
            _, source, offset = g.shortcut
            out[g.name][offset:offset + out[source].numel()] -= 1.0
    return out


def resnet56_params(streams, inner, num_classes=10):
    """Hand count of a ResNet-56 whose stem and stage-s blocks write ``streams[s]`` channels
    and whose block b has ``inner[b]`` inner channels (27 blocks)."""
    n = 3 * streams[0] * 9 + 2 * streams[0]  # stem conv + bn (the stem writes stage 1's stream)
    prev = streams[0]
    for b, k in enumerate(inner):
        out = streams[b // 9]
        n += prev * k * 9 + 2 * k + k * out * 9 + 2 * out
        prev = out
    return n + streams[2] * num_classes + num_classes


def test_hand_count_is_the_dense_model(resnet56):
    assert resnet56_params([16, 32, 64], [16] * 9 + [32] * 9 + [64] * 9) == N_RESNET56
    assert count_parameters(resnet56) == N_RESNET56


def test_chip_sparsity_strings_parse_as_the_official_code_reads_them():
    assert chip_sparsity("[0.]+[0.15]*2+[0.4]*27") == [0.0, 0.15, 0.15] + [0.4] * 27
    assert chip_sparsity("[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9")[2:4] == [0.4, 0.5]
    with pytest.raises(ValueError, match="bad CHIP sparsity term"):
        chip_sparsity("[0.]+0.4*2")


# (config, request, streams, inner widths per stage, blocks kept whole, n_after)
PUBLISHED = [
    # CHIP README "[0.]+[0.15]*2+[0.4]*27": streams int(16*.85)=13, int(32*.85)=27, 64; inner
    # int(n*.6) = 9, 19, 38
    ("chip-resnet56", 1.75, (13, 27, 64), (9, 19, 38), (), 485083),
    # "[0.]+[0.4]*2+[0.5]*9+[0.6]*9+[0.7]*9": streams 9, 19, 64; inner 8, 12, 19
    ("chip-resnet56", 3.33, (9, 19, 64), (8, 12, 19), (), 240086),
    # Li et al. pruned-A: 10% of each first conv, layers 16, 20, 38, 54 skipped
    ("li-resnet56", 1 / (1 - 0.094), (16, 32, 64), (14, 28, 57),
     ("layer1.7", "layer2.0", "layer3.0", "layer3.8"), 773336),
    # pruned-B: 60/30/10%, layers 16, 18, 20, 34, 38, 54 skipped
    ("li-resnet56", 1 / (1 - 0.137), (16, 32, 64), (6, 22, 57),
     ("layer1.7", "layer1.8", "layer2.0", "layer2.7", "layer3.0", "layer3.8"), 735712),
]


@pytest.mark.parametrize("config,ratio,streams,inner,whole,n_after", PUBLISHED)
def test_published_settings_have_their_per_layer_widths_and_hand_counted_ratio(
        resnet56, config, ratio, streams, inner, whole, n_after):
    res = structured_prune(resnet56, l1_filter_scores(resnet56, channel_groups(resnet56, True)),
                           ratio, config=config)
    assert res.scale == 1.0 and res.setting is not None and res.config == config
    blocks = [(f"layer{s + 1}.{b}", s) for s in range(3) for b in range(9)]
    want = [([16, 32, 64][s] if blk in whole else inner[s]) for blk, s in blocks]
    assert [res.widths[f"{blk}.conv1"] for blk, _ in blocks] == want
    m = res.model
    assert m.conv1.out_channels == m.bn1.num_features == streams[0]
    for s in range(3):
        stage = getattr(m, f"layer{s + 1}")
        assert {blk.conv2.out_channels for blk in stage} == {streams[s]}
        assert {blk.bn2.num_features for blk in stage} == {streams[s]}
    assert m.classifier.in_features == streams[2]
    assert res.n_after == count_parameters(m) == n_after
    assert n_after == resnet56_params(streams, want)
    assert res.achieved_ratio == N_RESNET56 / n_after
    if config == "li-resnet56":  # the streams are never narrowed: no stream group in the result
        assert not any(n.count(".") == 0 for n in res.widths)


def test_measured_ratios_of_the_published_settings(resnet56):
    """The numbers docs/iterative_structured.md quotes (4 decimals)."""
    got = {(c, round(r, 4)): round(config_widths(resnet56, c, r).achieved_ratio, 4)
           for c, r, *_ in PUBLISHED}
    assert list(got.values()) == [1.7585, 3.553, 1.103, 1.1594]


@pytest.mark.parametrize("ratio", [8.27, 19.11, 2.0, 10.0])
def test_scaled_chip_reaches_table_13_ratios_preserving_keep_proportions(resnet56, ratio):
    cw = config_widths(resnet56, "chip-resnet56", ratio)
    assert cw.scale != 1.0
    # Table 13's 8.27 and 19.11: within 0.3% here (one channel of one group per step)
    assert abs(cw.achieved_ratio / ratio - 1) < (0.003 if ratio < 15 else 0.005)
    base = dict(STRUCTURED_CONFIGS["chip-resnet56"].settings[
        0 if ratio < math.sqrt(1.75 * 3.33) else 1].rates)
    n = {g.name: g.channels for g in channel_groups(resnet56, streams=True)}
    c = cw.scale
    for name, w in cw.widths.items():
        exact = c * (1 - base[name]) * n[name]
        # floor(c k n), except groups stepping at exactly c (taken one at a time)
        assert math.floor(exact + 1e-9) - 1 <= w <= max(1, math.floor(exact + 1e-9))
    # the closest of all prefixes: one channel more or fewer anywhere is no closer
    res = structured_prune(resnet56, random_scores(resnet56, 0), ratio, config="chip-resnet56")
    assert res.widths == cw.widths and res.achieved_ratio == cw.achieved_ratio


def test_published_setting_is_picked_only_near_its_reported_ratio(resnet56):
    # 3.33 is CHIP's reported 70.0% (1 / 0.3); the same widths count 3.553 here
    assert config_widths(resnet56, "chip-resnet56", 3.333).scale == 1.0
    off = config_widths(resnet56, "chip-resnet56", 3.4)
    assert off.setting == "chip-0.24M" and off.scale != 1.0
    assert abs(off.achieved_ratio - 3.4) < abs(3.553 - 3.4)
    assert config_widths(resnet56, "chip-resnet56", 2.0).setting == "chip-0.48M"
    assert config_widths(resnet56, "chip-resnet56", 3.0).setting == "chip-0.24M"


@pytest.fixture(scope="module")
def resnet56_f64(resnet56):
    return copy.deepcopy(resnet56).double()


@pytest.mark.parametrize("config,ratio", [("chip-resnet56", 3.33), ("chip-resnet56", 19.11),
                                          ("li-resnet56", 2.0)])
def test_narrowed_streams_compute_the_dense_model_with_those_channels_zeroed(
        resnet56_f64, config, ratio):
    """Function preservation: the smaller network equals the dense float64 network whose
    removed channels are zeroed (their filters, BN entries and the columns reading them), on an
    input; removed stream channels are then zero in every block output of the dense model."""
    model = resnet56_f64
    res = structured_prune(model, random_scores(model, 1), ratio, config=config)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    masked = copy.deepcopy(model)
    apply_masks(masked, res.masks)
    outs = {}
    hooks = [getattr(masked, f"layer{s}")[b].register_forward_hook(
        lambda _m, _i, o, k=(s, b): outs.__setitem__(k, o)) for s in (1, 2, 3) for b in range(9)]
    with torch.no_grad():
        small, dense_zeroed = res.model(x), masked(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(small, dense_zeroed, rtol=1e-10, atol=1e-10)
    assert small.abs().max() > 1e-3
    for s in (1, 2, 3):
        if f"layer{s}" in res.keep and len(res.keep[f"layer{s}"]) < outs[(s, 0)].shape[1]:
            gone = sorted(set(range(outs[(s, 0)].shape[1])) - set(res.keep[f"layer{s}"].tolist()))
            assert all(outs[(s, b)][:, gone].abs().max() == 0 for b in range(9))


def test_a_stream_keeps_every_channel_the_shortcut_carries_into_it(resnet56):
    res = structured_prune(resnet56, random_scores(resnet56, 3), 8.27, config="chip-resnet56")
    k1, k2, k3 = (set(res.keep[f"layer{s}"].tolist()) for s in (1, 2, 3))
    assert {c + 8 for c in k1} <= k2 and {c + 16 for c in k2} <= k3
    assert len(k1) < 16 and len(k2) < 32 and len(k3) < 64  # all three narrowed at 8.27
    idx = res.model.layer2[0].shortcut_index
    assert idx is not None and len(idx) == len(k2)
    # the shortcut map: kept stage-2 channel j reads stage-1 slot of channel j - 8, else zero
    src, dst = sorted(k1), sorted(k2)
    assert idx.tolist() == [src.index(c - 8) if c - 8 in k1 else len(src) for c in dst]
    assert res.model.layer1[0].shortcut_index is None  # same stream on both sides


def test_stream_narrowed_checkpoint_round_trips(resnet56, tmp_path):
    res = structured_prune(resnet56, random_scores(resnet56, 4), 8.27, config="chip-resnet56")
    meta = {"arch": "resnet56", "num_classes": 10, "in_channels": 3, "weight_decay": 5e-4}
    path = save_checkpoint(tmp_path / "s.safetensors", res.model,
                           structured_meta(res, "chip", meta))
    back, back_meta = load_structured_checkpoint(path)
    assert back_meta["structured"]["config"] == "chip-resnet56"
    assert back_meta["structured"]["setting"] == "chip-0.24M"
    assert torch.equal(back.layer3[0].shortcut_index, res.model.layer3[0].shortcut_index)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(back(x), res.model(x))


def test_stream_scores():
    """L1: the filters of every producer writing the channel; CHIP: the mean over the stream's
    maps (the stem's relu(bn1(conv1 x)) and every block output) of the nuclear-norm drop."""
    model = randomise_bn(build_model("resnet20", 10, seed=3)).eval()
    streams = [g for g in channel_groups(model, streams=True) if g.shortcut or g.name == "layer1"]
    assert [g.name for g in streams] == ["layer1", "layer2", "layer3"]
    l1 = l1_filter_scores(model, streams)
    want = sum(m.weight[3].detach().double().abs().sum()
               for m in [model.conv1] + [b.conv2 for b in model.layer1])
    assert float(l1["layer1"][3]) == pytest.approx(float(want), rel=1e-12)
    gen = torch.Generator().manual_seed(0)
    imgs = DeviceImages(torch.randint(0, 256, (6, 32, 32, 3), generator=gen, dtype=torch.uint8),
                        torch.arange(6) % 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    sc = chip_scores(model, imgs, n_images=6, batch_size=4, groups=streams)
    with torch.no_grad():
        x = next(imgs.batches(6))[0]
        maps = [torch.relu(model.bn1(model.conv1(x)))]
        for b in model.layer1:
            maps.append(b(maps[-1]))
    want = torch.stack([nuclear_drop(m.double().flatten(2)).mean(0) for m in maps]).mean(0)
    torch.testing.assert_close(sc["layer1"], want, rtol=1e-9, atol=1e-9)
    # the default groups are the inner ones, the streams come on top
    assert channel_groups(model) == [g for g in channel_groups(model, streams=True)
                                     if g not in streams]


def test_uniform_config_is_the_default_and_unchanged(resnet56):
    sc = l1_filter_scores(resnet56)
    a = structured_prune(resnet56, sc, 4)
    b = structured_prune(resnet56, sc, 4, config="uniform")
    assert a.widths == b.widths and a.config == "uniform" and a.setting is None
    assert set(a.widths) == {g.name for g in channel_groups(resnet56)}  # inner groups only
    assert a.model.layer2[0].shortcut_index is None
    assert structured_max_ratio(resnet56) == pytest.approx(40.82207, rel=1e-6)


def test_config_errors(resnet56):
    sc = random_scores(resnet56, 0)
    with pytest.raises(ValueError, match="unknown structured config 'chip'"):
        structured_prune(resnet56, sc, 2, config="chip")
    with pytest.raises(ValueError, match="is for resnet56"):
        config_widths(build_model("resnet20", 10), "chip-resnet56", 2)
    with pytest.raises(ValueError, match="give ratio="):
        structured_prune(resnet56, sc, keep_fraction=0.5, config="li-resnet56")
    with pytest.raises(ValueError, match="scope='layer'"):
        structured_prune(resnet56, sc, 2, scope="global", config="li-resnet56")
    top = structured_max_ratio(resnet56, "li-resnet56")
    assert top == pytest.approx(5.13990, rel=1e-5)  # skipped blocks and streams stay whole
    with pytest.raises(UnreachableRatioError, match=r"ratio 6 is unreachable with config"):
        config_widths(resnet56, "li-resnet56", 6)
    with pytest.raises(ValueError, match="scores lack group 'layer1'"):
        structured_prune(resnet56, l1_filter_scores(resnet56), 3.33, config="chip-resnet56")


def test_one_call_scores_only_the_narrowed_groups(resnet56, monkeypatch):
    """A structured method's score function sees only the groups a named config narrows: a
    method added the catalog's way (a score function and a record) records them."""
    from prunescope.catalog import methods
    from prunescope.prune import channel_scores

    seen = {}

    def recording_scores(model, groups=None):
        seen["groups"] = [g.name for g in groups]
        return l1_filter_scores(model, groups)

    monkeypatch.setattr(channel_scores, "recording_scores", recording_scores, raising=False)
    spy = methods.Method("spy", "Spy", "#000001", "structured", False, 99,
                         "prunescope.prune.channel_scores:recording_scores")
    monkeypatch.setattr(methods, "REGISTRY", (*methods.REGISTRY, spy))
    res = structured_prune_model(resnet56, "spy", 1.75, config="chip-resnet56")
    assert "layer3" not in seen["groups"] and "layer1" in seen["groups"]  # stage 3 stays whole
    assert res.widths["layer3"] == 64 and res.setting == "chip-0.48M"


STUDY = """
name = "cfg"
seed = 0
models = 1
[[grid]]
datasets = ["cifar10"]
architectures = ["resnet56"]
methods = ["l1-filter", "chip"]
ratios = [1.75, 3.33, 8.27, 19.11]
"""


def _structured_ids(tmp_path, extra=""):
    spec = parse_spec(STUDY + extra, base_dir=tmp_path)
    return {(j.method, j.ratio): j for j in make_plan(spec).jobs if j.kind == "structured"}


def test_config_flows_from_the_spec_into_the_job_ids_of_its_method_only(tmp_path):
    plain = _structured_ids(tmp_path)
    assert all("config" not in j.params for j in plain.values())
    same = _structured_ids(tmp_path, '[structured]\nconfig = "uniform"\n')
    assert {k: j.id for k, j in same.items()} == {k: j.id for k, j in plain.items()}
    chip = _structured_ids(tmp_path, '[structured]\nconfig = { chip = "chip-resnet56" }\n')
    for (meth, r), j in chip.items():
        if meth == "chip":
            assert j.params["config"] == "chip-resnet56" and j.id != plain[(meth, r)].id
        else:
            assert "config" not in j.params and j.id == plain[(meth, r)].id
    both = _structured_ids(tmp_path, '[structured]\nconfig = "chip-resnet56"\n')
    assert {j.params["config"] for j in both.values()} == {"chip-resnet56"}


@pytest.mark.parametrize("extra,words", [
    ('[structured]\nconfig = "chip"\n', r"'structured.config' = 'chip'.*uniform, chip-resnet56"),
    ('[structured]\nconfig = { mp = "li-resnet56" }\n', r"unknown key 'structured.config.mp'"),
    ('[structured]\nscope = "global"\nconfig = "li-resnet56"\n', r"'structured.scope' = 'global'"),
    ('[structured]\nconfig = "li-resnet56"\n', r"'ratios' = 19\.11.*config 'li-resnet56'.*5\.1399"),
])
def test_config_errors_in_the_spec(tmp_path, extra, words):
    with pytest.raises(SpecError, match=words):
        parse_spec(STUDY + extra, base_dir=tmp_path)


def test_a_config_on_another_architecture_fails_in_the_spec(tmp_path):
    text = STUDY.replace('"resnet56"', '"resnet20"').replace("1.75, 3.33, 8.27, 19.11", "2")
    parse_spec(text, base_dir=tmp_path)  # uniform works on every ResNet
    with pytest.raises(SpecError, match=r"config 'chip-resnet56' failed.*is for resnet56"):
        parse_spec(text + '[structured]\nconfig = "chip-resnet56"\n', base_dir=tmp_path)

"""Structured channel pruning (SPEC 3, last bullet: CHIP and L1-norm filter pruning; ratio = all
parameters before / all parameters after, SPEC 3 "Pruning ratio"): channels are removed for real,
and the smaller network computes exactly what the masked-but-not-removed one computes."""
import copy

import pytest
import torch
from torch import nn

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.prune import UnreachableRatioError, apply_masks, count_parameters
from prunescope.prune.channel_groups import channel_groups
from prunescope.prune.channel_scores import (chip_scores, l1_filter_scores, nuclear_drop,
                                             structured_scores)
from prunescope.prune.narrow import load_structured_checkpoint, narrow_model
from prunescope.prune.structured import (
    structured_meta,
    structured_prune,
    structured_prune_model,
)
from prunescope.train import Recipe, fit, save_checkpoint


def randomise_bn(model, seed=0):
    """Non-trivial BN affine parameters and running statistics (fresh BN is the identity)."""
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
def resnet():
    return randomise_bn(build_model("resnet20", 10, seed=1)).eval()


def masked_copy(model, masks):
    m = copy.deepcopy(model)
    apply_masks(m, masks)
    return m


def cifar_images(n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 32, 32, 3), generator=gen, dtype=torch.uint8)
    return DeviceImages(x, torch.randint(0, 10, (n,), generator=gen), (0.49, 0.48, 0.45),
                        (0.25, 0.24, 0.26))


X = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("ratio,scope", [(1.5, "layer"), (2, "layer"), (4, "layer"),
                                         (10, "layer"), (3, "global")])
def test_removed_network_equals_masked_network(resnet, ratio, scope):
    res = structured_prune(resnet, l1_filter_scores(resnet), ratio, scope=scope)
    assert count_parameters(res.model) < count_parameters(resnet)
    with torch.no_grad():
        torch.testing.assert_close(res.model(X), masked_copy(resnet, res.masks)(X),
                                   rtol=1e-5, atol=1e-5)


def test_equivalence_in_float64_is_exact_to_rounding(resnet):
    model = copy.deepcopy(resnet).double()
    res = structured_prune(model, l1_filter_scores(model), 4)
    with torch.no_grad():
        a, b = res.model(X.double()), masked_copy(model, res.masks)(X.double())
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert a.abs().max() > 0.1  # a real output, not all zeros


def test_equivalence_holds_in_train_mode_with_batch_statistics(resnet):
    res = structured_prune(resnet, l1_filter_scores(resnet), 2)
    small, masked = copy.deepcopy(res.model).train(), masked_copy(resnet, res.masks).train()
    with torch.no_grad():
        torch.testing.assert_close(small(X), masked(X), rtol=1e-4, atol=1e-4)


def test_lenet_conv_channels_removed_equal_masked():
    model = build_model("lenet5", 10, 1, seed=2).eval()
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    res = structured_prune(model, l1_filter_scores(model), keep_fraction=0.5)
    assert res.widths == {"conv1": 3, "conv2": 8}
    assert res.model.fc1.in_features == 8 * 25
    with torch.no_grad():
        torch.testing.assert_close(res.model(x), masked_copy(model, res.masks)(x),
                                   rtol=1e-5, atol=1e-5)
    # CHIP on LeNet-5 reads relu(conv) maps of 28x28 (conv1) and 10x10 (conv2)
    gen = torch.Generator().manual_seed(1)
    grey = DeviceImages(torch.randint(0, 256, (4, 28, 28, 1), generator=gen, dtype=torch.uint8),
                        torch.arange(4), (0.13,), (0.31,))
    chip = chip_scores(model, grey, n_images=4)
    assert {n: tuple(s.shape) for n, s in chip.items()} == {"conv1": (6,), "conv2": (16,)}
    scores = torch.cat(list(chip.values()))
    # a nuclear-norm drop is >= 0; the Gram-matrix route is exact to ~1e-8 relative (_nuclear_drop)
    assert (scores >= -1e-8 * scores.abs().max()).all()
    with torch.no_grad():
        maps = torch.relu(model.conv1(next(grey.batches(4))[0])).double().flatten(2)
    nuc = torch.linalg.matrix_norm
    drop0 = (nuc(maps, ord="nuc") - nuc(maps[:, 1:], ord="nuc")).mean()
    assert float(chip["conv1"][0]) == pytest.approx(float(drop0), rel=1e-6)


def resnet20_params(widths, num_classes=10, in_channels=3):
    """Hand count of a CIFAR ResNet-20 whose blocks have inner widths ``widths`` (9 blocks)."""
    n = in_channels * 16 * 9 + 2 * 16  # stem conv + bn
    planes = [16] * 3 + [32] * 3 + [64] * 3
    inputs = [16] * 4 + [32] * 3 + [64] * 2
    for k, p, i in zip(widths, planes, inputs):
        n += i * k * 9 + 2 * k + k * p * 9 + 2 * p
    return n + 64 * num_classes + num_classes


def test_achieved_ratio_is_the_hand_count_of_the_smaller_model(resnet):
    assert resnet20_params([16] * 3 + [32] * 3 + [64] * 3) == count_parameters(resnet)
    res = structured_prune(resnet, l1_filter_scores(resnet), keep_fraction=0.5)
    assert list(res.widths.values()) == [8] * 3 + [16] * 3 + [32] * 3
    assert res.n_after == resnet20_params([8] * 3 + [16] * 3 + [32] * 3)
    assert res.achieved_ratio == count_parameters(resnet) / res.n_after
    # the equivalent masks leave exactly the smaller model's parameters nonzero-by-mask
    pruned = sum(int((~m).sum()) for m in res.masks.values())
    assert count_parameters(resnet) - pruned == res.n_after


def test_ratio_target_picks_the_closest_prefix(resnet):
    sc = l1_filter_scores(resnet)
    for ratio in (2.0, 4.0, 10.0):
        res = structured_prune(resnet, sc, ratio)
        n = count_parameters(resnet)
        # one channel more or fewer in any group moves n_after by at most one block's channel
        # cost (2*64*9 + 2 = 1154 in layer3), so the achieved ratio is within that step
        step = n / (res.n_after - 1154) - n / res.n_after
        assert abs(res.achieved_ratio - ratio) <= step
        assert res.summary()["widths"] == res.widths


def test_layer_scope_removes_the_same_fraction_everywhere(resnet):
    res = structured_prune(resnet, l1_filter_scores(resnet), 4)
    fractions = [res.widths[g.name] / g.channels for g in channel_groups(resnet)]
    assert max(fractions) - min(fractions) <= 1 / 16 + 1e-12  # one channel of a 16-wide group


def test_lowest_scores_are_removed(resnet):
    sc = l1_filter_scores(resnet)
    res = structured_prune(resnet, sc, 2)
    for name, kept in res.keep.items():
        dropped = sorted(set(range(len(sc[name]))) - set(kept.tolist()))
        if dropped:
            assert sc[name][dropped].max() <= sc[name][kept].min()
    glob = structured_prune(resnet, sc, 2, scope="global")
    # scores, not fractions, decide the widths (fresh Kaiming filters have L1 ~ sqrt(fan_in),
    # so global L1 empties the early blocks first: why layer scope is the default)
    fractions = [glob.widths[g.name] / g.channels for g in channel_groups(resnet)]
    assert max(fractions) - min(fractions) > 0.5
    # every group keeps its best channel (min_channels=1) whatever its score; beyond that,
    # every dropped channel scores at most every kept one
    kept_min = min(float(sc[n][k].min()) for n, k in glob.keep.items() if len(k) > 1)
    dropped_max = max(float(sc[n][sorted(set(range(len(sc[n]))) - set(k.tolist()))].max())
                      for n, k in glob.keep.items() if len(k) < len(sc[n]))
    assert dropped_max <= kept_min


def test_max_ratio_keeps_one_channel_per_group_and_beyond_raises(resnet):
    sc = l1_filter_scores(resnet)
    res = structured_prune(resnet, sc, 2)
    top = structured_prune(resnet, sc, res.max_ratio)
    assert set(top.widths.values()) == {1}
    assert top.achieved_ratio == pytest.approx(res.max_ratio, rel=1e-12)
    assert top.n_after == resnet20_params([1] * 9)
    with pytest.raises(UnreachableRatioError, match=r"ratio 40 is unreachable.*ratio 36\.35"):
        structured_prune(resnet, sc, 40)


def test_bad_arguments_are_refused(resnet):
    sc = l1_filter_scores(resnet)
    with pytest.raises(ValueError, match="exactly one of ratio"):
        structured_prune(resnet, sc)
    with pytest.raises(ValueError, match="exactly one of ratio"):
        structured_prune(resnet, sc, 2, keep_fraction=0.5)
    with pytest.raises(ValueError, match="lack group 'layer1.0.conv1'"):
        structured_prune(resnet, {}, 2)
    bad = dict(sc, **{"layer1.0.conv1": torch.ones(3)})
    with pytest.raises(ValueError, match="3 entries, the group has 16"):
        structured_prune(resnet, bad, 2)
    with pytest.raises(TypeError, match="CifarResNet and LeNet5"):
        l1_filter_scores(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(ValueError, match="unknown structured method"):
        structured_scores("mp", resnet)


def test_l1_scores_are_filter_l1_norms(resnet):
    sc = l1_filter_scores(resnet)
    assert [g.name for g in channel_groups(resnet)] == list(sc)
    w = resnet.layer2[1].conv1.weight
    want = float(w[5].detach().double().abs().sum())
    assert sc["layer2.1.conv1"][5].item() == pytest.approx(want)


def testnuclear_drop_matches_the_definition():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 12, 40, generator=gen, dtype=torch.float64)
    a[:, 4] = 2 * a[:, 1]  # a dependent channel
    a[:, 7] = 0.0  # a dead channel
    keep = 1.0 - torch.eye(12, dtype=torch.float64)
    nuc = torch.linalg.matrix_norm
    want = torch.stack([nuc(a, ord="nuc") - nuc(a * keep[c].view(1, 12, 1), ord="nuc")
                        for c in range(12)], 1)
    got = nuclear_drop(a)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert (got[:, 7].abs() < 1e-6).all()
    # more channels than positions (ResNet layer3: 64 channels on 8x8 maps)
    b = torch.randn(2, 20, 9, generator=gen, dtype=torch.float64)
    want_b = torch.stack([nuc(b, ord="nuc") - nuc(b * (1.0 - torch.eye(20, dtype=torch.float64)
                                                        )[c].view(1, 20, 1), ord="nuc")
                          for c in range(20)], 1)
    torch.testing.assert_close(nuclear_drop(b), want_b, rtol=1e-6, atol=1e-6)


def test_chip_scores_average_the_nuclear_norm_drop_of_real_feature_maps():
    model = randomise_bn(build_model("resnet20", 10, seed=3)).eval()
    with torch.no_grad():  # make channel 2 of the first block dead: its maps are all zero
        model.layer1[0].bn1.weight[2] = 0.0
        model.layer1[0].bn1.bias[2] = 0.0
    imgs = cifar_images(10, 0)
    scores = chip_scores(model, imgs, n_images=10, batch_size=4)
    assert list(scores) == [g.name for g in channel_groups(model)]
    # by hand for layer1.0: all 10 images (order does not matter for a mean)
    with torch.no_grad():
        x = next(imgs.batches(10))[0]
        stem = torch.relu(model.bn1(model.conv1(x)))
        fm = torch.relu(model.layer1[0].bn1(model.layer1[0].conv1(stem))).double().flatten(2)
    nuc = torch.linalg.matrix_norm
    want = torch.stack([(nuc(fm, ord="nuc") - nuc(fm * (torch.arange(16) != c).double()
                                                   .view(1, 16, 1), ord="nuc")).mean()
                        for c in range(16)])
    torch.testing.assert_close(scores["layer1.0.conv1"], want, rtol=1e-6, atol=1e-6)
    assert abs(float(scores["layer1.0.conv1"][2])) < 1e-6
    assert int(scores["layer1.0.conv1"].argmin()) == 2
    res = structured_prune(model, scores, keep_fraction=15 / 16)
    assert 2 not in res.keep["layer1.0.conv1"].tolist()
    assert model.training is False


def test_chip_uses_a_seeded_draw_of_n_images():
    model = randomise_bn(build_model("resnet20", 10, seed=3))
    imgs = cifar_images(12, 1)
    a = chip_scores(model, imgs, n_images=5, batch_size=4, seed=1)
    b = chip_scores(model, imgs, n_images=5, batch_size=4, seed=1)
    c = chip_scores(model, imgs, n_images=5, batch_size=4, seed=2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)
    assert model.training  # mode restored


def test_smaller_model_fine_tunes_and_round_trips_through_a_checkpoint(resnet, tmp_path):
    res = structured_prune(resnet, l1_filter_scores(resnet), 4)
    recipe = Recipe(schedule=((1, 0.02),), batch_size=8, max_steps_per_epoch=2, val_batch_size=16)
    model = copy.deepcopy(res.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, cifar_images(16, 2), cifar_images(8, 3), recipe, seed=0)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    meta = {"arch": "resnet20", "num_classes": 10, "in_channels": 3, "weight_decay": 5e-4}
    path = save_checkpoint(tmp_path / "s.safetensors", model, structured_meta(res, "l1-filter",
                                                                              meta))
    back, back_meta = load_structured_checkpoint(path)
    assert back_meta["structured"]["method"] == "l1-filter"
    assert back_meta["structured"]["achieved_ratio"] == res.achieved_ratio
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    with torch.no_grad():
        assert torch.equal(back(X), model.eval()(X))
    dense = save_checkpoint(tmp_path / "d.safetensors", resnet, meta)
    with pytest.raises(ValueError, match="not a structurally pruned checkpoint"):
        load_structured_checkpoint(dense)


def test_structured_checkpoint_is_read_by_load_checkpoint_with_a_narrowing_build(resnet,
                                                                                  tmp_path):
    """The structured loader is ``load_checkpoint`` with a narrowing ``build``: the same model
    (on the requested device, eval mode) as building, narrowing and loading by hand, and the
    shared checks (missing files, checkpoint format) apply to it."""
    from prunescope.train import load_checkpoint, sidecar_path

    res = structured_prune(resnet, l1_filter_scores(resnet), 3)
    meta = {"arch": "resnet20", "num_classes": 10, "in_channels": 3, "weight_decay": 5e-4}
    path = save_checkpoint(tmp_path / "s.safetensors", res.model,
                           structured_meta(res, "l1-filter", meta))
    back, back_meta = load_structured_checkpoint(path, device="cpu")
    hand = narrow_model(build_model("resnet20", 10, 3),
                        {n: torch.arange(w) for n, w in res.widths.items()})
    _, meta2, masks = load_checkpoint(path, build=lambda m: hand)
    assert back_meta == meta2 and masks is None and not back.training
    assert set(back.state_dict()) == set(hand.state_dict())
    for k, v in hand.state_dict().items():
        assert torch.equal(back.state_dict()[k], v) and torch.equal(v, res.model.state_dict()[k])
    with pytest.raises(RuntimeError):  # the default build is full width: strict load fails
        load_checkpoint(path)
    side = sidecar_path(path)
    side.write_text(side.read_text().replace('"checkpoint_format": 1', '"checkpoint_format": 9'))
    with pytest.raises(ValueError, match="checkpoint_format 9"):
        load_structured_checkpoint(path)
    side.unlink()
    with pytest.raises(FileNotFoundError, match="no sidecar"):
        load_structured_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_structured_checkpoint(tmp_path / "absent.safetensors")


def test_one_call_prune_model_for_both_methods(resnet):
    imgs = cifar_images(6, 4)
    for method in ("l1-filter", "CHIP"):
        res = structured_prune_model(resnet, method, 2.0, images=imgs, n_images=6)
        want = (l1_filter_scores(resnet) if method == "l1-filter"
                else chip_scores(resnet, imgs, n_images=6))
        again = structured_prune(resnet, want, 2.0)
        assert res.widths == again.widths
        assert all(torch.equal(res.keep[n], k) for n, k in again.keep.items())
    with pytest.raises(ValueError, match="CHIP needs feature maps"):
        structured_prune_model(resnet, "chip", 2.0)

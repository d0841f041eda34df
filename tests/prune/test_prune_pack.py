"""Pruning a stacked pack: masks per model, thresholds per model, never across (issue 3)."""
import torch

from prunescope.data.device import DeviceImages
from prunescope.models import build_model
from prunescope.models.stacked import stack, unstack
from prunescope.prune import data_gradients, prune_model
from prunescope.prune.pack import prune_pack


def models(arch="resnet20", channels=3, seeds=(0, 1, 2)):
    return [build_model(arch, 10, channels, seed=s) for s in seeds]


def test_pack_masks_equal_single_model_masks_with_per_model_ratios_and_methods():
    singles = models()
    with torch.no_grad():  # model 1 far larger: a threshold shared across models would prune 0 and 2 away
        for p in singles[1].parameters():
            p.mul_(100.0)
    pack = stack(singles)
    methods, ratios, seeds = ["mp", "rp", "mp"], [2.0, 10.0, 20.0], [None, 9, None]
    results, pack_masks = prune_pack(pack, methods, ratios, seed=seeds, scope="global")
    for g, single in enumerate(singles):
        expected = prune_model(single, methods[g], ratios[g], seed=seeds[g])
        assert results[g].achieved_ratio == expected.achieved_ratio
        assert results[g].kept == expected.kept
        for n, m in expected.masks.items():
            assert torch.equal(results[g].masks[n], m), (g, n)
            assert torch.equal(pack.per_model(n, pack_masks[n])[g].bool(), m)
        after = unstack(pack)[g].state_dict()
        for n, v in single.state_dict().items():
            if not n.endswith("num_batches_tracked"):
                assert torch.equal(after[n], v), (g, n)


def test_pack_gp_up_use_each_models_own_gradient():
    singles = models("lenet5", 1, seeds=(3, 4))
    gen = torch.Generator().manual_seed(0)
    images = DeviceImages(torch.randint(0, 256, (40, 28, 28, 1), generator=gen, dtype=torch.uint8),
                          torch.randint(0, 10, (40,), generator=gen), (0.13,), (0.31,))
    pack = stack(singles)
    pack_g = data_gradients(pack, images, batch_size=16)
    single_g = [data_gradients(m, images, batch_size=16) for m in singles]
    for n, gr in pack_g.items():
        for g in range(2):
            torch.testing.assert_close(pack.per_model(n, gr)[g], single_g[g][n], rtol=1e-4,
                                       atol=1e-7)
    exact = {n: torch.stack([single_g[0][n], single_g[1][n]]).view(pack_g[n].shape)
             for n in pack_g}
    results, _ = prune_pack(pack, ["gp", "up"], 10.0, grads=exact, eps=[None, 1e-3],
                            meta=[None, None])
    for g, method in enumerate(["gp", "up"]):
        expected = prune_model(singles[g], method, 10.0, grads=single_g[g], eps=1e-3)
        assert all(torch.equal(results[g].masks[n], m) for n, m in expected.masks.items())

"""The device resolved once (issue 24): ``train.options.device_profile`` decides everything that
depends on the device, and the driver's profile is what the workers and the training loop use."""
from __future__ import annotations

import pickle

import pytest
import torch

from prunescope.train.options import DeviceProfile, PackOptions, device_profile


def test_the_profile_of_each_device():
    cpu = device_profile("cpu")
    assert cpu == DeviceProfile("cpu", False, True, 0, PackOptions(), 1)
    cuda = device_profile(torch.device("cuda", 1), deterministic=True, threads=2)
    assert (cuda.name, cuda.is_cuda, cuda.deterministic, cuda.threads, cuda.sync_every) == (
        "cuda:1", True, True, 2, 25)
    assert cuda.pack_options == PackOptions.for_device("cuda")
    assert device_profile("cuda").deterministic is False  # speed by default on CUDA
    # overrides of the device's defaults, or switches as given
    assert device_profile("cuda", pack_options={"compile": False}).pack_options == \
        PackOptions.for_device("cuda", compile=False)
    assert device_profile("cpu", pack_options=PackOptions(compile=True)).pack_options == \
        PackOptions(compile=True)
    with pytest.raises(ValueError, match="need a CUDA device"):
        device_profile("cpu", pack_options={"bf16": True})
    with pytest.raises(ValueError, match="unknown PackOptions switch"):
        device_profile("cpu", pack_options={"fp8": True})
    assert pickle.loads(pickle.dumps(cuda)) == cuda and hash(cuda) == hash(pickle.loads(
        pickle.dumps(cuda)))  # sent to Ray workers


def test_the_study_resolves_it_once(tmp_path):
    """``[executor]`` becomes one profile; the worker context carries it and names its device."""
    from prunescope.study.spec import parse_spec
    from prunescope.study.worker import WorkerContext

    spec = parse_spec('name = "t"\nmodels = 1\ndatasets = ["mnist"]\narchitectures = '
                      '["lenet5"]\nmethods = []\nratios = [2]\n[executor]\nthreads = 3\n'
                      'deterministic = false\n[executor.pack_options]\ncompile = true\n',
                      base_dir=tmp_path)
    profile = spec.executor.profile("cpu", default_threads=1)
    assert (profile.threads, profile.deterministic, profile.pack_options.compile) == (3, False,
                                                                                      True)
    assert spec.executor.profile("cpu").threads == 3
    ctx = WorkerContext(artifacts=str(tmp_path), profile=profile)
    assert ctx.device == "cpu" and ctx.profile is profile
    assert WorkerContext(artifacts=str(tmp_path)).profile == device_profile("cpu")


def test_the_loop_trains_on_the_profile_it_is_given():
    from prunescope.data.device import DeviceImages
    from prunescope.models import build_model
    from prunescope.train.pack import fit_pack
    from prunescope.train.recipe import Recipe

    rng = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 28, 28, 1), dtype=torch.uint8, generator=rng).numpy()
    y = (torch.arange(64) % 4).numpy()
    images = DeviceImages(x, y, (0.5,), (0.25,), "cpu")
    recipe = Recipe(schedule=((1, 0.01),), batch_size=32, augment=False)
    models = [build_model("lenet5", 4, 1, seed=0)]
    with pytest.raises(ValueError, match="options or a profile"):
        fit_pack(models, images, images, recipe, [0], options=PackOptions(),
                 profile=device_profile("cpu"))
    with pytest.raises(ValueError, match="profile is for cuda"):
        fit_pack(models, images, images, recipe, [0], profile=device_profile("cuda"))
    seen = []
    [res] = fit_pack(models, images, images, recipe, [0],
                     profile=device_profile("cpu", threads=1),
                     progress=lambda step, total, info: seen.append(step))
    assert res.best_epoch == 1 and seen[-1] == 2


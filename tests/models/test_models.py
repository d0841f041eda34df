"""Models of SPEC 4: LeNet-5 and the CIFAR ResNets (He et al. 2016, option-A shortcuts)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunescope.catalog import architectures
from prunescope.models import build_model, classifier_name, skeleton
from prunescope.models.resnet_cifar import BasicBlock


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Exact counts for 10 classes, 3 input channels. Published (He et al. 2016, Table 6):
# ResNet-20 0.27M, -32 0.46M, -44 0.66M, -56 0.85M, -110 1.7M.
EXACT = {"resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586,
         "resnet56": 853_018, "resnet110": 1_727_962}
PUBLISHED_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85,
               "resnet110": 1.7}


@pytest.mark.parametrize("arch", sorted(EXACT))
def test_resnet_param_counts_match_published(arch):
    """SPEC 4 / issue 2: parameter counts of the CIFAR ResNets."""
    count = n_params(build_model(arch, 10, 3))
    assert count == EXACT[arch]
    digits = 1 if arch == "resnet110" else 2  # published precision
    assert round(count / 1e6, digits) == PUBLISHED_M[arch]


def test_lenet5_param_count_is_the_classic_61706():
    # conv1 6*25+6, conv2 16*6*25+16, fc1 400*120+120, fc2 120*84+84, classifier 84*10+10
    assert n_params(build_model("lenet5", 10, 1)) == 156 + 2416 + 48120 + 10164 + 850


def test_lenet5_shrinkbench_is_shrinkbench_lenet():
    """SPEC 4: ShrinkBench's LeNet (models/mnistnet.py there): 3x3 convolutions without padding,
    6 and 16 channels, max-pool 2, Linear 400 -> 120 -> 84 -> 10, ReLU between, biases
    everywhere; 60,074 parameters; PyTorch's default initialisation."""
    model = build_model("lenet5-shrinkbench", 10, 1, seed=0)
    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    assert shapes == [
        ("conv1.weight", (6, 1, 3, 3)), ("conv1.bias", (6,)),
        ("conv2.weight", (16, 6, 3, 3)), ("conv2.bias", (16,)),
        ("fc1.weight", (120, 400)), ("fc1.bias", (120,)),
        ("fc2.weight", (84, 120)), ("fc2.bias", (84,)),
        ("classifier.weight", (10, 84)), ("classifier.bias", (10,)),
    ]
    assert n_params(model) == 60_074
    assert model.conv1.padding == (0, 0) and model.conv2.padding == (0, 0)
    assert model.arch == "lenet5-shrinkbench" and build_model("lenet5", 10, 1).arch == "lenet5"
    # the forward pass is ShrinkBench's, layer for layer
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    h = F.max_pool2d(F.relu(F.conv2d(x, model.conv1.weight, model.conv1.bias)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, model.conv2.weight, model.conv2.bias)), 2)
    assert h.shape == (3, 16, 5, 5)
    h = F.relu(model.fc1(h.view(3, -1)))
    ref = model.classifier(F.relu(model.fc2(h)))
    assert torch.equal(model(x), ref)
    # PyTorch's default init: weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Kaiming-uniform, a=sqrt 5)
    bound = 1 / 400 ** 0.5
    w = model.fc1.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert abs(w.std().item() - bound / 3 ** 0.5) < 0.02 * bound


# every (arch, classes, channels) combination, but ResNet-110 only once to stay fast
SHAPE_CASES = [(a, c, ch) for a in architectures.names() for c in (10, 100) for ch in (1, 3)
               if a != "resnet110" or (c, ch) == (100, 3)]


@pytest.mark.parametrize(("arch", "num_classes", "in_channels"), SHAPE_CASES)
def test_output_shapes(arch, num_classes, in_channels):
    size = 28 if arch.startswith("lenet5") else 32
    model = build_model(arch, num_classes, in_channels, image_size=size)
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, num_classes)
    assert classifier_name(model) == "classifier"
    assert model.get_submodule("classifier").out_features == num_classes


def test_lenet_on_32px_inputs_and_wrong_size_error():
    model = build_model("lenet5", 10, 3, image_size=32)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="image_size=28"):
        model(torch.randn(1, 3, 28, 28))


def test_resnet_structure_is_plain_and_regular():
    model = build_model("resnet20", 10)
    names = [n for n, _ in model.named_parameters()]
    assert names[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert "layer2.0.conv1.weight" in names and "layer3.2.bn2.bias" in names
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    kinds = {type(m) for m in model.modules()} - {type(model), nn.Sequential, BasicBlock}
    assert kinds == {nn.Conv2d, nn.BatchNorm2d, nn.Linear}
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    # strides: 32 -> 16 -> 8 in layer2.0 and layer3.0 only
    strided = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert strided == ["layer2.0.conv1", "layer3.0.conv1"]


def test_option_a_shortcut_subsamples_and_zero_pads():
    block = BasicBlock(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    sc = block.shortcut(x)
    assert sc.shape == (2, 32, 4, 4)
    assert torch.equal(sc[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(sc[:, :8]) == 0 and torch.count_nonzero(sc[:, 24:]) == 0
    assert sum(p.numel() for p in block.parameters()) == 32 * 16 * 9 + 32 * 32 * 9 + 4 * 32
    same = BasicBlock(16, 16, 1)
    assert same.shortcut(x) is x


def test_seeded_init_is_deterministic_and_seed_dependent():
    a = build_model("resnet20", 10, seed=3).state_dict()
    b = build_model("resnet20", 10, seed=3).state_dict()
    c = build_model("resnet20", 10, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    state = torch.random.get_rng_state()
    build_model("lenet5", 10, 1, seed=0)
    assert torch.equal(state, torch.random.get_rng_state()), "must not touch the global RNG"


def test_kaiming_init_scale():
    w = build_model("resnet56", 10, seed=0).get_submodule("layer3.0.conv2").weight
    fan_in = 64 * 9
    assert abs(w.std().item() - (2 / fan_in) ** 0.5) < 0.05 * (2 / fan_in) ** 0.5


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="resnet56"):
        build_model("resnet18", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("lenet5", 1, 1)
    with pytest.raises(ValueError, match="no nn.Linear"):
        classifier_name(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_classifier_name_on_user_model():
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert classifier_name(m) == "3"


LENETS = [a.name for a in architectures.REGISTRY if a.sized]
PARAM_CASES = [(a, c, ch, size) for a in architectures.names() for c in (2, 10, 100)
               for ch in (1, 3) for size in ((28, 32) if a in LENETS else (32,))]


@pytest.mark.parametrize(("arch", "num_classes", "in_channels", "image_size"), PARAM_CASES)
def test_torch_free_parameter_count_is_the_built_models(arch, num_classes, in_channels,
                                                        image_size):
    """The catalog record's layout (what a study spec validates ratios with, issues 22 and 24)
    counts what the model itself has: every layer's weight and bias, the total, and the
    prunable set of prune.prunable for each choice of prune_classifier and prune_biases."""
    from prunescope.prune import prunable

    record = architectures.architecture(arch)
    model = skeleton(arch, num_classes, in_channels, image_size=image_size)
    params = dict(model.named_parameters())
    for layer in record.layout(num_classes, in_channels, image_size):
        assert params[f"{layer.name}.weight"].numel() == layer.weight, layer
        assert (params[f"{layer.name}.bias"].numel() if f"{layer.name}.bias" in params
                else 0) == layer.bias, layer
    for classifier, biases in [(False, False), (True, False), (False, True), (True, True)]:
        assert record.param_count(num_classes, in_channels, image_size) == n_params(model)
        assert record.prunable_count(num_classes, in_channels, image_size,
                                     prune_classifier=classifier, prune_biases=biases) == sum(
            p.numel() for p in prunable(model, prune_classifier=classifier,
                                        prune_biases=biases).values())


@pytest.mark.parametrize("arch", sorted(LENETS))
def test_relu_after_max_pool_is_bitwise_the_old_order(arch):
    """Issue 22: LeNet5 (and the stacked LeNet, which test_stacked.py holds equal to it) applies
    ReLU after the 2x2 max-pool; ReLU is monotone, so the logits and every gradient are bitwise
    those of the old order, ReLU then pool, including windows whose maximum is <= 0."""
    model = build_model(arch, 10, 1, seed=3)
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    x[:4] = -x[:4].abs()  # whole windows negative: ReLU-first ties them at 0
    y = torch.arange(16) % 10

    def old_order(inp):
        h = F.max_pool2d(F.relu(model.conv1(inp)), 2)
        h = F.max_pool2d(F.relu(model.conv2(h)), 2)
        h = F.relu(model.fc2(F.relu(model.fc1(torch.flatten(h, 1)))))
        return model.classifier(h)

    grads = []
    for forward in (model, old_order):
        model.zero_grad(set_to_none=True)
        out = forward(x)
        F.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (new_out, new_g), (old_out, old_g) = grads
    assert torch.equal(new_out, old_out)
    assert all(torch.equal(a, b) for a, b in zip(new_g, old_g))

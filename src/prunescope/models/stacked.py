"""Packs: G models of one architecture fused into one stacked network (DESIGN "packs").

A :class:`StackedModel` holds G independent copies of an architecture as one network:

* every ``nn.Conv2d`` becomes one grouped convolution (``groups = G``) whose channels are laid
  out model-major: channel ``g * C + c`` is channel ``c`` of model ``g``;
* every ``nn.BatchNorm2d(C)`` becomes ``nn.BatchNorm2d(G * C)``; a BatchNorm normalises each
  channel on its own, so this is exactly per-model BatchNorm (statistics over B*H*W of one model);
* every ``nn.Linear(in, out)`` becomes a :class:`StackedLinear` with weight ``(G, out, in)`` and
  bias ``(G, out)`` applied as a batched matmul;
* option-A shortcut zero-padding is done per model (on a ``(B, G, C, H, W)`` view).

No operation mixes models, so the gradient of ``sum_g loss_g`` with respect to model g's
tensors equals the gradient of ``loss_g`` for model g alone.

Naming: the stacked model's ``state_dict`` has exactly the keys of the single model's, and every
stacked tensor is the G per-model tensors stacked model-major, so
``stacked_tensor.view(G, *single_shape)[g]`` is model g's tensor (a view, no copy). The one
exception is BatchNorm's scalar ``num_batches_tracked``, shared by the pack (all models of a pack
take the same number of steps). :meth:`StackedModel.per_model` /
:func:`per_model_params` / :func:`stack_masks` / :func:`unstack_tensors` use this rule.

With ``G == 1`` every layer runs the very same PyTorch op as the single model (a grouped conv
with one group is a conv, the head is ``F.linear``), so a pack of one is bitwise the plain model.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prunescope.models import skeleton
from prunescope.models.lenet import LeNet5
from prunescope.catalog.architectures import name_of
from prunescope.models.resnet_cifar import BasicBlock, CifarResNet

__all__ = [
    "StackedBasicBlock",
    "StackedCifarResNet",
    "StackedLeNet5",
    "StackedLinear",
    "StackedModel",
    "per_model_params",
    "stack",
    "stack_masks",
    "unstack",
    "unstack_tensors",
]


def _grouped_conv(conv: nn.Conv2d, g: int) -> nn.Conv2d:
    """A conv with the hyper-parameters of ``conv`` holding ``g`` models as ``groups = g``."""
    if conv.groups != 1:
        raise ValueError(f"only ungrouped convolutions can be stacked, got groups={conv.groups}")
    return nn.Conv2d(
        g * conv.in_channels, g * conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, groups=g, bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def _stacked_bn(bn: nn.BatchNorm2d, g: int) -> nn.BatchNorm2d:
    """``BatchNorm2d(g * C)`` with the eps/momentum/affine/tracking settings of ``bn``."""
    return nn.BatchNorm2d(g * bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                          track_running_stats=bn.track_running_stats)


class StackedLinear(nn.Module):
    """G independent ``nn.Linear(in_features, out_features)`` layers applied as one batched matmul.

    Parameters: ``weight`` ``(G, out_features, in_features)``, ``bias`` ``(G, out_features)``
    (or ``None``). Input ``(G, B, in_features)`` -> output ``(G, B, out_features)``:
    ``out[g] = x[g] @ weight[g].T + bias[g]``.
    """

    def __init__(self, g: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.groups = g
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(g, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(g, out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(G, B, in_features)`` -> ``(G, B, out_features)``."""
        if self.groups == 1:  # the single model's op exactly (bitwise equal for a pack of one)
            bias = None if self.bias is None else self.bias[0]
            return F.linear(x[0], self.weight[0], bias).unsqueeze(0)
        wt = self.weight.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(x, wt)
        return torch.baddbmm(self.bias.unsqueeze(1), x, wt)


def _to_channels(x: torch.Tensor) -> torch.Tensor:
    """``(G, B, C, H, W)`` -> ``(B, G * C, H, W)``, model-major channels.

    A free view when the memory is ``(B, G, C, H, W)``-contiguous (the layout the pack trainer
    produces); otherwise one copy.
    """
    if x.ndim != 5:
        raise ValueError(f"a stacked model takes (G, B, C, H, W) input, got shape {tuple(x.shape)}")
    g, b, c, h, w = x.shape
    if g == 1:  # the single model's input itself, strides included: convolution kernels pick
        return x[0]  # their algorithm by memory layout, and a pack of one must run the same one
    return x.transpose(0, 1).reshape(b, g * c, h, w)


def _to_features(x: torch.Tensor, g: int) -> torch.Tensor:
    """``(B, G * F, ...)`` -> ``(G, B, F * ...)``: each model's features flattened as
    ``torch.flatten(x_g, 1)`` does for the single model."""
    b = x.shape[0]
    return x.reshape(b, g, -1).transpose(0, 1)


class StackedModel(nn.Module):
    """Base of the stacked architectures: G models, input ``(G, B, C, H, W)`` -> ``(G, B, K)``.

    Build packs with :func:`stack`; constructed directly (``StackedCifarResNet(G, depth, K,
    C_in, device)``) the tensors are uninitialised ``torch.empty`` storage, no random draws.

    Attributes:
        groups: G, the number of models.
        arch: the single model's architecture name (:mod:`prunescope.catalog`).
        single_shapes: ``{state_dict key: shape of that tensor in one model}``.
    """

    groups: int
    arch: str

    def __init__(self, groups: int, arch: str) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"a pack needs at least one model, got G={groups}")
        self.groups = groups
        self.arch = arch
        self.single_shapes: dict[str, torch.Size] = {}

    def single(self) -> nn.Module:
        """A new single model of this architecture, uninitialised (``torch.empty`` storage), on
        this model's device; fill it with :meth:`load_state_dict`. Draws no random numbers."""
        raise NotImplementedError(f"{type(self).__name__} must define single()")

    def per_model(self, name: str, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """The stacked tensor ``name`` (or ``tensor``, a tensor of its shape such as its gradient
        or mask) viewed as ``(G, *single_shape)``; ``[g]`` of the result is model g's tensor.

        Raises:
            KeyError: ``name`` is not a state-dict key of the model.
            ValueError: ``name`` is the pack-wide ``num_batches_tracked`` counter.
        """
        if name not in self.single_shapes:
            raise KeyError(f"{name!r} is not a tensor of {type(self).__name__}; "
                           f"choose one of {list(self.single_shapes)}")
        shape = self.single_shapes[name]
        if name.endswith("num_batches_tracked"):
            raise ValueError(f"{name} is one counter for the whole pack, it has no per-model view")
        if tensor is None:
            tensor = self.state_dict(keep_vars=True)[name]
        return tensor.view(self.groups, *shape)


class StackedLeNet5(StackedModel):
    """G :class:`~prunescope.models.lenet.LeNet5` models of architecture ``arch`` (``lenet5`` or
    ``lenet5-shrinkbench``); see :class:`StackedModel`.

    Input ``(G, B, in_channels, S, S)`` float -> ``(G, B, num_classes)`` logits.
    """

    def __init__(self, groups: int, num_classes: int, in_channels: int, image_size: int,
                 device: torch.device | str = "cpu", *, arch: str) -> None:
        super().__init__(groups, arch)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        template = skeleton(arch, num_classes, in_channels, image_size=image_size)
        with torch.device("meta"):
            self.conv1 = _grouped_conv(template.conv1, groups)
            self.conv2 = _grouped_conv(template.conv2, groups)
            self.fc1 = StackedLinear(groups, template.fc1.in_features, template.fc1.out_features)
            self.fc2 = StackedLinear(groups, template.fc2.in_features, template.fc2.out_features)
            self.classifier = StackedLinear(groups, template.classifier.in_features, num_classes)
        self.single_shapes = {k: v.shape for k, v in template.state_dict().items()}
        self.to_empty(device=device)

    def single(self) -> nn.Module:
        model = skeleton(self.arch, self.num_classes, self.in_channels, image_size=self.image_size)
        return model.to_empty(device=self.conv1.weight.device).train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(G, B, in_channels, S, S)`` -> ``(G, B, num_classes)`` logits."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"LeNet-5 was built for {self.image_size}x{self.image_size} inputs, "
                             f"got {tuple(x.shape[-2:])}")
        # ReLU after the max-pool, as LeNet5.forward (bitwise the same, a quarter of the work)
        out = F.relu(F.max_pool2d(self.conv1(_to_channels(x)), 2))
        out = F.relu(F.max_pool2d(self.conv2(out), 2))
        out = F.relu(self.fc1(_to_features(out, self.groups)))
        out = F.relu(self.fc2(out))
        return self.classifier(out)


class StackedBasicBlock(nn.Module):
    """G :class:`~prunescope.models.resnet_cifar.BasicBlock` as one block.

    Input ``(B, G * in_planes, H, W)`` -> ``(B, G * planes, H / stride, W / stride)``.
    """

    def __init__(self, groups: int, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        with torch.device("meta"):
            template = BasicBlock(in_planes, planes, stride)
            self.conv1 = _grouped_conv(template.conv1, groups)
            self.bn1 = _stacked_bn(template.bn1, groups)
            self.conv2 = _grouped_conv(template.conv2, groups)
            self.bn2 = _stacked_bn(template.bn2, groups)
        self.groups = groups
        self.stride = stride
        self.pad_channels = template.pad_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Option A per model: identity, or stride-2 subsampling plus zero channels added
        symmetrically inside each model's channel block."""
        if self.stride == 1 and self.pad_channels == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        b, gc, h, w = x.shape
        half = self.pad_channels // 2
        out = F.pad(x.reshape(b, self.groups, gc // self.groups, h, w),
                    (0, 0, 0, 0, half, self.pad_channels - half))
        out = out.reshape(b, -1, h, w)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class StackedCifarResNet(StackedModel):
    """G :class:`~prunescope.models.resnet_cifar.CifarResNet` models; see :class:`StackedModel`.

    Input ``(G, B, in_channels, H, W)`` float -> ``(G, B, num_classes)`` logits.
    """

    def __init__(self, groups: int, depth: int, num_classes: int, in_channels: int,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(groups, name_of(f"{CifarResNet.__module__}:CifarResNet", depth=depth))
        self.depth = depth
        self.num_classes = num_classes
        self.in_channels = in_channels
        template = skeleton(self.arch, num_classes, in_channels)
        with torch.device("meta"):
            self.conv1 = _grouped_conv(template.conv1, groups)
            self.bn1 = _stacked_bn(template.bn1, groups)
            self.layer1, self.layer2, self.layer3 = (
                nn.Sequential(*(StackedBasicBlock(groups, blk.conv1.in_channels,
                                                  blk.conv1.out_channels, blk.stride)
                                for blk in stage))
                for stage in (template.layer1, template.layer2, template.layer3)
            )
            self.classifier = StackedLinear(groups, template.classifier.in_features, num_classes)
        self.single_shapes = {k: v.shape for k, v in template.state_dict().items()}
        self.to_empty(device=device)

    def single(self) -> nn.Module:
        model = skeleton(self.arch, self.num_classes, self.in_channels)
        return model.to_empty(device=self.conv1.weight.device).train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(G, B, in_channels, H, W)`` -> ``(G, B, num_classes)`` logits."""
        out = F.relu(self.bn1(self.conv1(_to_channels(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.classifier(_to_features(out, self.groups))


def _empty_like_arch(model: nn.Module, groups: int, device: torch.device) -> StackedModel:
    """An uninitialised stacked model of ``model``'s architecture on ``device``."""
    if isinstance(model, LeNet5):
        return StackedLeNet5(groups, model.classifier.out_features, model.conv1.in_channels,
                             model.image_size, device=device, arch=model.arch)
    if isinstance(model, CifarResNet):
        return StackedCifarResNet(groups, model.depth, model.classifier.out_features,
                                  model.conv1.in_channels, device=device)
    raise TypeError(f"cannot stack {type(model).__name__}: packs support LeNet5 and CifarResNet "
                    "(prunescope.models.build_model); train other models one at a time")


def stack(models: Sequence[nn.Module]) -> StackedModel:
    """Fuse ``models`` (G >= 1 models of one architecture, same device and dtype) into a pack.

    Every parameter and buffer is copied exactly: stacked tensor ``name`` viewed as
    ``(G, *single_shape)`` has ``[g] == models[g].state_dict()[name]``. BatchNorm's
    ``num_batches_tracked`` (one counter per pack) is the largest of the models' counters.
    The pack is in train mode if ``models[0]`` is. The models are left unchanged.

    Raises:
        ValueError: no models, or models of different architecture, shape, device or dtype.
        TypeError: an architecture packs do not support.
    """
    if not models:
        raise ValueError("stack() needs at least one model")
    states = [m.state_dict() for m in models]
    first = next(iter(states[0].values()))
    stacked = _empty_like_arch(models[0], len(models), first.device).to(first.dtype)
    keys = list(stacked.single_shapes)
    for i, st in enumerate(states):
        if list(st) != keys or any(st[k].shape != stacked.single_shapes[k] for k in keys):
            raise ValueError(f"model {i} ({type(models[i]).__name__}) does not have the "
                             f"architecture of model 0 ({stacked.arch}); a pack holds one "
                             "architecture with one set of shapes")
    target = stacked.state_dict()
    with torch.no_grad():
        for k in keys:
            parts = [st[k] for st in states]
            if any(p.device != first.device for p in parts):
                raise ValueError(f"all models of a pack must be on one device ({k})")
            if k.endswith("num_batches_tracked"):
                target[k].copy_(torch.stack(parts).max())
            else:
                target[k].copy_(torch.stack(parts).view(target[k].shape))
    return stacked.train(models[0].training)


def unstack_tensors(stacked: StackedModel, tensors: Mapping[str, torch.Tensor]
                    ) -> list[dict[str, torch.Tensor]]:
    """Split stacked tensors (parameters, gradients, masks, scores: any ``{name: tensor}`` whose
    tensors have the shape of the stacked tensor ``name``) into G per-model dicts of views
    ``(*single_shape)``. ``num_batches_tracked`` entries are given to every model as is."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(stacked.groups)]
    for name, t in tensors.items():
        if name.endswith("num_batches_tracked") and name in stacked.single_shapes:
            for d in out:
                d[name] = t
            continue
        views = stacked.per_model(name, t)
        for g, d in enumerate(out):
            d[name] = views[g]
    return out


def per_model_params(stacked: StackedModel, g: int) -> dict[str, torch.Tensor]:
    """Model ``g``'s parameters as views into the pack: ``{single-model parameter name: tensor of
    the single model's shape}``. Writing into a view writes into the pack."""
    if not 0 <= g < stacked.groups:
        raise IndexError(f"model index {g} is out of range for a pack of {stacked.groups}")
    return {name: stacked.per_model(name, p)[g] for name, p in stacked.named_parameters()}


def stack_masks(stacked: StackedModel, masks: Sequence[Mapping[str, torch.Tensor] | None]
                ) -> dict[str, torch.Tensor]:
    """Per-model masks -> pack masks.

    Args:
        stacked: the pack.
        masks: one entry per model (length G): ``{single-model parameter name: 0/1 or bool tensor
            of that parameter's shape}`` as made by ``prunescope.prune.make_masks``, or ``None``
            for a dense model. All non-None dicts must cover the same names.

    Returns:
        ``{name: tensor of the stacked parameter's shape}``, dtype of the parameter (1.0 = kept,
        0.0 = pruned), on the pack's device; a dense model contributes ones. Empty when every
        entry is ``None``.

    Raises:
        ValueError: wrong number of entries, names that differ between models or are not
            parameters, or a mask of the wrong shape.
    """
    if len(masks) != stacked.groups:
        raise ValueError(f"need one mask dict (or None) per model: {stacked.groups}, "
                         f"got {len(masks)}")
    present = [m for m in masks if m is not None]
    if not present:
        return {}
    names = list(present[0])
    params = dict(stacked.named_parameters())
    for i, m in enumerate(masks):
        if m is not None and set(m) != set(names):
            raise ValueError(f"mask dict of model {i} covers {sorted(m)}, model of the first "
                             f"mask covers {sorted(names)}: a pack's masks must cover the same "
                             "parameters (use all-ones masks for unpruned tensors)")
    out: dict[str, torch.Tensor] = {}
    for name in names:
        if name not in params:
            raise ValueError(f"{name!r} is not a parameter of {stacked.arch}")
        p = params[name]
        shape = stacked.single_shapes[name]
        parts = []
        for i, m in enumerate(masks):
            if m is None:
                parts.append(torch.ones(shape, dtype=p.dtype, device=p.device))
                continue
            t = torch.as_tensor(m[name])
            if t.shape != shape:
                raise ValueError(f"mask {name!r} of model {i} has shape {tuple(t.shape)}, "
                                 f"the parameter has {tuple(shape)}")
            parts.append(t.to(device=p.device, dtype=p.dtype))
        out[name] = torch.stack(parts).view(p.shape)
    return out


def unstack(stacked: StackedModel) -> list[nn.Module]:
    """The G models of a pack as separate single models (exact copies of every parameter and
    buffer; each model's ``num_batches_tracked`` is the pack's counter), on the pack's device and
    dtype, in the pack's train/eval mode. The pack is left unchanged."""
    state = {k: v.detach() for k, v in stacked.state_dict().items()}
    models = []
    for per in unstack_tensors(stacked, state):
        model = stacked.single()
        model.load_state_dict({k: v.clone() for k, v in per.items()})
        models.append(model.to(next(stacked.parameters()).dtype))
    return models

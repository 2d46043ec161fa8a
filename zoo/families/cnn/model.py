"""ResNet-style image classifiers for small inputs, and timm backbones behind the same API.

    import zoo
    model = zoo.create("cnn", pretrained=True)              # Fashion-MNIST, 28x28 grey, 10 classes
    logits = model(x)                                       # (B, C, H, W) normalised -> (B, num_classes)
    maps = zoo.create("cnn", features_only=True)(x)         # one feature map per stage (a backbone)
    timm_net = zoo.create("timm/resnet18", pretrained=True, num_classes=10)

The file reads top to bottom: the classifier head, the network (a stem, stages of
`zoo.blocks.ResidualBlock`, the head), the registered variants, then the `timm` wrapper that the
registry routes "timm/<name>" to. Inputs are normalised by the caller as the weight card's
`input_spec` says (zoo.families.cnn.task does it with zoo.augment.ClassificationAugment).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from zoo.blocks import ConvNormAct, ResidualBlock
from zoo.registry import register_model
from zoo.utils import check_tensor
from zoo.weights import adapt_channel_stats

# Pools that halve odd sizes as a stride-2 convolution does (7 -> 4), so both forms give the same shapes.
DOWNSAMPLE = {
    "stride": None,
    "maxpool": functools.partial(nn.MaxPool2d, 2, ceil_mode=True),
    "avgpool": functools.partial(nn.AvgPool2d, 2, ceil_mode=True, count_include_pad=False),
}

FASHION_MNIST_SPEC = {"size": [28, 28], "channels": 1, "mean": [0.2860], "std": [0.3530],
                      "interpolation": "bilinear"}


class ClassifierHead(nn.Module):
    r"""Average pooling to a P x P grid (P = 1: global), dropout and a linear layer.

    P > 1 keeps where in the image a feature is, which helps on aligned images (Fashion-MNIST's
    centred garments: a sleeve's position tells a shirt from a vest) and still takes any input size.

    Args:
        in_features: C, channels of the last feature map.
        num_classes: K; 0 makes `fc` an identity (pooled features out).
        drop_rate: dropout before `fc`.
        pool_size: P.

    Shapes:
        - input: :math:`(B, C, H, W)`
        - output: :math:`(B, K)` logits, or :math:`(B, C P^2)` with `pre_logits=True`
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0, pool_size: int = 1) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.drop = nn.Dropout(drop_rate)
        features = in_features * pool_size**2
        self.fc = nn.Linear(features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))
        return x if pre_logits else self.fc(x)


class CNN(nn.Module):
    r"""A ResNet (He et al. 2016) sized for 8-64 px images.

    A 3x3 stem (no 7x7 convolution or max-pool: small images have no pixels to spare), then one
    stage per entry of `widths`, each `depths[i]` basic residual blocks; every stage after the
    first halves the resolution in its first block. Global average pooling makes any input size
    work, so the same weights run on 28x28 and 64x64 images.

    Args:
        num_classes: K.
        in_chans: C, input channels (1 grey, 3 RGB, anything else).
        widths: channels of each stage.
        depths: residual blocks per stage (same length as `widths`).
        stem_stride: 2 halves the resolution in the stem (for inputs of 64 px and more).
        downsample: how a stage halves the resolution: "stride" (ResNet's strided first 3x3
            convolution and 1x1 projection), or "maxpool" / "avgpool" (a 2x2 pool before the stage,
            whose first block then runs at stride 1). Same FLOPs; on CPUs the pooled form trains
            ~15% faster, because oneDNN's backward pass of strided convolutions is slow.
        drop_rate: dropout before the classifier.
        head_pool: the head averages the last map to a head_pool x head_pool grid (1: global pooling).
        se_ratio: Squeeze-Excite in every block (0 disables it).
        norm: a `zoo.blocks.get_norm` name.
        act: a `zoo.blocks.get_act` name.
        features_only: `forward` returns the feature map of each stage in `out_indices` instead
            of logits (timm's convention; the head is kept so that published weights still load).
        out_indices: stages whose maps `features_only` returns (default: all).

    Shapes:
        - input: :math:`(B, C, H, W)`
        - output: :math:`(B, K)` logits; with `features_only` a list of
          :math:`(B, \text{widths}[i], H / r_i, W / r_i)` with reductions :math:`r_i` in `feature_info`
    """

    first_conv = "stem.conv"  # state-dict prefixes that zoo.create adapts for in_chans / num_classes
    classifier = "head.fc"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, widths: Sequence[int] = (32, 64, 128),
                 depths: Sequence[int] = (2, 2, 2), stem_stride: int = 1, drop_rate: float = 0.0,
                 se_ratio: float = 0.0, norm: str = "batch", act: str = "relu", features_only: bool = False,
                 out_indices: Sequence[int] | None = None, downsample: str = "stride", head_pool: int = 1) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"cnn: widths and depths need one entry per stage, got {list(widths)} and {list(depths)}")
        if stem_stride not in (1, 2):
            raise ValueError(f"cnn: stem_stride must be 1 or 2, got {stem_stride}")
        if downsample not in DOWNSAMPLE:
            raise ValueError(f"cnn: downsample must be one of {', '.join(DOWNSAMPLE)}, got {downsample!r}")
        self.in_chans, self.num_classes = in_chans, num_classes
        self.features_only = features_only
        self.out_indices = tuple(range(len(widths)) if out_indices is None else out_indices)
        if not set(self.out_indices) <= set(range(len(widths))):
            raise ValueError(f"cnn: out_indices {list(self.out_indices)} outside stages 0..{len(widths) - 1}")
        self.stem = ConvNormAct(in_chans, widths[0], 3, stem_stride, norm=norm, act=act)
        stages, self.feature_info = [], []
        channels, reduction = widths[0], stem_stride
        for i, (width, depth) in enumerate(zip(widths, depths)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            pool = [DOWNSAMPLE[downsample]()] if stride == 2 and downsample != "stride" else []
            stride = 1 if pool else stride
            blocks = [ResidualBlock(channels if j == 0 else width, width, stride if j == 0 else 1,
                                    norm=norm, act=act, se_ratio=se_ratio) for j in range(depth)]
            stages.append(nn.Sequential(*pool, *blocks))
            self.feature_info.append({"num_chs": width, "reduction": reduction, "module": f"stages.{i}"})
            channels = width
        self.stages = nn.ModuleList(stages)
        self.num_features = channels
        self.head = ClassifierHead(channels, num_classes, drop_rate, head_pool)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last norm of each residual branch: every block starts as the identity, which
        # lets a short schedule use a high learning rate from the first step (Goyal et al. 2017).
        for m in self.modules():
            if isinstance(m, ResidualBlock) and isinstance(m.conv2.norm, nn.BatchNorm2d):
                nn.init.zeros_(m.conv2.norm.weight)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        return check_tensor(x, "x", ("B", self.in_chans, "H", "W"), owner="cnn", like=self)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (full list, whatever `out_indices` says)."""
        x = self._check(x)
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, (B, num_features, H / r, W / r)."""
        return self.forward_intermediates(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            maps = self.forward_intermediates(x)
            return [maps[i] for i in self.out_indices]
        return self.forward_head(self.forward_features(x))

    def example_inputs(self, batch_size: int = 2) -> tuple:
        return (torch.randn(batch_size, self.in_chans, 28, 28),)


register_model("cnn", task="classification", default_tag="cnn.fashion_mnist", input_spec=FASHION_MNIST_SPEC,
               description="Small ResNet for 8-64 px images (3 stages of 2 blocks, 32-128 channels, "
                           "0.7M parameters).")(CNN)
register_model("cnn_medium", task="classification", input_spec=FASHION_MNIST_SPEC,
               model_args={"widths": (64, 128, 256), "drop_rate": 0.1},
               description="ResNet with 3 stages of 2 blocks, 64-256 channels (~2.8M parameters).")(CNN)
register_model("cnn_large", task="classification", input_spec=FASHION_MNIST_SPEC,
               model_args={"widths": (64, 128, 256, 512), "depths": (2, 2, 2, 2), "drop_rate": 0.2},
               description="ResNet-18 layout (4 stages of 2 blocks, 64-512 channels, ~11M parameters) with a "
                           "3x3 stem.")(CNN)


# --------------------------------------------------------------------------- timm backbones


def timm_input_spec(pretrained_cfg: dict, in_chans: int) -> dict:
    """A zoo input spec from a timm pretrained_cfg (mean/std averaged or repeated for `in_chans`)."""
    mean = adapt_channel_stats(pretrained_cfg.get("mean", (0.5,)), in_chans)  # zoo.create's rule for in_chans
    std = adapt_channel_stats(pretrained_cfg.get("std", (0.5,)), in_chans)
    interpolation = pretrained_cfg.get("interpolation", "bilinear")
    return {"size": list(pretrained_cfg.get("input_size", (3, 224, 224))[1:]), "channels": in_chans,
            "mean": mean, "std": std, "crop_pct": float(pretrained_cfg.get("crop_pct", 1.0)),
            "interpolation": interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"}


def _timm_example_inputs(in_chans: int, size: Sequence[int], batch_size: int = 2) -> tuple:
    return (torch.randn(batch_size, in_chans, *size),)


@register_model("timm", task="classification")
def timm_model(model_name: str = "resnet18", pretrained: bool = False, num_classes: int | None = None,
               in_chans: int | None = None, **kwargs) -> nn.Module:
    """Any timm model by name, e.g. zoo.create("timm/resnet18", pretrained=True, num_classes=10).

    timm builds the network and loads its own pretrained weights (from the Hugging Face cache, so
    offline once downloaded; `pretrained_cfg_overlay={"file": PATH}` loads a local checkpoint) and
    adapts the first convolution and the head itself. zoo adds what every zoo model has: an input
    spec from timm's pretrained config, `example_inputs`, a shape check before `forward`, and the
    `first_conv` / `classifier` prefixes for re-loading zoo-saved weights with other classes.

    Args:
        model_name: a `timm.list_models()` name, with an optional ".pretrained_tag".
        pretrained: load timm's pretrained weights.
        num_classes: classifier outputs (default: the pretrained head's).
        in_chans: input channels (default 3).
        **kwargs: passed to `timm.create_model` (drop_rate, features_only, ...).
    """
    import timm

    args = dict(kwargs)
    if num_classes is not None:
        args["num_classes"] = num_classes
    if in_chans is not None:
        args["in_chans"] = in_chans
    model = timm.create_model(model_name, pretrained=pretrained, **args)
    chans = in_chans or 3
    timm_cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    model.input_spec = timm_input_spec(timm_cfg, chans)
    model.example_inputs = functools.partial(_timm_example_inputs, chans, model.input_spec["size"])
    for attr in ("first_conv", "classifier"):
        # Only where the name is free: some timm models own a submodule called `classifier`.
        if timm_cfg.get(attr) and not hasattr(model, attr):
            setattr(model, attr, timm_cfg[attr])

    def check_input(module, args):
        x = check_tensor(args[0] if args else None, "x", ("B", chans, "H", "W"), owner=f"timm/{model_name}",
                         like=module)
        return (x, *args[1:])

    model.register_forward_pre_hook(check_input)
    return model

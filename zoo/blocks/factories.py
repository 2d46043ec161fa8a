"""Normalisation and activation factories, so every block takes `norm="group"`, `act="silu"` by name.

Names rather than classes keep recipes and model configs plain YAML/JSON, and one factory
serves 1D, 2D and 3D (MONAI's `spatial_dims` habit).
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "instance", "group", "layer", "none")
ACTS = ("relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "none")


def check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")


class LayerNormNd(nn.LayerNorm):
    r"""LayerNorm over the channel axis of a channels-first map (ConvNeXt's "channels_first" LayerNorm).

    .. math::
        y_{b,:,\mathbf{s}} = \gamma \odot \frac{x_{b,:,\mathbf{s}} - \mu_{b,\mathbf{s}}}
        {\sqrt{\sigma^2_{b,\mathbf{s}} + \epsilon}} + \beta

    with mean and variance taken over the C channels at each position :math:`\mathbf{s}`.

    Args:
        num_channels: C.
        eps: added to the variance.

    Shapes:
        - input: :math:`(B, C, *)` with any number of spatial dimensions
        - output: same as input
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm normalises trailing dimensions, so move C last and back (as timm's LayerNorm2d).
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def group_count(num_channels: int, max_groups: int = 32) -> int:
    """The largest number of groups <= min(max_groups, num_channels) that divides num_channels."""
    return next(g for g in range(min(max_groups, num_channels), 0, -1) if num_channels % g == 0)


def get_norm(name: str, num_channels: int, spatial_dims: int = 2) -> nn.Module:
    """Build a normalisation layer for channels-first maps by name.

    Args:
        name: "batch" (BatchNorm), "instance" (InstanceNorm with affine parameters, as nnU-Net),
            "group" (GroupNorm with the largest group count <= min(32, C) that divides C),
            "layer" (LayerNorm over channels at each position) or "none" (identity).
        num_channels: C.
        spatial_dims: 1, 2 or 3; picks the BatchNorm/InstanceNorm variant.

    Shapes:
        - input: :math:`(B, C, *)` with `spatial_dims` trailing dimensions
        - output: same as input
    """
    check_spatial_dims(spatial_dims)
    key = name.lower()
    if key == "batch":
        return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[spatial_dims - 1](num_channels)
    if key == "instance":
        return (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[spatial_dims - 1](
            num_channels, affine=True
        )
    if key == "group":
        return nn.GroupNorm(group_count(num_channels), num_channels)
    if key == "layer":
        return LayerNormNd(num_channels)
    if key == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")


def get_act(name: str) -> nn.Module:
    """Build an activation by name.

    Args:
        name: "relu", "leaky_relu" (slope 0.01, as nnU-Net), "gelu", "silu", "tanh", "sigmoid"
            or "none" (identity).

    Shapes:
        - input: any
        - output: same as input
    """
    key = name.lower()
    factories = {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "none": nn.Identity,
    }
    if key not in factories:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTS)}")
    return factories[key]()

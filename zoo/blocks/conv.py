"""Convolution blocks that serve 1D, 2D and 3D through one `spatial_dims` argument (MONAI style)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zoo.blocks.factories import check_spatial_dims, get_act, get_norm

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _same_padding(kernel_size: int | Sequence[int], dilation: int) -> int | tuple[int, ...]:
    # (k - 1) // 2 * d keeps the size for odd kernels at stride 1, and gives 0 for the even
    # "patchify" kernels (k == stride) used to downsample.
    if isinstance(kernel_size, int):
        return (kernel_size - 1) // 2 * dilation
    return tuple((k - 1) // 2 * dilation for k in kernel_size)


class ConvNormAct(nn.Sequential):
    r"""Convolution, then normalisation, then activation, for 1D, 2D or 3D maps.

    .. math::
        y = \mathrm{act}(\mathrm{norm}(W \star x + b))

    Submodules are named `conv`, `norm` and `act` (identities when `norm`/`act` is "none"), so
    state-dict keys read `conv.weight`, `norm.weight` whatever the dimension.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: an int or one size per spatial dimension.
        stride: convolution stride.
        spatial_dims: 1, 2 or 3.
        norm: a :func:`get_norm` name.
        act: a :func:`get_act` name.
        groups: convolution groups (C_in for depthwise).
        dilation: convolution dilation.
        bias: convolution bias; None means "only when no norm follows" (a norm's shift makes it redundant).
        padding: None means "same" padding, (k - 1) // 2 * dilation per dimension.

    Shapes:
        - input: :math:`(B, C_{in}, *S)` with `spatial_dims` dimensions in :math:`S`
        - output: :math:`(B, C_{out}, *S')`, :math:`S' = \lceil S / \text{stride} \rceil` with default padding
          and odd kernels
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
        groups: int = 1,
        dilation: int = 1,
        bias: bool | None = None,
        padding: int | Sequence[int] | None = None,
    ) -> None:
        check_spatial_dims(spatial_dims)
        conv = _CONVS[spatial_dims - 1](
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=_same_padding(kernel_size, dilation) if padding is None else padding,
            dilation=dilation,
            groups=groups,
            bias=norm.lower() == "none" if bias is None else bias,
        )
        super().__init__()
        self.conv = conv
        self.norm = get_norm(norm, out_channels, spatial_dims)
        self.act = get_act(act)


class SqueezeExcite(nn.Module):
    r"""Squeeze-and-Excitation channel gating (Hu et al. 2018) for 1D, 2D or 3D maps.

    .. math::
        y = x \odot \sigma\big(W_2\, \mathrm{ReLU}(W_1\, \mathrm{mean}_{\mathbf{s}}\, x)\big)

    Args:
        channels: C.
        rd_ratio: reduced width as a fraction of C (at least one channel).
        spatial_dims: 1, 2 or 3; the dimensions averaged in the squeeze.

    Shapes:
        - input: :math:`(B, C, *S)` with `spatial_dims` dimensions in :math:`S`
        - output: same as input
    """

    def __init__(self, channels: int, rd_ratio: float = 0.25, spatial_dims: int = 2) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        reduced = max(1, round(channels * rd_ratio))
        self.spatial_dims = spatial_dims
        # Linear layers on the pooled vector equal 1x1 convolutions and need no per-dimension class.
        self.fc1 = nn.Linear(channels, reduced)
        self.fc2 = nn.Linear(reduced, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, 2 + self.spatial_dims))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dims)))))
        return x * gate.view(*gate.shape, *([1] * self.spatial_dims))


def _shortcut(in_ch: int, out_ch: int, stride: int, spatial_dims: int, norm: str) -> nn.Module:
    # He et al.'s option B: project only when the shape changes, identity otherwise.
    if in_ch == out_ch and stride == 1:
        return nn.Identity()
    return ConvNormAct(in_ch, out_ch, 1, stride, spatial_dims, norm=norm, act="none")


class ResidualBlock(nn.Module):
    r"""The basic residual block of ResNet-18/34 (He et al. 2016), for 1D, 2D or 3D maps.

    .. math::
        y = \mathrm{act}\big(\mathrm{SE}(\mathrm{norm}(W_2 \star \mathrm{act}(\mathrm{norm}(W_1 \star x))))
        + P x\big)

    where :math:`P` is a strided 1x1 convolution + norm when the shape changes, else the identity.

    Args:
        in_ch: C_in.
        out_ch: C_out.
        stride: stride of the first 3x3 convolution (and of the projection).
        spatial_dims: 1, 2 or 3.
        norm: a :func:`get_norm` name.
        act: a :func:`get_act` name.
        se_ratio: Squeeze-Excite reduction ratio; 0 disables it.

    Shapes:
        - input: :math:`(B, C_{in}, *S)`
        - output: :math:`(B, C_{out}, *\lceil S / \text{stride} \rceil)`
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_ch, out_ch, 3, stride, spatial_dims, norm=norm, act=act)
        self.conv2 = ConvNormAct(out_ch, out_ch, 3, 1, spatial_dims, norm=norm, act="none")
        self.se = SqueezeExcite(out_ch, se_ratio, spatial_dims) if se_ratio > 0 else nn.Identity()
        self.shortcut = _shortcut(in_ch, out_ch, stride, spatial_dims, norm)
        self.act = get_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class Bottleneck(nn.Module):
    r"""The bottleneck residual block of ResNet-50+ (1x1 reduce, 3x3, 1x1 expand), for 1D, 2D or 3D maps.

    .. math::
        y = \mathrm{act}\big(\mathrm{SE}(\mathrm{norm}(W_3 \star \mathrm{act}(\mathrm{norm}(W_2 \star
        \mathrm{act}(\mathrm{norm}(W_1 \star x)))))) + P x\big)

    The stride sits on the 3x3 convolution (torchvision's "ResNet v1.5").

    Args:
        in_ch: C_in.
        out_ch: C_out; the inner width is out_ch // expansion.
        stride: stride of the 3x3 convolution (and of the projection).
        expansion: ratio of out_ch to the inner width.
        spatial_dims: 1, 2 or 3.
        norm: a :func:`get_norm` name.
        act: a :func:`get_act` name.
        se_ratio: Squeeze-Excite reduction ratio; 0 disables it.

    Shapes:
        - input: :math:`(B, C_{in}, *S)`
        - output: :math:`(B, C_{out}, *\lceil S / \text{stride} \rceil)`
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        expansion: int = 4,
        spatial_dims: int = 2,
        norm: str = "batch",
        act: str = "relu",
        se_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if out_ch % expansion:
            raise ValueError(f"Bottleneck needs out_ch divisible by expansion, got {out_ch} and {expansion}")
        width = out_ch // expansion
        self.conv1 = ConvNormAct(in_ch, width, 1, 1, spatial_dims, norm=norm, act=act)
        self.conv2 = ConvNormAct(width, width, 3, stride, spatial_dims, norm=norm, act=act)
        self.conv3 = ConvNormAct(width, out_ch, 1, 1, spatial_dims, norm=norm, act="none")
        self.se = SqueezeExcite(out_ch, se_ratio, spatial_dims) if se_ratio > 0 else nn.Identity()
        self.shortcut = _shortcut(in_ch, out_ch, stride, spatial_dims, norm)
        self.act = get_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.conv3(self.conv2(self.conv1(x)))) + self.shortcut(x))

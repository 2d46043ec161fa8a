"""Fixed (parameter-free) positional encodings: NeRF's Fourier features and DETR's 2D sine grid."""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierFeatures(nn.Module):
    r"""NeRF's positional encoding :math:`\gamma(p)` (Mildenhall et al. 2020, eq. 4).

    .. math::
        \gamma(p) = \big(p,\ \sin(f_0 \pi p), \cos(f_0 \pi p), \dots,
        \sin(f_{L-1} \pi p), \cos(f_{L-1} \pi p)\big)

    with :math:`f_k = 2^k` (`log_sampling`) or :math:`L` frequencies evenly spaced in
    :math:`[1, 2^{L-1}]`. Each sin/cos term covers all `in_dim` coordinates, in the order of the
    official NeRF code. The paper scales by :math:`\pi` and expects :math:`p \in [-1, 1]`.

    Args:
        in_dim: d, the coordinate size (3 for positions, 3 for view directions).
        num_frequencies: L.
        include_input: prepend :math:`p` itself.
        log_sampling: octave-spaced frequencies (True) or linearly spaced ones.

    Shapes:
        - input: :math:`(*, d)`
        - output: :math:`(*, \text{out\_dim})` with `out_dim` = d (if include_input) + 2 L d
    """

    frequencies: torch.Tensor

    def __init__(
        self, in_dim: int, num_frequencies: int, include_input: bool = True, log_sampling: bool = True
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.include_input = include_input
        if log_sampling:
            freqs = 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)
        else:
            freqs = torch.linspace(1.0, 2.0 ** (num_frequencies - 1), num_frequencies)
        # A buffer so .to(device) moves it; not persistent since it is fixed by the arguments.
        self.register_buffer("frequencies", freqs * math.pi, persistent=False)
        self.out_dim = in_dim * (int(include_input) + 2 * num_frequencies)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if p.shape[-1] != self.in_dim:
            raise ValueError(
                f"FourierFeatures expects input of shape (*, {self.in_dim}), got {tuple(p.shape)}"
            )
        scaled = p.unsqueeze(-2) * self.frequencies.to(p.dtype).unsqueeze(-1)  # (*, L, d)
        features = torch.stack((scaled.sin(), scaled.cos()), dim=-2).flatten(-3)  # (*, L * 2 * d)
        return torch.cat((p, features), dim=-1) if self.include_input else features


def sinusoidal_embedding_2d(
    h: int,
    w: int,
    dim: int,
    temperature: float = 10000.0,
    normalize: bool = True,
    flatten: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""DETR's 2D sine positional embedding of an H x W grid (Carion et al. 2020).

    Half of the channels encode the row, half the column; each half interleaves
    :math:`\sin(y / T^{2i/(D/2)})` and :math:`\cos(y / T^{2i/(D/2)})`, :math:`T` = temperature.
    With `normalize`, positions 1..H are rescaled to :math:`(0, 2\pi]` so the embedding does not
    depend on the grid size (DETR's default for its encoder).

    Args:
        h: H, rows (for BEV grids: the first grid axis).
        w: W, columns.
        dim: D, embedding width; a multiple of 4.
        temperature: T.
        normalize: rescale positions to :math:`(0, 2\pi]`.
        flatten: return :math:`(H W, D)` in row-major order instead of :math:`(D, H, W)`.
        device: where to build it.
        dtype: its dtype.

    Shapes:
        - output: :math:`(D, H, W)`, or :math:`(H W, D)` with `flatten`
    """
    if dim % 4:
        raise ValueError(f"sinusoidal_embedding_2d needs dim divisible by 4, got {dim}")
    half = dim // 2
    y = torch.arange(1, h + 1, device=device, dtype=torch.float32)
    x = torch.arange(1, w + 1, device=device, dtype=torch.float32)
    if normalize:
        y = y / (h + 1e-6) * 2 * math.pi
        x = x / (w + 1e-6) * 2 * math.pi
    rates = temperature ** (2 * (torch.arange(half, device=device) // 2) / half)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, half), sin/cos interleaved
        angles = pos[:, None] / rates
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    emb_y = encode(y)[:, None, :].expand(h, w, half)
    emb_x = encode(x)[None, :, :].expand(h, w, half)
    emb = torch.cat((emb_y, emb_x), dim=-1).to(dtype)  # (H, W, D)
    return emb.reshape(h * w, dim) if flatten else emb.permute(2, 0, 1).contiguous()


class SinePositionalEncoding2D(nn.Module):
    r"""Module form of :func:`sinusoidal_embedding_2d` for query grids (e.g. BEV queries).

    Args:
        dim: D, a multiple of 4.
        temperature: T.
        normalize: rescale positions to :math:`(0, 2\pi]`.

    Shapes:
        - forward(h, w): :math:`(D, H, W)`, or :math:`(H W, D)` with `flatten=True`
    """

    def __init__(self, dim: int, temperature: float = 10000.0, normalize: bool = True) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"SinePositionalEncoding2D needs dim divisible by 4, got {dim}")
        self.dim = dim
        self.temperature = temperature
        self.normalize = normalize

    def forward(
        self,
        h: int,
        w: int,
        flatten: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        return sinusoidal_embedding_2d(
            h, w, self.dim, self.temperature, self.normalize, flatten=flatten, device=device, dtype=dtype
        )

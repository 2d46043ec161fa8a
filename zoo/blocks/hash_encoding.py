"""Instant-NGP's multiresolution hash encoding (Müller et al. 2022) in plain PyTorch.

No custom kernels: all levels and all 2^d cell corners are handled by a few batched tensor ops,
so the same code runs on CPU (about 10^5 points per step) and on GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

# tiny-cuda-nn's primes; the first coordinate is not multiplied so that neighbouring x stay close in memory.
_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)


class HashEncoding(nn.Module):
    r"""Multiresolution hash encoding of points in :math:`[0, 1]^d` (Instant-NGP).

    Level :math:`l` is a grid of :math:`N_l = \lfloor N_{min}\, b^l \rfloor` cells per axis with
    :math:`b = \exp\big((\ln N_{max} - \ln N_{min}) / (L - 1)\big)`. Each of the :math:`2^d` corners
    of the cell holding :math:`x` looks up an F-vector in level :math:`l`'s table of size :math:`T`:

    .. math::
        h(\mathbf{c}) = \Big(\bigoplus_{i=1}^{d} c_i \pi_i\Big) \bmod T, \qquad
        \pi = (1, 2654435761, 805459861)

    or, on coarse levels where every vertex fits in the table, a collision-free dense index. zoo packs
    each coordinate of a dense level into its own bit field, :math:`\pi_i = 2^{k i}` with
    :math:`2^k > N_l`, so dense and hashed levels share the XOR formula (a level is dense when
    :math:`2^{k d} \le T`; with the defaults these are the same 5 levels as with
    :math:`(N_l + 1)^d \le T`). The corners are blended with (bi/tri)linear
    weights, and the L levels are concatenated:

    .. math::
        y = \big[\textstyle\sum_{\mathbf{c}} w_{\mathbf{c}}(x)\, \theta_l[h_l(\mathbf{c})]\big]_{l=1}^{L}

    Tables start uniform in :math:`\pm 10^{-4}` as in the paper. Points outside the box are clamped
    to its surface (their features are those of the nearest boundary point).

    Args:
        in_dim: d, 1 to 7 (3 for positions, 2 for images).
        num_levels: L.
        features_per_level: F.
        log2_table_size: :math:`\log_2 T`, the table size per level.
        base_resolution: :math:`N_{min}`, cells per axis at the coarsest level.
        max_resolution: :math:`N_{max}`, cells per axis at the finest level.
        bounding_box: (min corner, max corner) in world units, each of length d; inputs are mapped
            from this box to :math:`[0, 1]^d`. None means the inputs already lie in :math:`[0, 1]^d`.

    Shapes:
        - input: :math:`(*, d)`
        - output: :math:`(*, \text{out\_dim})`, `out_dim` = L F
    """

    resolutions: torch.Tensor
    multipliers: torch.Tensor
    corner_steps: torch.Tensor
    level_offsets: torch.Tensor
    box: torch.Tensor

    def __init__(
        self,
        in_dim: int = 3,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        bounding_box: tuple[Sequence[float], Sequence[float]] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= in_dim <= len(_PRIMES):
            raise ValueError(f"HashEncoding supports in_dim from 1 to {len(_PRIMES)}, got {in_dim}")
        if not 0 < base_resolution <= max_resolution:
            raise ValueError(
                f"HashEncoding needs 0 < base_resolution <= max_resolution, got "
                f"{base_resolution} and {max_resolution}"
            )
        self.in_dim = in_dim
        self.num_levels = num_levels
        self.features_per_level = features_per_level
        self.table_size = 2**log2_table_size
        self.out_dim = num_levels * features_per_level

        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(num_levels - 1, 1))
        resolutions = [math.floor(base_resolution * growth**level + 1e-9) for level in range(num_levels)]
        # One multiplier per level and axis: bit-field strides on dense levels, primes on hashed ones.
        multipliers, self.num_dense = [], 0
        for r in resolutions:
            bits = r.bit_length()  # 2**bits > r: room for coordinates 0..r
            dense = 2 ** (bits * in_dim) <= self.table_size
            multipliers.append([2 ** (bits * i) for i in range(in_dim)] if dense else list(_PRIMES[:in_dim]))
            self.num_dense += dense
        self.register_buffer("resolutions", torch.tensor(resolutions), persistent=False)
        self.register_buffer("multipliers", torch.tensor(multipliers), persistent=False)
        self.register_buffer("corner_steps", torch.tensor([0, 1]), persistent=False)
        self.register_buffer("level_offsets", torch.arange(num_levels) * self.table_size, persistent=False)
        box = torch.tensor([[0.0] * in_dim, [1.0] * in_dim]) if bounding_box is None else bounding_box
        self.register_buffer("box", torch.as_tensor(box, dtype=torch.float32).reshape(2, in_dim))

        self.table = nn.Parameter(torch.empty(num_levels, self.table_size, features_per_level))
        nn.init.uniform_(self.table, -1e-4, 1e-4)

    def _corner_indices(self, corner: torch.Tensor) -> torch.Tensor:
        """(N, L, d) lower-corner coordinates -> (N, L, 2^d) row indices into the flattened table."""
        # Each axis' term for the lower and upper corner, reduced mod T first: the XOR's low bits only
        # depend on the terms' low bits, and small terms keep every later op cheap.
        terms = ((corner.unsqueeze(-1) + self.corner_steps) * self.multipliers[..., None]) & (
            self.table_size - 1
        )
        terms[:, :, 0] |= self.level_offsets[:, None]  # bits above log2(T): selects the level's table
        index = terms[:, :, 0]
        for i in range(1, self.in_dim):  # after axis i there are 2^(i+1) corners, axis 0 outermost
            index = (index.unsqueeze(-1) ^ terms[:, :, i, None, :]).flatten(-2)
        return index

    def _corner_weights(self, frac: torch.Tensor) -> torch.Tensor:
        """(N, L, d) position inside the cell -> (N, L, 2^d) (bi/tri)linear weights, same corner order."""
        axis_weights = torch.stack((1 - frac, frac), dim=-1)  # (N, L, d, 2)
        weights = axis_weights[:, :, 0]
        for i in range(1, self.in_dim):
            weights = (weights.unsqueeze(-1) * axis_weights[:, :, i, None, :]).flatten(-2)
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"HashEncoding expects input of shape (*, {self.in_dim}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_dim)
        unit = ((x - self.box[0]) / (self.box[1] - self.box[0])).clamp(0.0, 1.0)
        res = self.resolutions.to(unit.dtype)
        pos = unit[:, None, :] * res[None, :, None]  # (N, L, d) in cell units
        # The last cell is closed so that x = 1 interpolates inside it instead of indexing past the grid.
        corner = torch.minimum(pos.detach().floor(), (res - 1)[None, :, None])
        frac = pos - corner
        index = self._corner_indices(corner.long())
        features = self.table.view(-1, self.features_per_level)[index]  # (N, L, 2^d, F)
        out = torch.einsum("nlcf,nlc->nlf", features, self._corner_weights(frac).to(features.dtype))
        return out.reshape(*lead, self.out_dim)

"""3D volumes with their label maps: one affine for both, then intensity changes for the image only.

Kornia's 3D augmentations (RandomAffine3D, RandomRotation3D, the 3D flips) warp the image but
refuse label maps inside AugmentationSequential. zoo therefore samples the geometry itself,
composes rotation, scale and flips into one voxel-space matrix per sample, and warps the image
(trilinear) and the labels (nearest) with that same matrix through Kornia's `warp_affine3d`:
one resampling per tensor instead of one per augmentation, and labels that follow the image
exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from kornia.geometry.transform import warp_affine3d
from torch import nn

from zoo.augment.checks import label_map_with_channel
from zoo.augment.rng import Seed, bernoulli, seeded, uniform


def _axis_rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """(B,) radians -> (B, 3, 3) rotations of the plane of the two array axes other than `axis`."""
    i, j = [a for a in range(3) if a != axis]
    rot = torch.eye(3).repeat(len(angle), 1, 1)
    cos, sin = angle.cos(), angle.sin()
    rot[:, i, i], rot[:, j, j], rot[:, i, j], rot[:, j, i] = cos, cos, -sin, sin
    return rot


def _kornia_xyz(matrix: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) voxel map in (d, h, w) order -> the (B, 3, 4) map in Kornia's (x, y, z) = (w, h, d) order.

    Kornia's `warp_affine3d` with align_corners=True puts voxel centres on integer coordinates, as
    this matrix does, so image and labels are resampled on exactly the same points.
    """
    order = torch.tensor([2, 1, 0, 3])
    return matrix[:, order][:, :, order][:, :3]


class VolumeAugment3D(nn.Module):
    r"""nnU-Net-style augmentation of (B, C, D, H, W) volumes and their label maps, on their device.

    Geometry (shared): with probability `p_affine` a rotation about each array axis by
    :math:`U(-r_a, r_a)` degrees and an isotropic zoom :math:`s \sim U(\text{scale})`, about the
    volume centre; then a flip of each axis in `flip_axes` with probability `flip_p`. In voxel
    coordinates :math:`\mathbf{v}`, with :math:`\mathbf{c}` the centre,

    .. math::
        \mathbf{v}' = \mathbf{c} + F\, R_0 R_1 R_2\, s\, (\mathbf{v} - \mathbf{c})

    The image is resampled trilinearly, the labels with nearest, both with that one matrix;
    voxels from outside the volume get 0 (image) and `label_fill` (labels).

    Intensity (image only, per sample and channel, in this order): a smooth multiplicative bias field
    :math:`\exp\big(\sum_{i+j+k \le \text{order}} c_{ijk}\, z^i y^j x^k\big)`,
    :math:`c_{ijk} \sim U(-\text{bias\_field}, \text{bias\_field})`, coordinates in [-1, 1]
    (TorchIO's RandomBiasField); Gaussian noise with :math:`\sigma \sim U(0, \text{noise\_std})`;
    gamma :math:`x \mapsto m + r\,((x - m) / r)^\gamma` on the channel's own range
    :math:`[m, m + r]` (so any intensity scale works). Labels keep their dtype.

    In eval mode (`.eval()`) the batch passes through unchanged.

    Args:
        rotate_degrees: maximum rotation about the D, H and W axes, in degrees.
        scale: range of the isotropic zoom.
        flip_axes: array axes (0 = D, 1 = H, 2 = W) that may be flipped.
        flip_p: probability of each of those flips.
        gamma: range of the gamma exponent.
        noise_std: upper bound of the noise standard deviation, in image units.
        bias_field: bound of the bias-field polynomial coefficients (0 disables it).
        p_affine: probability of the rotation + zoom per sample.
        p_gamma: probability of the gamma change per sample.
        p_noise: probability of the noise per sample.
        p_bias: probability of the bias field per sample.
        bias_order: degree of the bias-field polynomial.
        label_fill: label of voxels that come from outside the volume.

    Shapes:
        - volume: :math:`(B, C, D, H, W)` float
        - labels: :math:`(B, D, H, W)` or :math:`(B, 1, D, H, W)`, an integer dtype (optional)
        - output: (volume, labels) with the inputs' shapes and dtypes (labels None if not given)
    """

    def __init__(
        self,
        rotate_degrees: Sequence[float] = (15.0, 15.0, 15.0),
        scale: tuple[float, float] = (0.9, 1.1),
        flip_axes: Sequence[int] = (0, 1, 2),
        flip_p: float = 0.5,
        gamma: tuple[float, float] = (0.7, 1.5),
        noise_std: float = 0.1,
        bias_field: float = 0.3,
        p_affine: float = 0.5,
        p_gamma: float = 0.3,
        p_noise: float = 0.15,
        p_bias: float = 0.3,
        bias_order: int = 3,
        label_fill: int = 0,
    ) -> None:
        super().__init__()
        if len(rotate_degrees) != 3 or any(a not in (0, 1, 2) for a in flip_axes):
            raise ValueError(
                f"rotate_degrees needs 3 values and flip_axes values in (0, 1, 2), got {rotate_degrees!r}, "
                f"{flip_axes!r}"
            )
        self.rotate_radians = [math.radians(a) for a in rotate_degrees]
        self.scale = tuple(scale)
        self.flip_axes = tuple(flip_axes)
        self.flip_p = flip_p
        self.gamma = tuple(gamma)
        self.noise_std = noise_std
        self.bias_field = bias_field
        self.p_affine, self.p_gamma, self.p_noise, self.p_bias = p_affine, p_gamma, p_noise, p_bias
        self.bias_order = bias_order
        self.label_fill = label_fill

    def forward(
        self, volume: torch.Tensor, labels: torch.Tensor | None = None, generator: Seed = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if volume.ndim != 5 or not volume.is_floating_point():
            raise ValueError(
                f"VolumeAugment3D expects float volume of shape (B, C, D, H, W), got {volume.dtype} "
                f"{tuple(volume.shape)}"
            )
        b, _, *spatial = volume.shape
        label_map = (
            None
            if labels is None
            else label_map_with_channel("VolumeAugment3D", "labels", labels, b, spatial)
        )
        if not self.training:
            return volume, labels
        with seeded(generator, volume.device):
            matrix = self.sample_matrix(b, spatial)
            if not torch.equal(matrix, torch.eye(4).expand_as(matrix)):  # skip resampling if nothing moved
                xyz = _kornia_xyz(matrix).to(volume.device)
                volume = warp_affine3d(volume, xyz.to(volume.dtype), volume.shape[2:], align_corners=True)
                if label_map is not None:
                    labels = self._warp_labels(label_map, xyz).view(labels.shape)
            volume = self._intensity(volume)
        return volume, labels

    def sample_matrix(self, batch: int, spatial: Sequence[int]) -> torch.Tensor:
        """Draw the geometry: (B, 4, 4) maps from source to output voxel coordinates, in (d, h, w) order.

        Identity for samples that drew neither the affine nor a flip.
        """
        linear = torch.eye(3).repeat(batch, 1, 1)
        affine = bernoulli(batch, self.p_affine)
        for axis, limit in enumerate(self.rotate_radians):
            angle = torch.where(affine, uniform(batch, -limit, limit), 0.0)
            linear = linear @ _axis_rotation(angle, axis)
        linear = linear * torch.where(affine, uniform(batch, *self.scale), 1.0)[:, None, None]
        signs = torch.ones(batch, 3)
        for axis in self.flip_axes:
            signs[:, axis] = torch.where(bernoulli(batch, self.flip_p), -1.0, 1.0)
        linear = signs[:, :, None] * linear
        centre = (torch.tensor(spatial, dtype=torch.float32) - 1) / 2
        matrix = torch.eye(4).repeat(batch, 1, 1)
        matrix[:, :3, :3] = linear
        matrix[:, :3, 3] = centre - linear @ centre  # keep the centre fixed
        return matrix

    def _warp_labels(self, labels: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        # Nearest resampling of labels shifted so that zero padding lands on label_fill; float32 is
        # exact for integer labels below 2^24.
        shifted = (labels - self.label_fill).float()
        warped = warp_affine3d(shifted, xyz.float(), labels.shape[2:], "nearest", align_corners=True)
        return warped.round_().to(labels.dtype) + self.label_fill

    def _intensity(self, volume: torch.Tensor) -> torch.Tensor:
        # Acquisition effects first (bias field, noise), then the contrast change (gamma). A step no
        # sample drew is skipped: each is a full pass over the batch.
        b, c = volume.shape[:2]
        dev, dtype = volume.device, volume.dtype

        def per_channel(values: torch.Tensor, active: torch.Tensor, neutral: float) -> torch.Tensor:
            return torch.where(active[:, None], values.view(b, c), neutral).to(dev, dtype).view(b, c, 1, 1, 1)

        bias_on = bernoulli(b, self.p_bias if self.bias_field > 0 else 0.0)
        if bias_on.any():
            coeffs = self._bias_coefficients(b * c).view(b, c, *([self.bias_order + 1] * 3))
            coeffs = torch.where(bias_on[:, None, None, None, None], coeffs, 0.0).to(dev, dtype)
            volume = volume * self._bias_field(coeffs, volume.shape[2:]).exp_()
        noise_on = bernoulli(b, self.p_noise if self.noise_std > 0 else 0.0)
        if noise_on.any():
            sigma = per_channel(uniform(b * c, 0.0, self.noise_std), noise_on, 0.0)
            volume = volume + sigma * torch.randn(volume.shape, device=dev, dtype=dtype)
        gamma_on = bernoulli(b, self.p_gamma)
        if gamma_on.any():
            gamma = per_channel(uniform(b * c, *self.gamma), gamma_on, 1.0)
            low = volume.amin(dim=(2, 3, 4), keepdim=True)
            span = (volume.amax(dim=(2, 3, 4), keepdim=True) - low).clamp_min(1e-8)
            volume = low + span * ((volume - low) / span).clamp_(0, 1).pow(gamma)
        return volume

    def _bias_coefficients(self, n: int) -> torch.Tensor:
        k = self.bias_order + 1
        degree = torch.arange(k)
        allowed = (degree[:, None, None] + degree[None, :, None] + degree[None, None, :]) <= self.bias_order
        return uniform(n * k**3, -self.bias_field, self.bias_field).view(n, k, k, k) * allowed

    def _bias_field(self, coeffs: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """(B, C, k, k, k) coefficients -> (B, C, D, H, W) log-field, summed axis by axis (separable)."""
        powers = [
            torch.linspace(-1, 1, n, device=coeffs.device, dtype=coeffs.dtype)[None, :]
            ** torch.arange(self.bias_order + 1, device=coeffs.device)[:, None]
            for n in spatial
        ]  # per axis: (k, n)
        return torch.einsum("bcijk,id,jh,kw->bcdhw", coeffs, *powers)

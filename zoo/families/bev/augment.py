"""Multi-camera rigs for BEV perception: one BEV-space transform for extrinsics, points and labels.

A BEV augmentation (BEVDet's "BDA") rotates / flips / scales the ego frame. The images stay as
they are; what changes is where the world is: ego points, the BEV label map, and the
camera-to-ego transforms that tie pixels to ego space. Kornia has no notion of a rig, so zoo
composes the transform, updates each piece, and resamples the BEV labels with Kornia's
`warp_affine` (nearest). Per-camera colour jitter is the one image-space change.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from kornia.geometry.transform import warp_affine
from torch import nn

from zoo.augment.color import Jitter, apply_color_twist, jitter_strengths, sample_color_twist
from zoo.augment.rng import Seed, bernoulli, seeded, uniform
from zoo.utils import check_tensor

BevRange = tuple[tuple[float, float], tuple[float, float]]


class RigBatch(NamedTuple):
    """A multi-camera batch after :class:`RigAugment`; `ego_transform` is the T that was applied."""

    images: torch.Tensor  # (B, N, 3, H, W)
    intrinsics: torch.Tensor  # (B, N, 3, 3)
    cam_to_ego: torch.Tensor  # (B, N, 4, 4)
    bev_labels: torch.Tensor  # (B, X, Y)
    points: torch.Tensor | None  # (B, M, 3)
    ego_transform: torch.Tensor  # (B, 4, 4)


class RigAugment(nn.Module):
    r"""BEV-space rotation / flip / scale for multi-camera batches, plus per-camera colour jitter.

    Conventions. Ego frame: x forward, y left, z up (metres). A BEV map (B, X, Y) has rows along
    x and columns along y: cell (i, j) covers
    :math:`x \in [x_{min} + i\,\Delta x, x_{min} + (i + 1)\,\Delta x)` and likewise j for y,
    with :math:`\Delta x = (x_{max} - x_{min}) / X`; row 0 is the rearmost, column 0 the
    rightmost. `cam_to_ego` maps camera coordinates (OpenCV: x right, y down, z forward) to ego
    coordinates, and a pixel is :math:`u \sim K\,[\,I \mid 0\,]\,E^{-1} p` for an ego point p.

    Per sample, with :math:`\theta \sim U(-r, r)`, a y-flip :math:`f = \pm 1` (flip_p) and
    :math:`s \sim U(\text{scale})`:

    .. math::
        T = \begin{bmatrix} s\, R_z(\theta)\, \mathrm{diag}(1, f, 1) & 0 \\ 0 & 1 \end{bmatrix},\qquad
        p' = T p,\qquad E' = T E,\qquad L'(q) = L(T^{-1} q)

    so every pixel still sees the same scene point: :math:`E'^{-1} p' = E^{-1} p`, and the
    intrinsics do not change. :math:`E'` is a similarity (a reflection when flipped), no longer
    a rigid transform: invert it with `torch.linalg.inv`, not with a transpose. The scale
    resizes the whole ego world, cameras' positions included (a world s times larger seen
    through the same images). BEV cells whose pre-image lies outside `bev_range` get
    `label_fill`. Box yaws and sizes are not handled; transform them with `ego_transform`.

    In eval mode (`.eval()`) the batch passes through unchanged (with T = identity).

    Args:
        rotate_degrees: maximum rotation about ego z, in degrees.
        flip_p: probability of mirroring the y (left-right) axis.
        scale: range of the isotropic scale.
        photometric: per-camera colour jitter.
        color_jitter: strengths, as in :class:`ClassificationAugment`.
        bev_range: ((x_min, x_max), (y_min, y_max)) in metres covered by the BEV map.
        label_fill: label of BEV cells from outside the map.

    Shapes:
        - images: :math:`(B, N, 3, H, W)` float in [0, 1]
        - intrinsics: :math:`(B, N, 3, 3)`; cam_to_ego: :math:`(B, N, 4, 4)`
        - bev_labels: :math:`(B, X, Y)`, an integer dtype
        - points: :math:`(B, M, 3)` ego coordinates (optional)
        - output: :class:`RigBatch` with the same shapes, plus ego_transform :math:`(B, 4, 4)`
    """

    def __init__(
        self,
        rotate_degrees: float = 22.5,
        flip_p: float = 0.5,
        scale: tuple[float, float] = (0.95, 1.05),
        photometric: bool = True,
        color_jitter: Jitter = (0.3, 0.3, 0.3, 0.05),
        bev_range: BevRange = ((-25.0, 25.0), (-25.0, 25.0)),
        label_fill: int = 0,
    ) -> None:
        super().__init__()
        self.rotate_radians = math.radians(rotate_degrees)
        self.flip_p = flip_p
        self.scale = tuple(scale)
        self.jitter = jitter_strengths(color_jitter) if photometric else (0.0, 0.0, 0.0, 0.0)
        self.bev_range = tuple(tuple(float(v) for v in axis) for axis in bev_range)
        self.label_fill = label_fill

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        bev_labels: torch.Tensor,
        points: torch.Tensor | None = None,
        generator: Seed = None,
    ) -> RigBatch:
        check_tensor(images, "images", ("B", "N", 3, "H", "W"), owner="RigAugment")
        b, n = images.shape[:2]
        check_tensor(intrinsics, "intrinsics", (b, n, 3, 3), owner="RigAugment")
        check_tensor(cam_to_ego, "cam_to_ego", (b, n, 4, 4), owner="RigAugment")
        check_tensor(bev_labels, "bev_labels", (b, "X", "Y"), dtype="int", owner="RigAugment")
        if points is not None:
            check_tensor(points, "points", (b, "M", 3), owner="RigAugment")
        if not self.training:
            eye = torch.eye(4, device=cam_to_ego.device, dtype=cam_to_ego.dtype).expand(b, 4, 4)
            return RigBatch(images, intrinsics, cam_to_ego, bev_labels, points, eye)
        with seeded(generator, images.device):
            transform = self.sample_transform(b)  # on CPU: the BEV pixel matrix is derived there too
            if any(self.jitter):
                flat = images.flatten(0, 1)
                twist = sample_color_twist(flat.mean(dim=(2, 3)), self.jitter)
                images = apply_color_twist(flat, *twist).view(images.shape)
        bev_labels = self._warp_bev(bev_labels, transform)
        transform = transform.to(cam_to_ego.device, cam_to_ego.dtype)
        cam_to_ego = transform[:, None] @ cam_to_ego
        if points is not None:
            points = points @ transform[:, :3, :3].transpose(1, 2).to(points.dtype)
        return RigBatch(images, intrinsics, cam_to_ego, bev_labels, points, transform)

    def sample_transform(self, batch: int) -> torch.Tensor:
        """Draw T: (B, 4, 4) ego-to-ego maps, rotation about z times y-flip times isotropic scale."""
        angle = uniform(batch, -self.rotate_radians, self.rotate_radians)
        flip = torch.where(bernoulli(batch, self.flip_p), -1.0, 1.0)
        scale = uniform(batch, *self.scale)
        cos, sin = angle.cos() * scale, angle.sin() * scale
        transform = torch.eye(4).repeat(batch, 1, 1)
        # s R_z(theta) diag(1, f, 1): the flip negates the y column.
        transform[:, 0, 0], transform[:, 0, 1] = cos, -sin * flip
        transform[:, 1, 0], transform[:, 1, 1] = sin, cos * flip
        transform[:, 2, 2] = scale
        return transform

    def cell_to_ego(self, shape: tuple[int, int]) -> torch.Tensor:
        """(3, 3) map from Kornia pixel coordinates (column j, row i, 1) of cell centres to (x, y, 1)."""
        (x_min, x_max), (y_min, y_max) = self.bev_range
        dx, dy = (x_max - x_min) / shape[0], (y_max - y_min) / shape[1]
        return torch.tensor([[0.0, dx, x_min + dx / 2], [dy, 0.0, y_min + dy / 2], [0.0, 0.0, 1.0]])

    def _warp_bev(self, labels: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
        b, x, y = labels.shape
        to_ego = self.cell_to_ego((x, y))
        planar = torch.eye(3).repeat(b, 1, 1)
        planar[:, :2, :2] = transform[:, :2, :2]  # T acts on (x, y) alone: no z mixing
        pixel_matrix = (torch.linalg.inv(to_ego) @ planar @ to_ego).to(labels.device)  # source -> output cell
        # Shift so that zero padding lands on label_fill; float32 is exact for labels below 2^24.
        shifted = (labels - self.label_fill).float()[:, None]
        warped = warp_affine(shifted, pixel_matrix[:, :2], (x, y), mode="nearest", align_corners=True)
        return warped[:, 0].round_().to(labels.dtype) + self.label_fill

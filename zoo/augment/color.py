"""Colour jitter as one 3x3 matrix + offset per image (a "colour twist", as NVIDIA DALI does it).

Brightness, contrast, saturation and hue are each affine in RGB when hue is rotated in YIQ space
rather than through HSV, so the four jitters in a random order compose into one affine map per
image: one batched pass over the pixels instead of four (plus two colour-space conversions).
Two approximations against torchvision's `ColorJitter`: hue turns about the YIQ luma axis
instead of shifting HSV hue, and values are clamped to [0, 1] once at the end instead of after
every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from zoo.augment.rng import uniform

_GRAY = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)

Jitter = float | Sequence[float]


def jitter_strengths(color_jitter: Jitter) -> tuple[float, float, float, float]:
    """(brightness, contrast, saturation, hue) from a float (timm: hue 0) or a 4-sequence."""
    values = (color_jitter,) * 3 + (0.0,) if isinstance(color_jitter, (int, float)) else tuple(color_jitter)
    if len(values) != 4 or min(values) < 0 or values[3] > 0.5:
        raise ValueError(
            "color_jitter must be a float or (brightness, contrast, saturation, hue) >= 0 with hue <= 0.5, "
            f"got {color_jitter!r}"
        )
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """(B,) angles in radians -> (B, 3, 3) RGB matrices turning chroma about the luma axis."""
    cos, sin = angle.cos(), angle.sin()
    rot = angle.new_zeros(len(angle), 3, 3)
    rot[:, 0, 0] = 1
    # This sense of rotation turns red towards green for a positive angle, as torchvision's hue shift.
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, sin, -sin, cos
    return _YIQ_TO_RGB.to(angle) @ rot @ _RGB_TO_YIQ.to(angle)


def sample_color_twist(
    mean_rgb: torch.Tensor, strengths: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Sample a colour jitter per image and return it as :math:`x \mapsto A x + t`.

    Factors follow torchvision: brightness, contrast and saturation factors are drawn from
    :math:`U[\max(0, 1 - s), 1 + s]`, the hue shift from :math:`U[-h, h]` turns; the four are
    applied in a random order per image. Contrast blends towards the mean grey of the image at
    that point of the chain, known in closed form from `mean_rgb` because every step is affine.

    Args:
        mean_rgb: mean colour of each image before jitter, on the batch's device.
        strengths: (brightness, contrast, saturation, hue) from :func:`jitter_strengths`.

    Shapes:
        - mean_rgb: :math:`(B, 3)`
        - output: A :math:`(B, 3, 3)`, t :math:`(B, 3)`
    """
    b, device = len(mean_rgb), mean_rgb.device
    brightness, contrast, saturation, hue = strengths
    # Draws on CPU (the global RNG every sampler shares), arithmetic on the batch's device: no sync.
    draws = torch.stack(
        (
            uniform(b, max(0.0, 1 - brightness), 1 + brightness),
            uniform(b, max(0.0, 1 - contrast), 1 + contrast),
            uniform(b, max(0.0, 1 - saturation), 1 + saturation),
            uniform(b, -hue, hue) * 2 * math.pi,
        ),
        dim=1,
    )
    order = torch.rand(b, 4).argsort(dim=1).to(device)  # a random permutation per image
    f_bright, f_contrast, f_sat, angle = draws.to(device, mean_rgb.dtype)[:, :, None, None].unbind(1)
    gray, eye = _GRAY.to(device, mean_rgb.dtype), torch.eye(3, device=device, dtype=mean_rgb.dtype)
    to_gray = gray.expand(3, 3)  # each row holds the luma weights: x -> grey(x) in every channel
    # Matrices of the four steps; contrast's offset depends on the running mean, added below.
    steps = torch.stack(
        (
            f_bright * eye,
            f_contrast * eye,
            f_sat * eye + (1 - f_sat) * to_gray,
            _hue_rotation(angle[:, 0, 0]),
        ),
        dim=1,
    )
    rows = torch.arange(b, device=device)
    a, t = eye.expand(b, 3, 3), mean_rgb.new_zeros(b, 3)
    for position in range(4):
        op = order[:, position]
        step = steps[rows, op]
        grey = ((a @ mean_rgb[:, :, None]).squeeze(-1) + t) @ gray  # the image's mean grey so far, (B,)
        offset = torch.where(op == 1, (1 - f_contrast[:, 0, 0]) * grey, 0.0)  # contrast: + (1 - f) grey
        a, t = step @ a, (step @ t[:, :, None]).squeeze(-1) + offset[:, None]
    return a, t


def apply_color_twist(x: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """clamp(A x + t, 0, 1) per pixel of each image.

    Shapes:
        - x: :math:`(B, 3, H, W)`; a: :math:`(B, 3, 3)`; t: :math:`(B, 3)`
        - output: :math:`(B, 3, H, W)`
    """
    a, t = a.to(x.dtype), t.to(x.dtype)
    # einsum lowers to one bmm over the flattened pixels, much faster than three broadcast multiply-adds.
    return torch.einsum("bij,bjhw->bihw", a, x).add_(t[:, :, None, None]).clamp_(0.0, 1.0)

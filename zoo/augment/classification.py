"""Image classification augmentation on whole batches: random resized crop, flip, colour jitter, normalise.

The training path is fused for speed (see tests/benchmarks/bench_augment.py): the crop, the resize
and the flip of every image are one axis-aligned grid and one `grid_sample` call for the batch;
the colour jitter is one 3x3 matrix per image (zoo.augment.color), into which the 1/255 of uint8
input folds. Kornia's RandomResizedCrop + RandomHorizontalFlip + ColorJitter + Normalize do the
same work in separate passes (hue through HSV) and run about 10x slower on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.augment.color import Jitter, apply_color_twist, jitter_strengths, sample_color_twist
from zoo.augment.rng import Seed, bernoulli, seeded, uniform

_MODES = ("bilinear", "bicubic", "nearest")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def sample_resized_crops(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    attempts: int = 10,
) -> torch.Tensor:
    """Crop boxes as torchvision's RandomResizedCrop draws them, for a whole batch at once.

    Up to `attempts` (area fraction, log aspect ratio) draws per image; the first that fits wins,
    else a centre crop with the aspect ratio clamped into `ratio`.

    Shapes:
        - output: :math:`(B, 4)` as (top, left, crop height, crop width) in whole pixels, on CPU
    """
    area = height * width * uniform(batch * attempts, *scale).view(batch, attempts)
    log_ratio = uniform(batch * attempts, math.log(ratio[0]), math.log(ratio[1])).view(batch, attempts)
    aspect = log_ratio.exp()
    crop_w = (area * aspect).sqrt().round()
    crop_h = (area / aspect).sqrt().round()
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = fits.float().argmax(dim=1)  # index of the first fitting attempt (0 when none fits)
    rows = torch.arange(batch)
    crop_h, crop_w, found = crop_h[rows, first], crop_w[rows, first], fits.any(dim=1)

    # Fallback for images no draw fitted: the largest centred crop with a clamped aspect ratio.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback = (round(width / ratio[0]), width)
    elif in_ratio > ratio[1]:
        fallback = (height, round(height * ratio[1]))
    else:
        fallback = (height, width)
    crop_h = torch.where(found, crop_h, float(fallback[0]))
    crop_w = torch.where(found, crop_w, float(fallback[1]))
    top = torch.where(
        found, (torch.rand(batch) * (height - crop_h + 1)).floor(), ((height - crop_h) / 2).round()
    )
    left = torch.where(
        found, (torch.rand(batch) * (width - crop_w + 1)).floor(), ((width - crop_w) / 2).round()
    )
    return torch.stack((top, left, crop_h, crop_w), dim=1)


def crop_grid(
    boxes: torch.Tensor, flip: torch.Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> torch.Tensor:
    """The `grid_sample` grid (align_corners=False) that resizes each box to out_hw, mirrored where `flip`.

    The map is axis-aligned, so x depends only on the column and y only on the row: the grid is
    built from two small vectors instead of a batched matrix product over every pixel.

    Shapes:
        - boxes: :math:`(B, 4)` (top, left, height, width); flip: :math:`(B,)` bool
        - output: :math:`(B, h, w, 2)`
    """
    (in_h, in_w), (out_h, out_w) = in_hw, out_hw
    top, left, crop_h, crop_w = boxes.unbind(1)
    u = (torch.arange(out_w, dtype=boxes.dtype, device=boxes.device) + 0.5) / out_w  # pixel centres in (0, 1)
    v = (torch.arange(out_h, dtype=boxes.dtype, device=boxes.device) + 0.5) / out_h
    u = torch.where(flip[:, None], 1 - u, u)
    gx = 2 * (left[:, None] + u * crop_w[:, None]) / in_w - 1  # (B, w) in grid_sample's [-1, 1]
    gy = 2 * (top[:, None] + v * crop_h[:, None]) / in_h - 1  # (B, h)
    return torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)


TTA_KINDS = ("flip", "shift")


def tta_views(images: torch.Tensor, kinds: Sequence[str]) -> list[torch.Tensor]:
    """Test-time augmentation: the views of a batch whose predictions are averaged.

    "shift" adds the batch moved by one pixel up, down, left and right (zero fill, as training's
    pad-and-crop translation); "flip" adds the mirror image of every view so far. Both give 10
    views; the first view is always the batch itself.

    Shapes:
        - images: :math:`(B, C, H, W)`, any dtype (uint8 before normalisation keeps the zero fill black)
        - output: a list of :math:`(B, C, H, W)`
    """
    unknown = [k for k in kinds if k not in TTA_KINDS]
    if unknown:
        raise ValueError(f"unknown test-time augmentation {unknown}; choose from {', '.join(TTA_KINDS)}")
    views = [images]
    if "shift" in kinds:
        h, w = images.shape[-2:]
        padded = F.pad(images, (1, 1, 1, 1))
        views += [padded[..., 1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]
                  for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    if "flip" in kinds:
        views += [view.flip(-1) for view in views]
    return views


class ClassificationAugment(nn.Module):
    r"""Classification pre-processing for whole batches on their own device.

    Train: random resized crop (torchvision's sampling of boxes; resampled without antialiasing,
    as GPU pipelines do), horizontal flip, colour jitter (3-channel images only), normalise.
    Eval: resize so the image covers size / crop_pct (antialiased when shrinking), centre crop to
    `size`, normalise; deterministic.

    .. math::
        y = \big(\mathrm{clamp}(A\, \mathrm{crop}(x) + t, 0, 1) - \mu\big) / \sigma

    `.train()` / `.eval()` switch between the two, like dropout; `train` sets the starting mode.
    Randomness comes from torch's global RNG, or from `generator` for one call (zoo.augment.rng).

    Args:
        size: output (h, w), or an int for a square.
        mean: per-channel mean, in [0, 1] units.
        std: per-channel standard deviation.
        train: start in training mode.
        scale: range of the crop's area fraction.
        ratio: range of the crop's aspect ratio (width / height).
        hflip: mirror half of the images.
        color_jitter: float (brightness = contrast = saturation, no hue, as timm) or
            (brightness, contrast, saturation, hue); 0 disables. See zoo.augment.color.
        interpolation: "bilinear", "bicubic" or "nearest".
        crop_pct: eval centre-crop fraction (timm's 0.875 for ImageNet); 1.0 keeps the whole image.

    Shapes:
        - images: :math:`(B, C, H, W)`, float in [0, 1] or uint8 in [0, 255]
        - output: :math:`(B, C, h, w)` float32, normalised
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        size: int | Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = True,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        color_jitter: Jitter = 0.0,
        interpolation: str = "bilinear",
        crop_pct: float = 1.0,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {len(mean)} and {len(std)}")
        if interpolation not in _MODES:
            raise ValueError(f"interpolation must be one of {', '.join(_MODES)}, got {interpolation!r}")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.size = _pair(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.hflip = hflip
        self.jitter = jitter_strengths(color_jitter)
        self.interpolation = interpolation
        self.crop_pct = crop_pct
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.train(train)

    @classmethod
    def from_spec(cls, input_spec: Mapping[str, Any], train: bool, **overrides: Any) -> ClassificationAugment:
        """Build from a weight card's input spec, e.g. {"size": [28, 28], "channels": 1, "mean": [0.286],
        "std": [0.353], "interpolation": "bilinear"}; "crop_pct" is read when present. `overrides` are
        constructor arguments (a recipe's augment section)."""
        missing = [key for key in ("size", "mean", "std") if key not in input_spec]
        if missing:
            raise ValueError(f"input_spec lacks {', '.join(missing)}; got keys {sorted(input_spec)}")
        channels = input_spec.get("channels", len(input_spec["mean"]))
        if len(input_spec["mean"]) != channels:
            raise ValueError(f"input_spec has {channels} channels but {len(input_spec['mean'])} mean values")
        spec_args = {"interpolation": input_spec.get("interpolation", "bilinear")}
        if "crop_pct" in input_spec:
            spec_args["crop_pct"] = input_spec["crop_pct"]
        return cls(
            input_spec["size"], input_spec["mean"], input_spec["std"], train=train, **spec_args | overrides
        )

    def forward(self, images: torch.Tensor, generator: Seed = None,
                size: int | Sequence[int] | None = None) -> torch.Tensor:
        """`size` overrides the training crops' output size for this call (progressive resizing)."""
        channels = self.mean.shape[1]
        if images.ndim != 4 or images.shape[1] != channels:
            raise ValueError(
                f"ClassificationAugment expects images of shape (B, {channels}, H, W), "
                f"got {tuple(images.shape)}"
            )
        if not (images.is_floating_point() or images.dtype == torch.uint8):
            raise ValueError(f"ClassificationAugment expects float or uint8 images, got {images.dtype}")
        # uint8 is scaled by 1/255 inside the later affine steps rather than in a pass of its own.
        value_scale = 1 / 255 if images.dtype == torch.uint8 else 1.0
        x = images.float()
        if not self.training:
            out = self._resize_centre_crop(x)
            # Normalise in place only into a buffer of our own, never into (a view of) the caller's images.
            shared = out.untyped_storage().data_ptr() == images.untyped_storage().data_ptr()
            return self._normalise(out, value_scale, inplace=not shared)
        with seeded(generator, x.device):
            return self._train(x, value_scale, self.size if size is None else _pair(size))

    def _train(self, x: torch.Tensor, value_scale: float, size: tuple[int, int]) -> torch.Tensor:
        b, c, h, w = x.shape
        boxes = sample_resized_crops(b, h, w, self.scale, self.ratio)
        flip = bernoulli(b, 0.5 if self.hflip else 0.0)
        grid = crop_grid(boxes.to(x.device), flip.to(x.device), (h, w), size)
        out = F.grid_sample(x, grid, mode=self.interpolation, padding_mode="border", align_corners=False)
        if c == 3 and any(self.jitter):
            # Contrast needs each image's mean colour; the uint8 scale folds into the colour matrix.
            a, t = sample_color_twist(out.mean(dim=(2, 3)) * value_scale, self.jitter)
            out, value_scale = apply_color_twist(out, a * value_scale, t), 1.0
        return self._normalise(out, value_scale, inplace=True)

    def _resize_centre_crop(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (out_h, out_w) = x.shape[-2:], self.size
        factor = max(out_h / self.crop_pct / h, out_w / self.crop_pct / w)
        new_h, new_w = max(out_h, round(h * factor)), max(out_w, round(w * factor))
        if (new_h, new_w) != (h, w):
            antialias = self.interpolation != "nearest" and factor < 1
            x = F.interpolate(
                x,
                size=(new_h, new_w),
                mode=self.interpolation,
                antialias=antialias,
                align_corners=None if self.interpolation == "nearest" else False,
            )
        top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
        return x[:, :, top : top + out_h, left : left + out_w]

    def _normalise(self, x: torch.Tensor, value_scale: float, inplace: bool) -> torch.Tensor:
        # (x * value_scale - mean) / std as one multiply and one subtract; in place where allowed,
        # since a fresh batch-sized buffer costs more (page faults) than the arithmetic on CPU.
        gain, shift = value_scale / self.std, self.mean / self.std
        return x.mul_(gain).sub_(shift) if inplace else x * gain - shift

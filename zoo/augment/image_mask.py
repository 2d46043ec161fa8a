"""Images with integer label masks (segmentation), augmented together by Kornia's AugmentationSequential."""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import nn

from zoo.augment.checks import label_map_with_channel
from zoo.augment.color import Jitter, jitter_strengths
from zoo.augment.rng import Seed, seeded


class ImageMaskAugment(nn.Module):
    r"""The same random geometry for images (bilinear) and label masks (nearest), colour for images only.

    Geometry, in order: random resized crop to `size` (if given), random affine (rotation,
    translation, scale; with probability `p_affine`), horizontal / vertical flips. Colour jitter
    acts on the images alone. Labels stay integer and within the input's label set plus
    `mask_fill`, which marks pixels that came from outside the image (rotations, translations).

    Kornia's :class:`~kornia.augmentation.AugmentationSequential` samples one set of parameters
    and applies it to both data keys, resampling masks with nearest. In eval mode (`.eval()`)
    the batch passes through unchanged.

    Args:
        size: output (h, w) of the random resized crop, or an int for a square; None: no crop.
        scale: range of the crop's area fraction.
        ratio: range of the crop's aspect ratio.
        degrees: rotation range (-degrees, degrees); 0 with no translate/affine_scale: no affine.
        translate: maximum shift as a fraction of (width, height).
        affine_scale: range of the affine zoom factor.
        p_affine: probability of the affine per image.
        hflip: mirror left-right with probability 0.5.
        vflip: mirror top-bottom with probability 0.5.
        color_jitter: as in :class:`ClassificationAugment`; needs 3-channel images.
        mask_fill: label given to pixels from outside the image (e.g. 255 or -100 for "ignore").

    Shapes:
        - images: :math:`(B, C, H, W)` float
        - masks: :math:`(B, H, W)` or :math:`(B, 1, H, W)`, an integer dtype
        - output: images :math:`(B, C, h, w)`, masks of the input's layout and dtype at :math:`(h, w)`
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        degrees: float = 0.0,
        translate: tuple[float, float] | None = None,
        affine_scale: tuple[float, float] | None = None,
        p_affine: float = 0.5,
        hflip: bool = True,
        vflip: bool = False,
        color_jitter: Jitter = 0.0,
        mask_fill: int = 0,
    ) -> None:
        super().__init__()
        ops: list[nn.Module] = []
        if size is not None:
            hw = (size, size) if isinstance(size, int) else tuple(size)
            # "resample" warps the whole batch at once instead of slicing image by image.
            ops.append(K.RandomResizedCrop(hw, scale=scale, ratio=ratio, cropping_mode="resample"))
        if degrees or translate is not None or affine_scale is not None:
            ops.append(K.RandomAffine(degrees, translate=translate, scale=affine_scale, p=p_affine))
        if hflip:
            ops.append(K.RandomHorizontalFlip())
        if vflip:
            ops.append(K.RandomVerticalFlip())
        jitter = jitter_strengths(color_jitter)
        if any(jitter):
            ops.append(K.ColorJitter(*jitter, p=1.0))
        self.mask_fill = mask_fill
        self.pipeline = K.AugmentationSequential(*ops, data_keys=["input", "mask"]) if ops else None

    def forward(
        self, images: torch.Tensor, masks: torch.Tensor, generator: Seed = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"ImageMaskAugment expects float images of shape (B, C, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        b, _, h, w = images.shape
        labels = label_map_with_channel("ImageMaskAugment", "masks", masks, b, (h, w))
        if not self.training or self.pipeline is None:
            return images, masks
        with seeded(generator, images.device):
            # Labels minus the fill value make Kornia's zero padding land on `mask_fill` once added
            # back; float32 holds every integer label below 2^24 exactly.
            out, warped = self.pipeline(images, (labels - self.mask_fill).float())
        labels = warped.round_().to(masks.dtype) + self.mask_fill
        return out, labels.view(b, *([1] if masks.ndim == 4 else []), *labels.shape[-2:])

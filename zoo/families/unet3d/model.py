"""3D U-Net (Çiçek et al. 2016) for volumetric segmentation, with nnU-Net/MONAI habits.

    import zoo
    model = zoo.create("unet3d", pretrained=True)          # MNI152 tissue model (2 mm, T1w)
    logits = model(x)                                       # (B, C, D, H, W) -> (B, K, D, H, W)
    labels = model.segment(volume, overlap=0.5)             # any size: Gaussian-blended sliding window

The file reads top to bottom: the double convolution of each level, the upsampling step, the
network, the sliding-window inference it uses for whole volumes, and the registered builder.
Every convolution is `zoo.blocks.ConvNormAct(spatial_dims=3)`, so norm and activation are names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks import ConvNormAct
from zoo.registry import register_model
from zoo.utils import check_tensor

UPSAMPLE_MODES = ("transposed", "trilinear")


def _triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    out = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(out) != 3 or not all(isinstance(v, int) and v > 0 for v in out):
        raise ValueError(f"unet3d: {name} must be a positive int or three positive ints, got {value!r}")
    return out  # type: ignore[return-value]


class DoubleConv(nn.Sequential):
    r"""Two 3x3x3 convolutions, each followed by norm and activation: one level of the U-Net.

    Args:
        in_ch: C_in.
        out_ch: C_out.
        norm: "instance" | "batch" | "group" | ... (a `zoo.blocks.get_norm` name).
        act: "leaky_relu" | "relu" | ... (a `zoo.blocks.get_act` name).

    Shapes:
        - input: :math:`(B, C_{in}, D, H, W)`
        - output: :math:`(B, C_{out}, D, H, W)`
    """

    def __init__(self, in_ch: int, out_ch: int, norm: str, act: str) -> None:
        super().__init__(ConvNormAct(in_ch, out_ch, 3, 1, spatial_dims=3, norm=norm, act=act),
                         ConvNormAct(out_ch, out_ch, 3, 1, spatial_dims=3, norm=norm, act=act))


def up_block(in_ch: int, out_ch: int, mode: str) -> nn.Module:
    """Double the resolution and map in_ch -> out_ch channels.

    "transposed" learns the upsampling (Çiçek et al.); "trilinear" interpolates, then a 1x1x1
    convolution mixes channels (no checkerboard artefacts, fewer parameters).
    """
    if mode == "transposed":
        return nn.ConvTranspose3d(in_ch, out_ch, kernel_size=2, stride=2)
    if mode == "trilinear":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                             nn.Conv3d(in_ch, out_ch, kernel_size=1))
    raise ValueError(f"unet3d: unknown upsample {mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}")


class UNet3D(nn.Module):
    r"""Encoder-decoder with skip connections over 3D volumes.

    Level i (0 = full resolution) has `widths[i]` channels; the encoder halves the resolution with
    2x2x2 max-pooling between levels, the decoder doubles it back and concatenates the encoder's
    features of the same level before its double convolution. A 1x1x1 head gives class logits.
    With `deep_supervision`, 1x1x1 heads on the coarser decoder levels give auxiliary logits
    (nnU-Net) that `forward(x, return_aux=True)` returns for the loss; plain `forward(x)` is
    unchanged.

    Args:
        in_chans: C, input channels (modalities).
        num_classes: K, output classes (background included).
        widths: channels per level; its length is the depth (number of resolutions).
        norm: normalisation name ("instance", "batch", "group", ...).
        act: activation name ("leaky_relu", "relu", ...).
        upsample: "transposed" or "trilinear".
        deep_supervision: add auxiliary heads on the coarser decoder levels.
        patch_size: the training patch, also the default tile of :meth:`segment`.

    Shapes:
        - input: :math:`(B, C, D, H, W)` with D, H, W divisible by :math:`2^{\text{depth}-1}`
        - output: :math:`(B, K, D, H, W)`; with return_aux, also a list of
          :math:`(B, K, D/2^i, H/2^i, W/2^i)` for :math:`i = 1 \dots \text{depth}-2`
    """

    first_conv = "encoders.0.0.conv"  # zoo.create adapts it for another number of modalities
    classifier = ("head", "aux_heads")  # re-initialised for another number of classes

    def __init__(self, in_chans: int = 1, num_classes: int = 3, widths: Sequence[int] = (16, 32, 64, 128),
                 norm: str = "instance", act: str = "leaky_relu", upsample: str = "transposed",
                 deep_supervision: bool = False, patch_size: int | Sequence[int] = 64) -> None:
        super().__init__()
        widths = list(widths)
        if len(widths) < 2 or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(f"unet3d: widths must list at least two positive ints (one per level), got {widths}")
        if in_chans < 1 or num_classes < 2:
            raise ValueError(f"unet3d: need in_chans >= 1 and num_classes >= 2, got {in_chans} and {num_classes}")
        self.in_chans, self.num_classes, self.widths = in_chans, num_classes, widths
        self.deep_supervision = deep_supervision
        self.patch_size = _triple(patch_size, "patch_size")
        self.divisor = 2 ** (len(widths) - 1)
        if any(p % self.divisor for p in self.patch_size):
            raise ValueError(f"unet3d: patch_size {self.patch_size} must be divisible by {self.divisor} "
                             f"(2 ** (depth - 1) for {len(widths)} levels)")
        self.encoders = nn.ModuleList(
            DoubleConv(c_in, c_out, norm, act) for c_in, c_out in zip([in_chans] + widths[:-1], widths))
        self.pool = nn.MaxPool3d(2)
        # decoder modules run from the deepest level up: ups[0] maps widths[-1] -> widths[-2]
        rev = widths[::-1]
        self.ups = nn.ModuleList(up_block(c_deep, c_skip, upsample) for c_deep, c_skip in zip(rev, rev[1:]))
        self.decoders = nn.ModuleList(DoubleConv(2 * c, c, norm, act) for c in rev[1:])
        self.head = nn.Conv3d(widths[0], num_classes, kernel_size=1)
        # one auxiliary head per decoder level coarser than the output, finest first
        self.aux_heads = nn.ModuleList(
            nn.Conv3d(c, num_classes, kernel_size=1) for c in widths[1:-1]) if deep_supervision else None

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        x = check_tensor(x, "x", ("B", self.in_chans, "D", "H", "W"), owner="unet3d", like=self)
        if any(s % self.divisor for s in x.shape[2:]):
            raise ValueError(f"unet3d expects D, H, W divisible by {self.divisor}, got {tuple(x.shape[2:])}; "
                             "use model.segment(volume) for volumes of any size")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        decoded = []
        for up, dec in zip(self.ups, self.decoders):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
            decoded.append(x)
        logits = self.head(x)
        if not return_aux:
            return logits
        if self.aux_heads is None:
            return logits, []
        coarse = decoded[-2::-1]  # decoder outputs from half resolution down to the coarsest decoder level
        return logits, [head(f) for head, f in zip(self.aux_heads, coarse)]

    def example_inputs(self, batch_size: int = 2) -> tuple:
        side = 2 * self.divisor
        return (torch.randn(batch_size, self.in_chans, side, side, side),)

    @torch.no_grad()
    def segment(self, volume: torch.Tensor, patch_size: int | Sequence[int] | None = None, overlap: float = 0.5,
                sw_batch_size: int = 4, sigma_scale: float = 0.125, return_probs: bool = False) -> torch.Tensor:
        """Segment a volume of any size with overlapping tiles; see :func:`sliding_window_segment`."""
        return sliding_window_segment(self, volume, patch_size or self.patch_size, overlap=overlap,
                                      sw_batch_size=sw_batch_size, sigma_scale=sigma_scale,
                                      return_probs=return_probs)


# --------------------------------------------------------------------------- sliding-window inference


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Per-voxel tile weights: a Gaussian centred on the tile, sigma = sigma_scale * side (nnU-Net).

    Tile borders see the least context, so their predictions count least where tiles overlap.
    The minimum is clamped so that voxels covered only by tile borders still get a weight.
    """
    axes = []
    for p in patch_size:
        c = (torch.arange(p, dtype=torch.float32) - (p - 1) / 2) / (sigma_scale * p)
        axes.append(torch.exp(-0.5 * c * c))
    g = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    g /= g.max()
    return g.clamp_min_(1e-4)


def tile_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of tiles along one axis: evenly spread, consecutive tiles overlap >= `overlap`."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    n = math.ceil((size - patch) / step) + 1
    return [round(i * (size - patch) / (n - 1)) for i in range(n)]


def sliding_window_segment(model: nn.Module, volume: torch.Tensor, patch_size: int | Sequence[int],
                           overlap: float = 0.5, sw_batch_size: int = 4, sigma_scale: float = 0.125,
                           return_probs: bool = False) -> torch.Tensor:
    """Sliding-window inference with Gaussian blending whose memory is bounded by the tile batch.

    Tiles of `patch_size` cover the volume with at least `overlap` overlap; `sw_batch_size` of them
    at a time are cut out, moved to the model's device, run, turned into softmax probabilities,
    weighted by :func:`gaussian_importance` and added into one output buffer on the volume's
    device. No list of tiles or tile outputs is ever built, so peak memory is the output buffer
    (K floats per voxel), a weight map (one float per voxel) and one tile batch. Volumes smaller
    than a tile are zero-padded (zero is "outside the scan" after zoo's intensity normalisation).
    The model runs in eval mode and is put back in its previous mode afterwards.

    Args:
        model: a network mapping (B, C, *patch) to (B, K, *patch) logits.
        volume: the image, (C, D, H, W) or (B, C, D, H, W), floating point.
        patch_size: tile side(s), each divisible by the model's downsampling factor.
        overlap: fraction in [0, 1) that neighbouring tiles share.
        sw_batch_size: tiles per forward pass (the memory knob).
        sigma_scale: Gaussian sigma as a fraction of the tile side.
        return_probs: return blended probabilities instead of labels.

    Returns:
        labels (B, D, H, W) int64 (or (D, H, W) for an unbatched volume), or probabilities
        (B, K, D, H, W) float32 (or (K, D, H, W)) with `return_probs`.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"segment: overlap must be in [0, 1), got {overlap}")
    if sw_batch_size < 1:
        raise ValueError(f"segment: sw_batch_size must be >= 1, got {sw_batch_size}")
    unbatched = isinstance(volume, torch.Tensor) and volume.ndim == 4
    x = volume[None] if unbatched else volume
    x = check_tensor(x, "volume", ("B", "C", "D", "H", "W"), owner="segment")
    patch = _triple(patch_size, "patch_size")
    divisor = getattr(model, "divisor", 1)
    if any(p % divisor for p in patch):
        raise ValueError(f"segment: patch_size {patch} must be divisible by the model's factor {divisor}")
    size = tuple(x.shape[2:])
    pad = [max(0, p - s) for p, s in zip(patch, size)]
    if any(pad):
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
    full = tuple(x.shape[2:])
    model_device = next(model.parameters()).device
    weight = gaussian_importance(patch, sigma_scale)
    starts = [tile_starts(s, p, overlap) for s, p in zip(full, patch)]
    corners = [(z, y, w) for z in starts[0] for y in starts[1] for w in starts[2]]
    tiles = [(b, *corner) for b in range(x.shape[0]) for corner in corners]
    # the sum of tile weights at each voxel, shared by every volume of the batch
    norm = torch.zeros(full, dtype=torch.float32, device=x.device)
    local_weight = weight.to(x.device)
    for z, y, w in corners:
        norm[z:z + patch[0], y:y + patch[1], w:w + patch[2]] += local_weight
    out: torch.Tensor | None = None  # (B, K, *full), allocated once the first tile batch tells K
    was_training = model.training
    model.eval()
    try:
        gpu_weight = weight.to(model_device)
        for first in range(0, len(tiles), sw_batch_size):
            batch = tiles[first:first + sw_batch_size]
            inp = torch.stack([x[b, :, z:z + patch[0], y:y + patch[1], w:w + patch[2]] for b, z, y, w in batch])
            probs = torch.softmax(model(inp.to(model_device)).float(), dim=1) * gpu_weight
            probs = probs.to(x.device)
            if out is None:
                out = torch.zeros((x.shape[0], probs.shape[1], *full), dtype=torch.float32, device=x.device)
            for p, (b, z, y, w) in zip(probs, batch):
                out[b, :, z:z + patch[0], y:y + patch[1], w:w + patch[2]] += p
    finally:
        model.train(was_training)
    assert out is not None
    out /= norm  # in place: no second buffer
    out = out[:, :, :size[0], :size[1], :size[2]]
    result = out if return_probs else out.argmax(dim=1)
    return result[0] if unbatched else result


# --------------------------------------------------------------------------- builder


register_model("unet3d", task="volume_segmentation", default_tag="unet3d.mni152_tissue",
               input_spec={"channels": 1, "layout": "(B, C, D, H, W)",
                           "normalisation": "per-channel z-score over non-zero voxels, zeros kept"},
               description="3D U-Net (Çiçek 2016) with sliding-window `segment()`; configurable depth, widths, "
                           "norm, upsampling.")(UNet3D)

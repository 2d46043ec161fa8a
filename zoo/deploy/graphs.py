"""What each family exports: the module, its example inputs, input/output names and the batch axis.

`graph_spec(model)` returns a :class:`GraphSpec` for any zoo model. Most families export their
`forward` as it is; four need a thin wrapper that keeps the graph to what ONNX and torch.export express:

- patchcore: the memory-bank nearest neighbour as one matmul + TopK (no faiss, no chunked Python
  loop), the paper's reweighting, the upsampled and smoothed anomaly map and the image score, all
  inside the graph. Input is fixed at the model's `image_size` (the antialiased resize of other sizes
  stays outside). Written against the model's public attributes (`embed`, `memory_bank`,
  `num_neighbors`, `image_size`, `sigma`, `feature_dim`, `peak`) so internal rewrites do not break it.
- nerf: the field only, (points, view directions) -> (density, colour); ray marching, the occupancy
  grid and compositing stay in Python (they are data-dependent loops).
- bev: the dict output becomes a tuple (seg, centre, bev[, depth]); the temporal input is left out.
- gcn: node features and the edge list in, logits out; N and E are both dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GraphSpec:
    module: nn.Module                  # what is exported (the model itself or a wrapper)
    example_inputs: callable           # batch_size -> tuple of tensors
    input_names: list[str]
    output_names: list[str]
    dynamic: dict[str, dict[int, str]]  # input name -> {axis: symbolic name}; the batch-like axes
    notes: list[str] = field(default_factory=list)  # what stays outside the graph, and why
    reference: callable | None = None  # the model's own outputs as a tuple (default: module's forward)
    min_opset: int = 1                 # the lowest ONNX opset that expresses every op of the graph
    min_opset_why: str = ""
    dict_outputs: bool = False         # the model's forward returns a dict keyed by output_names
    whole_model: bool = True           # False: the graph is a part of the model (nerf's field), not its forward


class PatchCoreGraph(nn.Module):
    """PatchCore scoring as a static graph: features -> matmul + TopK -> map and score (see module doc)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from zoo.families.patchcore.model import _gaussian_blur  # the model's own smoothing, so the maps agree

        self.model, self.blur = model, _gaussian_blur

    def forward(self, images: torch.Tensor):
        m = self.model
        feats, (h, w) = m.embed(images)
        b = images.shape[0]
        bank = m.memory_bank.float()
        flat = feats.reshape(-1, m.feature_dim).float()
        d2 = (flat * flat).sum(1, keepdim=True) - 2.0 * flat @ bank.T + (bank * bank).sum(1)
        d2, nn_idx = d2.topk(1, dim=1, largest=False)
        patch = d2.clamp_min(0).sqrt().view(b, h * w)
        worst = patch.argmax(1, keepdim=True)                                              # p*: (B, 1)
        p_star = flat.view(b, h * w, -1).gather(1, worst[..., None].expand(-1, -1, flat.shape[1]))[:, 0]
        m_star = bank[nn_idx.view(b, h * w).gather(1, worst)[:, 0]]                        # (B, D)
        k = min(m.num_neighbors, len(bank))
        dm = (m_star * m_star).sum(1, keepdim=True) - 2.0 * m_star @ bank.T + (bank * bank).sum(1)
        support = dm.topk(k, dim=1, largest=False).indices                                 # N_b(m*)
        d_support = torch.linalg.vector_norm(p_star[:, None] - bank[support], dim=-1)
        weight = 1.0 - torch.softmax(d_support, 1)[:, 0]
        amap = F.interpolate(patch.view(b, 1, h, w), size=(m.image_size, m.image_size), mode="bilinear",
                             align_corners=False)
        amap = self.blur(amap, m.sigma)
        return weight * m.peak(amap), amap[:, 0]


class NerfField(nn.Module):
    """The field of `nerf` (Instant-NGP): points (K, 3), unit view directions (K, 3) -> sigma (K,), rgb (K, 3)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from zoo.blocks import HashEncoding

        self.model = model
        # the plain block's forward: same table, hash and blend as the model's fused CPU kernel
        self.encode = lambda x: HashEncoding.forward(model.encoding, x)

    def forward(self, points: torch.Tensor, dirs: torch.Tensor):
        from zoo.families.nerf.model import spherical_harmonics

        h = self.model.density_net(self.encode(points))
        rgb = self.model.colour_net(torch.cat((h, spherical_harmonics(dirs)), -1))
        return torch.exp(h[:, 0]), rgb


class BEVGraph(nn.Module):
    """A bev model with its dict output as a tuple in a fixed order (one frame, no previous BEV)."""

    def __init__(self, model: nn.Module, keys: list[str]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor):
        out = self.model(images, intrinsics, cam_to_ego)
        return tuple(out[k] for k in self.keys)


def _field_points(model, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch_size)
    points = (torch.rand(batch_size, 3, generator=g) * 2 - 1) * model.bound
    return points, F.normalize(torch.randn(batch_size, 3, generator=g), dim=-1)


def _rig_inputs(model, batch_size: int) -> tuple:
    """Random images on zoo's six-camera rig at the size the bev weights were trained at."""
    from zoo.families.bev.data import make_rig

    k, e = make_rig(model.image_size)
    expand = (batch_size, -1, -1, -1)
    images = torch.rand(batch_size, len(k), 3, *model.image_size)
    return images, torch.from_numpy(k).expand(*expand).contiguous(), torch.from_numpy(e).expand(*expand).contiguous()


def _field_reference(model, points, dirs):
    """The field through the model's own code path (fused hash encoding, truncated exp)."""
    from zoo.families.nerf.model import spherical_harmonics

    sigma, h = model.density(points)
    return sigma, model.colour_net(torch.cat((h, spherical_harmonics(dirs)), -1))


def graph_spec(model: nn.Module) -> GraphSpec:
    """The exportable graph of a zoo model (see the module docstring for the families that need care)."""
    model = model.eval()
    name = type(model).__name__
    batch = {0: "batch"}
    if name == "PatchCore":
        size = model.image_size
        return GraphSpec(PatchCoreGraph(model), lambda b: (torch.rand(b, 3, size, size),), ["images"],
                         ["score", "anomaly_map"], {"images": batch},
                         [f"input fixed at {size}x{size}: resize other sizes before the graph"],
                         reference=lambda x: tuple(model(x)[k] for k in ("score", "anomaly_map")), dict_outputs=True)
    if name == "HashNeRF":
        return GraphSpec(NerfField(model), lambda b: _field_points(model, b), ["points", "dirs"], ["sigma", "rgb"],
                         {"points": {0: "samples"}, "dirs": {0: "samples"}},
                         ["field only: ray marching, occupancy grid and compositing stay in Python "
                          "(zoo.families.nerf.model.HashNeRF.render_rays)"],
                         reference=lambda p, d: _field_reference(model, p, d), whole_model=False)
    if name in ("GCN", "DAGNN"):
        return GraphSpec(model, model.example_inputs, ["x", "edge_index"], ["logits"],
                         {"x": {0: "nodes"}, "edge_index": {1: "edges"}})
    if name in ("BEVFormer", "LiftSplat"):
        keys = ["seg", "centre", "bev"] + (["depth"] if getattr(model, "depth_head", True) is not None else [])
        return GraphSpec(BEVGraph(model, keys), lambda b: _rig_inputs(model, b), ["images", "intrinsics", "cam_to_ego"],
                         keys, {"images": batch, "intrinsics": batch, "cam_to_ego": batch},
                         ["no temporal input (prev_bev): each export runs one frame"],
                         min_opset=16, min_opset_why="grid_sample (ONNX GridSample) exists from opset 16",
                         dict_outputs=True)
    if name == "UNet3D":
        side = model.patch_size
        return GraphSpec(model, lambda b: (torch.randn(b, model.in_chans, *side),), ["x"], ["logits"],
                         {"x": batch}, [f"input fixed at the training patch {list(side)}; "
                                        "whole volumes go through sliding-window tiles outside the graph"])
    if name == "QNetwork":
        return GraphSpec(model, model.example_inputs, ["obs"], ["q_values"], {"obs": batch})
    if name == "CNN":
        return GraphSpec(model, model.example_inputs, ["x"], ["logits"], {"x": batch})
    if hasattr(model, "example_inputs"):  # any other registered model: its forward, batch axis 0
        n = len(model.example_inputs(1))
        names = [f"input_{i}" for i in range(n)]
        return GraphSpec(model, model.example_inputs, names, ["output"], {k: batch for k in names})
    raise ValueError(f"zoo.deploy: {name} has no example_inputs(batch_size): cannot tell what to export")

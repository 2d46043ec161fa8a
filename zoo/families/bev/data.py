"""Multi-camera BEV data: a procedural driving world, a JSON layout for your own rigs, a nuScenes adapter.

Conventions (the same as `zoo.families.bev.augment.RigAugment` and `zoo.families.bev.model`):
  ego frame    x forward, y left, z up, metres; the ground is the plane z = 0.
  camera       OpenCV: x right, y down, z forward. `cam_to_ego` (4x4) maps camera to ego
               coordinates; a pixel is u ~ K [I | 0] cam_to_ego^-1 p. Pixel (row i, column j)
               covers u in [j, j + 1), v in [i, i + 1), so its centre is (j + 0.5, i + 0.5).
  BEV grid     (X, Y) cells; row i along x (row 0 the rearmost), column j along y (column 0 the
               rightmost); cell (i, j) covers x in [x_min + i dx, x_min + (i + 1) dx) and likewise y.
  labels       a (X, Y) integer map: 0 background, k = 1..K the k-th class of `CLASSES`.
  boxes        (M, 8) rows [x, y, z, length, width, height, yaw, class] with (x, y, z) the centre of
               the box in ego coordinates, yaw about z, class 1..K; padding rows have class -1.

The world (`generate_scenes`): six pinhole cameras on a car in nuScenes' layout (front, front-left,
front-right, back-left, back-right at 70 degrees horizontal field of view, a 110 degree back camera),
with a little per-scene jitter of their poses; a textured road (asphalt, lane marks, grass verges);
vehicles (about 4.5 x 1.9 x 1.6 m) mostly along the road, pedestrians (0.6 x 0.6 x 1.7 m) mostly
beside it. Every pixel's ray is intersected with the ground and with every box (vectorised slab
test in torch), shaded, supersampled and averaged. A box is labelled only when at least
`min_visible_px` of its pixels are seen by the cameras (nuScenes' visibility filter in spirit), counted
in pixels of a 64 x 112 image: the same solid angle, so the same boxes, at any image size;
it then marks every BEV cell it covers by half or more, and at least the cell holding its centre.

Generated scenes are cached in `cache_dir()` (~/.cache/zoo/bev_scenes, or $ZOO_CACHE/bev_scenes; never the
read-only data root), keyed by every generator parameter and the seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.utils import atomic_path, read_json_listing
from zoo.utils import cache_dir as _cache_dir

CLASSES = ["vehicle", "pedestrian"]
CAMERAS = ["front", "front_left", "front_right", "back_left", "back_right", "back"]
# nuScenes-like mounting: (x, y, z) in metres from the rear axle, yaw in degrees, horizontal FOV in degrees.
RIG = {
    "front": ((1.70, 0.00, 1.55), 0.0, 70.0),
    "front_left": ((1.55, 0.50, 1.55), 55.0, 70.0),
    "front_right": ((1.55, -0.50, 1.55), -55.0, 70.0),
    "back_left": ((1.05, 0.50, 1.55), 110.0, 70.0),
    "back_right": ((1.05, -0.50, 1.55), -110.0, 70.0),
    "back": ((0.00, 0.00, 1.55), 180.0, 110.0),
}
VEHICLE_SIZE = (4.5, 1.9, 1.6)
PEDESTRIAN_SIZE = (0.6, 0.6, 1.7)
# A forward-looking level camera: columns are the camera's right (-y), down (-z), forward (+x) in ego axes.
_CAM_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
VISIBILITY_SIZE = (64, 112)  # the image size at which min_visible_px is counted
_GENERATOR_VERSION = 3  # bump when the renderer changes, so that old caches are not reused
DEPTH_STRIDE = 4  # depth maps are stored at 1/4 of the image resolution
SKY_DEPTH = 1000.0  # depth of rays that hit nothing (0 means "unknown" in depth maps)


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of the procedural world; every field is part of the cache key.

    Args:
        image_size: (H, W) of each camera image.
        x_range, y_range: metres covered by the BEV grid along ego x and y.
        grid: (X, Y) BEV cells.
        vehicles, pedestrians: (min, max) objects per scene (uniform).
        supersample: rays per pixel along each axis (averaged: anti-aliasing).
        rig_jitter: per-scene camera pose noise (degrees of yaw/pitch/roll; 0 for the exact rig).
        noise: std of per-pixel Gaussian noise on [0, 1] colours.
        min_visible_px: pixels a box must cover in the cameras to be labelled, at the reference image size
            `VISIBILITY_SIZE` (64 x 112; scaled by image area at other sizes, i.e. a fixed solid angle).
    """

    image_size: tuple[int, int] = (64, 112)
    x_range: tuple[float, float] = (-25.0, 25.0)
    y_range: tuple[float, float] = (-25.0, 25.0)
    grid: tuple[int, int] = (50, 50)
    vehicles: tuple[int, int] = (4, 14)
    pedestrians: tuple[int, int] = (0, 8)
    supersample: int = 2
    rig_jitter: float = 1.0
    noise: float = 0.02
    min_visible_px: float = 3.0

    def key(self, seed: int, n: int) -> str:
        text = json.dumps({**asdict(self), "seed": seed, "n": n, "version": _GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- geometry


def rotation_zyx(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R_z(yaw) R_y(pitch) R_x(roll), angles in radians (pitch > 0 tilts the x axis down)."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


def make_rig(image_size: tuple[int, int], rng: np.random.Generator | None = None,
             jitter_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics (6, 3, 3) and cam_to_ego (6, 4, 4) of the nuScenes-like rig, in `CAMERAS` order."""
    h, w = image_size
    intrinsics, extrinsics = [], []
    for name in CAMERAS:
        (x, y, z), yaw, hfov = RIG[name]
        f = (w / 2) / math.tan(math.radians(hfov) / 2)
        intrinsics.append([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
        noise = rng.uniform(-jitter_deg, jitter_deg, 3) if rng is not None and jitter_deg else np.zeros(3)
        rot = rotation_zyx(*np.radians([yaw + noise[0], noise[1], noise[2]])) @ _CAM_AXES
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, (x, y, z)
        extrinsics.append(pose)
    return np.array(intrinsics, dtype=np.float32), np.array(extrinsics, dtype=np.float32)


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(M, 8) boxes -> (M, 8, 3) corners in ego coordinates (bottom face first, then top)."""
    sx = torch.tensor([1, 1, -1, -1, 1, 1, -1, -1], dtype=boxes.dtype) * 0.5
    sy = torch.tensor([1, -1, -1, 1, 1, -1, -1, 1], dtype=boxes.dtype) * 0.5
    sz = torch.tensor([-1, -1, -1, -1, 1, 1, 1, 1], dtype=boxes.dtype) * 0.5
    lx, ly, lz = boxes[:, 3:4] * sx, boxes[:, 4:5] * sy, boxes[:, 5:6] * sz
    c, s = boxes[:, 6:7].cos(), boxes[:, 6:7].sin()
    return torch.stack((boxes[:, 0:1] + c * lx - s * ly, boxes[:, 1:2] + s * lx + c * ly, boxes[:, 2:3] + lz), -1)


def cell_centres(cfg: WorldConfig, supersample: int = 1) -> torch.Tensor:
    """(X * s, Y * s, 2) ego (x, y) of BEV (sub-)cell centres."""
    (x0, x1), (y0, y1), (nx, ny) = cfg.x_range, cfg.y_range, cfg.grid
    xs = x0 + (torch.arange(nx * supersample) + 0.5) * (x1 - x0) / (nx * supersample)
    ys = y0 + (torch.arange(ny * supersample) + 0.5) * (y1 - y0) / (ny * supersample)
    return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1)


def rasterize(boxes: torch.Tensor, cfg: WorldConfig, supersample: int = 3) -> torch.Tensor:
    """(X, Y) uint8 labels: a box marks the cells it covers by >= 1/2, and the cell holding its centre."""
    nx, ny = cfg.grid
    labels = torch.zeros(nx, ny, dtype=torch.uint8)
    boxes = boxes[boxes[:, 7] > 0]
    if not len(boxes):
        return labels
    pts = cell_centres(cfg, supersample).reshape(-1, 2)
    rel = pts[:, None, :] - boxes[None, :, :2]  # (P, M, 2)
    c, s = boxes[:, 6].cos(), boxes[:, 6].sin()
    along, across = rel[..., 0] * c + rel[..., 1] * s, -rel[..., 0] * s + rel[..., 1] * c
    inside = (along.abs() <= boxes[:, 3] / 2) & (across.abs() <= boxes[:, 4] / 2)  # (P, M)
    cover = inside.float().view(nx, supersample, ny, supersample, -1).mean((1, 3))  # (X, Y, M)
    best, which = cover.max(-1)
    labels[best >= 0.5] = boxes[which[best >= 0.5], 7].to(torch.uint8)
    (x0, x1), (y0, y1) = cfg.x_range, cfg.y_range
    i = ((boxes[:, 0] - x0) / (x1 - x0) * nx).floor().long()
    j = ((boxes[:, 1] - y0) / (y1 - y0) * ny).floor().long()
    ok = (i >= 0) & (i < nx) & (j >= 0) & (j < ny)
    labels[i[ok], j[ok]] = boxes[ok, 7].to(torch.uint8)
    return labels


# --------------------------------------------------------------------------- the world


def sample_objects(rng: np.random.Generator, cfg: WorldConfig, road: dict) -> np.ndarray:
    """(M, 8) non-overlapping boxes: vehicles mostly in lanes along the road, pedestrians mostly beside it."""
    (x0, x1), (y0, y1) = cfg.x_range, cfg.y_range
    wanted = [(1, rng.integers(cfg.vehicles[0], cfg.vehicles[1] + 1)),
              (2, rng.integers(cfg.pedestrians[0], cfg.pedestrians[1] + 1))]
    placed: list[list[float]] = []
    ca, sa = math.cos(road["angle"]), math.sin(road["angle"])
    for cls, count in wanted:
        base = VEHICLE_SIZE if cls == 1 else PEDESTRIAN_SIZE
        for _ in range(count):
            for _attempt in range(20):
                size = np.array(base) * rng.uniform(0.85, 1.15, 3)
                along = rng.uniform(-35, 35)
                on_road = rng.random() < (0.75 if cls == 1 else 0.2)
                if on_road:  # in a lane, heading along it either way
                    lane = rng.integers(-2, 2) + 0.5
                    across = road["offset"] + lane * 3.5 + rng.normal(0, 0.3)
                    yaw = road["angle"] + rng.choice([0.0, math.pi]) + rng.normal(0, 0.08)
                else:  # parked or walking beside the road, any heading
                    side = rng.choice([-1.0, 1.0])
                    across = road["offset"] + side * rng.uniform(road["half_width"] + 0.5, 20)
                    yaw = rng.uniform(-math.pi, math.pi)
                x, y = ca * along - sa * across, sa * along + ca * across
                if not (x0 - 2 < x < x1 + 2 and y0 - 2 < y < y1 + 2):
                    continue
                radius = math.hypot(size[0], size[1]) / 2
                if abs(x - 1.0) < 3.5 + radius * 0.5 and abs(y) < 1.5 + radius:  # the ego car
                    continue
                if any(math.hypot(x - p[0], y - p[1]) < radius + p[8] + 0.3 for p in placed):
                    continue
                placed.append([x, y, size[2] / 2, *size, yaw, cls, radius])
                break
    if not placed:
        return np.zeros((0, 8), dtype=np.float32)
    return np.array(placed, dtype=np.float32)[:, :8]


def _ground_colour(x: torch.Tensor, y: torch.Tensor, road: dict) -> torch.Tensor:
    """(R, 3) colour of the ground at ego (x, y): asphalt with dashed lane marks, grass verges."""
    ca, sa = math.cos(road["angle"]), math.sin(road["angle"])
    along, across = ca * x + sa * y, -sa * x + ca * y - road["offset"]
    grain = sum(a * torch.sin(fx * x + fy * y + ph) for a, fx, fy, ph in road["waves"])
    asphalt = road["asphalt"] + 0.04 * grain
    rel = across / 3.5
    mark = ((rel - rel.round()).abs() * 3.5 < 0.08) & (rel.round().abs() <= 1) & ((along % 6.0) < 3.0)
    edge = ((across.abs() - road["half_width"]).abs() < 0.1)
    grey = torch.where(mark | edge, torch.full_like(asphalt, 0.85), asphalt)
    road_rgb = grey[:, None] * torch.tensor([1.0, 1.0, 1.02])
    grass = road["grass"] * (1 + 0.15 * grain)[:, None]
    return torch.where((across.abs() < road["half_width"])[:, None], road_rgb, grass)


def _in_view(corners: torch.Tensor, k: torch.Tensor, pose: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(M,) bool: boxes (given by corners (M, 8, 3)) that may show in this camera (conservative)."""
    cam = (corners - pose[:3, 3]) @ pose[:3, :3]  # ego -> camera (the pose's rotation is orthonormal)
    front = cam[..., 2] > 0.1
    uv = cam[..., :2] / cam[..., 2:].clamp(min=0.1) * k.diagonal()[:2] + k[:2, 2]
    lo = torch.where(front[..., None], uv, torch.full_like(uv, 1e9)).min(1).values
    hi = torch.where(front[..., None], uv, torch.full_like(uv, -1e9)).max(1).values
    straddles = front.any(1) & ~front.all(1)  # crosses the camera plane: may cover any part of the image
    overlaps = (lo[:, 0] < size[1]) & (hi[:, 0] > 0) & (lo[:, 1] < size[0]) & (hi[:, 1] > 0)
    return front.any(1) & (overlaps | straddles)


def render(boxes: np.ndarray, colours: np.ndarray, intrinsics: np.ndarray, cam_to_ego: np.ndarray,
           road: dict, cfg: WorldConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray-cast one scene into every camera.

    Returns:
        images (N, 3, H, W) float in [0, 1] (before noise), visible (M,) pixels of each box, and
        depth (N, ceil(H / 4), ceil(W / 4)): per 4x4 pixel block, the depth (along the optical axis) of the
        nearest surface any of its rays hits; SKY_DEPTH where every ray sees the sky.
    """
    h, w = cfg.image_size
    ss = cfg.supersample
    all_boxes = torch.from_numpy(boxes)
    all_colours = torch.from_numpy(colours)
    # Boxes grown by the shadow's reach decide which boxes a camera needs to test at all.
    grown = all_boxes.clone()
    grown[:, 3:5] += 1.0
    corners = box_corners(grown)
    sun = torch.tensor(road["sun"])
    v, u = torch.meshgrid((torch.arange(h * ss) + 0.5) / ss, (torch.arange(w * ss) + 0.5) / ss, indexing="ij")
    images, depths, visible = [], [], torch.zeros(len(all_boxes))
    for k, pose in zip(torch.from_numpy(intrinsics), torch.from_numpy(cam_to_ego)):
        d_cam = torch.stack(((u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)), -1).view(-1, 3)
        d = d_cam @ pose[:3, :3].T  # ray directions in ego coordinates (not unit length: t is depth)
        origin = pose[:3, 3]
        t_ground = torch.where(d[:, 2] < -1e-6, -origin[2] / d[:, 2].clamp(max=-1e-6), torch.full_like(d[:, 0], 1e9))
        # Sky: a gradient from haze at the horizon to blue overhead.
        up = (d[:, 2:3] / d.norm(dim=-1, keepdim=True)).clamp(min=0)
        colour = torch.tensor([0.75, 0.82, 0.9]) - up * torch.tensor([0.4, 0.3, 0.0])
        hit_ground = t_ground < 1e8
        gp = origin + t_ground[hit_ground, None] * d[hit_ground]
        ground = _ground_colour(gp[:, 0], gp[:, 1], road)
        idx = _in_view(corners, k, pose, (h, w)).nonzero()[:, 0]
        bx = all_boxes[idx]
        centre, half = bx[:, :3], bx[:, 3:6] / 2
        cz, sz = bx[:, 6].cos(), bx[:, 6].sin()
        if len(idx):  # soft shadows: darken the ground within about 0.5 m of each footprint
            rx, ry = gp[:, None, 0] - centre[:, 0], gp[:, None, 1] - centre[:, 1]  # (R, M)
            gap_x = ((rx * cz + ry * sz).abs() - half[:, 0]).clamp(min=0)
            gap_y = ((-rx * sz + ry * cz).abs() - half[:, 1]).clamp(min=0)
            near = (1 - (gap_x + gap_y) / 0.5).clamp(min=0).max(-1).values
            ground = ground * (1 - 0.55 * near)[:, None]
        colour[hit_ground] = ground
        if len(idx):  # slab test in each box's own axes (boxes only turn about z)
            ox, oy = origin[0] - centre[:, 0], origin[1] - centre[:, 1]
            o_local = torch.stack((ox * cz + oy * sz, -ox * sz + oy * cz, origin[2] - centre[:, 2]), -1)  # (M, 3)
            d_local = torch.stack((d[:, None, 0] * cz + d[:, None, 1] * sz, -d[:, None, 0] * sz + d[:, None, 1] * cz,
                                   d[:, None, 2].expand(-1, len(idx))), -1)  # (R, M, 3)
            inv = 1.0 / torch.where(d_local.abs() < 1e-9, torch.full_like(d_local, 1e-9), d_local)
            t1, t2 = (-half - o_local) * inv, (half - o_local) * inv
            t_near, axis = torch.minimum(t1, t2).max(-1)
            hit = (torch.maximum(t1, t2).min(-1).values >= t_near) & (t_near > 0)
            t_best, which = torch.where(hit, t_near, torch.full_like(t_near, 1e9)).min(-1)
            r = (t_best < t_ground).nonzero()[:, 0]
            b, ax = which[r], axis[r, which[r]]
            sign = -torch.sign(d_local[r, b, ax])  # the face normal points back towards the camera
            n_local = F.one_hot(ax, 3).float() * sign[:, None]
            normal = torch.stack((n_local[:, 0] * cz[b] - n_local[:, 1] * sz[b],
                                  n_local[:, 0] * sz[b] + n_local[:, 1] * cz[b], n_local[:, 2]), -1)
            shade = 0.45 + 0.55 * (normal @ sun).clamp(min=0)
            height = o_local[b, 2] + t_best[r] * d_local[r, b, 2] + half[b, 2]  # above the box's bottom
            frac = height / (2 * half[b, 2])
            base = all_colours[idx][b]
            # Vehicles: dark windows on the upper sides; pedestrians: darker legs.
            is_vehicle = bx[b, 7] == 1
            window = is_vehicle & (ax != 2) & (frac > 0.55) & (frac < 0.92)
            base = torch.where(window[:, None], torch.tensor([0.12, 0.14, 0.18]), base)
            base = torch.where((~is_vehicle & (frac < 0.45))[:, None], base * 0.45, base)
            colour[r] = (base * shade[:, None]).clamp(0, 1)
            visible.index_add_(0, idx[b], torch.full((len(b),), 1.0 / ss**2))
            t_ground = torch.minimum(t_ground, t_best)
        img = colour.view(h * ss, w * ss, 3).permute(2, 0, 1)
        images.append(F.avg_pool2d(img[None], ss)[0] if ss > 1 else img)
        # Rays have unit z in camera coordinates, so the hit distance t is the depth.
        nearest = -F.max_pool2d(-t_ground.view(1, h * ss, w * ss), DEPTH_STRIDE * ss, ceil_mode=True)[0]
        depths.append(nearest.clamp(max=SKY_DEPTH))
    return torch.stack(images), visible, torch.stack(depths)


def _scene(seed: int, index: int, cfg: WorldConfig) -> dict:
    rng = np.random.default_rng([seed, index])
    intrinsics, cam_to_ego = make_rig(cfg.image_size, rng, cfg.rig_jitter)
    sun = np.array([*rng.normal(0, 1, 2), 1.5])
    road = {"angle": float(rng.normal(0, 0.15)), "offset": float(rng.uniform(-4, 4)),
            "half_width": float(rng.uniform(7.5, 9.5)), "asphalt": float(rng.uniform(0.28, 0.45)),
            "grass": torch.tensor(rng.uniform([0.2, 0.35, 0.12], [0.35, 0.5, 0.22]), dtype=torch.float32),
            "waves": [tuple(float(v) for v in (rng.uniform(0.3, 1), *rng.normal(0, 1.5, 2), rng.uniform(0, 6.3)))
                      for _ in range(4)],
            "sun": tuple(float(v) for v in sun / np.linalg.norm(sun))}
    boxes = sample_objects(rng, cfg, road)
    vehicle_paint = rng.choice(np.array([[0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.6, 0.6, 0.62], [0.7, 0.1, 0.1],
                                         [0.1, 0.2, 0.6], [0.8, 0.7, 0.2], [0.2, 0.45, 0.25]]), len(boxes))
    clothes = rng.uniform(0.1, 0.9, (len(boxes), 3))
    colours = np.where((boxes[:, 7:8] == 1), vehicle_paint * rng.uniform(0.85, 1.1, (len(boxes), 1)), clothes)
    images, visible, depth = render(boxes, colours.astype(np.float32), intrinsics, cam_to_ego, road, cfg)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**62))))
    images = images + cfg.noise * noise
    boxes = torch.from_numpy(boxes)
    min_px = cfg.min_visible_px * cfg.image_size[0] * cfg.image_size[1] / (VISIBILITY_SIZE[0] * VISIBILITY_SIZE[1])
    boxes = boxes[visible >= min_px] if len(boxes) else boxes
    return {"images": (images.clamp(0, 1) * 255).round().to(torch.uint8), "intrinsics": torch.from_numpy(intrinsics),
            "cam_to_ego": torch.from_numpy(cam_to_ego), "labels": rasterize(boxes, cfg), "boxes": boxes,
            "depth": depth.half()}


def pad_boxes(box_lists: list[torch.Tensor]) -> torch.Tensor:
    """Stack (M_i, 8) box lists into (S, max M, 8), padding rows with class -1."""
    m = max([1] + [len(b) for b in box_lists])
    out = torch.zeros(len(box_lists), m, 8)
    out[:, :, 7] = -1
    for i, b in enumerate(box_lists):
        out[i, :len(b)] = b
    return out


def cache_dir() -> Path:
    """Where generated scenes are cached: `zoo.utils.cache_dir("bev_scenes")`, i.e. `$ZOO_CACHE/bev_scenes`,
    else `~/.cache/zoo/bev_scenes` (else a temp folder). Never the data root (`ZOO_DATA`), which is read-only input."""
    return _cache_dir("bev_scenes")


def generate_scenes(n: int, seed: int, cfg: WorldConfig = WorldConfig(), cache: bool = True) -> dict:
    """`n` scenes drawn from `seed` (scene i depends only on (seed, i)), cached on disk.

    Returns:
        dict of images (n, 6, 3, H, W) uint8, intrinsics (n, 6, 3, 3), cam_to_ego (n, 6, 4, 4),
        labels (n, X, Y) uint8, boxes (n, M, 8) (padding rows have class -1), depth
        (n, 6, ceil(H / 4), ceil(W / 4)) float16 (see `render`).
    """
    path = cache_dir() / f"scenes-{cfg.key(seed, n)}.pt" if cache else None
    if path is not None and path.is_file():
        return torch.load(path, weights_only=True)
    with torch.inference_mode():
        scenes = [_scene(seed, i, cfg) for i in range(n)]
    out = {k: torch.stack([s[k] for s in scenes]) for k in ("images", "intrinsics", "cam_to_ego", "labels", "depth")}
    out["boxes"] = pad_boxes([s["boxes"] for s in scenes])
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(out, tmp)
    return out


# --------------------------------------------------------------------------- your own data: the JSON layout


@dataclass
class JsonLayout:
    """What `read_json` found: the grid and class names the file declares."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    grid: tuple[int, int]
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    cameras: list[str] = field(default_factory=lambda: list(CAMERAS))


def _matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if arr is None or arr.shape != shape or not np.isfinite(arr).all():
        got = np.asarray(value).shape if isinstance(value, list) else type(value).__name__
        raise ValueError(f"{where}: expected a {shape[0]}x{shape[1]} matrix of finite numbers, got {got}")
    return arr


def read_json(path: str | os.PathLike, image_size: tuple[int, int]) -> tuple[dict, JsonLayout]:
    """Read a data set in zoo's BEV JSON layout (see docs/models/bev.md), validating everything first.

    `path` is the JSON file or a folder holding `samples.json`. Images are resized to `image_size`
    (the intrinsics follow). Returns the same dict as `generate_scenes` (boxes from the file's
    optional "boxes", else empty; depth maps are zeros: none) and the declared grid. Errors name the file and the key.
    """
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        path = path / "samples.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected zoo's BEV JSON layout, see docs/models/bev.md)")
    doc = read_json_listing(path, "samples")
    bev = doc.get("bev", {})
    try:
        layout = JsonLayout(tuple(map(float, bev.get("x_range", (-25, 25)))),
                            tuple(map(float, bev.get("y_range", (-25, 25)))),
                            tuple(map(int, bev.get("grid", (50, 50)))), list(doc.get("classes", CLASSES)),
                            list(doc.get("cameras", [])))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: key 'bev' must hold x_range, y_range (two numbers) and grid (two ints): {e}") from e
    if len(layout.x_range) != 2 or len(layout.y_range) != 2 or len(layout.grid) != 2:
        raise ValueError(f"{path}: key 'bev': x_range, y_range and grid need two values each")
    root, h, w = path.parent, *image_size
    n_cams = None
    images, ks, poses, labels, boxes = [], [], [], [], []
    # First pass: structure, matrices and files, so that no image is decoded before everything is known good.
    for i, s in enumerate(doc["samples"]):
        where = f"{path}: samples[{i}]"
        missing = [k for k in ("images", "intrinsics", "cam_to_ego", "bev_label") if k not in s]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        n = len(s["images"]) if isinstance(s["images"], list) else -1
        n_cams = n if n_cams is None else n_cams
        if n < 1 or n != n_cams:
            raise ValueError(f"{where}.images: expected a list of {n_cams or 'N >= 1'} image paths, got {n}")
        for key in ("intrinsics", "cam_to_ego"):
            if not isinstance(s[key], list) or len(s[key]) != n:
                raise ValueError(f"{where}.{key}: expected one matrix per image ({n}), got "
                                 f"{len(s[key]) if isinstance(s[key], list) else type(s[key]).__name__}")
        for c in range(n):
            k = _matrix(s["intrinsics"][c], (3, 3), f"{where}.intrinsics[{c}]")
            if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]):
                raise ValueError(f"{where}.intrinsics[{c}]: expected [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] "
                                 "with fx, fy > 0")
            e = _matrix(s["cam_to_ego"][c], (4, 4), f"{where}.cam_to_ego[{c}]")
            if not np.allclose(e[3], [0, 0, 0, 1]) or abs(np.linalg.det(e[:3, :3])) < 1e-6:
                raise ValueError(f"{where}.cam_to_ego[{c}]: expected an invertible 4x4 pose with last row [0, 0, 0, 1]")
        for key, files in (("images", s["images"]), ("bev_label", [s["bev_label"]])):
            for c, f in enumerate(files):
                if not isinstance(f, str) or not (root / f).is_file():
                    index = f"[{c}]" if key == "images" else ""
                    raise ValueError(f"{where}.{key}{index}: file {root / str(f)} not found")
        if "boxes" in s:
            b = np.asarray(s["boxes"], dtype=np.float64) if isinstance(s["boxes"], list) else None
            if b is None or (b.size and (b.ndim != 2 or b.shape[1] != 8)):
                raise ValueError(f"{where}.boxes: expected a list of [x, y, z, length, width, height, yaw, class] rows")
    for i, s in enumerate(doc["samples"]):
        where = f"{path}: samples[{i}]"
        lab = np.asarray(Image.open(root / s["bev_label"]))
        if lab.shape != layout.grid:
            raise ValueError(f"{where}.bev_label: {root / s['bev_label']} is {lab.shape[0]}x{lab.shape[1]}, the "
                             f"declared bev.grid is {layout.grid[0]}x{layout.grid[1]} (rows along x, columns along y)")
        if lab.max() > len(layout.classes):
            raise ValueError(f"{where}.bev_label: value {lab.max()} but only {len(layout.classes)} classes "
                             f"{layout.classes}")
        labels.append(torch.from_numpy(lab.astype(np.uint8)))
        cams, k_list = [], []
        for c, f in enumerate(s["images"]):
            img = Image.open(root / f).convert("RGB")
            k = np.array(s["intrinsics"][c], dtype=np.float64)
            k[0] *= w / img.width  # resizing scales fx, cx by the width ratio and fy, cy by the height ratio
            k[1] *= h / img.height
            k_list.append(k)
            cams.append(torch.from_numpy(np.array(img.resize((w, h), Image.BILINEAR))).permute(2, 0, 1))
        images.append(torch.stack(cams))
        ks.append(torch.tensor(np.array(k_list), dtype=torch.float32))
        poses.append(torch.tensor(s["cam_to_ego"], dtype=torch.float32))
        boxes.append(torch.tensor(s.get("boxes", []), dtype=torch.float32).reshape(-1, 8))
    data = {"images": torch.stack(images), "intrinsics": torch.stack(ks), "cam_to_ego": torch.stack(poses),
            "labels": torch.stack(labels), "boxes": pad_boxes(boxes)}
    # No depth maps in the layout: zeros mean "no depth target" (the depth loss skips them).
    data["depth"] = torch.zeros(len(images), n_cams, -(-h // DEPTH_STRIDE), -(-w // DEPTH_STRIDE), dtype=torch.float16)
    return data, layout


def write_json(scenes: dict, folder: str | os.PathLike, cfg: WorldConfig = WorldConfig()) -> Path:
    """Write scenes (as `generate_scenes` returns them) in the JSON layout: PNGs + samples.json."""
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    samples = []
    for i in range(len(scenes["images"])):
        paths = []
        for c, name in enumerate(CAMERAS[:scenes["images"].shape[1]]):
            rel = f"images/{i:05d}_{name}.png"
            Image.fromarray(scenes["images"][i, c].permute(1, 2, 0).numpy()).save(folder / rel)
            paths.append(rel)
        Image.fromarray(scenes["labels"][i].numpy()).save(folder / f"labels/{i:05d}.png")
        boxes = scenes["boxes"][i]
        samples.append({"images": paths, "intrinsics": scenes["intrinsics"][i].tolist(),
                        "cam_to_ego": scenes["cam_to_ego"][i].tolist(), "bev_label": f"labels/{i:05d}.png",
                        "boxes": boxes[boxes[:, 7] > 0].tolist()})
    doc = {"bev": {"x_range": list(cfg.x_range), "y_range": list(cfg.y_range), "grid": list(cfg.grid)},
           "classes": CLASSES, "cameras": CAMERAS, "samples": samples}
    out = folder / "samples.json"
    out.write_text(json.dumps(doc))
    return out


# --------------------------------------------------------------------------- nuScenes


def _quat_to_matrix(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


NUSCENES_CAMERAS = ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK_RIGHT", "CAM_BACK"]
NUSCENES_CLASSES = {"vehicle.": 1, "human.pedestrian.": 2}  # category prefixes -> zoo classes


def nuscenes_to_json(nusc, out_folder: str | os.PathLike, cfg: WorldConfig = WorldConfig(),
                     min_visibility: int = 2, limit: int | None = None) -> Path:
    """Convert a loaded nuScenes (`nuscenes.nuscenes.NuScenes`) to zoo's BEV JSON layout.

    Images are referenced in place (absolute paths); boxes of vehicle.* and human.pedestrian.*
    annotations with a visibility level >= `min_visibility` (1..4) are moved into the ego frame of
    the LIDAR_TOP sample (nuScenes' ego: x forward, y left, z up, like zoo's) and rasterised to the
    grid of `cfg`. Only the devkit object is used (`nusc.sample`, `nusc.get`, `nusc.dataroot`).
    """
    from PIL import Image

    out = Path(out_folder)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    samples = []
    for i, sample in enumerate(nusc.sample[:limit]):
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pose = nusc.get("ego_pose", lidar["ego_pose_token"])
        to_ego = _quat_to_matrix(pose["rotation"]).T
        paths, ks, poses = [], [], []
        for cam in NUSCENES_CAMERAS:
            sd = nusc.get("sample_data", sample["data"][cam])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            e = np.eye(4)
            e[:3, :3], e[:3, 3] = _quat_to_matrix(cs["rotation"]), cs["translation"]
            paths.append(str(Path(nusc.dataroot) / sd["filename"]))
            ks.append(np.asarray(cs["camera_intrinsic"]).tolist())
            poses.append(e.tolist())
        boxes = []
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            cls = next((c for p, c in NUSCENES_CLASSES.items() if ann["category_name"].startswith(p)), 0)
            if not cls or int(ann.get("visibility_token") or 4) < min_visibility:
                continue
            centre = to_ego @ (np.asarray(ann["translation"]) - pose["translation"])
            heading = to_ego @ _quat_to_matrix(ann["rotation"])[:, 0]
            w, l, h = ann["size"]  # nuScenes sizes are width, length, height
            boxes.append([*centre, l, w, h, math.atan2(heading[1], heading[0]), cls])
        box_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 8)
        rel = f"labels/{i:06d}.png"
        Image.fromarray(rasterize(box_t, cfg).numpy()).save(out / rel)
        samples.append({"images": paths, "intrinsics": ks, "cam_to_ego": poses, "bev_label": rel,
                        "boxes": box_t.tolist()})
    doc = {"bev": {"x_range": list(cfg.x_range), "y_range": list(cfg.y_range), "grid": list(cfg.grid)},
           "classes": CLASSES, "cameras": NUSCENES_CAMERAS, "samples": samples}
    (out / "samples.json").write_text(json.dumps(doc))
    return out / "samples.json"

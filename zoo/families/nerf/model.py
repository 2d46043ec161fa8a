"""NeRF: radiance fields for novel-view synthesis, the original (Mildenhall et al. 2020) and a fast
hash-grid field in the spirit of Instant-NGP (Müller et al. 2022), both in plain PyTorch.

A radiance field maps a point x and a view direction d to a density sigma(x) and a colour c(x, d).
A pixel's colour is the volume-rendering integral along its camera ray r(t) = o + t d, computed by
alpha compositing samples t_1 < ... < t_K with spacing delta_k:

    alpha_k = 1 - exp(-sigma_k delta_k),   T_k = prod_{j<k} (1 - alpha_j),   w_k = T_k alpha_k
    C = sum_k w_k c_k + (1 - sum_k w_k) * background

Layout: rays and volume rendering shared by both architectures (ray generation from poses and
intrinsics, ray/box intersection, packed compositing), the shared `RadianceField` interface
(`forward` on rays, `render` on camera poses), then `VanillaNeRF`, `HashNeRF` and their builders.
Cameras follow the Blender/OpenGL convention: camera-to-world matrices, the camera looks down -z, y up.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks import FourierFeatures, HashEncoding, Mlp
from zoo.registry import register_model
from zoo.utils import check_tensor

# --------------------------------------------------------------------------- rays


def pixel_rays(c2w: torch.Tensor, intrinsics: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """Rays of pinhole cameras through image points (x, y) in pixels (pixel centres at +0.5).

    Shapes:
        - c2w: (*, 4, 4); intrinsics: (*, 4) as fx, fy, cx, cy; x, y: (*) — all broadcast together
        - returns rays_o, rays_d: (*, 3), directions of unit length
    """
    fx, fy, cx, cy = intrinsics.unbind(-1)
    cam = torch.stack(((x - cx) / fx, -(y - cy) / fy, -torch.ones_like(x - cx)), dim=-1)  # OpenGL: -z forward
    rays_d = F.normalize((c2w[..., :3, :3] @ cam.unsqueeze(-1)).squeeze(-1), dim=-1)
    return c2w[..., :3, 3].expand_as(rays_d), rays_d


def camera_rays(c2w: torch.Tensor, height: int, width: int, focal, center=None):
    """One ray per pixel of (a batch of) pinhole cameras.

    Args:
        c2w: (*, 4, 4) camera-to-world matrices.
        height, width: image size in pixels.
        focal: fx, or (fx, fy), in pixels.
        center: (cx, cy) principal point in pixels; default the image centre.

    Shapes:
        - returns rays_o, rays_d: (*, H, W, 3)
    """
    fx, fy = (focal, focal) if isinstance(focal, (int, float)) else focal
    cx, cy = center if center is not None else (width / 2, height / 2)
    ys, xs = torch.meshgrid(torch.arange(height, device=c2w.device) + 0.5,
                            torch.arange(width, device=c2w.device) + 0.5, indexing="ij")
    intrinsics = torch.tensor([fx, fy, cx, cy], dtype=c2w.dtype, device=c2w.device)
    return pixel_rays(c2w[..., None, None, :, :], intrinsics, xs, ys)


def intersect_box(rays_o: torch.Tensor, rays_d: torch.Tensor, bound: float):
    """Entry and exit distances (N,) of rays through the cube [-bound, bound]^3 (slab method).

    Rays that miss the cube get near >= far; rays starting inside get near = 0.
    """
    safe_d = torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)
    t0, t1 = (-bound - rays_o) / safe_d, (bound - rays_o) / safe_d
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


# --------------------------------------------------------------------------- volume rendering


def _segment_starts(ray_ids: torch.Tensor) -> torch.Tensor:
    """(K,) index of the first sample of each sample's ray, for packed samples sorted by ray."""
    first = torch.ones_like(ray_ids, dtype=torch.bool)
    first[1:] = ray_ids[1:] != ray_ids[:-1]
    positions = torch.arange(len(ray_ids), device=ray_ids.device)
    return torch.where(first, positions, torch.zeros_like(positions)).cummax(0).values


def optical_depth_before(tau: torch.Tensor, ray_ids: torch.Tensor) -> torch.Tensor:
    """(K,) sum of `tau` over the earlier samples of the same ray (packed samples sorted by ray).

    float64: the running total over all rays is large and would swamp one ray's share in float32.
    """
    total = torch.cumsum(tau.double(), 0) - tau.double()
    return total - total[_segment_starts(ray_ids)]


def composite(sigma, rgb, t, delta, ray_ids, num_rays: int, background: torch.Tensor) -> dict:
    """Alpha-composite packed samples into pixels (the module docstring's quadrature).

    Samples of all rays are packed in one list sorted by ray, then by depth, so rays may have any
    number of samples (the hash grid's empty-space skipping leaves most rays with few).

    Args:
        sigma: (K,) densities; rgb: (K, 3) colours; t: (K,) sample depths; delta: (K,) their spacing.
        ray_ids: (K,) long, non-decreasing, the ray of each sample.
        num_rays: N.
        background: (N, 3) colour behind each ray.

    Returns:
        dict with rgb (N, 3), depth (N,) — the expected termination depth of rays that terminate,
        0 where nothing is hit —, opacity (N,) and the per-sample weights (K,).
    """
    tau = sigma * delta
    transmittance = torch.exp(-optical_depth_before(tau, ray_ids)).to(sigma.dtype)
    weights = transmittance * (1 - torch.exp(-tau))
    zeros = sigma.new_zeros(num_rays)
    opacity = zeros.index_add(0, ray_ids, weights)
    colour = sigma.new_zeros(num_rays, 3).index_add(0, ray_ids, weights[:, None] * rgb)
    depth = zeros.index_add(0, ray_ids, weights * t) / opacity.clamp_min(1e-6)
    return {"rgb": colour + (1 - opacity)[:, None] * background, "depth": depth, "opacity": opacity,
            "weights": weights}


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped at exp(15): densities can grow large without exploding gradients."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15))


def spherical_harmonics(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 3 (16 values) of unit directions, Instant-NGP's direction encoding.

    Shapes:
        - d: (*, 3) -> (*, 16)
    """
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x,
        1.0925484305920792 * x * y, -1.0925484305920792 * y * z, 0.94617469575755997 * zz - 0.31539156525251999,
        -1.0925484305920792 * x * z, 0.54627421529603959 * (xx - yy),
        0.59004358992664352 * y * (-3.0 * xx + yy), 2.8906114426405538 * x * y * z,
        0.45704579946446572 * y * (1.0 - 5.0 * zz), 0.3731763325901154 * z * (5.0 * zz - 3.0),
        0.45704579946446572 * x * (1.0 - 5.0 * zz), 1.4453057213202769 * z * (xx - yy),
        0.59004358992664352 * x * (-xx + 3.0 * yy),
    ], dim=-1)


# --------------------------------------------------------------------------- the shared interface


class RadianceField(nn.Module):
    """What both architectures share: rays in, pixels out (`forward`), and `render` for whole cameras.

    Subclasses implement `render_rays(rays_o, rays_d, background) -> dict` on validated inputs and
    set `bound`, the half-size of the cube [-bound, bound]^3 that holds the scene.
    """

    bound: float
    render_chunk: int = 16384  # rays per forward pass in `render` unless given

    def forward(self, rays_o: torch.Tensor, rays_d: torch.Tensor, background=None) -> dict:
        """Render rays.

        Args:
            rays_o: ray origins.
            rays_d: ray directions (normalised here).
            background: colour behind the scene, (3,) or per ray (N, 3); default white.

        Shapes:
            - rays_o, rays_d: (N, 3)
            - returns dict: rgb (N, 3) in [0, 1], depth (N,), opacity (N,), plus model-specific entries
        """
        owner = type(self).__name__
        rays_o = check_tensor(rays_o, "rays_o", ("N", 3), owner=owner, like=self)
        rays_d = check_tensor(rays_d, "rays_d", (rays_o.shape[0], 3), owner=owner, like=self)
        bg = torch.ones(3) if background is None else torch.as_tensor(background, dtype=torch.float32)
        bg = bg.to(rays_o.device, rays_o.dtype).expand(rays_o.shape[0], 3)
        return self.render_rays(rays_o, F.normalize(rays_d, dim=-1), bg)

    def render_rays(self, rays_o: torch.Tensor, rays_d: torch.Tensor, background: torch.Tensor) -> dict:
        raise NotImplementedError

    @torch.no_grad()
    def render(self, c2w, height: int, width: int, focal, background=(1.0, 1.0, 1.0), center=None,
               chunk: int | None = None) -> dict:
        """Render whole images from camera poses, `chunk` rays at a time (bounded memory).

        Args:
            c2w: (4, 4) or (B, 4, 4) camera-to-world matrices (Blender/OpenGL convention).
            height, width: image size in pixels.
            focal: fx, or (fx, fy), in pixels; for a horizontal field of view a, 0.5 W / tan(a / 2).
            background: RGB colour behind the scene.
            center: principal point (cx, cy) in pixels; default the image centre.
            chunk: rays per forward pass; default the model's `render_chunk` (16384 for `nerf`, 1024
                for `nerf_vanilla`, whose 192 samples per ray through 256-wide layers take about 200 MB
                per 1024 rays and layer).

        Shapes:
            - returns dict: rgb (H, W, 3) in [0, 1], depth (H, W), opacity (H, W); (B, ...) for batched poses
        """
        device = next(self.parameters()).device
        c2w = torch.as_tensor(c2w, dtype=torch.float32, device=device)
        if c2w.shape[-2:] != (4, 4) or c2w.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}.render expects c2w of shape (4, 4) or (B, 4, 4), "
                             f"got {tuple(c2w.shape)}")
        rays_o, rays_d = camera_rays(c2w, height, width, focal, center)
        lead = rays_o.shape[:-1]
        rays_o, rays_d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        chunk = chunk or self.render_chunk
        parts = [self(rays_o[i:i + chunk], rays_d[i:i + chunk], background) for i in range(0, len(rays_o), chunk)]
        return {key: torch.cat([p[key] for p in parts]).reshape(*lead, *parts[0][key].shape[1:]).clamp(0, 1)
                if key == "rgb" else torch.cat([p[key] for p in parts]).reshape(lead)
                for key in ("rgb", "depth", "opacity")}

    def example_inputs(self, batch_size: int = 2) -> tuple:
        """Rays from cameras 4 units from the origin, aimed near it (where scenes live)."""
        g = torch.Generator().manual_seed(0)
        angle = torch.rand(batch_size, generator=g) * 2 * math.pi
        rays_o = torch.stack((4 * angle.cos(), 4 * angle.sin(), torch.full_like(angle, 1.0)), -1)
        target = (torch.rand(batch_size, 3, generator=g) - 0.5) * self.bound
        return rays_o, F.normalize(target - rays_o, dim=-1)


# --------------------------------------------------------------------------- vanilla NeRF


class _NeRFMLP(nn.Module):
    """The original 8 x 256 MLP: density from the position, colour from position features and direction."""

    def __init__(self, pos_dim: int, dir_dim: int, width: int, depth: int, skip: int):
        super().__init__()
        self.skip = skip
        dims = [pos_dim] + [width + (pos_dim if i == skip else 0) for i in range(1, depth)]
        self.layers = nn.ModuleList(nn.Linear(d, width) for d in dims)
        self.sigma = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.colour = nn.Sequential(nn.Linear(width + dir_dim, width // 2), nn.ReLU(), nn.Linear(width // 2, 3))

    def forward(self, pos: torch.Tensor, dirs: torch.Tensor):
        h = pos
        for i, layer in enumerate(self.layers):
            if i == self.skip:  # the skip connection re-injects the encoded position halfway
                h = torch.cat((h, pos), -1)
            h = F.relu(layer(h))
        sigma = F.relu(self.sigma(h)).squeeze(-1)
        rgb = torch.sigmoid(self.colour(torch.cat((self.feature(h), dirs), -1)))
        return sigma, rgb


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int, deterministic: bool) -> torch.Tensor:
    """Inverse-transform sampling of `n` depths per ray from piecewise-constant weights (NeRF's fine pass).

    Shapes:
        - bins: (N, S + 1) bin edges; weights: (N, S) -> (N, n)
    """
    pdf = (weights + 1e-5) / (weights + 1e-5).sum(-1, keepdim=True)
    cdf = torch.cat((torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1)), -1)
    if deterministic:
        u = torch.linspace(0.0, 1.0, n, device=bins.device).expand(len(bins), n).contiguous()
    else:
        u = torch.rand(len(bins), n, device=bins.device)
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    lo, hi = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    b_lo, b_hi = bins.gather(-1, idx - 1), bins.gather(-1, idx)
    frac = ((u - lo) / (hi - lo).clamp_min(1e-5)).clamp(0, 1)
    return b_lo + frac * (b_hi - b_lo)


class VanillaNeRF(RadianceField):
    """The original NeRF: Fourier features, an 8 x 256 MLP with a skip, coarse + fine hierarchical sampling.

    The coarse network is evaluated at `coarse_samples` stratified depths in the scene cube; the fine
    network at those plus `fine_samples` depths drawn from the coarse weights. Both are trained
    (the task adds the coarse loss); the fine pass gives the image.

    Args:
        bound: the scene lies in [-bound, bound]^3; rays are sampled where they cross it.
        width, depth, skip: MLP width, number of hidden layers, layer that re-injects the input.
        pos_frequencies, dir_frequencies: Fourier frequencies of positions (10) and directions (4).
        coarse_samples, fine_samples: samples per ray of the two passes (64 and 128 in the paper).
    """

    render_chunk = 1024

    def __init__(self, bound: float = 1.5, width: int = 256, depth: int = 8, skip: int = 4,
                 pos_frequencies: int = 10, dir_frequencies: int = 4, coarse_samples: int = 64,
                 fine_samples: int = 128):
        super().__init__()
        self.bound = bound
        self.coarse_samples, self.fine_samples = coarse_samples, fine_samples
        self.pos_enc = FourierFeatures(3, pos_frequencies)
        self.dir_enc = FourierFeatures(3, dir_frequencies)
        self.coarse = _NeRFMLP(self.pos_enc.out_dim, self.dir_enc.out_dim, width, depth, skip)
        self.fine = _NeRFMLP(self.pos_enc.out_dim, self.dir_enc.out_dim, width, depth, skip)

    def _shade(self, mlp, rays_o, rays_d, t, far, background) -> dict:
        n, s = t.shape
        pts = rays_o[:, None] + t[..., None] * rays_d[:, None]
        # The official code encodes raw world coordinates with frequencies 2^k; FourierFeatures adds a
        # factor pi, so dividing by pi gives the original encoding.
        sigma, rgb = mlp(self.pos_enc(pts / math.pi), self.dir_enc(rays_d / math.pi)[:, None].expand(n, s, -1))
        delta = torch.diff(t, dim=-1, append=far[:, None])
        ray_ids = torch.arange(n, device=t.device).repeat_interleave(s)
        return composite(sigma.reshape(-1), rgb.reshape(-1, 3), t.reshape(-1), delta.reshape(-1), ray_ids, n,
                         background)

    def render_rays(self, rays_o, rays_d, background) -> dict:
        near, far = intersect_box(rays_o, rays_d, self.bound)
        far = torch.maximum(far, near + 1e-3)  # rays that miss the cube see the background only
        n = len(rays_o)
        edges = torch.linspace(0, 1, self.coarse_samples + 1, device=rays_o.device)
        offset = torch.rand(n, self.coarse_samples, device=rays_o.device) if self.training else 0.5
        u = edges[:-1] + offset / self.coarse_samples  # stratified: one sample per bin
        t_coarse = near[:, None] + (far - near)[:, None] * u
        coarse = self._shade(self.coarse, rays_o, rays_d, t_coarse, far, background)
        bins = near[:, None] + (far - near)[:, None] * edges
        w = coarse["weights"].detach().reshape(n, -1)
        t_fine = sample_pdf(bins, w, self.fine_samples, deterministic=not self.training)
        t_all = torch.sort(torch.cat((t_coarse, t_fine), -1), -1).values
        fine = self._shade(self.fine, rays_o, rays_d, t_all, far, background)
        return {"rgb": fine["rgb"], "depth": fine["depth"], "opacity": fine["opacity"], "rgb_coarse": coarse["rgb"]}


# --------------------------------------------------------------------------- hash-grid NeRF


class _BlendRows(torch.autograd.Function):
    """out[m] = sum_c weights[c, m] * table[index[c, m]] over the 8 cell corners c.

    Forward: one fused gather-and-sum (embedding_bag). Backward on CPU: one bincount per feature
    channel, a serial scatter-add that is several times faster there than index_add_ or index_put_.
    Inputs are corner-major (8, M) so every elementwise op runs over long contiguous rows.
    """

    @staticmethod
    def forward(ctx, table, index, weights):
        ctx.save_for_backward(index, weights)
        ctx.rows = table.shape[0]
        return F.embedding_bag(index.t().contiguous(), table, per_sample_weights=weights.t().contiguous(), mode="sum")

    @staticmethod
    def backward(ctx, grad):
        index, weights = ctx.saved_tensors
        if grad.is_cuda:
            contrib = (weights.unsqueeze(-1) * grad).reshape(-1, grad.shape[1])
            table_grad = grad.new_zeros(ctx.rows, grad.shape[1]).index_add_(0, index.reshape(-1), contrib)
        else:
            flat = index.reshape(-1)
            table_grad = torch.stack([torch.bincount(flat, (weights * grad[:, f]).reshape(-1), ctx.rows)
                                      for f in range(grad.shape[1])], 1)
        return table_grad.to(grad.dtype), None, None


class FastHashEncoding(HashEncoding):
    """zoo.blocks.HashEncoding (same table, hash, interpolation and output) with a faster forward.

    Why: on a CPU the block's cost is memory traffic of int64 index arithmetic over (N, L, 8) tensors
    whose short last axes defeat vectorisation. Here indices are built level-major (a level's lookups
    stay within its own table, which fits in cache), in int32 where that is exact, corner by corner
    over long rows, and the corners are gathered and blended by one embedding_bag call: about 3x
    faster forward and backward on CPU.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 3:
            raise ValueError(f"FastHashEncoding expects input of shape (*, 3), got {tuple(x.shape)}")
        lead, x = x.shape[:-1], x.reshape(-1, 3)
        mask = self.table_size - 1
        res = self.resolutions.to(x.dtype)
        unit = ((x - self.box[0]) / (self.box[1] - self.box[0])).clamp(0.0, 1.0)
        pos = unit.T[None] * res[:, None, None]  # (L, 3, N) in cell units
        corner = torch.minimum(pos.floor(), (res - 1)[:, None, None])
        frac = pos - corner
        # (c * m) mod T only needs m mod T; int32 is exact when every product fits in 31 bits
        itype = torch.int32 if int(self.resolutions.max() + 1) * mask < 2**31 else torch.int64
        mult = (self.multipliers & mask).to(itype)[:, :, None]
        c = corner.to(itype)
        lo, hi = (c * mult) & mask, ((c + 1) * mult) & mask  # (L, 3, N) per-axis hash terms
        offset = self.level_offsets.to(itype)[:, None]
        xs = (lo[:, 0] | offset, hi[:, 0] | offset)  # bits above log2(T) select the level's table
        fx, fy, fz = frac.unbind(1)
        wx, wy, wz = (1 - fx, fx), (1 - fy, fy), (1 - fz, fz)
        index, weights = [], []
        for dz in (0, 1):
            for dy in (0, 1):
                yz, wyz = lo[:, 1] if dy == 0 else hi[:, 1], wy[dy] * wz[dz]
                yz = yz ^ (lo[:, 2] if dz == 0 else hi[:, 2])
                for dx in (0, 1):
                    index.append(xs[dx] ^ yz)
                    weights.append(wx[dx] * wyz)
        table = self.table.view(-1, self.features_per_level)
        out = _BlendRows.apply(table, torch.stack(index).reshape(8, -1),
                               torch.stack(weights).reshape(8, -1).to(table.dtype))
        out = out.view(self.num_levels, -1, self.features_per_level).transpose(0, 1)
        return out.reshape(*lead, self.out_dim)


class HashNeRF(RadianceField):
    """A fast radiance field: multiresolution hash encoding, tiny MLPs and an occupancy grid (Instant-NGP).

    Density: sigma = exp(h_0) with h = MLP(hash(x)) (16 values, one hidden layer); colour:
    c = MLP([h, SH(d)]) (two hidden layers) with SH the degree-3 spherical harmonics of the direction.
    Rays are marched at a fixed `step_size` through the scene cube; an occupancy grid of
    `grid_resolution`^3 cells (a buffer, refreshed during training by `on_train_step`) skips samples
    in empty space; a density-only pass front to back (no gradients) then drops samples behind
    opaque surfaces (transmittance < `early_stop`) or nearly transparent (alpha < `alpha_threshold`),
    so only the few samples that shape the image run the full network with gradients.

    Args:
        bound: the scene lies in [-bound, bound]^3 (1.5 for the NeRF synthetic scenes).
        num_levels, features_per_level, log2_table_size, base_resolution, max_resolution: the
            zoo.blocks.HashEncoding; the table holds num_levels * 2^log2_table_size * features values.
        hidden: width of the MLPs.
        num_steps: samples along the cube's diagonal; the step size is 2 sqrt(3) bound / num_steps.
        grid_resolution: cells per axis of the occupancy grid.
        occupancy_threshold: a cell is empty when sigma * step_size stays below this.
        occupancy_every: grid refresh interval in optimisation steps.
        occupancy_decay: each refresh keeps max(decay * old, new) per measured cell.
        early_stop: transmittance below which a ray stops.
        alpha_threshold: samples with a lower opacity are skipped.
    """

    density_grid: torch.Tensor
    occupied: torch.Tensor
    train_steps: torch.Tensor  # optimisation steps since the grid was (re)started; < 0 during a warm-up

    def __init__(self, bound: float = 1.5, num_levels: int = 16, features_per_level: int = 2,
                 log2_table_size: int = 16, base_resolution: int = 16, max_resolution: int = 1024,
                 hidden: int = 64, num_steps: int = 256, grid_resolution: int = 64,
                 occupancy_threshold: float = 0.01, occupancy_every: int = 16, occupancy_decay: float = 0.8,
                 early_stop: float = 1e-4, alpha_threshold: float = 1e-3):
        super().__init__()
        self.bound = bound
        self.encoding = FastHashEncoding(3, num_levels, features_per_level, log2_table_size, base_resolution,
                                     max_resolution, bounding_box=([-bound] * 3, [bound] * 3))
        self.density_net = Mlp(self.encoding.out_dim, hidden, 16, num_layers=2)
        self.colour_net = Mlp(16 + 16, hidden, 3, num_layers=3, out_act="sigmoid")
        self.num_steps = num_steps
        self.step_size = 2 * math.sqrt(3) * bound / num_steps
        self.grid_resolution = grid_resolution
        self.occupancy_threshold, self.occupancy_every = occupancy_threshold, occupancy_every
        self.occupancy_decay = occupancy_decay
        self.early_stop, self.alpha_threshold = early_stop, alpha_threshold
        # Max density seen per cell (decaying); -1 = not measured yet, which counts as occupied.
        self.register_buffer("density_grid", torch.full((grid_resolution,) * 3, -1.0))
        self.register_buffer("occupied", torch.ones((grid_resolution,) * 3, dtype=torch.bool), persistent=False)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))
        self.samples_per_ray = float(num_steps)  # running mean in training: how many samples a ray costs
        self.half_storage = False
        self.register_state_dict_post_hook(_store_half)
        self.register_load_state_dict_pre_hook(_note_half)
        self.register_load_state_dict_post_hook(lambda module, keys: module._refresh_occupied())

    # ------------------------------------------------------------------ the field
    def density(self, x: torch.Tensor):
        """Density (K,) and the 16 features the colour network reads, at points x (K, 3)."""
        h = self.density_net(self.encoding(x))
        return _TruncExp.apply(h[:, 0]), h

    def _cells(self, x: torch.Tensor) -> torch.Tensor:
        r = self.grid_resolution
        ijk = ((x + self.bound) * (r / (2 * self.bound))).long().clamp(0, r - 1)
        return (ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2]

    # ------------------------------------------------------------------ marching
    def _march(self, rays_o, rays_d):
        """Packed candidate samples in occupied cells: ray ids (K,), depths (K,), points (K, 3)."""
        near, far = intersect_box(rays_o, rays_d, self.bound)
        n = len(rays_o)
        offset = torch.rand(n, 1, device=rays_o.device) if self.training else 0.5
        steps = torch.arange(self.num_steps, device=rays_o.device)
        t = near[:, None] + (steps + offset) * self.step_size
        ray_ids, cols = (t < far[:, None]).nonzero(as_tuple=True)
        t = t[ray_ids, cols]
        x = rays_o[ray_ids] + t[:, None] * rays_d[ray_ids]
        occ = self.occupied.view(-1)[self._cells(x)]
        return ray_ids[occ], t[occ], x[occ]

    @torch.no_grad()
    def _visible(self, ray_ids, x, num_rays: int, round_size: int = 16):
        """Density-only pass, front to back in rounds of `round_size` samples per ray, stopping rays
        once they are opaque. Returns the mask of samples worth shading, the densities and features, and
        how many samples were evaluated."""
        rank = torch.arange(len(ray_ids), device=x.device) - _segment_starts(ray_ids)  # sample's place on its ray
        sigma, feats = x.new_zeros(len(x)), x.new_zeros(len(x), 16)
        keep = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        tau_before = x.new_zeros(num_rays)
        alive = torch.ones(num_rays, dtype=torch.bool, device=x.device)
        max_tau = -math.log(self.early_stop)
        evaluated = 0
        for start in range(0, int(rank.max()) + 1 if len(rank) else 0, round_size):
            idx = ((rank >= start) & (rank < start + round_size) & alive[ray_ids]).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            ids = ray_ids[idx]
            evaluated += len(idx)
            sigma[idx], feats[idx] = self.density(x[idx])
            tau = sigma[idx] * self.step_size
            excl = optical_depth_before(tau, ids) + tau_before[ids]
            keep[idx] = (excl < max_tau) & (1 - torch.exp(-tau) > self.alpha_threshold)
            tau_before.index_add_(0, ids, tau)
            alive = tau_before < max_tau
        return keep, sigma, feats, evaluated

    def render_rays(self, rays_o, rays_d, background) -> dict:
        n = len(rays_o)
        ray_ids, t, x = self._march(rays_o, rays_d)
        keep, sigma, feats, evaluated = self._visible(ray_ids, x, n)
        ray_ids, t, x = ray_ids[keep], t[keep], x[keep]
        if torch.is_grad_enabled():  # training: run the kept samples again, now with gradients
            sigma, feats = self.density(x)
        else:
            sigma, feats = sigma[keep], feats[keep]
        rgb = self.colour_net(torch.cat((feats, spherical_harmonics(rays_d[ray_ids])), -1))
        out = composite(sigma, rgb, t, torch.full_like(t, self.step_size), ray_ids, n, background)
        if self.training:  # the cost of a ray: density-only evaluations plus shaded samples
            self.samples_per_ray = 0.9 * self.samples_per_ray + 0.1 * (evaluated + len(t)) / max(n, 1)
        return {"rgb": out["rgb"], "depth": out["depth"], "opacity": out["opacity"],
                "samples": torch.bincount(ray_ids, minlength=n)}

    # ------------------------------------------------------------------ occupancy grid
    def on_train_step(self) -> None:
        """Call once per optimisation step: refreshes the occupancy grid every `occupancy_every` steps
        (none while `train_steps` is negative, the warm-up after `reset_occupancy`)."""
        steps = int(self.train_steps)
        if steps >= 0 and steps % self.occupancy_every == 0:
            self.update_occupancy()
        self.train_steps += 1

    def reset_occupancy(self, warmup: int = 0) -> None:
        """Mark every cell occupied again and keep it so for `warmup` steps, for a new scene: weights
        trained on another scene would otherwise prune exactly where the new scene has its objects."""
        self.density_grid.fill_(-1.0)
        self.occupied.fill_(True)
        self.train_steps.fill_(-warmup)

    @torch.no_grad()
    def update_occupancy(self, chunk: int = 65536) -> None:
        """Re-measure the density at a random point of a quarter of all cells plus as many occupied ones
        (every cell the first time) and keep each cell's decayed maximum, as Instant-NGP does (whose
        decay of 0.95 suits tens of thousands of steps; short CPU runs need empty space pruned sooner)."""
        r, grid = self.grid_resolution, self.density_grid.view(-1)
        dev = grid.device
        if (grid < 0).all():
            cells = torch.arange(r ** 3, device=dev)
        else:
            m = r ** 3 // 4
            occupied = self.occupied.view(-1).nonzero().squeeze(1)
            cells = torch.cat((torch.randint(r ** 3, (m,), device=dev),
                               occupied[torch.randint(len(occupied), (m,), device=dev)] if len(occupied) else
                               occupied))
        ijk = torch.stack((cells // (r * r), (cells // r) % r, cells % r), -1)
        x = (ijk + torch.rand(len(cells), 3, device=dev)) * (2 * self.bound / r) - self.bound
        sigma = torch.cat([self.density(x[i:i + chunk])[0] for i in range(0, len(x), chunk)])
        grid[cells] = torch.maximum(grid[cells] * self.occupancy_decay, sigma)
        self._refresh_occupied()

    def _refresh_occupied(self) -> None:
        grid = self.density_grid
        measured = grid >= 0
        threshold = self.occupancy_threshold / self.step_size
        if measured.any():  # never stricter than the mean density (Instant-NGP's rule)
            threshold = min(threshold, float(grid[measured].mean()))
        self.occupied.copy_(~measured | (grid > threshold))

    # ------------------------------------------------------------------ compact storage
    @torch.no_grad()
    def half_precision_(self) -> HashNeRF:
        """Round the hash table and the occupancy grid to float16 and save them as float16 from now on.

        Halves the published weights; the model still computes in float32 and renders exactly
        what it rendered after the rounding.
        """
        self.encoding.table.copy_(self.encoding.table.half().float())
        self.density_grid.copy_(self.density_grid.clamp(max=6e4).half().float())
        self.half_storage = True
        return self


_HALF_KEYS = ("encoding.table", "density_grid")


def _store_half(module, state_dict, prefix, local_metadata) -> None:
    if module.half_storage:
        for key in _HALF_KEYS:
            state_dict[prefix + key] = state_dict[prefix + key].half()


def _note_half(module, state_dict, prefix, *args) -> None:
    # Weights stored in float16 are saved in float16 again (loading upcasts them to the parameters' float32).
    table = state_dict.get(prefix + "encoding.table")
    module.half_storage = table is not None and table.dtype == torch.float16


# --------------------------------------------------------------------------- builders


NERF_INPUT_SPEC = {"rays": "rays_o (N, 3), rays_d (N, 3)", "convention": "OpenGL camera-to-world"}
register_model("nerf", task="novel_view", default_tag="nerf.lego", input_spec=NERF_INPUT_SPEC,
               description="Fast NeRF: hash encoding + tiny MLPs + occupancy grid (Instant-NGP style, "
                           "pure PyTorch).")(HashNeRF)
register_model("nerf_vanilla", task="novel_view", input_spec=NERF_INPUT_SPEC,
               description="The original NeRF: positional encoding, 8x256 MLP, coarse + fine sampling.")(VanillaNeRF)

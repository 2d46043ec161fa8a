"""Novel-view synthesis: fit a radiance field to posed images, evaluate it on views it never saw.

Data sources (recipe `data.source`):
  lego        the Blender "lego" scene of the NeRF synthetic set under `data_root()/nerf_synthetic/lego`
              (or `data.root`): 90 views of 200x200 RGBA. Views 0, 10, 20, ..., 80 (every
              `holdout_every`-th) are held out for evaluation; the other 81 train.
  folder      your scene in the Blender (transforms_train.json) or nerfstudio (transforms.json) format,
              see zoo.families.nerf.data; held-out views are chosen the same way, or `eval_split: test` reads
              transforms_test.json.
  procedural  coloured spheres and boxes ray-traced at `procedural.seed`, written in the Blender format
              to `data.root` (default: a temp folder) and read back like any folder.

Training: a flat index over every pixel of every training image (downsampled with area averaging to
`image_size`) is served in the engine's random order; `get_batch` turns indices into rays in one
vectorised call. Each step composites the targets on a random background colour (so the model has to
learn true opacity instead of painting white fog), renders the rays and minimises the MSE (+ the
coarse pass's MSE for nerf_vanilla). The hash-grid model refreshes its occupancy grid every few steps
and the number of rays per step adapts so that about `samples_per_step` samples are shaded
(Instant-NGP's rule: cheap steps early, while the grid still holds empty space).
Evaluation renders the held-out views at each of `eval_sizes` (longer side) on `background` and
reports the mean PSNR and SSIM (11x11 Gaussian window, sigma 1.5, valid padding) over views.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.families.nerf import data as S
from zoo.recipes import NUM, OPT_STR
from zoo.recipes import F as Field
from zoo.tasks.base import Data, Task, unwrap
from zoo.utils import data_root


class RayBatches:
    """Every pixel of the training images as a ray; `get_batch(indices)` builds rays in one vectorised call.

    Index i is pixel (i mod HW) of view (i div HW). Batches are dicts of rays_o (B, 3),
    rays_d (B, 3) and rgba (B, 4) (premultiplied colour and alpha).
    """

    def __init__(self, scene: S.Scene):
        self.scene = scene
        self.pixels = scene.images.reshape(len(scene), -1, 4)

    def __len__(self) -> int:
        return self.pixels.shape[0] * self.pixels.shape[1]

    def get_batch(self, idx: torch.Tensor) -> dict:
        from zoo.families.nerf.model import pixel_rays

        hw, w = self.pixels.shape[1], self.scene.width
        view, pix = idx // hw, idx % hw
        x, y = (pix % w).float() + 0.5, (pix // w).float() + 0.5
        rays_o, rays_d = pixel_rays(self.scene.c2w[view], self.scene.intrinsics[view], x, y)
        return {"rays_o": rays_o, "rays_d": rays_d, "rgba": self.pixels[view, pix]}


class HeldOutViews:
    """Views to evaluate on: full-resolution images, rendered at each longer side in `sizes`."""

    def __init__(self, scene: S.Scene, sizes: list[int], background: list[float]):
        self.scene, self.sizes, self.background = scene, sizes, background

    def __len__(self) -> int:
        return len(self.scene)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(-10 * torch.log10(F.mse_loss(pred, target).clamp_min(1e-10)))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM of two (H, W, 3) images in [0, 1]: 11x11 Gaussian window (sigma 1.5), valid padding, as in
    the NeRF papers."""
    import kornia

    a, b = pred.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]
    return float(kornia.metrics.ssim(a, b, 11, padding="valid").mean())


def depth_image(depth: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) depth in the turbo colour map (red near, blue far, stretched over the pixels with
    opacity > 0.5), faded to white where the ray hits nothing."""
    from matplotlib import colormaps

    hit = opacity > 0.5
    d = depth.clone()
    if hit.any():
        lo, hi = d[hit].min(), d[hit].max()
        d = (d - lo) / (hi - lo).clamp_min(1e-6)
    coloured = torch.from_numpy(colormaps["turbo"](1 - d.clamp(0, 1).cpu().numpy())[..., :3]).float()
    return coloured * opacity.cpu()[..., None] + (1 - opacity.cpu()[..., None])


def save_png(image: torch.Tensor, path: Path) -> Path:
    from PIL import Image

    Image.fromarray((image.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype("uint8")).save(path)
    return path


class NovelView(Task):
    name = "novel_view"
    main_metric = "psnr"
    mode = "max"
    smoke_overrides = ("train.max_steps=4", "train.log_every=1", "train.batch_size=256", "train.eval_every=1000",
                       "data.image_size=24", "data.eval_sizes=[24]", "data.max_train_views=4", "data.val_views=1",
                       "data.max_eval_views=1", "render.samples_per_step=4096", "data.procedural.views=6",
                       "data.procedural.size=24")
    DATA_SCHEMA = {
        "source": Field(str, "lego", "lego | folder | procedural"),
        "root": Field(OPT_STR, None, "lego: default data_root()/nerf_synthetic/lego; folder: the scene; "
                                     "procedural: where it is written (default: a temp folder)"),
        "image_size": Field((int, type(None)), 100, "training images' longer side (area-averaged); null = as stored",
                            ge=1),
        "eval_sizes": Field(list, [100], "longer sides at which held-out views are rendered; the first gives "
                                         "psnr/ssim, every size psnr_<size>/ssim_<size>"),
        "holdout_every": Field(int, 10, "views 0, k, 2k, ... of the training file are held out", ge=1),
        "eval_split": Field(str, "holdout", "holdout | val | test (transforms_<split>.json)"),
        "val_views": Field((int, type(None)), 2, "held-out views rendered by the evaluations during training", ge=0),
        "max_eval_views": Field((int, type(None)), None, "cap on the views of the final evaluation", ge=1),
        "max_train_views": Field((int, type(None)), None, "use only the first k training views", ge=1),
        "background": Field(list, [1.0, 1.0, 1.0], "evaluation background colour"),
        "pose_scale": Field(NUM, 1.0, "camera centres become (c - pose_offset) * pose_scale", gt=0),
        "pose_offset": Field(list, [0.0, 0.0, 0.0]),
        "procedural": {"views": Field(int, 40), "size": Field(int, 100), "seed": Field(int, 0)},
    }
    RENDER_SCHEMA = {  # how training renders: the task's own section, apart from the scene (data)
        "random_background": Field(bool, True, "train on random background colours"),
        "samples_per_step": Field((int, type(None)), 32768, "nerf: shade about this many samples per step "
                                                            "(fewer rays early on); null = the whole batch", ge=1),
        "occupancy_warmup": Field(int, 256, "nerf from pretrained weights: steps before the occupancy grid "
                                            "starts skipping empty space", ge=0),
    }
    MOVED = {f"data.{key}": f"render.{key}" for key in RENDER_SCHEMA}

    def sections(self) -> dict:
        """data (the scene, its views and evaluation) and render (how training renders rays)."""
        return {"data": self.DATA_SCHEMA, "render": self.RENDER_SCHEMA}

    # ----------------------------------------------------------------- data
    def _scene_dir(self, cfg: dict) -> Path:
        source = cfg["source"]
        if source == "lego":
            root = Path(cfg["root"] or data_root() / "nerf_synthetic" / "lego")
            if not root.is_dir():
                raise ValueError(f"data.root: the lego scene is not at {root}; set ZOO_DATA to the folder holding "
                                 "nerf_synthetic/lego (the Blender scene of Mildenhall et al. 2020)")
            return root
        if source == "folder":
            if not cfg["root"]:
                raise ValueError("data.root: the folder source needs a scene folder (transforms_train.json "
                                 "or transforms.json with its images)")
            return Path(cfg["root"])
        if source == "procedural":
            p = cfg["procedural"]
            root = Path(cfg["root"] or Path(tempfile.gettempdir()) /
                        f"zoo_procedural_scene_{p['seed']}_{p['views']}x{p['size']}")
            if not (root / "transforms_train.json").is_file():
                S.make_procedural_scene(root, n_views=p["views"], size=p["size"], seed=p["seed"])
            return root
        raise ValueError(f"data.source: unknown source {source!r}; choose lego, folder or procedural")

    def build_data(self, cfg: dict, ctx) -> Data:
        if len(cfg["background"]) != 3 or len(cfg["pose_offset"]) != 3:
            raise ValueError("data.background and data.pose_offset must have 3 values")
        if cfg["eval_split"] not in ("holdout", "val", "test"):
            raise ValueError(f"data.eval_split: expected holdout, val or test, got {cfg['eval_split']!r}")
        if not cfg["eval_sizes"] or not all(isinstance(s, int) and s > 0 for s in cfg["eval_sizes"]):
            raise ValueError(f"data.eval_sizes: expected a list of positive ints, got {cfg['eval_sizes']}")
        root = self._scene_dir(cfg)
        scene = S.read_scene(root, "train")
        if cfg["eval_split"] == "holdout":
            if cfg["holdout_every"] < 2 or len(scene) < 2:
                raise ValueError(f"data.holdout_every must be >= 2 and the scene needs >= 2 views "
                                 f"(got {cfg['holdout_every']} and {len(scene)} views in {scene.source})")
            held = torch.arange(len(scene)) % cfg["holdout_every"] == 0
            train, evaluation = scene.subset(torch.nonzero(~held)[:, 0]), scene.subset(torch.nonzero(held)[:, 0])
        else:
            train, evaluation = scene, S.read_scene(root, cfg["eval_split"])
        train, evaluation = (self._transform_poses(s, cfg) for s in (train, evaluation))
        if cfg["max_train_views"]:
            train = train.subset(torch.arange(min(cfg["max_train_views"], len(train))))
        if cfg["max_eval_views"]:
            evaluation = evaluation.subset(torch.arange(min(cfg["max_eval_views"], len(evaluation))))
        val = evaluation.subset(torch.arange(min(cfg["val_views"] or len(evaluation), len(evaluation))))
        small = train.resized(cfg["image_size"])
        size = evaluation.resized(cfg["eval_sizes"][0])
        info = {
            "input_spec": {"image_size": [size.height, size.width], "focal": float(size.intrinsics[0, 0]),
                           "camera_radius": float(train.c2w[:, :3, 3].norm(dim=-1).mean()),
                           "background": cfg["background"], "convention": "OpenGL camera-to-world"},
            "datasets": [str(root)],
            "evaluation": f"{len(evaluation)} held-out views ({', '.join(evaluation.names[:10])}"
                          f"{', ...' if len(evaluation) > 10 else ''}) at longer sides {cfg['eval_sizes']}",
        }
        return Data(RayBatches(small), HeldOutViews(val, cfg["eval_sizes"][:1], cfg["background"]),
                    HeldOutViews(evaluation, cfg["eval_sizes"], cfg["background"]), info)

    @staticmethod
    def _transform_poses(scene: S.Scene, cfg: dict) -> S.Scene:
        if cfg["pose_scale"] == 1 and not any(cfg["pose_offset"]):
            return scene
        c2w = scene.c2w.clone()
        c2w[:, :3, 3] = (c2w[:, :3, 3] - torch.tensor(cfg["pose_offset"])) * cfg["pose_scale"]
        scene.c2w = c2w
        return scene

    def card_extras(self, data: Data) -> dict:
        return {"input_spec": data.info["input_spec"], "evaluation": data.info["evaluation"]}

    def finetune_overrides(self, data_path: str) -> list[str]:
        return ["data.source=folder", f"data.root={data_path}"]

    # ----------------------------------------------------------------- training
    def fit(self, model, data: Data, ctx) -> dict:
        field = unwrap(model)
        if hasattr(field, "reset_occupancy") and not ctx.resume and bool((field.density_grid >= 0).any()):
            # Pretrained weights come with their scene's empty space; the new scene may fill it.
            field.reset_occupancy(warmup=ctx.recipe["render"]["occupancy_warmup"])
        result = ctx.trainer.fit(model, data)
        if hasattr(field, "half_precision_"):
            field.half_precision_()  # the published weights: tables in float16, evaluated as stored
        return result

    def train_step(self, model, batch, ctx):
        cfg, render = ctx.recipe["data"], ctx.recipe["render"]
        field = unwrap(model)
        if hasattr(field, "on_train_step"):
            field.on_train_step()
        n = len(batch["rays_o"])
        if render["samples_per_step"] and hasattr(field, "samples_per_ray"):
            n = max(min(n, 64), min(n, int(render["samples_per_step"] / max(field.samples_per_ray, 1e-3))))
        rgba = batch["rgba"][:n]
        if render["random_background"]:
            bg = torch.rand(n, 3, device=rgba.device)
        else:
            bg = torch.tensor(cfg["background"], device=rgba.device).expand(n, 3)
        target = rgba[:, :3] + (1 - rgba[:, 3:]) * bg
        out = model(batch["rays_o"][:n], batch["rays_d"][:n], bg)
        mse = F.mse_loss(out["rgb"], target)
        loss = mse + F.mse_loss(out["rgb_coarse"], target) if "rgb_coarse" in out else mse
        logs = {"psnr": -10 * math.log10(max(float(mse.detach()), 1e-10)), "rays": n}
        if "samples" in out:
            logs["samples_per_ray"] = float(out["samples"].float().mean())
        return loss, logs

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, model, dataset: HeldOutViews, ctx) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for k, size in enumerate(dataset.sizes):
            views = dataset.scene.resized(size)
            target = views.composite(dataset.background)
            scores = [self._score(model, views, i, target[i], dataset.background) for i in range(len(views))]
            p, s = (sum(v) / len(v) for v in zip(*scores))
            if k == 0:
                metrics.update(psnr=p, ssim=s)
            if len(dataset.sizes) > 1:
                metrics.update({f"psnr_{size}": p, f"ssim_{size}": s})
        return metrics

    @staticmethod
    def _score(model, views: S.Scene, i: int, target: torch.Tensor, background) -> tuple[float, float]:
        out = render_view(model, views.c2w[i], views.intrinsics[i], views.height, views.width, background)
        return psnr(out["rgb"].cpu(), target), ssim(out["rgb"].cpu(), target)

    # ----------------------------------------------------------------- use
    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None) -> list[Path]:
        """Render the poses of a transforms file (or scene folder) — next to the real images where they
        exist — or, without input, a turntable GIF; every view also gets its depth map."""
        out_dir = Path(out_dir)
        spec = model.pretrained_cfg.get("input_spec", {}) if hasattr(model, "pretrained_cfg") else {}
        h, w = spec.get("image_size", [100, 100])
        bg = spec.get("background", [1.0, 1.0, 1.0])
        if inputs is None:
            poses = S.orbit_poses(36, spec.get("camera_radius", 4.0), 30.0)
            focal = spec.get("focal", 0.5 * w / math.tan(0.5 * S.BLENDER_FOV_X))
            frames = []
            for c2w in poses:
                out = render_view(model, c2w, torch.tensor([focal, focal, w / 2, h / 2]), h, w, bg)
                frames.append(torch.cat((out["rgb"].cpu(), depth_image(out["depth"], out["opacity"])), 1))
            import imageio.v2 as imageio

            gif = out_dir / "turntable.gif"
            imageio.mimsave(gif, [(f.numpy() * 255 + 0.5).astype("uint8") for f in frames], duration=0.08, loop=0)
            return [gif, save_png(frames[0], out_dir / "turntable_000.png")]
        cams = S.read_cameras(inputs, width=w)
        paths = []
        for i, (c2w, intr, file) in enumerate(zip(cams.c2w, cams.intrinsics, cams.files)):
            out = render_view(model, c2w, intr, cams.height, cams.width, bg)
            panels = [out["rgb"].cpu(), depth_image(out["depth"], out["opacity"])]
            if file.is_file():  # the real view on the left, for comparison
                truth = S.Scene(torch.from_numpy(S.read_image(file))[None], c2w[None], intr[None], [file.name])
                panels.insert(0, truth.composite(bg)[0])
            paths.append(save_png(torch.cat(panels, 1), out_dir / f"view_{i:03d}.png"))
        return paths

    def sample_input(self, model) -> tuple:
        return model.example_inputs(1)

    def draw_sample(self, model, out_path: Path) -> Path:
        spec = model.pretrained_cfg.get("input_spec", {}) if hasattr(model, "pretrained_cfg") else {}
        h, w = spec.get("image_size", [100, 100])
        focal = spec.get("focal", 0.5 * w / math.tan(0.5 * S.BLENDER_FOV_X))
        c2w = S.orbit_poses(8, spec.get("camera_radius", 4.0), 30.0)[1]
        out = render_view(model, c2w, torch.tensor([focal, focal, w / 2, h / 2]), h, w,
                          spec.get("background", [1.0, 1.0, 1.0]))
        return save_png(torch.cat((out["rgb"].cpu(), depth_image(out["depth"], out["opacity"])), 1), Path(out_path))


def render_view(model, c2w: torch.Tensor, intrinsics: torch.Tensor, height: int, width: int, background) -> dict:
    """Render one camera given its (4,) fx, fy, cx, cy intrinsics."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    return unwrap(model).render(c2w, height, width, (fx, fy), background=background, center=(cx, cy))


TASK = NovelView()

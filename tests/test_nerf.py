"""The nerf family: scene readers and their validation, rays and compositing, both architectures,
the hash encoding, occupancy grid and fp16 storage, the novel_view task, finetune and the card."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.conftest import data_or_skip
from zoo.blocks import HashEncoding
from zoo.cli import main as zoo_main
from zoo.engine import train
from zoo.families.nerf import data as S
from zoo.families.nerf.model import FastHashEncoding, camera_rays, composite, intersect_box, pixel_rays, sample_pdf
from zoo.families.nerf.task import TASK, HeldOutViews, RayBatches

TINY = ["data.source=procedural", "data.image_size=16", "data.eval_sizes=[16]", "data.procedural.views=6",
        "data.procedural.size=16", "data.val_views=1", "train.batch_size=256", "train.log_every=1",
        "train.eval_every=1000", "render.samples_per_step=4096"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return S.make_procedural_scene(tmp_path_factory.mktemp("scene"), n_views=6, size=16, seed=3)


def _copy(scene_dir, tmp_path):
    dest = tmp_path / "scene"
    shutil.copytree(scene_dir, dest)
    return dest


def _edit_frames(folder, fn, name="transforms_train.json"):
    path = folder / name
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


# --------------------------------------------------------------------------- data


def test_procedural_scene_reads_back(scene_dir):
    scene = S.read_scene(scene_dir)
    assert scene.images.shape == (6, 16, 16, 4) and scene.c2w.shape == (6, 4, 4)
    alpha = scene.images[..., 3]
    assert 0.02 < alpha.mean() < 0.9 and (scene.images[..., :3] <= alpha[..., None] + 1e-6).all()  # premultiplied
    focal = 0.5 * 16 / math.tan(0.5 * S.BLENDER_FOV_X)
    assert torch.allclose(scene.intrinsics[0], torch.tensor([focal, focal, 8.0, 8.0]), atol=1e-3)
    small = scene.resized(8)
    assert small.images.shape == (6, 8, 8, 4) and torch.allclose(small.intrinsics[0], scene.intrinsics[0] / 2)
    # area averaging keeps the mean coverage
    assert torch.allclose(small.images[..., 3].mean(), alpha.mean(), atol=1e-5)
    assert torch.allclose(scene.composite((0, 0, 0)), scene.images[..., :3])


def test_nerfstudio_format(scene_dir, tmp_path):
    blender = S.read_scene(scene_dir)
    frames = []
    (tmp_path / "images").mkdir()
    for i, name in enumerate(blender.names):
        Image.open(scene_dir / name).convert("RGB").save(tmp_path / "images" / f"frame_{i:05d}.png")
        frames.append({"file_path": f"images/frame_{i:05d}.png", "transform_matrix": blender.c2w[i].tolist()})
    meta = {"fl_x": 20.0, "fl_y": 21.0, "cx": 7.5, "cy": 8.5, "w": 16, "h": 16, "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = S.read_scene(tmp_path)
    assert torch.equal(scene.c2w, blender.c2w)
    assert torch.allclose(scene.intrinsics, torch.tensor([[20.0, 21.0, 7.5, 8.5]] * 6))
    assert (scene.images[..., 3] == 1).all()  # RGB images are opaque
    meta["frames"][0]["fl_x"] = 30.0  # per-frame intrinsics override the shared ones
    meta["w"] = 17
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert S.read_cameras(tmp_path).intrinsics[0, 0] == 30.0
    with pytest.raises(ValueError, match=r"'w' x 'h' in the file say 17x16 but .*frame_00000.png is 16x16"):
        S.read_scene(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["frames"][1].update(transform_matrix=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
     r"frame 1: transform_matrix must be 4x4, got shape \(3, 4\)"),
    (lambda m: m["frames"][2]["transform_matrix"][0].__setitem__(3, float("nan")), "frame 2: .*non-finite"),
    (lambda m: m["frames"][0].update(transform_matrix=np.diag([2.0, 2.0, 2.0, 1.0]).tolist()), "frame 0: .*not rigid"),
    (lambda m: m["frames"][0].update(transform_matrix=np.diag([1.0, 1.0, -1.0, 1.0]).tolist()), "not rigid"),
    (lambda m: m.pop("camera_angle_x"), "neither 'camera_angle_x'"),
    (lambda m: m["frames"][3].pop("file_path"), "frame 3: each frame needs 'file_path'"),
    (lambda m: m.update(frames=[]), "non-empty list under key 'frames'"),
])
def test_bad_transforms_are_named(scene_dir, tmp_path, edit, message):
    folder = _copy(scene_dir, tmp_path)
    _edit_frames(folder, edit)
    with pytest.raises(ValueError, match=message):
        S.read_scene(folder)


def test_missing_and_inconsistent_images_are_named(scene_dir, tmp_path):
    folder = _copy(scene_dir, tmp_path)
    Image.open(folder / "train" / "r_2.png").resize((12, 16)).save(folder / "train" / "r_2.png")
    with pytest.raises(ValueError, match=r"inconsistent sizes: .*r_0.png is 16x16 but .*r_2.png is 12x16"):
        S.read_scene(folder)
    (folder / "train" / "r_4.png").unlink()
    with pytest.raises(ValueError, match=r"1 image\(s\) missing: .*r_4.png"):
        S.read_scene(folder)
    with pytest.raises(ValueError, match="no transforms_train.json"):
        S.read_scene(tmp_path)


def test_look_at_and_orbit():
    c2w = S.look_at([0.0, -4.0, 0.0])
    assert torch.allclose(c2w[:3, 2], torch.tensor([0.0, -1.0, 0.0]))  # +z points back, away from the target
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, 0.0, 1.0]))  # y up
    poses = S.orbit_poses(4, 3.0, 30.0)
    assert torch.allclose(poses[:, :3, 3].norm(dim=-1), torch.full((4,), 3.0))
    assert torch.allclose(poses[:, 2, 3], torch.full((4,), 1.5))


# --------------------------------------------------------------------------- rays and rendering


def test_camera_rays_follow_opengl_convention():
    c2w = S.look_at([0.0, -4.0, 1.0], target=(0.0, 0.0, 1.0))
    rays_o, rays_d = camera_rays(c2w, 3, 5, 10.0)
    assert rays_o.shape == rays_d.shape == (3, 5, 3)
    assert torch.allclose(rays_d[1, 2], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # centre pixel looks forward
    assert rays_d[0, 2, 2] > 0 and rays_d[1, 4, 0] > 0  # top row looks up, right column looks right
    batched, _ = camera_rays(torch.stack([c2w, c2w]), 3, 5, (10.0, 12.0), center=(2.0, 1.0))
    assert batched.shape == (2, 3, 5, 3)
    o, d = pixel_rays(c2w, torch.tensor([10.0, 10.0, 2.5, 1.5]), torch.tensor(2.5), torch.tensor(1.5))
    assert torch.allclose(d, rays_d[1, 2], atol=1e-6)


def test_intersect_box():
    o = torch.tensor([[0.0, -4.0, 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    d = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near, far = intersect_box(o, d, 1.5)
    assert torch.allclose(near[:2], torch.tensor([2.5, 0.0])) and torch.allclose(far[:2], torch.tensor([5.5, 1.5]))
    assert near[2] >= far[2]  # a miss


def test_composite_matches_the_quadrature():
    torch.manual_seed(0)
    n, s = 3, 7
    sigma, rgb, t = torch.rand(n * s) * 5, torch.rand(n * s, 3), torch.rand(n, s).sort(-1).values.reshape(-1)
    delta = torch.full((n * s,), 0.1)
    ids = torch.arange(n).repeat_interleave(s)
    bg = torch.rand(n, 3)
    out = composite(sigma, rgb, t, delta, ids, n, bg)
    alpha = 1 - torch.exp(-sigma.view(n, s) * 0.1)
    trans = torch.cumprod(torch.cat((torch.ones(n, 1), 1 - alpha[:, :-1]), 1), 1)
    w = trans * alpha
    assert torch.allclose(out["opacity"], w.sum(1), atol=1e-5)
    assert torch.allclose(out["rgb"], (w[..., None] * rgb.view(n, s, 3)).sum(1) + (1 - w.sum(1, keepdim=True)) * bg,
                          atol=1e-5)
    assert torch.allclose(out["depth"], (w * t.view(n, s)).sum(1) / w.sum(1), atol=1e-4)
    empty = composite(torch.zeros(0), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0),
                      torch.zeros(0, dtype=torch.long), 2, bg[:2])
    assert torch.equal(empty["rgb"], bg[:2]) and (empty["opacity"] == 0).all()


def test_sample_pdf_follows_weights():
    bins = torch.linspace(0, 1, 11).expand(2, 11)
    weights = torch.zeros(2, 10)
    weights[:, 7] = 1.0
    t = sample_pdf(bins, weights, 64, deterministic=True)
    assert ((t >= 0.68) & (t <= 0.82)).float().mean() > 0.9


def test_fast_hash_encoding_equals_the_block():
    torch.manual_seed(0)
    box = ([-1.5] * 3, [1.5] * 3)
    block, fast = HashEncoding(3, 8, 2, 12, 4, 256, box), FastHashEncoding(3, 8, 2, 12, 4, 256, box)
    torch.nn.init.normal_(block.table)
    fast.load_state_dict(block.state_dict())
    x = torch.rand(500, 3) * 3.4 - 1.7  # some outside the box
    a, b = block(x), fast(x)
    assert torch.allclose(a, b, atol=1e-5)
    ga, = torch.autograd.grad(a.pow(2).sum(), block.table)
    gb, = torch.autograd.grad(b.pow(2).sum(), fast.table)
    assert torch.allclose(ga, gb, atol=1e-4)


# --------------------------------------------------------------------------- models


def _small_nerf(**kw):
    torch.manual_seed(0)
    args = dict(num_levels=4, log2_table_size=10, max_resolution=64, hidden=16, num_steps=64, grid_resolution=16)
    return zoo.create("nerf", **{**args, **kw})


def test_render_shapes_and_batching():
    model = _small_nerf()
    c2w = S.orbit_poses(2, 4.0)
    single = model.render(c2w[0], 6, 8, 10.0)
    assert single["rgb"].shape == (6, 8, 3) and single["depth"].shape == single["opacity"].shape == (6, 8)
    both = model.render(c2w, 6, 8, 10.0, background=(0, 0, 0), chunk=7)
    assert both["rgb"].shape == (2, 6, 8, 3) and (both["rgb"] >= 0).all() and (both["rgb"] <= 1).all()
    with pytest.raises(ValueError, match=r"c2w of shape \(4, 4\) or \(B, 4, 4\), got \(3, 4\)"):
        model.render(c2w[0, :3], 6, 8, 10.0)
    rays_o, rays_d = model.example_inputs(3)
    with pytest.raises(ValueError, match=r"expects rays_d of shape \(3, 3\)"):
        model(rays_o, rays_d[:2])
    vanilla = zoo.create("nerf_vanilla", width=32, depth=4, skip=2, coarse_samples=8, fine_samples=8)
    out = vanilla(rays_o, rays_d)
    assert out["rgb"].shape == out["rgb_coarse"].shape == (3, 3) and out["depth"].shape == (3,)


def test_occupancy_grid_skips_empty_space():
    model = _small_nerf()
    with torch.no_grad():  # an empty scene: density exactly 0 everywhere
        model.density_net[-1].weight.zero_()
        model.density_net[-1].bias[0] = -200.0
    model.update_occupancy()
    assert not model.occupied.any()
    rays_o, rays_d = model.example_inputs(4)
    out = model.eval()(rays_o, rays_d, background=(0.2, 0.3, 0.4))
    assert (out["samples"] == 0).all() and torch.allclose(out["rgb"], torch.tensor([0.2, 0.3, 0.4]).expand(4, 3))
    model.train()
    for _ in range(model.occupancy_every):
        model.on_train_step()
    assert int(model.train_steps) == model.occupancy_every


def test_half_precision_storage_round_trip(tmp_path):
    model = _small_nerf()
    model.update_occupancy()
    model.half_precision_()
    state = model.state_dict()
    assert state["encoding.table"].dtype == torch.float16 and state["density_grid"].dtype == torch.float16
    folder = zoo.save_pretrained(model, tmp_path / "w", config={"tag": "nerf.test"})
    again = zoo.create(f"local-dir:{folder}", pretrained=True)
    assert again.encoding.table.dtype == torch.float32 and again.half_storage
    assert torch.equal(again.occupied, model.occupied)
    rays = model.eval().example_inputs(5)
    assert torch.equal(model(*rays)["rgb"], again(*rays)["rgb"])


# --------------------------------------------------------------------------- task


def _recipe_data(overrides=()):
    from zoo import recipes as R
    from zoo.engine.run import resolve_recipe

    raw, _ = R.load("nerf/finetune", list(overrides))
    return resolve_recipe(raw)[0]["data"]


def test_ray_batches_hit_their_pixels(scene_dir):
    scene = S.read_scene(scene_dir)
    rays = RayBatches(scene)
    assert len(rays) == 6 * 16 * 16
    idx = torch.tensor([0, 16 * 16 * 2 + 16 * 5 + 7])
    batch = rays.get_batch(idx)
    o, d = camera_rays(scene.c2w[2], 16, 16, float(scene.intrinsics[2, 0]))
    assert torch.allclose(batch["rays_d"][1], d[5, 7], atol=1e-6) and torch.allclose(batch["rays_o"][1], o[5, 7])
    assert torch.equal(batch["rgba"][1], scene.images[2, 5, 7])


def test_build_data_holds_out_views(scene_dir):
    cfg = _recipe_data(["data.source=folder", f"data.root={scene_dir}", "data.image_size=8", "data.holdout_every=3",
                        "data.eval_sizes=[8, 16]"])
    data = TASK.build_data(cfg, None)
    assert len(data.train) == 4 * 8 * 8  # views 1, 2, 4, 5 train
    assert len(data.test) == 2 and data.test.scene.names == ["train/r_0.png", "train/r_3.png"]
    assert len(data.val) == 2 and data.val.sizes == [8]
    assert data.info["input_spec"]["image_size"] == [8, 8]
    with pytest.raises(ValueError, match="data.root: the folder source needs a scene folder"):
        TASK.build_data(_recipe_data(["data.source=folder"]), None)
    with pytest.raises(ValueError, match="data.source: unknown source 'blender'"):
        TASK.build_data(_recipe_data(["data.source=blender"]), None)


def test_evaluate_scores_a_perfect_and_a_blank_render(scene_dir):
    scene = S.read_scene(scene_dir).subset([0, 1])

    class Oracle(torch.nn.Module):
        """Renders the held-out images themselves (or white), to check the metric plumbing."""

        def __init__(self, blank):
            super().__init__()
            self.blank, self.i = blank, 0

        def render(self, c2w, h, w, focal, background, center):
            img = scene.composite(background)[self.i]
            self.i += 1
            return {"rgb": torch.ones_like(img) if self.blank else img}

    views = HeldOutViews(scene, [16], [1.0, 1.0, 1.0])
    perfect = TASK.evaluate(Oracle(False), views, None)
    assert perfect["psnr"] == pytest.approx(100.0) and perfect["ssim"] == pytest.approx(1.0, abs=1e-4)
    blank = TASK.evaluate(Oracle(True), views, None)
    assert 5 < blank["psnr"] < 30 and blank["ssim"] < 1


def test_train_resume_and_predict_on_a_tiny_scene(tmp_path):
    overrides = ["model.pretrained=false", "train.max_steps=4", "train.ckpt_every=2", *TINY]
    run_dir, result = train("nerf/finetune", overrides, runs_root=tmp_path)
    assert set(result["metrics"]) == {"psnr", "ssim"} and result["fit"]["steps"] == 4
    # resuming continues the step count and the occupancy grid from the checkpoint
    _, again = train(None, ["train.max_steps=6"], resume=run_dir)
    assert again["fit"]["steps"] == 6
    model = zoo.create(f"local-dir:{run_dir / 'model'}", pretrained=True)
    assert int(model.train_steps) == 6 and model.half_storage
    assert model.pretrained_cfg["input_spec"]["image_size"] == [16, 16]
    out = tmp_path / "pred"
    out.mkdir()
    gif, first = TASK.predict(model, None, out)
    assert gif.name == "turntable.gif" and Image.open(first).size == (32, 16)  # render | depth
    assert TASK.draw_sample(model, tmp_path / "sample.png").is_file()


def test_predict_renders_given_poses(scene_dir, tmp_path):
    model = _small_nerf().eval()
    model.pretrained_cfg["input_spec"] = {"image_size": [16, 16], "background": [1, 1, 1]}
    paths = TASK.predict(model, str(scene_dir / "transforms_train.json"), tmp_path)
    assert len(paths) == 6
    assert Image.open(paths[0]).size == (3 * 16, 16)  # truth | render | depth
    poses_only = tmp_path / "poses.json"
    poses_only.write_text(json.dumps({"camera_angle_x": 0.69, "frames": [
        {"file_path": "nowhere/r_0", "transform_matrix": S.look_at([0, -4, 1]).tolist()}]}))
    (path,) = TASK.predict(model, str(poses_only), tmp_path)
    assert Image.open(path).size == (2 * 16, 16)  # render | depth at the card's size


def test_finetune_cli_on_generated_scene(scene_dir, tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    if "nerf.lego" not in zoo.list_pretrained():
        pytest.skip("nerf.lego is not published yet")
    monkeypatch.chdir(tmp_path)
    rc = zoo_main(["finetune", "nerf", "--data", str(scene_dir), "train.max_steps=2", "data.image_size=16",
                   "data.eval_sizes=[16]", "train.batch_size=256", "data.holdout_every=3", "--runs", str(tmp_path)])
    assert rc == 0
    (run,) = tmp_path.glob("nerf-finetune-*")
    result = json.loads((run / "result.json").read_text())
    assert result["fit"]["steps"] == 2 and math.isfinite(result["metrics"]["psnr"])


@pytest.mark.slow
def test_card_metric_reproduces_with_zoo_eval(capsys):
    data_or_skip("nerf_synthetic", "lego")
    card = zoo.model_info("nerf.lego")
    assert zoo_main(["eval", "nerf.lego", "--json", "data.eval_sizes=[100]"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["psnr"] == pytest.approx(card["metrics"]["psnr"], abs=0.05)
    assert measured["psnr"] >= card["expect"]["value"] - card["expect"]["tolerance"]


def test_render_settings_have_their_own_section():
    """samples_per_step, random_background and occupancy_warmup are how training renders, not the scene:
    they live in `render:`; the old data.* keys are refused with the new place."""
    from zoo import recipes as R
    from zoo.engine.run import resolve_recipe

    resolved = resolve_recipe(R.load("nerf/lego")[0])[0]
    assert resolved["render"]["samples_per_step"] == 65536 and "samples_per_step" not in resolved["data"]
    with pytest.raises(R.RecipeError, match=r"data\.samples_per_step: task novel_view reads this from "
                                            r"render\.samples_per_step"):
        resolve_recipe(R.load("nerf/lego", ["data.samples_per_step=4096"])[0])

"""The bev family: the procedural world, its geometry against the model's projection and RigAugment,
the JSON layout and its validation, both models, the task's evaluate/predict, fine-tuning, the card."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import zoo
from zoo.cli import main
from zoo.families.bev import data as D
from zoo.families.bev.augment import RigAugment
from zoo.families.bev.model import project_points
from zoo.tasks import get_task

TINY = D.WorldConfig(image_size=(32, 56), vehicles=(3, 6), pedestrians=(0, 2))
TASK = get_task("bev_segmentation")


@pytest.fixture(scope="module")
def scenes():
    return D.generate_scenes(6, 7, TINY, cache=False)


@pytest.fixture(scope="module")
def json_dir(tmp_path_factory, scenes):
    folder = tmp_path_factory.mktemp("bev_json")
    D.write_json(scenes, folder, TINY)
    return folder


# --------------------------------------------------------------------------- the world


def test_generated_scenes_shapes_determinism_and_labels(scenes):
    assert scenes["images"].shape == (6, 6, 3, 32, 56) and scenes["images"].dtype == torch.uint8
    assert scenes["intrinsics"].shape == (6, 6, 3, 3) and scenes["cam_to_ego"].shape == (6, 6, 4, 4)
    assert scenes["labels"].shape == (6, 50, 50) and scenes["boxes"].shape[-1] == 8
    again = D.generate_scenes(2, 7, TINY, cache=False)  # scene i depends on (seed, i) only, not on n
    for key in ("images", "labels", "cam_to_ego"):
        assert torch.equal(again[key], scenes[key][:2])
    for labels, boxes in zip(scenes["labels"], scenes["boxes"]):
        assert torch.equal(labels, D.rasterize(boxes, TINY))  # labels are exactly the listed boxes
        assert (labels == 1).any()


def test_cache_is_keyed_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "data"))  # the read-only data root: never written to
    assert D.cache_dir() == tmp_path / "cache" / "bev_scenes"
    a = D.generate_scenes(1, 0, TINY)
    assert len(list((tmp_path / "cache" / "bev_scenes").glob("scenes-*.pt"))) == 1
    assert torch.equal(D.generate_scenes(1, 0, TINY)["images"], a["images"])
    D.generate_scenes(1, 0, D.WorldConfig(image_size=(32, 56), vehicles=(3, 7)))
    assert len(list((tmp_path / "cache" / "bev_scenes").glob("scenes-*.pt"))) == 2
    assert not (tmp_path / "data").exists()


def test_default_cache_is_under_the_user_cache_not_the_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "data"))
    assert D.cache_dir() == tmp_path / "zoo" / "bev_scenes"


def _red_box_scene(box):
    """One red box (class 2: no dark windows) on the exact rig, no noise: red pixels are exactly the box."""
    cfg = D.WorldConfig(image_size=(64, 112), rig_jitter=0.0, noise=0.0)
    k, e = D.make_rig(cfg.image_size)
    road = {"angle": 0.0, "offset": 0.0, "half_width": 8.0, "asphalt": 0.35, "grass": torch.tensor([0.3, 0.4, 0.2]),
            "waves": [(0.5, 1.0, 0.5, 0.0)], "sun": (0.0, 0.0, 1.0)}
    boxes = np.array([box], dtype=np.float32)
    images, visible, depth = D.render(boxes, np.array([[1.0, 0.0, 0.0]], dtype=np.float32), k, e, road, cfg)
    return images, depth, torch.from_numpy(k), torch.from_numpy(e), torch.from_numpy(boxes)


def _extent_of(points_uv):
    return points_uv.min(0).values, points_uv.max(0).values


def test_projection_lands_where_the_renderer_drew_the_box():
    """The model's projection of a box's corners bounds exactly the pixels the ray caster painted."""
    box = [9.0, 1.5, 0.85, 4.5, 1.9, 1.7, 0.4, 2]
    images, depth, k, e, boxes = _red_box_scene(box)
    front = D.CAMERAS.index("front")
    red = (images[front, 1] == 0) & (images[front, 2] == 0) & (images[front, 0] > 0)
    rows, cols = red.nonzero(as_tuple=True)
    assert len(rows) > 50
    corners = D.box_corners(boxes)  # (1, 8, 3)
    uv, corner_depth = project_points(corners, k[None], e[None])
    assert (corner_depth[0, front] > 0).all()
    lo, hi = _extent_of(uv[0, front])
    # Painted pixel centres (j + 0.5, i + 0.5) lie inside the projected outline and reach it within 1.5 px
    # (a pixel, plus the sliver of a corner's tip that no pixel centre falls on).
    assert cols.min() + 0.5 >= lo[0] - 0.01 and cols.max() + 0.5 <= hi[0] + 0.01
    assert rows.min() + 0.5 >= lo[1] - 0.01 and rows.max() + 0.5 <= hi[1] + 0.01
    assert cols.min() + 0.5 - lo[0] < 1.5 and hi[0] - cols.max() - 0.5 < 1.5
    assert rows.min() + 0.5 - lo[1] < 1.5 and hi[1] - rows.max() - 0.5 < 1.5
    # The depth map's blocks fully inside the box show depths between its nearest and farthest corner.
    inside = torch.nn.functional.avg_pool2d(red[None].float(), D.DEPTH_STRIDE)[0] == 1
    assert inside.any()
    block = depth[front][inside]
    near, far = corner_depth[0, front].min(), corner_depth[0, front].max()
    assert (block >= near - 1e-3).all() and (block <= far + 1e-3).all()
    assert (depth[front, 0] == D.SKY_DEPTH).all()  # the top row of blocks sees the sky

    # After RigAugment (rotation, flip, scale of the ego frame) the moved box still projects there.
    aug = RigAugment(rotate_degrees=40, flip_p=1.0, scale=(0.8, 1.2), photometric=False).train()
    labels = D.rasterize(boxes, D.WorldConfig())[None].long()
    out = aug(images[None], k[None], e[None], labels, points=corners, generator=3)
    assert not torch.allclose(out.cam_to_ego, e[None])
    uv2, depth2 = project_points(out.points, k[None], out.cam_to_ego)
    assert torch.allclose(uv2, uv, atol=1e-3) and torch.allclose(depth2, corner_depth, atol=1e-3)


def test_rig_augment_moves_labels_with_the_boxes(scenes):
    """Labels warped by RigAugment follow the boxes moved by the same transform (our grid's axes = RigAugment's)."""
    aug = RigAugment(rotate_degrees=30, flip_p=0.5, scale=(0.9, 1.1), photometric=False).train()
    images = scenes["images"].float() / 255
    boxes = scenes["boxes"]
    out = aug(images, scenes["intrinsics"], scenes["cam_to_ego"], scenes["labels"], points=boxes[..., :3], generator=0)
    checked = 0
    for b in range(len(boxes)):
        for (x, y, _), cls in zip(out.points[b].tolist(), boxes[b, :, 7].tolist()):
            i, j = math.floor(x + 25), math.floor(y + 25)  # 1 m cells from -25 m
            if cls == 1 and 1 <= i < 49 and 1 <= j < 49:
                assert out.bev_labels[b, i, j] == 1, (b, x, y)  # a vehicle's centre cell stays a vehicle cell
                checked += 1
        # Nearest resampling keeps the area (times the scale squared) up to edge cells.
        area = float(out.ego_transform[b, :2, :2].det().abs())
        before, after = int((scenes["labels"][b] == 1).sum()), int((out.bev_labels[b] == 1).sum())
        assert abs(after - before * area) <= 0.3 * before + 4
    assert checked >= 10


# --------------------------------------------------------------------------- the JSON layout


def test_json_round_trip(json_dir, scenes):
    data, layout = D.read_json(json_dir, (32, 56))
    assert layout.grid == (50, 50) and layout.classes == D.CLASSES
    assert torch.equal(data["labels"], scenes["labels"])
    assert (data["images"].int() - scenes["images"].int()).abs().max() <= 1
    assert torch.allclose(data["intrinsics"], scenes["intrinsics"])
    assert torch.allclose(data["cam_to_ego"], scenes["cam_to_ego"])
    half, _ = D.read_json(json_dir / "samples.json", (16, 28))  # resizing scales the intrinsics
    assert torch.allclose(half["intrinsics"][..., :2, :], scenes["intrinsics"][..., :2, :] / 2)


def _set(path, value):
    """An edit of the parsed samples.json: set the item at `path` (keys and indices) to `value`."""
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["samples"][1].pop("cam_to_ego"), r"samples\[1\]: missing key\(s\) \['cam_to_ego'\]"),
    (_set(("samples", 0, "intrinsics", 2), [[1, 0], [0, 1]]), r"samples\[0\]\.intrinsics\[2\]: expected a 3x3"),
    (_set(("samples", 2, "cam_to_ego", 0, 3), [0, 0, 1, 1]), r"samples\[2\]\.cam_to_ego\[0\]: .*last row"),
    (_set(("samples", 0, "images", 3), "images/nope.png"), r"samples\[0\]\.images\[3\]: file .*nope.png not found"),
    (lambda d: d["samples"][3]["images"].pop(), r"samples\[3\]\.images: expected a list of 6"),
    (_set(("bev", "grid"), [40, 50]), r"samples\[0\]\.bev_label: .* is 50x50, the declared bev.grid is 40x50"),
    (_set(("samples",), []), r"non-empty list under key 'samples'"),
])
def test_json_validation_names_file_and_key(json_dir, tmp_path, edit, message):
    doc = json.loads((json_dir / "samples.json").read_text())
    edit(doc)
    bad = json_dir / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message) as err:
        D.read_json(bad, (32, 56))
    assert str(err.value).startswith(str(bad))


def test_nuscenes_adapter_with_a_stub_devkit(tmp_path):
    """The adapter only needs nusc.sample / nusc.get / nusc.dataroot: a stub stands in for the devkit."""
    from PIL import Image

    k, e = D.make_rig((90, 160))
    from scipy.spatial.transform import Rotation

    turn = [math.cos(0.25), 0, 0, math.sin(0.25)]  # (w, x, y, z): 0.5 rad about z
    tables = {"ego_pose": {"ep": {"translation": [100.0, 50.0, 0.0], "rotation": turn}}}
    sample = {"data": {"LIDAR_TOP": "lidar"}, "anns": ["a0", "a1", "a2"]}
    tables["sample_data"] = {"lidar": {"ego_pose_token": "ep"}}
    tables["calibrated_sensor"] = {}
    for c, cam in enumerate(D.NUSCENES_CAMERAS):
        Image.new("RGB", (160, 90)).save(tmp_path / f"{cam}.jpg")
        sample["data"][cam] = cam
        tables["sample_data"][cam] = {"calibrated_sensor_token": cam, "filename": f"{cam}.jpg"}
        x, y, z, w = Rotation.from_matrix(e[c, :3, :3].astype(np.float64)).as_quat()
        tables["calibrated_sensor"][cam] = {"rotation": [w, x, y, z], "translation": e[c, :3, 3].tolist(),
                                            "camera_intrinsic": k[c].tolist()}
    # A car 10 m ahead of the ego car (heading 0.5 rad in the world = 0 in ego), a pedestrian, a barrier.
    ahead = [100 + 10 * math.cos(0.5), 50 + 10 * math.sin(0.5), 0.8]
    tables["sample_annotation"] = {
        "a0": {"category_name": "vehicle.car", "translation": ahead, "size": [1.9, 4.5, 1.6],
               "rotation": turn, "visibility_token": "4"},
        "a1": {"category_name": "human.pedestrian.adult", "translation": [100, 45, 0.9], "size": [0.6, 0.6, 1.7],
               "rotation": [1, 0, 0, 0], "visibility_token": "3"},
        "a2": {"category_name": "movable_object.barrier", "translation": [101, 51, 0.5], "size": [1, 1, 1],
               "rotation": [1, 0, 0, 0], "visibility_token": "4"}}

    class Stub:
        dataroot = str(tmp_path)

        def __init__(self):
            self.sample = [sample]

        def get(self, table, token):
            return tables[table][token]

    path = D.nuscenes_to_json(Stub(), tmp_path / "out")
    data, _ = D.read_json(path, (32, 56))
    assert torch.allclose(data["cam_to_ego"][0], torch.from_numpy(e), atol=1e-5)
    boxes = data["boxes"][0]
    assert boxes.shape[0] == 2 and torch.allclose(boxes[0, :2], torch.tensor([10.0, 0.0]), atol=1e-4)
    assert abs(float(boxes[0, 6])) < 1e-5 and boxes[0, 3] == 4.5 and boxes[1, 7] == 2
    assert data["labels"][0, 35, 25] == 1  # x = 10 m -> row 35, y = 0 -> column 25


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["bev", "bev_lss"])
def test_model_outputs_and_checks(name):
    model = zoo.create(name, grid=[20, 20], x_range=[-10, 10], y_range=[-10, 10])
    images, k, e = model.example_inputs(2)
    out = model(images, k, e)
    assert out["seg"].shape == (2, 2, 20, 20) and out["centre"].shape == (2, 1, 20, 20)
    assert out["bev"].shape == (2, 64, 20, 20)
    with pytest.raises(ValueError, match=r"expects intrinsics of shape \(2, 6, 3, 3\)"):
        model(images, k[:, :5], e)
    with pytest.raises(ValueError, match=r"expects cam_to_ego of shape"):
        model(images, k, e[..., :3, :])
    with pytest.raises(ValueError, match=r"expects images with a dtype"):
        model((images * 255).to(torch.uint8), k, e)


def test_temporal_input_and_alignment():
    model = zoo.create("bev", grid=[20, 20], x_range=[-10, 10], y_range=[-10, 10])
    images, k, e = model.example_inputs(1)
    first = model(images, k, e)
    second = model(images, k, e, prev_bev=first["bev"], prev_to_ego=torch.eye(4)[None])
    assert second["seg"].shape == first["seg"].shape
    # Moving 2 m forward: a previous BEV feature at x lands at x - 2 m, i.e. two rows (1 m cells) lower.
    prev = torch.zeros(1, 64, 20, 20)
    prev[:, :, 12, 7] = 1.0
    step = torch.eye(4)[None]
    step[0, 0, 3] = -2.0  # previous ego -> current ego
    moved = model.align_prev_bev(prev, step)
    assert moved[0, 0].argmax() == 10 * 20 + 7
    with pytest.raises(ValueError, match=r"expects prev_bev of shape \(1, 64, 20, 20\)"):
        model(images, k, e, prev_bev=torch.zeros(1, 64, 10, 10))


def test_timm_backbone_and_lss_frustum():
    small = {"grid": [10, 10], "x_range": [-10, 10], "y_range": [-10, 10]}
    model = zoo.create("bev", backbone="timm/mobilenetv3_small_050", **small)
    images, k, e = model.example_inputs(1)
    assert model(images, k, e)["seg"].shape == (1, 2, 10, 10)
    with pytest.raises(ValueError, match="backbone must be 'cnn' or 'timm/"):
        zoo.create("bev", backbone="resnet")
    lss = zoo.create("bev_lss")
    points = lss.frustum(k, e, 4, 7)  # (1, 6, D, 4, 7, 3) ego points of feature-pixel centres at every depth
    uv, depth = project_points(points.reshape(1, -1, 3), k, e)
    uv = uv.view(1, 6, 6, *points.shape[2:5], 2).diagonal(dim1=1, dim2=2).movedim(-1, 1)  # each camera's own points
    v, u = torch.meshgrid((torch.arange(4) + 0.5) * 8, (torch.arange(7) + 0.5) * 8, indexing="ij")
    assert torch.allclose(uv, torch.stack((u, v), -1).expand_as(uv), atol=1e-3)


# --------------------------------------------------------------------------- the task


@pytest.fixture(scope="module")
def tiny_data(scenes):
    split = {"train": scenes, "val": scenes, "test": scenes}
    return TASK._wrap(split, D.CLASSES, TINY.x_range, TINY.y_range, TINY.grid, "test", ["generated"])


def test_losses_targets_and_baselines(tiny_data, scenes):
    from zoo.families.bev.task import centre_heatmap

    heat = centre_heatmap(scenes["boxes"], TINY.x_range, TINY.y_range, TINY.grid)
    inside = (scenes["boxes"][..., 7] > 0) & (scenes["boxes"][..., :2].abs() < 25).all(-1)
    assert heat.shape == (6, 1, 50, 50) and int((heat == 1).sum()) == int(inside.sum())
    freq, thresholds = tiny_data.train.prior
    assert freq.shape == (2, 50, 50) and thresholds.shape == (2,)


def test_evaluate_and_predict(tiny_data, json_dir, tmp_path):
    from zoo.engine.trainer import Context

    model = zoo.create("bev", image_size=[32, 56])
    ctx = Context(recipe={"train": {"eval_batch_size": 4}, "data": {}}, task=TASK, device=torch.device("cpu"))
    with torch.no_grad():
        metrics = TASK.evaluate(model, tiny_data.test, ctx)
    for key in ("iou_vehicle", "iou_pedestrian", "constant_iou_vehicle", "prior_iou_vehicle",
                "iou_vehicle_over_baseline", "centre_f1"):
        assert key in metrics and math.isfinite(metrics[key])
    occupancy = float((tiny_data.test.tensors[3] == 1).float().mean())
    assert metrics["constant_iou_vehicle"] == pytest.approx(occupancy)
    with pytest.raises(ValueError, match=r"data's BEV grid \(50, 50\) .* differs from the model's \(20, 20\)"):
        TASK.evaluate(zoo.create("bev", grid=[20, 20], x_range=[-10, 10], y_range=[-10, 10]), tiny_data.test, ctx)
    paths = TASK.predict(model, str(json_dir), tmp_path / "pred")
    assert len(paths) == 6 and all(p.suffix == ".png" and p.stat().st_size > 1000 for p in paths)


def test_occupancy_boxes_fit_components():
    from zoo.families.bev.task import occupancy_boxes

    box = torch.tensor([[5.0, -3.0, 0.8, 9.0, 2.5, 1.6, 0.5, 1]])
    mask = (D.rasterize(box, D.WorldConfig()) == 1).numpy()
    (fitted,) = occupancy_boxes(mask, 1, (-25, 25), (-25, 25), 1.6)
    assert abs(fitted[0] - 5) < 0.5 and abs(fitted[1] + 3) < 0.5 and abs(math.sin(fitted[6] - 0.5)) < 0.15
    assert 8 < fitted[3] < 11 and 2 < fitted[4] < 4.5


def test_finetune_on_json_layout(json_dir, tmp_path, capsys):
    if "bev.synthetic" not in zoo.list_pretrained():
        pytest.skip("bev.synthetic is not published yet")
    code = main(["finetune", "bev", "--data", str(json_dir), "train.max_steps=2", "train.batch_size=2",
                 "train.log_every=1", "--runs", str(tmp_path)])
    assert code == 0
    run = next(tmp_path.iterdir())
    assert (run / "model" / "model.safetensors").is_file()
    assert "iou_vehicle" in json.loads((run / "result.json").read_text())["metrics"]


@pytest.mark.parametrize("tag", ["bev.synthetic", "bev_lss.synthetic"])
def test_card_metric_rechecked(tag, capsys):
    """`zoo eval TAG` on the card's 300 test scenes gives the card's vehicle IoU (a small training
    set is generated only for the prior baseline, which the card's metric does not use)."""
    if tag not in zoo.list_pretrained():
        pytest.skip(f"{tag} is not published yet")
    card = zoo.model_info(tag)
    assert main(["eval", tag, "--json", "data.n_train=8", "data.n_val=0"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["iou_vehicle"] == pytest.approx(card["metrics"]["iou_vehicle"], abs=1e-4)
    assert card["metrics"]["iou_vehicle_over_baseline"] >= 3

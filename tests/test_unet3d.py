"""The unet3d family: model, sliding window (and its memory), data readers, task, predict, finetune, cards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.cli import main as zoo_main
from zoo.families.unet3d import data as V
from zoo.families.unet3d.model import UNet3D, gaussian_importance, tile_starts
from zoo.families.unet3d.task import TASK, dice_ce_loss

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"
nib = pytest.importorskip("nibabel")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**kw) -> UNet3D:
    args = {"in_chans": 1, "num_classes": 3, "widths": [4, 8], "patch_size": 16, **kw}
    return UNet3D(**args).eval()


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("norm,upsample", [("instance", "transposed"), ("batch", "trilinear"), ("group", "transposed")])
def test_forward_shapes(norm, upsample):
    model = UNet3D(2, 4, [4, 8, 16], norm=norm, upsample=upsample, patch_size=16)
    x = torch.randn(2, 2, 16, 24, 8)
    assert model(x).shape == (2, 4, 16, 24, 8)
    assert model.example_inputs(1)[0].shape == (1, 2, 8, 8, 8)


def test_deep_supervision_returns_coarser_logits():
    model = UNet3D(1, 3, [4, 8, 16, 32], deep_supervision=True, patch_size=16)
    logits, aux = model(torch.randn(1, 1, 16, 16, 16), return_aux=True)
    assert logits.shape == (1, 3, 16, 16, 16)
    assert [a.shape[2:] for a in aux] == [(8, 8, 8), (4, 4, 4)]
    assert model(torch.randn(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)  # plain call: just logits


def test_bad_inputs_raise():
    model = tiny()
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        model(torch.randn(1, 16, 16, 16))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 1, 16, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(1, 1, 15, 16, 16))
    with pytest.raises(ValueError, match="widths"):
        UNet3D(1, 3, [8])
    with pytest.raises(ValueError, match="patch_size"):
        UNet3D(1, 3, [4, 8, 16], patch_size=18)  # factor 4
    with pytest.raises(ValueError, match="upsample"):
        UNet3D(1, 3, [4, 8], upsample="nearest")


def test_registry_create_and_adapt_prefixes():
    model = zoo.create("unet3d", widths=[4, 8], patch_size=16)
    assert model.pretrained_cfg["task"] == "volume_segmentation"
    keys = model.state_dict()
    assert f"{model.first_conv}.weight" in keys and "head.weight" in keys


# --------------------------------------------------------------------------- sliding window


def test_tiles_cover_every_voxel_with_overlap():
    for size, patch, overlap in [(100, 32, 0.5), (32, 32, 0.5), (33, 32, 0.25), (257, 64, 0.5)]:
        starts = tile_starts(size, patch, overlap)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + patch] = True
        assert covered.all() and starts[-1] + patch == max(size, patch)
        assert all(b - a <= patch * (1 - overlap) + 1 for a, b in zip(starts, starts[1:]))


def test_gaussian_importance_peaks_in_the_centre():
    g = gaussian_importance((16, 16, 16))
    assert g.max() == 1 and g.min() > 0
    assert torch.allclose(g, g.flip(0)) and torch.allclose(g, g.permute(2, 1, 0))
    assert g[7:9, 7:9, 7:9].min() == g.max()


def test_segment_single_tile_equals_forward_and_odd_sizes():
    model = tiny()
    x = torch.randn(1, 16, 16, 16)
    assert torch.equal(model.segment(x), model(x[None]).argmax(1)[0])
    odd = torch.randn(2, 1, 21, 9, 40)  # smaller than a tile on one axis, larger on another
    labels = model.segment(odd, overlap=0.5, sw_batch_size=3)
    probs = model.segment(odd, return_probs=True)
    assert labels.shape == (2, 21, 9, 40) and labels.dtype == torch.int64
    assert probs.shape == (2, 3, 21, 9, 40)
    assert torch.allclose(probs.sum(1), torch.ones(2, 21, 9, 40), atol=1e-5)
    assert torch.equal(probs.argmax(1), labels)
    model.train()
    model.segment(odd)
    assert model.training  # segment runs in eval mode and restores the mode


def test_segment_runs_tiles_in_batches_of_at_most_sw_batch_size():
    """A counting hook: every forward pass sees <= sw_batch_size tiles, and all tiles are run once."""
    model = tiny()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    model.segment(torch.randn(1, 40, 40, 40), patch_size=16, overlap=0.5, sw_batch_size=5)
    n_tiles = len(tile_starts(40, 16, 0.5)) ** 3
    assert max(seen) <= 5 and sum(seen) == n_tiles


MEMORY_SCRIPT = r"""
import resource, torch
torch.set_num_threads(1)
from zoo.families.unet3d.model import UNet3D
model = UNet3D(1, 8, [2, 2], patch_size=64)
volume = torch.randn(1, 256, 256, 256)
model.segment(torch.randn(1, 64, 64, 64), sw_batch_size=2)  # warm-up: allocator and kernels
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
labels = model.segment(volume, overlap=0.25, sw_batch_size=2)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, tuple(labels.shape))
"""


def test_segment_256_cubed_peak_memory_is_bounded():
    """Peak RSS growth while segmenting a 256^3 volume stays within the output buffers + one tile batch.

    Measured in a fresh process with resource.getrusage (ru_maxrss, the high-water mark of resident
    memory), so nothing the test session allocated before can hide the peak; torch's CPU
    allocations bypass tracemalloc. Bound: the blended output (8 classes x 4 bytes per voxel), the
    weight map (4 bytes), the int64 labels (8 bytes) and 256 MiB for the tile batch and its
    activations (2 tiles of 64^3). Keeping all 125 tiles' outputs instead would add 1000 MiB.
    """
    voxels = 256**3
    buffers = voxels * (8 * 4 + 4 + 8)
    bound = buffers + 256 * 2**20
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    grew, shape = out.stdout.split(maxsplit=1)
    assert shape.strip() == "(256, 256, 256)"
    assert int(grew) <= bound, f"peak grew by {int(grew) / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- data


def test_mni152_tissue_rule_and_split():
    pytest.importorskip("nilearn")
    vol = V.mni152_tissue(2)
    assert vol["image"].shape == (1, 99, 117, 95) and vol["label"].shape == (99, 117, 95)
    assert set(vol["label"].unique().tolist()) == {0, 1, 2}
    assert np.allclose(np.diag(vol["affine"]), [2, 2, 2, 1]) and np.isclose(vol["affine"][1, 3], -133.5)
    cfg = {k: f[1] for k, f in TASK.DATA_SCHEMA.items()}
    cfg.update(patch_size=32, patches=500, colin27=False)
    data = TASK.build_data(cfg, None)
    y_end = data.train.positions[:, 2].max().item() + 32  # exclusive end of the training patches
    test = data.test[0]
    test_start = 117 - test.label.shape[1]
    assert -133.5 + 2 * (y_end - 1) <= -10 and -133.5 + 2 * test_start >= 0  # no training patch in the test region
    assert test_start - y_end >= 5  # the gap, in 2 mm voxels
    batch = data.train.get_batch(torch.arange(4))
    assert batch["image"].shape == (4, 1, 32, 32, 32) and batch["label"].dtype == torch.int64


def test_colin27_grey_matter():
    if not Path(V.COLIN27_DIR, "ch2bet.nii.gz").is_file():
        pytest.skip(f"mricron-data not installed ({V.COLIN27_DIR})")
    vol = V.colin27_gm(2)
    assert vol["image"].shape[1:] == vol["gm"].shape == (91, 109, 91)
    assert 0.1 < vol["gm"].float().mean() < 0.3
    assert (vol["image"][0][vol["gm"]] != 0).all()  # grey matter lies inside the brain


def test_synthetic_volumes_are_reproducible_and_labelled():
    a_im, a_lab = V.synthetic_volumes(2, (48, 48, 48), seed=3)
    b_im, b_lab = V.synthetic_volumes(2, (48, 48, 48), seed=3)
    assert torch.equal(a_im[0], b_im[0]) and torch.equal(a_lab[1], b_lab[1])
    labels = torch.stack(a_lab)
    assert set(labels.unique().tolist()) <= {0, 1, 2} and (labels > 0).any()
    assert abs(float(a_im[0].mean())) < 1e-3  # z-scored


def test_patch_dataset_gathers_exact_patches_inside_boxes():
    images = [torch.randn(2, 20, 24, 28), torch.randn(2, 12, 30, 16)]
    labels = [torch.randint(0, 3, (20, 24, 28)), torch.randint(0, 3, (12, 30, 16))]
    ds = V.PatchDataset(images, labels, (8, 8, 8), 50, seed=0, foreground_ratio=0.5)
    batch = ds.get_batch(torch.arange(50))
    for i, (v, z, y, x) in enumerate(ds.positions.tolist()):
        assert torch.equal(batch["image"][i], images[v][:, z:z + 8, y:y + 8, x:x + 8])
        assert torch.equal(batch["label"][i], labels[v][z:z + 8, y:y + 8, x:x + 8])
    boxed = V.PatchDataset(images[:1], labels[:1], (8, 8, 8), 50, 0, boxes=[((0, 0, 0), (20, 10, 28))])
    assert (boxed.positions[:, 2] + 8 <= 10).all()
    with pytest.raises(ValueError, match="smaller than the patch"):
        V.PatchDataset(images[:1], labels[:1], (8, 8, 8), 5, 0, boxes=[((0, 0, 0), (20, 6, 28))])


def _nifti(path: Path, array, spacing=(1.0, 1.0, 1.0)) -> Path:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.0]
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def make_folder(root: Path, n: int = 3, modalities: int = 2, classes: int = 4, shape=(20, 20, 20)) -> Path:
    """Generated NIfTI cases in nnU-Net layout: images/<case>_000k.nii.gz + labels/<case>.nii.gz."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        label = np.zeros(shape, np.uint8)
        for k in range(1, classes):
            z = rng.integers(0, shape[0] - 6)
            label[z:z + 6, 2 * k:2 * k + 5, 4:14] = k
        for m in range(modalities):
            img = (label * (m + 1) + rng.normal(0, 0.3, shape) + 5).astype(np.float32)
            _nifti(root / "images" / f"case{i}_{m:04d}.nii.gz", img)
        _nifti(root / "labels" / f"case{i}.nii.gz", label)
    return root


def test_read_pairs_reads_modalities_and_npy(tmp_path):
    root = make_folder(tmp_path / "d", n=2)
    np.save(root / "images" / "extra.npy", np.ones((2, 20, 20, 20), np.float32))
    np.save(root / "labels" / "extra.npy", np.zeros((20, 20, 20), np.int64))
    cases = {c.name: c for c in V.read_pairs(root)}
    assert set(cases) == {"case0", "case1", "extra"}
    assert cases["case0"].image.shape == (2, 20, 20, 20) and cases["case0"].label.max() == 3


@pytest.mark.parametrize("problem,match", [
    ("shape", "label shape"),
    ("float_labels", "must be integers"),
    ("label_spacing", "spacing"),
    ("case_spacing", "resample"),
    ("orphan", "without a label"),
    ("missing_image", "no image"),
    ("negative", ">= 0"),
])
def test_read_pairs_errors_name_the_file(tmp_path, problem, match):
    root = make_folder(tmp_path / "d", n=2, modalities=1)
    culprit = root / "labels" / "case1.nii.gz"
    if problem == "shape":
        _nifti(culprit, np.zeros((20, 20, 19), np.uint8))
    elif problem == "float_labels":
        _nifti(culprit, np.full((20, 20, 20), 0.5, np.float32))
    elif problem == "label_spacing":
        _nifti(culprit, np.zeros((20, 20, 20), np.uint8), spacing=(1.0, 1.0, 2.0))
    elif problem == "case_spacing":
        culprit = root / "images" / "case1_0000.nii.gz"
        _nifti(culprit, np.ones((20, 20, 20), np.float32), spacing=(2.0, 2.0, 2.0))
        _nifti(root / "labels" / "case1.nii.gz", np.zeros((20, 20, 20), np.uint8), spacing=(2.0, 2.0, 2.0))
    elif problem == "orphan":
        culprit = _nifti(root / "images" / "lonely.nii.gz", np.ones((20, 20, 20), np.float32))
    elif problem == "missing_image":
        culprit = _nifti(root / "labels" / "ghost.nii.gz", np.zeros((20, 20, 20), np.uint8))
    elif problem == "negative":
        _nifti(culprit, np.full((20, 20, 20), -1, np.int16))
    with pytest.raises(ValueError, match=match) as err:
        V.read_pairs(root)
    assert culprit.name in str(err.value)


# --------------------------------------------------------------------------- task


def test_dice_ce_loss_is_low_for_a_confident_correct_prediction():
    target = torch.randint(0, 3, (2, 8, 8, 8))
    good = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 20
    bad = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
    assert dice_ce_loss(good, target)[0] < 0.01
    loss, logs = dice_ce_loss(bad, target)
    loss.backward()
    assert loss > 0.5 and bad.grad is not None and set(logs) == {"ce", "soft_dice"}


def _recipe(**data) -> dict:
    from zoo.engine.run import resolve_recipe

    raw = {"task": "volume_segmentation", "model": {"name": "unet3d"},
           "data": {"source": "synthetic", "shape": [32, 32, 32], "n_train": 1, "n_val": 1, "n_test": 2,
                    "patch_size": 16, "patches": 8, **data}}
    return resolve_recipe(raw)[0]


def test_train_step_with_augment_and_deep_supervision_and_evaluate():
    from zoo.engine.trainer import Context

    recipe = _recipe()
    ctx = Context(recipe=recipe, task=TASK, device=torch.device("cpu"))
    data = TASK.build_data(recipe["data"], ctx)
    model = UNet3D(1, 3, [4, 8, 16], deep_supervision=True, patch_size=16)
    ctx.augment = TASK.build_augment(recipe["augment"], data, ctx.device)
    loss, logs = TASK.train_step(model, data.train.get_batch(torch.arange(2)), ctx)
    loss.backward()
    assert torch.isfinite(loss) and model.encoders[0][0].conv.weight.grad is not None
    model.eval()
    metrics = TASK.evaluate(model, data.test, ctx)
    assert set(metrics) == {"mean_dice", "dice_ellipsoid", "dice_box"}
    assert all(0 <= v <= 1 for v in metrics.values())


def test_predict_writes_nifti_with_affine_and_png(tmp_path):
    model = zoo.create("unet3d", widths=[4, 8], patch_size=16)
    # a card at 2 mm forces the resampling path (zoo.transforms: nibabel resampling there and back)
    model.pretrained_cfg["input_spec"] = {"channels": 1, "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [16, 16, 16]}
    img = _nifti(tmp_path / "scan.nii.gz", np.random.default_rng(0).normal(size=(21, 18, 30)).astype(np.float32))
    seg_path, png = TASK.predict(model, str(img), tmp_path / "out")
    seg = nib.load(str(seg_path))
    assert seg.shape == (21, 18, 30)
    assert np.allclose(seg.affine, nib.load(str(img)).affine)
    assert png.suffix == ".png" and png.stat().st_size > 1000
    with pytest.raises(ValueError, match="channel"):
        TASK.predict(zoo.create("unet3d", widths=[4, 8], in_chans=2), str(img), tmp_path / "out2")


# --------------------------------------------------------------------------- published weights


def _published(tag: str) -> dict:
    cfg = WEIGHTS / tag / "config.json"
    if not cfg.is_file():
        pytest.skip(f"{tag} not exported yet")
    return json.loads(cfg.read_text())


def test_finetune_on_nifti_folder_adapts_modalities_and_classes(tmp_path):
    _published("unet3d.mni152_tissue")
    data = make_folder(tmp_path / "data", n=3, modalities=2, classes=4)
    runs = tmp_path / "runs"
    code = zoo_main(["finetune", "unet3d", "--data", str(data), "train.max_steps=2", "train.log_every=1",
                     "data.patch_size=16", "data.patches=4", "train.eval_every=100", "--runs", str(runs)])
    assert code == 0
    run = next(runs.iterdir())
    card = json.loads((run / "model" / "config.json").read_text())
    assert card["model_args"]["in_chans"] == 2 and card["model_args"]["num_classes"] == 4
    tuned = zoo.create(f"local-dir:{run / 'model'}", pretrained=True)
    assert tuned.encoders[0][0].conv.weight.shape[1] == 2 and tuned.head.weight.shape[0] == 4
    assert tuned.segment(torch.randn(2, 20, 20, 20)).max() <= 3


def test_zoo_eval_on_a_folder_reads_the_folder(tmp_path, capsys):
    """`zoo eval TAG --data FOLDER` switches the card's recipe to the folder source and scores every case."""
    _published("unet3d.mni152_tissue")
    data = make_folder(tmp_path / "data", n=2, modalities=1, classes=3)
    assert zoo_main(["eval", "unet3d.mni152_tissue", "--data", str(data), "data.val_fraction=1", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(measured) == {"mean_dice", "dice_class1", "dice_class2"}  # the folder's classes, not MNI152's


def test_default_model_loads_and_segments():
    _published("unet3d.mni152_tissue")
    model = zoo.create("unet3d", pretrained=True)
    assert model.pretrained_cfg["tag"] == "unet3d.mni152_tissue"
    assert model.pretrained_cfg["labels"] == V.TISSUE_LABELS
    (x,) = TASK.sample_input(model)
    assert model(x).shape[1] == 3


@pytest.mark.parametrize("tag", ["unet3d.synthetic", "unet3d.mni152_tissue"])
def test_zoo_eval_matches_the_card(tag, capsys):
    card = _published(tag)
    if tag == "unet3d.mni152_tissue":
        pytest.importorskip("nilearn")
    assert zoo_main(["eval", tag, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metric = card["expect"]["metric"]
    assert measured[metric] == pytest.approx(card["metrics"][metric], abs=1e-3)
    assert measured[metric] >= card["expect"]["value"] - card["expect"]["tolerance"]

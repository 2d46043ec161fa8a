"""zoo.transforms: for published tags, the field's own loader -> zoo.transforms -> the model gives the card's
metric on the card's evaluation data; unet3d gives the same segmentation in any orientation and spacing.

Tags whose full evaluation takes long on 2 CPU cores are marked slow (`pytest -m slow tests/test_transforms.py`);
where a default-suite check uses a fixed slice of the evaluation data, its test says so.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from tests.conftest import data_or_skip
from zoo.specs import ImageSpec, ObservationSpec, VolumeSpec, spec_class, spec_of

torch.set_num_threads(1)


def _card(tag: str) -> dict:
    return zoo.model_info(tag)


# --------------------------------------------------------------------------- the typed specs


@pytest.mark.parametrize("tag", zoo.list_pretrained())
def test_every_card_has_a_typed_input_spec_with_its_task_keys(tag):
    card = _card(tag)
    spec = spec_of(card)
    assert sorted(card["input_spec"]) == sorted(spec.to_dict()), "the card's keys are the spec class's fields"
    assert type(spec).from_dict(spec.to_dict()) == spec
    assert isinstance(zoo.transforms(tag), zoo.transforms.Transform)
    assert spec.describe() and "None" not in spec.describe()


def test_specs_refuse_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"unknown input_spec key\(s\) \['sise'\]"):
        ImageSpec.from_dict({"sise": [28, 28], "channels": 1})
    with pytest.raises(ValueError, match=r"lacks \['spacing_mm', 'patch_size'\]"):
        VolumeSpec.from_dict({"channels": 1})
    with pytest.raises(KeyError, match="no input spec for task 'poetry'"):
        spec_class("poetry")


def test_transforms_of_a_name_without_a_card_says_so():
    with pytest.raises(ValueError, match="no published weights"):
        zoo.transforms("nerf_vanilla")


# --------------------------------------------------------------------------- gcn: Planetoid(root, name)


def _planetoid(tmp_path: Path, name: str):
    from torch_geometric.datasets import Planetoid

    raw = data_or_skip("planetoid", name, "raw")
    (tmp_path / name).mkdir()
    (tmp_path / name / "raw").symlink_to(raw, target_is_directory=True)  # PyG writes processed/ beside raw/
    return Planetoid(str(tmp_path), name)[0]


@pytest.mark.parametrize("tag", ["gcn.cora", "gcn.citeseer", "dagnn.cora"])
def test_gcn_planetoid_through_transforms_gives_the_card_accuracy(tmp_path, tag):
    card = _card(tag)
    data = _planetoid(tmp_path, card["input_spec"]["dataset"])
    model = zoo.create(tag, pretrained=True)
    with torch.no_grad():
        raw_pred = model(data.x, data.edge_index).argmax(1)
        ready = zoo.transforms(tag)(data)
        pred = model(ready.x, ready.edge_index).argmax(1)
    acc = float((pred[data.test_mask] == data.y[data.test_mask]).float().mean())
    assert acc == pytest.approx(card["metrics"]["accuracy"], abs=1e-3)
    raw_acc = float((raw_pred[data.test_mask] == data.y[data.test_mask]).float().mean())
    assert raw_acc < acc  # the preprocessing matters: without it the card's number is not reached


# --------------------------------------------------------------------------- cnn: uint8 images / PIL


def test_cnn_digits_sklearn_through_transforms_gives_the_card_accuracy():
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    card = _card("cnn.digits")
    digits = load_digits()
    _, test = train_test_split(np.arange(len(digits.images)), test_size=0.5, stratify=digits.target,
                               random_state=0)  # the card's split (zoo.data.images.digits_split)
    images = torch.from_numpy(np.round(digits.images[test] * (255 / 16)).astype(np.uint8))[:, None]  # 0-16 -> uint8
    t = zoo.transforms("cnn.digits")
    model = zoo.create("cnn.digits", pretrained=True)
    with torch.no_grad():
        pred = model(t(images)).argmax(1).numpy()
    acc = float((pred == digits.target[test]).mean())
    assert acc == pytest.approx(card["metrics"]["accuracy"], abs=2e-3)
    one = Image.fromarray(images[0, 0].numpy())  # a PIL image gives the same tensor as the uint8 one
    assert torch.allclose(t(one), t(images[:1]))
    assert torch.allclose(t(one.convert("RGB")), t(images[:1]), atol=1e-6)


def _fashion_mnist_test(tmp_path: Path):
    """torchvision's FashionMNIST(root, train=False) on the Debian package's files (no download)."""
    from torchvision.datasets import FashionMNIST

    src = Path("/usr/share/datasets/fashion-mnist")
    if not (src / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not available: {src} (apt-get install dataset-fashion-mnist)")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte",
                 "train-labels-idx1-ubyte"):
        with gzip.open(src / f"{name}.gz") as f, open(raw / name, "wb") as out:
            shutil.copyfileobj(f, out)
    return FashionMNIST(str(tmp_path), train=False, download=False)


def test_cnn_fashion_mnist_torchvision_through_transforms(tmp_path):
    """Full 10,000 test images, one view each: the card's accuracy_single_view (its headline averages 10 views)."""
    card = _card("cnn.fashion_mnist")
    ds = _fashion_mnist_test(tmp_path)
    t = zoo.transforms("cnn.fashion_mnist")
    model = zoo.create("cnn.fashion_mnist", pretrained=True)
    assert torch.allclose(t(ds[0][0]), t(ds.data[:1, None]))  # PIL (what the dataset yields) == uint8 tensor
    correct = 0
    with torch.no_grad():
        for start in range(0, len(ds), 1000):
            x = t(ds.data[start:start + 1000, None])
            correct += int((model(x).argmax(1) == ds.targets[start:start + 1000]).sum())
    assert correct / len(ds) == pytest.approx(card["metrics"]["accuracy_single_view"], abs=1e-3)


# --------------------------------------------------------------------------- dqn: gymnasium observations


def _greedy_returns(tag: str, episodes: int, seed: int) -> list[float]:
    import gymnasium as gym

    spec = spec_of(_card(tag))
    assert isinstance(spec, ObservationSpec)
    model = zoo.create(tag, pretrained=True)
    t = zoo.transforms(tag)
    if spec.env.startswith("MinAtar/"):
        import minatar.gym

        minatar.gym.register_envs()
    kwargs = {"max_episode_steps": spec.max_episode_steps} if spec.max_episode_steps else {}
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(spec.env, **spec.env_kwargs, **kwargs)] * min(10, episodes))
    n = envs.num_envs
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    done, ret, returns = [0] * n, np.zeros(n), []
    obs, _ = envs.reset(seed=seed)
    with torch.no_grad():
        while any(d < q for d, q in zip(done, quota)):
            obs, rew, term, trunc, _ = envs.step(model(t(obs)).argmax(1).numpy())
            ret += rew
            for i in np.flatnonzero(term | trunc):
                if done[i] < quota[i]:
                    returns.append(float(ret[i]))
                    done[i] += 1
                ret[i] = 0
    envs.close()
    return returns


def test_dqn_cartpole_gymnasium_observations_through_transforms():
    """A fixed slice: 10 of the card's 100 greedy evaluation episodes (same seed)."""
    card = _card("dqn.cartpole")
    returns = _greedy_returns("dqn.cartpole", 10, card["input_spec"]["evaluation"]["seed"])
    assert np.mean(returns) >= card["metrics"]["return_mean"] - 25  # the card: 500 in every episode


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["dqn.cartpole", "dqn.acrobot", "dqn.lunarlander", "dqn.minatar_breakout"])
def test_dqn_card_return_through_transforms(tag):
    card = _card(tag)
    ev = card["input_spec"]["evaluation"]
    returns = _greedy_returns(tag, ev["episodes"], ev["seed"])
    assert len(returns) == ev["episodes"]
    assert np.mean(returns) == pytest.approx(card["metrics"]["return_mean"], abs=0.01)  # measured: equal


def test_minatar_observation_moves_channels_first():
    t = zoo.transforms("dqn.minatar_breakout")
    raw = np.zeros((10, 10, 4), dtype=bool)
    raw[2, 3, 1] = True
    x = t(raw)
    assert x.shape == (1, 4, 10, 10) and x.dtype == torch.float32 and x[0, 1, 2, 3] == 1
    with pytest.raises(ValueError, match=r"observations are \[10, 10, 4\]"):
        t(np.zeros((4, 10)))


# --------------------------------------------------------------------------- unet3d: NIfTI in any orientation


def _mni152():
    """The nilearn MNI152 T1w template as nibabel loads it, and its 1 mm tissue labels (the card's rule)."""
    nib = pytest.importorskip("nibabel")
    from zoo.families.unet3d.data import MNI152_FILES, nilearn_data_dir

    root = nilearn_data_dir()
    t1 = nib.load(str(root / MNI152_FILES["t1"]))
    gm, wm = (np.asarray(nib.load(str(root / MNI152_FILES[k])).dataobj) / 255.0 for k in ("gm", "wm"))
    return t1, np.argmax(np.stack([1 - gm - wm, gm, wm]), 0)


def _reoriented(img, codes: str):
    """A copy of `img` with its voxel axes permuted and flipped to `codes` (the same world, another array)."""
    import nibabel as nib
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

    ornt = ornt_transform(axcodes2ornt(nib.aff2axcodes(img.affine)), axcodes2ornt(codes))
    data = np.asarray(img.dataobj)
    return nib.Nifti1Image(apply_orientation(data, ornt), img.affine @ inv_ornt_aff(ornt, data.shape))


def _dice(a, b, classes=(1, 2)) -> list[float]:
    return [float(2 * ((a == c) & (b == c)).sum() / max(1, (a == c).sum() + (b == c).sum())) for c in classes]


def test_unet3d_permuted_and_flipped_nifti_gives_the_same_input_and_segmentation():
    t1, _ = _mni152()
    crop = t1.slicer[60:140, 90:170, 60:140]  # 8 cm of the template around the ventricles (the affine follows)
    turned = _reoriented(crop, "SLP")
    t = zoo.transforms("unet3d.mni152_tissue")
    x = t(crop)
    assert x.shape == (1, 1, 41, 41, 41) and torch.equal(t(turned), x)  # the model sees exactly the same volume
    fake = torch.randint(0, 3, x.shape[2:])
    back, back_turned = t.to_input_grid(fake, crop), t.to_input_grid(fake, turned)
    assert np.array_equal(back.affine, crop.affine) and np.array_equal(back_turned.affine, turned.affine)
    assert np.array_equal(np.asarray(_reoriented(back_turned, "RAS").dataobj), np.asarray(back.dataobj))


def test_unet3d_a_2mm_copy_on_another_grid_gives_the_same_segmentation():
    """A fixed slice: an 8 cm crop, resampled to 2 mm on an LPS grid shifted by half a voxel."""
    from nibabel.processing import resample_from_to

    t1, _ = _mni152()
    crop = t1.slicer[60:140, 90:170, 60:140]
    affine = np.diag([-2.0, -2.0, 2.0, 1.0])
    affine[:3, 3] = (crop.affine @ np.array([79, 79, 0, 1.0]))[:3] + 0.5
    copy = resample_from_to(crop, ((40, 40, 40), affine), order=1)
    t = zoo.transforms("unet3d.mni152_tissue")
    model = zoo.create("unet3d.mni152_tissue", pretrained=True)
    seg = t.to_input_grid(model.segment(t(crop)[0], return_probs=True), crop)
    seg_copy = np.asarray(t.to_input_grid(model.segment(t(copy)[0], return_probs=True), copy).dataobj)
    assert seg_copy.shape == copy.shape
    seg_on_copy = np.asarray(resample_from_to(seg, copy, order=0).dataobj)
    brain = np.asarray(copy.dataobj) > 0
    assert (seg_on_copy[brain] == seg_copy[brain]).mean() > 0.9  # measured 0.915 (2 mm partial volumes)
    assert min(_dice(seg_on_copy, seg_copy)) > 0.88  # measured 0.908 (grey), 0.931 (white)


@pytest.mark.slow
def test_unet3d_card_dice_through_nibabel_and_transforms(tmp_path):
    """The card's evaluation data (the template block-averaged to 2 mm) written as a NIfTI and read back by nibabel,
    and the 1 mm original, each segmented whole and mapped back: Dice on the test region (MNI y >= 0.5 mm) passes
    the card's check (expect value - tolerance) and lies within 0.03 of the card's value, which was measured by
    segmenting the test region alone (measured on the previous, 1,200-step weights: 0.929 at 2 mm, 0.915 at 1 mm)."""
    import nibabel as nib

    from zoo.families.unet3d.data import block_affine, block_mean, mni152_tissue

    card = _card("unet3d.mni152_tissue")
    t = zoo.transforms("unet3d.mni152_tissue")
    model = zoo.create("unet3d.mni152_tissue", pretrained=True)
    t1, label_1mm = _mni152()
    nib.save(nib.Nifti1Image(block_mean(np.asarray(t1.dataobj), 2), block_affine(t1.affine, 2)), tmp_path / "t1.nii.gz")
    img = nib.load(tmp_path / "t1.nii.gz")
    label = mni152_tissue(2)["label"].numpy()
    expect = card["expect"]
    for image, truth in ((img, label), (t1, label_1mm)):
        seg = np.asarray(t.to_input_grid(model.segment(t(image)[0], return_probs=True), image).dataobj)
        j = np.arange(image.shape[1])
        front = (image.affine @ np.stack([0 * j, j, 0 * j, 0 * j + 1]))[1] >= 0.5
        dice = float(np.mean(_dice(seg[:, front], truth[:, front])))
        assert dice >= expect["value"] - expect["tolerance"]
        assert dice == pytest.approx(card["metrics"]["mean_dice"], abs=0.03)


# --------------------------------------------------------------------------- patchcore: PIL images


def _mvtec_scores(tag: str, per_folder: int | None = None):
    """(labels, image scores) of the card's MVTec-layout test set (or its first `per_folder` images of each
    folder), read with PIL as anomalib's Folder would."""
    import yaml
    from PIL import Image

    from zoo.families.patchcore.data import make_texture_benchmark
    from zoo.weights import resolve

    data = yaml.safe_load((resolve(tag) / "recipe.yaml").read_text())["data"]
    root = make_texture_benchmark(data["texture"], data["root"], n_train=data["n_train"], n_test=data["n_test"],
                                  image_size=data["image_size"], seed=data.get("seed", 0))
    files = [f for d in sorted((root / "test").iterdir()) for f in sorted(d.glob("*.png"))[:per_folder]]
    t = zoo.transforms(tag)
    model = zoo.create(tag, pretrained=True)
    with torch.no_grad():
        scores = torch.cat([model(torch.cat([t(Image.open(f)) for f in files[i:i + 16]]))["score"]
                            for i in range(0, len(files), 16)])
    return np.array([f.parent.name != "good" for f in files]), scores.numpy()


def test_patchcore_pil_images_through_transforms_a_fixed_slice():
    """A fixed slice: the first 3 images of each of the 5 test folders of patchcore.brick (card: all 75)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _mvtec_scores("patchcore.brick", per_folder=3)
    assert len(labels) == 15 and roc_auc_score(labels, scores) == pytest.approx(
        _card("patchcore.brick")["metrics"]["image_auroc"], abs=5e-3)


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["patchcore.brick", "patchcore.grass", "patchcore.gravel"])
def test_patchcore_pil_images_through_transforms_give_the_card_auroc(tag):
    from sklearn.metrics import roc_auc_score

    labels, scores = _mvtec_scores(tag)
    assert roc_auc_score(labels, scores) == pytest.approx(_card(tag)["metrics"]["image_auroc"], abs=5e-3)


# --------------------------------------------------------------------------- nerf: a transforms.json camera


def test_nerf_transforms_json_cameras_give_the_card_psnr():
    """The card's 9 held-out lego views, read with json + PIL, rendered at 100x100 through zoo.transforms."""
    from PIL import Image

    lego = data_or_skip("nerf_synthetic", "lego")
    meta = json.loads((lego / "transforms_train.json").read_text())
    t = zoo.transforms("nerf.lego")
    model = zoo.create("nerf.lego", pretrained=True)
    psnrs = []
    for frame in meta["frames"]:
        if frame["file_path"] not in {f"./train/r_{i}" for i in range(0, 90, 10)}:
            continue
        rgba = torch.from_numpy(np.asarray(Image.open(lego / f"{frame['file_path']}.png"), dtype=np.float32) / 255)
        rgba[..., :3] *= rgba[..., 3:]  # premultiplied, then area-averaged to the card's size as a camera would
        small = torch.nn.functional.interpolate(rgba.permute(2, 0, 1)[None], size=(100, 100), mode="area")[0]
        target = (small[:3] + (1 - small[3:])).permute(1, 2, 0)  # on the card's white background
        rgb = model.render(**t(frame, meta))["rgb"]
        psnrs.append(float(-10 * torch.log10(((rgb - target) ** 2).mean())))
    assert len(psnrs) == 9
    assert np.mean(psnrs) == pytest.approx(_card("nerf.lego")["metrics"]["psnr"], abs=0.1)


# --------------------------------------------------------------------------- bev: the camera rig


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["bev.synthetic", "bev_lss.synthetic"])
def test_bev_rigs_in_the_json_layout_give_the_card_iou(tmp_path, tag):
    """The card's 300 generated test scenes written in zoo's BEV JSON layout, read back with json + PIL as rigs."""
    import yaml
    from PIL import Image

    from zoo.families.bev import data as D
    from zoo.families.bev.task import iou_counts
    from zoo.tasks import get_task
    from zoo.weights import resolve

    data = yaml.safe_load((resolve(tag) / "recipe.yaml").read_text())["data"]
    world = get_task("bev_segmentation")._world(data)
    samples = D.write_json(D.generate_scenes(data["n_test"], 3 * data["seed"] + 2, world), tmp_path, world)
    doc = json.loads(samples.read_text())
    t = zoo.transforms(tag)
    model = zoo.create(tag, pretrained=True)
    counts = torch.zeros(2, 2, dtype=torch.float64)
    with torch.no_grad():
        for s in doc["samples"]:
            rig = [{"image": Image.open(tmp_path / p), "intrinsics": k, "cam_to_ego": e}
                   for p, k, e in zip(s["images"], s["intrinsics"], s["cam_to_ego"])]
            labels = torch.from_numpy(np.asarray(Image.open(tmp_path / s["bev_label"])).astype(np.int64))[None]
            counts += iou_counts(model(*t(rig))["seg"].float().sigmoid(), labels)
    iou = (counts[0] / counts[1].clamp(min=1)).tolist()
    assert iou[0] == pytest.approx(_card(tag)["metrics"]["iou_vehicle"], abs=5e-3)


@pytest.mark.slow
def test_unet3d_synthetic_card_dice_through_nifti_in_lps(tmp_path):
    """The card's 8 generated test volumes saved as NIfTI in LPS voxel order, read by nibabel: the card's Dice."""
    import nibabel as nib
    import yaml

    from zoo.families.unet3d.data import synthetic_volumes
    from zoo.weights import resolve

    data = yaml.safe_load((resolve("unet3d.synthetic") / "recipe.yaml").read_text())["data"]
    images, labels = synthetic_volumes(data["n_test"], tuple(data["shape"]), data["seed"] * 1000 + 2,
                                       noise=data["noise"], bias=data["bias"])
    t = zoo.transforms("unet3d.synthetic")
    model = zoo.create("unet3d.synthetic", pretrained=True)
    counts = np.zeros((2, 2))
    for i, (image, label) in enumerate(zip(images, labels)):
        path = tmp_path / f"case{i}.nii.gz"
        nib.save(_reoriented(nib.Nifti1Image(image[0].numpy(), np.eye(4)), "LPS"), path)
        img = nib.load(path)
        seg = np.asarray(t.to_input_grid(model.segment(t(img)[0], overlap=data["overlap"]), img).dataobj)
        truth = np.asarray(_reoriented(nib.Nifti1Image(label.numpy().astype(np.uint8), np.eye(4)), "LPS").dataobj)
        for c in (1, 2):
            counts[c - 1] += (2 * ((seg == c) & (truth == c)).sum(), (seg == c).sum() + (truth == c).sum())
    dice = float(np.mean(counts[:, 0] / counts[:, 1]))
    assert dice == pytest.approx(_card("unet3d.synthetic")["metrics"]["mean_dice"], abs=2e-3)


def test_transforms_of_a_folder_a_run_and_a_model_read_their_own_card(tmp_path):
    model = zoo.create("cnn.fashion_mnist", pretrained=True, in_chans=3, num_classes=4)
    folder = zoo.save_pretrained(model, tmp_path / "run" / "model")
    for name in (model, str(folder), f"local-dir:{folder}", str(tmp_path / "run")):
        t = zoo.transforms(name)
        assert t.spec.channels == 3 and t(torch.zeros(3, 28, 28, dtype=torch.uint8)).shape == (1, 3, 28, 28)

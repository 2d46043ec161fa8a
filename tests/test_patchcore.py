"""PatchCore: the offline backbone mapping, search and coreset, the model, the data readers and
generators, the task's fit/evaluate/predict, fine-tuning through the CLI, and the published cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.families.patchcore import data as A
from zoo.families.patchcore.heldout import HELDOUT_DEFECTS, heldout_sample, make_heldout_benchmark
from zoo.families.patchcore.model import PatchCore, efficientnet_lite_imagenet, greedy_coreset, nearest_neighbours
from zoo.tasks import get_task

torch.set_num_threads(1)


def _write_mvtec(root: Path, size: int = 48, n_train: int = 4) -> Path:
    rng = np.random.default_rng(0)

    def img(path, arr=None):
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(90, 160, (size, size, 3), dtype=np.uint8) if arr is None else arr
        Image.fromarray(arr).save(path)

    for i in range(n_train):
        img(root / "train" / "good" / f"{i:03d}.png")
    img(root / "test" / "good" / "000.png")
    defect = rng.integers(90, 160, (size, size, 3), dtype=np.uint8)
    defect[10:20, 10:20] = 0
    img(root / "test" / "crack" / "000.png", defect)
    mask = np.zeros((size, size), np.uint8)
    mask[10:20, 10:20] = 255
    img(root / "ground_truth" / "crack" / "000_mask.png", mask)
    return root


# --------------------------------------------------------------------------- backbone


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_lite_weights_classify_a_real_photo(name):
    """The key mapping is right when the mapped network calls scikit-image's cat a cat."""
    import skimage.data
    import timm

    net = timm.create_model(name, pretrained=False)
    net.load_state_dict(efficientnet_lite_imagenet(net, name), strict=True)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    x = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top = net.eval()((x - 0.498) / 0.502).softmax(1)[0].topk(3).indices.tolist()
    assert top[0] in range(281, 286), f"chelsea classified as ImageNet classes {top} (cats are 281-285)"


# --------------------------------------------------------------------------- search and coreset


@pytest.mark.parametrize("k", [1, 4])
def test_chunked_nearest_neighbours_match_brute_force(k):
    g = torch.Generator().manual_seed(0)
    q, bank = torch.randn(37, 8, generator=g), torch.randn(53, 8, generator=g)
    d, i = nearest_neighbours(q, bank, k, chunk=40, backend="torch")  # several query and bank blocks
    full = torch.cdist(q, bank)
    ref_d, ref_i = full.topk(k, dim=1, largest=False)
    assert torch.allclose(d, ref_d, atol=1e-4) and torch.equal(i, ref_i)


def test_faiss_backend_matches_torch():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(1)
    q, bank = torch.randn(20, 16, generator=g), torch.randn(100, 16, generator=g)
    d1, i1 = nearest_neighbours(q, bank, 3, backend="faiss")
    d2, i2 = nearest_neighbours(q, bank, 3, backend="torch")
    assert torch.allclose(d1, d2, atol=1e-3) and torch.equal(i1, i2)


def test_greedy_coreset_covers_every_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 64, generator=g) * 20
    points = (centres[:, None] + torch.randn(5, 50, 64, generator=g)).reshape(-1, 64)
    chosen = greedy_coreset(points, 5, proj_dim=16)
    assert sorted((chosen // 50).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="coreset size"):
        greedy_coreset(points, 0)


# --------------------------------------------------------------------------- model


def test_model_shapes_state_dict_and_device_moves(tmp_path):
    model = zoo.create("patchcore", feature_dim=16, layers=[1, 2])
    assert set(model.state_dict()) == {"projection", "memory_bank", "image_threshold", "pixel_threshold"}
    assert not list(model.parameters()), "the frozen backbone stays outside the state dict"
    feats, (h, w) = model.embed(torch.rand(2, 3, 64, 64))
    assert feats.shape == (2, h * w, 16) and (h, w) == (28, 28)  # resized to image_size 224, stride 8
    idx = model.build_memory_bank(feats.flatten(0, 1))
    assert model.memory_size == len(idx) == 157  # ceil(0.1 * 2 * 784)
    out = model(torch.rand(3, 3, 50, 70))
    assert out["score"].shape == (3,) and out["anomaly_map"].shape == (3, 50, 70)
    model.to(torch.float64)
    assert next(model.backbone.parameters()).dtype == torch.float64  # _apply reaches the backbone
    model.to(torch.float32)
    folder = zoo.save_pretrained(model, tmp_path / "pc", config={"tag": "patchcore.test"})
    again = zoo.create(f"local-dir:{folder}", pretrained=True)  # strict load, the bank's size from the card
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(again(x)["anomaly_map"], model(x)["anomaly_map"], atol=1e-5)


def test_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="coreset_ratio"):
        PatchCore(coreset_ratio=0)
    with pytest.raises(ValueError, match="multiples of stride"):
        PatchCore(pad=12)
    with pytest.raises(ValueError, match="out of range"):
        PatchCore(layers=[2, 9])
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, H, W\)"):
        PatchCore(layers=[1, 2], feature_dim=8)(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"layer_weights \[1.0\] must give one factor >= 0 per layer of \[1, 2\]"):
        PatchCore(layers=[1, 2], layer_weights=[1.0])
    with pytest.raises(ValueError, match="neighbourhood must be an odd number"):
        PatchCore(layers=[1, 2], neighbourhood=4)
    with pytest.raises(ValueError, match="color_weight must be >= 0"):
        PatchCore(layers=[1, 2], color_weight=-1)
    with pytest.raises(ValueError, match="energy_weight must be >= 0"):
        PatchCore(layers=[1, 2], energy_weight=-1)
    with pytest.raises(ValueError, match=r"image_topk must be in \[0, 1\)"):
        PatchCore(layers=[1, 2], image_topk=1.0)
    with pytest.raises(ValueError, match=r"color_window must be 0 .* or >= stride \(8\) pixels, got 4"):
        PatchCore(layers=[1, 2], color_window=4)


def test_feature_dim_none_keeps_the_channels_unprojected():
    x = torch.rand(1, 3, 64, 64)
    model = PatchCore(layers=[1, 2], feature_dim=None, image_size=64)
    feats, _ = model.embed(x)
    assert feats.shape[-1] == model.feature_dim == 24 + 40 and torch.equal(model.projection, torch.eye(64))


def test_neighbourhood_averages_wider_patches():
    x = torch.rand(1, 3, 64, 64)
    plain, _ = PatchCore(layers=[1, 2], feature_dim=8, image_size=64, neighbourhood=1).embed(x)
    three, _ = PatchCore(layers=[1, 2], feature_dim=8, image_size=64).embed(x)
    five, _ = PatchCore(layers=[1, 2], feature_dim=8, image_size=64, neighbourhood=5).embed(x)
    # wider averages are smoother: neighbouring patches differ less
    roughness = [float((f.view(8, 8, 8)[1:] - f.view(8, 8, 8)[:-1]).abs().mean()) for f in (plain, three, five)]
    assert roughness[0] > roughness[1] > roughness[2]


def test_stride_4_grid_is_twice_as_fine():
    x = torch.rand(1, 3, 64, 64)
    model = PatchCore(layers=[0, 1, 2], feature_dim=None, image_size=64, stride=4, pad=8)
    feats, (h, w) = model.embed(x)
    # stride-2 stage pooled, stride-4 stage as it is, stride-8 stage upsampled; the padding cropped off
    assert (h, w) == (16, 16) and feats.shape == (1, 256, 16 + 24 + 40)
    model.build_memory_bank(feats[0])
    assert model(x)["anomaly_map"].shape == (1, 64, 64)


def test_layer_weights_scale_each_layer_s_features():
    x = torch.rand(1, 3, 64, 64)
    plain, _ = PatchCore(layers=[1, 2], feature_dim=8, image_size=64).embed(x)
    doubled, _ = PatchCore(layers=[1, 2], feature_dim=8, image_size=64, layer_weights=[2, 2]).embed(x)
    torch.testing.assert_close(doubled, 2 * plain)
    first_only, _ = PatchCore(layers=[1, 2], feature_dim=8, image_size=64, layer_weights=[1, 0]).embed(x)
    assert not torch.allclose(first_only, plain)


def test_color_weight_adds_the_patch_mean_colour():
    x = torch.rand(1, 3, 64, 64)
    plain, _ = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, neighbourhood=1).embed(x)
    model = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, neighbourhood=1, color_weight=10)
    feats, (h, w) = model.embed(x)
    assert model.feature_dim == 24 + 40 + 3 and torch.equal(feats[..., :64], plain)
    # the last 3 channels: each 8x8 cell's mean normalised colour, times the weight
    cells = torch.nn.functional.avg_pool2d((x - model.mean) / model.std, 8)
    torch.testing.assert_close(feats[..., 64:], 10 * cells.flatten(2).transpose(1, 2))
    # a darkening lowers every colour channel of every patch
    darker, _ = model.embed(x * 0.85)
    assert bool((darker[..., 64:] < feats[..., 64:]).all())
    # layer_weights scale the backbone's layers only, not the colour channels
    weighted, _ = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, neighbourhood=1, color_weight=10,
                            layer_weights=[2, 2]).embed(x)
    torch.testing.assert_close(weighted, torch.cat([2 * plain, feats[..., 64:]], -1))
    # with a projection the colour channels join the projected concatenation
    assert PatchCore(layers=[1, 2], feature_dim=16, image_size=64, color_weight=1).projection.shape == (67, 16)


def test_color_window_widens_the_mean_colour():
    """color_window: the colour channels are the mean over ~window px around the cell (a box of odd k cells)."""
    x = torch.rand(1, 3, 64, 64)
    narrow = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, pad=0, neighbourhood=1, color_weight=1)
    wide = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, pad=0, neighbourhood=1, color_weight=1,
                     color_window=24)
    (a, (h, w)), (b, _) = narrow.embed(x), wide.embed(x)
    assert wide.feature_dim == narrow.feature_dim and torch.equal(a[..., :64], b[..., :64])
    # k = 3 cells of 8 px: the cell at (3, 3) averages the input's rows and columns 16..40
    z = ((x - wide.mean) / wide.std)[0]
    torch.testing.assert_close(b[0, :, 64:].view(h, w, 3)[3, 3], z[:, 16:40, 16:40].mean((1, 2)))
    assert float(b[..., 64:].std()) < float(a[..., 64:].std())  # a wider mean: the texture's variation averages away
    # a faint tint over a wide area moves the wide mean as much as the narrow one; the noise around it is lower
    tinted = x.clone()
    tinted[..., 16:48, 16:48] *= 0.9
    shift = (wide.embed(tinted)[0] - b)[0, :, 64:].view(h, w, 3)[3, 3]
    assert bool((shift < 0).all())


def test_energy_weight_adds_the_local_log_gradient_energy():
    x = torch.full((1, 3, 64, 64), 0.5)
    x[..., 32:, :] += 0.1 * torch.rand(1, 3, 32, 64)  # bottom half textured, top half flat
    plain, _ = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, pad=0).embed(x)
    model = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, pad=0, energy_weight=10)
    feats, (h, w) = model.embed(x)
    assert model.feature_dim == 24 + 40 + 1 and torch.equal(feats[..., :64], plain)
    energy = feats[0, :, 64].view(h, w) / 10
    assert float(energy[0].max()) < float(energy[-1].min())  # more edges, more energy
    # the value: log of the mean squared gradient of the grey input over the 5 x 5 cells (40 px) around the patch
    noise = torch.rand(1, 3, 64, 64)
    grey = ((noise - model.mean) / model.std).mean(1)[0]
    g2 = torch.zeros(64, 64)
    g2[:, :-1] += (grey[:, 1:] - grey[:, :-1]) ** 2
    g2[:-1] += (grey[1:] - grey[:-1]) ** 2
    value = model.embed(noise)[0][0, :, 64].view(h, w)[4, 4] / 10
    torch.testing.assert_close(value, torch.log(g2[16:56, 16:56].mean() + 1e-4), atol=1e-5, rtol=1e-5)
    # after the colour channels when both are on
    both = PatchCore(layers=[1, 2], feature_dim=None, image_size=64, pad=0, color_weight=1, energy_weight=10)
    torch.testing.assert_close(both.embed(x)[0][..., -1], feats[..., -1])


def test_image_topk_averages_the_highest_share_of_the_map():
    x = torch.rand(3, 3, 64, 64)
    models = [PatchCore(layers=[1, 2], feature_dim=8, image_size=64, image_topk=t) for t in (0.0, 0.05)]
    bank, _ = models[0].embed(torch.rand(2, 3, 64, 64))
    for m in models:
        m.build_memory_bank(bank.flatten(0, 1))
    peak, top = (m(x) for m in models)
    torch.testing.assert_close(peak["anomaly_map"], top["anomaly_map"])  # the map itself is unchanged
    # same reweighting factor; the peak is the mean of the 205 highest of the 64 x 64 map values
    factor = peak["score"] / peak["anomaly_map"].flatten(1).amax(1)
    expected = factor * top["anomaly_map"].flatten(1).topk(205, 1).values.mean(1)
    torch.testing.assert_close(top["score"], expected)
    assert bool((top["score"] <= peak["score"]).all())


# --------------------------------------------------------------------------- data


def test_mvtec_reader(tmp_path):
    root = _write_mvtec(tmp_path / "cat")
    train, test = A.read_mvtec(root, image_size=32)
    assert train.images.shape == (4, 3, 32, 32) and train.labels.tolist() == [0] * 4
    assert test.kinds == ["crack", "good"] and test.labels.tolist() == [1, 0]
    assert test.masks.shape == (2, 32, 32) and test.masks[0].sum() > 0 and test.masks[1].sum() == 0
    batch = test.get_batch(torch.tensor([0]))
    assert batch["image"].dtype == torch.float32 and float(batch["image"].max()) <= 1.0
    assert len(A.read_mvtec(root, n_train=2, n_test=1)[0]) == 2


def test_mvtec_reader_names_what_is_wrong(tmp_path):
    root = _write_mvtec(tmp_path / "cat")
    (root / "ground_truth" / "crack" / "000_mask.png").rename(root / "ground_truth" / "crack" / "x.png")
    with pytest.raises(ValueError, match=r"test/crack/000.png has no mask: expected .*000_mask.png"):
        A.read_mvtec(root)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "ground_truth" / "crack" / "000_mask.png")
    with pytest.raises(ValueError, match=r"mask .*000_mask.png is 30x20 but its image .* is 48x48"):
        A.read_mvtec(root)
    (root / "test" / "good" / "000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"test/good/000.png: not a readable image"):
        A.read_mvtec(root)
    with pytest.raises(ValueError, match=r"train/good is missing"):
        A.read_mvtec(tmp_path)


def test_texture_benchmark_layout_and_determinism(tmp_path):
    root = A.make_texture_benchmark("gravel", tmp_path, n_train=2, n_test=1, image_size=64)
    assert (root / "benchmark.json").is_file()
    for kind in A.DEFECTS:
        mask = np.asarray(Image.open(root / "ground_truth" / kind / "000_mask.png"))
        assert mask.shape == (64, 64) and mask.max() == 255, kind
    again = A.make_texture_benchmark("gravel", tmp_path / "other", n_train=2, n_test=1, image_size=64)
    for rel in ("train/good/001.png", "test/scratch/000.png"):
        assert (root / rel).read_bytes() == (again / rel).read_bytes()
    train, test = A.read_mvtec(root, image_size=None)
    assert len(train) == 2 and len(test) == 5 and test.masks[test.labels == 1].flatten(1).any(1).all()
    with pytest.raises(ValueError, match="unknown texture"):
        A.make_texture_benchmark("marble", tmp_path)


@pytest.mark.parametrize("kind", HELDOUT_DEFECTS)
def test_heldout_kinds_change_the_image_where_their_mask_says(kind):
    for texture in A.TEXTURES:
        image, mask = heldout_sample(texture, kind, image_size=96)
        assert image.shape == (96, 96, 3) and mask.shape == (96, 96) and mask.dtype == bool
        assert 0.0005 < mask.mean() < 0.2, (texture, kind, mask.mean())
        assert image.min() >= 0 and image.max() <= 1
        again, mask2 = heldout_sample(texture, kind, image_size=96)
        assert np.array_equal(image, again) and np.array_equal(mask, mask2)  # deterministic
    with pytest.raises(ValueError, match="unknown kind"):
        heldout_sample("brick", "scratch")  # a benchmark kind is not a held-out one


def test_heldout_benchmark_layout_and_per_kind_metrics(tmp_path):
    root = make_heldout_benchmark("brick", tmp_path, n_train=1, n_test=2, image_size=64)
    train, test = A.read_mvtec(root, image_size=None)
    assert sorted(set(test.kinds)) == sorted([*HELDOUT_DEFECTS, "good"]) and len(test) == 14
    assert test.masks[test.labels == 1].flatten(1).any(1).all()
    bench = A.make_texture_benchmark("brick", tmp_path, n_train=1, n_test=2, image_size=64)
    assert (root / "test/good/000.png").read_bytes() != (bench / "test/good/000.png").read_bytes()
    assert get_task("anomaly_detection").finetune_overrides("heldout") == ["data.source=heldout"]
    # per-kind AUROCs: each kind's images against the normal ones
    model = PatchCore(layers=[1, 2], feature_dim=16, image_size=64)
    model.build_memory_bank(model.embed(train.get_batch(torch.arange(1))["image"])[0][0])
    metrics = get_task("anomaly_detection").evaluate(model, test, None)
    assert {f"image_auroc/{k}" for k in HELDOUT_DEFECTS} | {f"pixel_auroc/{k}" for k in HELDOUT_DEFECTS} <= set(metrics)


def test_fashion_mnist_oneclass():
    from zoo.data.images import _find_fashion_mnist

    if _find_fashion_mnist(None) is None:
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    train, test = A.read_fashion_mnist_oneclass(3, n_train=10, n_test=5)
    assert train.images.shape == (10, 3, 28, 28) and train.masks is None and set(train.kinds) == {"good"}
    assert test.labels.tolist() == [0] * 5 + [1] * 5 and "dress" not in test.kinds
    with pytest.raises(ValueError, match="normal_class must be 0-9"):
        A.read_fashion_mnist_oneclass(10)


# --------------------------------------------------------------------------- task


def test_task_rejects_bad_data(tmp_path):
    from zoo.engine.run import resolve_recipe

    task = get_task("anomaly_detection")
    base = {"task": "anomaly_detection", "model": {"name": "patchcore"}}
    recipe, _ = resolve_recipe({**base, "data": {"source": "nope"}})
    with pytest.raises(ValueError, match="data.source: expected one of"):
        task.build_data(recipe["data"], None)
    root = _write_mvtec(tmp_path / "cat")
    for p in (root / "test" / "crack").iterdir():
        p.unlink()
    recipe, _ = resolve_recipe({**base, "data": {"source": "mvtec", "root": str(root), "image_size": 32}})
    data = task.build_data(recipe["data"], None)  # normal test images only: allowed, no AUROC
    assert data.test.labels.tolist() == [0]
    with pytest.raises(ValueError, match=r"train/good is missing and .* holds no images"):
        A.read_mvtec(tmp_path)


def test_fit_evaluate_predict_on_tiny_data(tmp_path):
    from zoo.engine import train
    from zoo.engine.run import load_for_eval

    root = _write_mvtec(tmp_path / "cat", size=64, n_train=5)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "task: anomaly_detection\nmodel: {name: patchcore, args: {layers: [1, 2], feature_dim: 16, image_size: 64}}\n"
        f"data: {{source: mvtec, root: {root}, image_size: 64, val_fraction: 0.2}}\n"
        "train: {batch_size: 2, threads: 1}\n")
    run_dir, result = train(recipe, runs_root=tmp_path / "runs")
    m = result["metrics"]
    assert set(m) == {"image_auroc", "pixel_auroc", "image_f1", "image_threshold", "pixel_threshold"}
    assert result["fit"]["patches"] == 4 * 64 and result["fit"]["memory_size"] == 26
    card = json.loads((run_dir / "model" / "config.json").read_text())
    assert card["model_args"]["memory_size"] == 26 and card["threshold"]["held_out_normals"] == 1
    model, _ = load_for_eval(str(run_dir))
    assert float(model.image_threshold) == pytest.approx(card["threshold"]["image"])
    paths = get_task("anomaly_detection").predict(model, str(root / "test" / "crack"), tmp_path / "out")
    assert {p.name for p in paths} == {"000_predict.png", "000_heatmap.png", "000_mask.png", "scores.json"}
    assert np.asarray(Image.open(tmp_path / "out" / "000_heatmap.png")).shape == (64, 64, 3)
    # input | heatmap | ground truth (found in the MVTec layout), enlarged to 224 px, over a caption
    assert np.asarray(Image.open(tmp_path / "out" / "000_predict.png")).shape == (256 + 44, 3 * 256, 3)
    paths = get_task("anomaly_detection").predict(model, str(root / "train" / "good" / "000.png"), tmp_path / "o")
    assert np.asarray(Image.open(paths[0])).shape == (256 + 44, 2 * 256, 3)  # no ground truth known
    with pytest.raises(ValueError, match="no fitted memory bank"):
        get_task("anomaly_detection").predict(zoo.create("patchcore", layers=[1, 2]), None, tmp_path / "o2")


def test_finetune_through_the_cli(tmp_path, capsys):
    from zoo.cli import main

    if "patchcore.brick" not in zoo.list_pretrained():
        pytest.skip("weights/patchcore.brick not exported yet")
    root = _write_mvtec(tmp_path / "cat", size=64, n_train=4)
    assert main(["finetune", "patchcore", "train.threads=1", "train.batch_size=2", "--data", str(root),
                 "--runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert '"image_auroc"' in out and '"pixel_auroc"' in out
    run = next((tmp_path / "runs").iterdir())
    assert main(["predict", str(run), "--out", str(tmp_path / "pred")]) == 0  # generated brick samples
    assert (tmp_path / "pred" / "brick_scratch_predict.png").is_file()


def test_finetune_on_normal_images_only(tmp_path, capsys):
    """anomalib's Folder style: a folder of normal images, no test split, no masks."""
    from zoo.cli import main

    if "patchcore.brick" not in zoo.list_pretrained():
        pytest.skip("weights/patchcore.brick not exported yet")
    good = tmp_path / "good_images"
    good.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(90, 160, (40 + i, 48, 3), dtype=np.uint8)).save(good / f"{i}.jpg")
    assert main(["finetune", "patchcore", "train.threads=1", "train.batch_size=2", "--data", str(good),
                 "--runs", str(tmp_path / "runs")]) == 0
    metrics = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())["metrics"]
    # what held-out normals allow: the share flagged at their own maximum is 0 by construction
    assert metrics["normal_flagged"] == 0.0 and "image_auroc" not in metrics and metrics["image_threshold"] > 0


# --------------------------------------------------------------------------- published cards

CARDS = [t for t in zoo.list_pretrained("patchcore.*")]


@pytest.mark.parametrize("tag", CARDS)
def test_published_card_is_rechecked(tag):
    """`zoo eval TAG` on the card's own recipe data gives the card's metrics (the fit is deterministic)."""
    from zoo.engine import evaluate

    card = zoo.model_info(tag)
    assert card["threshold"]["image"] == pytest.approx(card["metrics"]["image_threshold"])
    metrics = evaluate(tag, overrides=["train.threads=1"])
    for key in ("image_auroc", "pixel_auroc"):
        assert metrics[key] == pytest.approx(card["metrics"][key], abs=2e-3), key

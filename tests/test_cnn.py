"""The cnn family: data readers and their errors, the ResNet and timm wrapper, the classification task,
fine-tuning on a generated folder, and the published cards re-checked."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli import main
from zoo.data import images as I
from zoo.engine.run import build_model, resolve_recipe
from zoo.families.cnn.task import TASK, ImageBatches, classification_metrics, confusion_matrix, load_sets
from zoo.recipes import load

torch.set_num_threads(1)


def _write_folder(root: Path, classes=("cat", "dog", "fox"), per_class=6, size=(12, 12), mode="L", seed=0):
    """Class folders of random images whose mean brightness depends on the class (learnable)."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            arr = np.clip(rng.normal(60 + 70 * k, 20, shape), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode).save(root / name / f"{i}.png")
    return root


def _ctx(recipe):
    from zoo.engine.trainer import Context

    return Context(recipe=recipe, task=TASK, device=torch.device("cpu"))


def _recipe(*overrides, name="cnn/finetune"):
    raw, _ = load(name, list(overrides))
    return resolve_recipe(raw)[0]


# --------------------------------------------------------------------------- readers


def test_read_idx_checks_header_and_size(tmp_path):
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (3).to_bytes(4, "big")
    good = tmp_path / "ok-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(header + bytes(range(18))))
    assert I.read_idx(good).shape == (2, 3, 3)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(header + bytes(5)))
    with pytest.raises(ValueError, match=r"short.gz: header says shape \[2, 3, 3\].*truncated"):
        I.read_idx(short)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"PK\x03\x04" + bytes(8)))
    with pytest.raises(ValueError, match="bad.gz: not an idx file"):
        I.read_idx(bad)


def test_fashion_mnist_reader():
    folder = I._find_fashion_mnist(None)
    if folder is None:
        pytest.skip("Fashion-MNIST not installed (Debian dataset-fashion-mnist) and not under ZOO_DATA")
    train, test = I.fashion_mnist()
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and torch.bincount(test.labels).tolist() == [1000] * 10
    with pytest.raises(ValueError, match="no Fashion-MNIST idx files there"):
        I.fashion_mnist("/nonexistent")


def test_digits_split_is_fixed_and_stratified():
    train, test = I.digits_split()
    again, _ = I.digits_split()
    assert (len(train), len(test)) == (898, 899) and torch.equal(train.labels, again.labels)
    assert train.images.shape[1:] == (1, 8, 8) and int(train.images.max()) == 255
    assert (torch.bincount(train.labels) - torch.bincount(test.labels)).abs().max() <= 1


def test_image_folder_reads_and_splits(tmp_path):
    _write_folder(tmp_path / "flat")
    sets = I.read_image_folder(tmp_path / "flat")
    data = sets["all"]
    assert data.images.shape == (18, 1, 12, 12) and data.classes == ["cat", "dog", "fox"]
    assert data.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    keep, held = I.stratified_split(data.labels, 0.34, seed=0)
    assert len(held) == 6 and torch.bincount(data.labels[held]).tolist() == [2, 2, 2]
    assert set(keep.tolist()).isdisjoint(held.tolist())
    for split in ("train", "val"):
        _write_folder(tmp_path / "split" / split, per_class=2)
    sets = I.read_image_folder(tmp_path / "split", image_size=[8, 10])
    assert set(sets) == {"train", "val"} and sets["val"].images.shape == (6, 1, 8, 10)


def test_image_folder_reconciles_grey_and_rgb(tmp_path):
    _write_folder(tmp_path, classes=("a",), mode="L")
    _write_folder(tmp_path, classes=("b",), mode="RGB")
    data = I.read_image_folder(tmp_path)["all"]
    assert data.images.shape == (12, 3, 12, 12)
    assert I.read_image_folder(tmp_path, channels=1)["all"].images.shape == (12, 1, 12, 12)


@pytest.mark.parametrize("problem, message", [
    ("empty", r"class folder .*empty has no images"),
    ("unreadable", r"cannot read image .*broken.png"),
    ("sizes", r"images of different sizes cannot be batched: .*12x12.*20x16.*data.image_size"),
    ("16bit", r"deep.png: image mode 'I;16'.*cannot be reconciled"),
    ("no_classes", r"expected one sub-folder per class .*loose images such as x.png"),
])
def test_image_folder_errors_name_the_file(tmp_path, problem, message):
    root = tmp_path / "data"
    if problem == "no_classes":
        root.mkdir()
        Image.new("L", (4, 4)).save(root / "x.png")
    else:
        _write_folder(root, classes=("ok",))
    if problem == "empty":
        (root / "empty").mkdir()
    elif problem == "unreadable":
        (root / "ok" / "broken.png").write_bytes(b"not a png")
    elif problem == "sizes":
        Image.new("L", (20, 16)).save(root / "ok" / "big.png")
    elif problem == "16bit":
        Image.fromarray(np.full((12, 12), 4000, np.uint16)).save(root / "ok" / "deep.png")
    with pytest.raises(ValueError, match=message):
        I.read_image_folder(root)


def test_image_csv(tmp_path):
    _write_folder(tmp_path / "img", classes=("x", "y"), per_class=2)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("path,label\nimg/x/0.png,shoe\nimg/x/1.png,shoe\nimg/y/0.png,bag\n\nimg/y/1.png,bag\n")
    data = I.read_image_csv(csv_file)
    assert data.classes == ["bag", "shoe"] and data.labels.tolist() == [1, 1, 0, 0]
    csv_file.write_text("img/x/0.png,1\nimg/y/0.png,0\n")
    assert I.read_image_csv(csv_file).classes == ["0", "1"]
    csv_file.write_text("img/x/0.png,0\nimg/y/0.png,2\n")
    with pytest.raises(ValueError, match=r"integer labels 0..2 but classes \[1\] have no rows"):
        I.read_image_csv(csv_file)
    csv_file.write_text("img/x/0.png,a\nimg/missing.png,b\n")
    with pytest.raises(ValueError, match=r"labels.csv:2: image .*missing.png does not exist"):
        I.read_image_csv(csv_file)
    csv_file.write_text("img/x/0.png,a,extra\n")
    with pytest.raises(ValueError, match=r"labels.csv:1: expected 2 columns"):
        I.read_image_csv(csv_file)


# --------------------------------------------------------------------------- models


def test_cnn_shapes_features_and_any_input():
    model = zoo.create("cnn", num_classes=7, in_chans=3, widths=[8, 16, 32], depths=[1, 1, 1]).eval()
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 7)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 7)  # digits-sized inputs
    assert model.forward_head(model.forward_features(torch.randn(1, 3, 40, 24)), pre_logits=True).shape == (1, 32)
    backbone = zoo.create("cnn", widths=[8, 16, 32], depths=[1, 1, 1], features_only=True, out_indices=[1, 2])
    maps = backbone(torch.randn(2, 1, 32, 32))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 16), (2, 32, 8, 8)]
    assert [f["reduction"] for f in backbone.feature_info] == [1, 2, 4]
    with pytest.raises(ValueError, match=r"cnn expects x of shape \(B, 1, H, W\), got \(2, 3, 28, 28\)"):
        backbone(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="widths and depths need one entry per stage"):
        zoo.create("cnn", widths=[8, 16], depths=[1])


@pytest.mark.parametrize("downsample", ["maxpool", "avgpool"])
def test_pooled_downsampling_matches_the_strided_shapes_and_parameters(downsample):
    args = {"widths": [8, 16, 32], "depths": [2, 1, 1], "stem_stride": 2, "features_only": True}
    strided, pooled = zoo.create("cnn", **args), zoo.create("cnn", downsample=downsample, **args)
    x = torch.randn(2, 1, 28, 28)
    assert [m.shape for m in pooled(x)] == [m.shape for m in strided(x)]  # 14, 7, 4 px: odd sizes round up
    assert sum(p.numel() for p in pooled.parameters()) == sum(p.numel() for p in strided.parameters())
    assert all(m.stride in ((1, 1), 1) for m in pooled.modules() if isinstance(m, torch.nn.Conv2d)
               and m is not pooled.stem.conv)  # the pools halve the resolution, no convolution does
    with pytest.raises(ValueError, match="downsample must be one of stride, maxpool, avgpool, got 'pool'"):
        zoo.create("cnn", downsample="pool")


def test_head_pool_keeps_a_grid_of_positions():
    model = zoo.create("cnn", num_classes=5, widths=[8, 16], depths=[1, 1], head_pool=2).eval()
    assert model.head.fc.in_features == 16 * 4
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5) and model(torch.randn(1, 1, 8, 8)).shape == (1, 5)
    maps = model.forward_features(torch.randn(1, 1, 28, 28))
    assert model.forward_head(maps, pre_logits=True).shape == (1, 64)


def test_cnn_adapts_in_chans_and_classes(tmp_path):
    source = zoo.create("cnn", widths=[8, 16, 32], depths=[1, 1, 1])
    folder = zoo.save_pretrained(source, tmp_path / "w", config={"tag": "cnn.tiny", "labels": list("abcdefghij")})
    model = zoo.create(f"local-dir:{folder}", pretrained=True, num_classes=3, in_chans=3)
    assert model.stem.conv.weight.shape[1] == 3 and model.head.fc.out_features == 3
    torch.testing.assert_close(model.stem.conv.weight.sum(1), source.stem.conv.weight.sum(1) * 1.0)
    torch.testing.assert_close(model.stages[0][0].conv1.conv.weight, source.stages[0][0].conv1.conv.weight)
    assert model.pretrained_cfg["labels"] is None and model.pretrained_cfg["input_spec"]["channels"] == 3


def test_timm_through_zoo_create():
    model = zoo.create("timm/test_resnet", num_classes=4, in_chans=1)
    spec = model.pretrained_cfg["input_spec"]
    assert spec["channels"] == 1 and len(spec["mean"]) == 1 and model.pretrained_cfg["source"] == "timm:test_resnet"
    x = model.example_inputs(2)[0]
    assert x.shape[1] == 1 and model(x).shape == (2, 4)
    with pytest.raises(ValueError, match=r"timm/test_resnet expects x of shape \(B, 1, H, W\)"):
        model(x[0])
    with pytest.raises(ValueError, match=r"expects x with a .*float"):
        model(x.long())


def test_timm_pretrained_from_a_local_checkpoint(tmp_path):
    """timm's pretrained path offline: weights from a file (pretrained_cfg_overlay), head re-made by timm."""
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet", num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "test_resnet.safetensors"))
    model = zoo.create("timm/test_resnet", pretrained=True, num_classes=10,
                       pretrained_cfg_overlay={"file": str(tmp_path / "test_resnet.safetensors")})
    assert model.get_classifier().out_features == 10
    torch.testing.assert_close(model.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])


def test_timm_hub_weights_when_cached():
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache("timm/resnet18.a1_in1k", "model.safetensors"), str):
        pytest.skip("timm/resnet18.a1_in1k is not in the Hugging Face cache (no network here); "
                    "`zoo.create('timm/resnet18', pretrained=True)` fetches it once online")
    model = zoo.create("timm/resnet18", pretrained=True, num_classes=10)
    assert model.fc.out_features == 10 and model.pretrained_cfg["input_spec"]["size"] == [224, 224]


# --------------------------------------------------------------------------- task


def test_task_data_spec_and_validation(tmp_path):
    _write_folder(tmp_path / "f", per_class=10)
    recipe = _recipe(f"data.root={tmp_path / 'f'}", "data.dataset=folder", "model.pretrained=false")
    data = TASK.build_data(recipe["data"], _ctx(recipe))
    assert (len(data.train), len(data.val), data.test) == (24, 6, None)
    spec = data.info["input_spec"]
    assert spec["size"] == [12, 12] and spec["channels"] == 1 and 0.2 < spec["mean"][0] < 0.6
    assert TASK.model_args(data) == {"num_classes": 3, "in_chans": 1}
    for override, message in [("data.val_size=40", "data.val_size=40: expected a fraction"),
                              ("data.input_size=[0, 4]", r"data.input_size must be \[H, W\]"),
                              ("data.dataset=parquet", "unknown dataset 'parquet'")]:
        bad = _recipe(f"data.root={tmp_path / 'f'}", "data.dataset=folder", "model.pretrained=false", override)
        with pytest.raises(ValueError, match=message):
            TASK.build_data(bad["data"], _ctx(bad))


def test_pretrained_spec_keeps_mean_std():
    recipe = _recipe("data.train_limit=100", "data.val_size=10", "model.name=timm/test_resnet",
                     "model.pretrained=true")
    data = TASK.build_data(recipe["data"], _ctx(recipe))
    import timm

    timm_mean = timm.models.get_pretrained_cfg("test_resnet").mean
    assert data.info["input_spec"]["mean"] == pytest.approx([sum(timm_mean) / len(timm_mean)])


def test_augment_pad_is_a_pure_shift(tmp_path):
    recipe = _recipe("data.train_limit=50", "data.val_size=10", "model.pretrained=false", "augment.pad=2",
                     "augment.scale=[1, 1]", "augment.ratio=[1, 1]", "augment.hflip=false")
    data = TASK.build_data(recipe["data"], _ctx(recipe))
    transform = TASK.build_augment(recipe["augment"], data, torch.device("cpu"))
    images = data.train.tensors[0][:16]
    out = transform(images)
    spec = data.info["input_spec"]
    raw = (out * spec["std"][0] + spec["mean"][0]) * 255
    padded = torch.nn.functional.pad(images.float(), (2, 2, 2, 2))
    for n in range(len(images)):  # each output is an 8x8 window of the padded image
        windows = padded[n, 0].unfold(0, 8, 1).unfold(1, 8, 1)
        assert ((windows - raw[n, 0]).abs().amax((-1, -2)) < 1e-3).any()


def test_progressive_resizing_grows_the_crops_to_the_input_size(tmp_path, monkeypatch):
    recipe = _recipe("data.train_limit=100", "data.val_size=10", "augment.resize_from=16", name="cnn/fashion_mnist")
    data = TASK.build_data(recipe["data"], _ctx(recipe))
    transform = TASK.build_augment(recipe["augment"], data, torch.device("cpu"))
    # 16 px at the start, growing in steps of 4 px to the full 28 px at 75% of training (the default)
    assert [transform.size_at(p) for p in (0, 0.2, 0.25, 0.5, 0.74, 0.75, 1)] == \
        [(16, 16), (16, 16), (20, 20), (24, 24), (24, 24), (28, 28), (28, 28)]
    images = data.train.tensors[0][:4]
    assert transform(images, 0.0).shape == (4, 1, 16, 16) and transform(images).shape == (4, 1, 28, 28)
    for override, message in [("augment.resize_from=28", "augment.resize_from=28 must be between"),
                              ("augment.resize_until=0", "augment.resize_until=0 must be")]:
        bad = _recipe("data.train_limit=100", "data.val_size=10", "augment.resize_from=16", override,
                      name="cnn/fashion_mnist")
        with pytest.raises(ValueError, match=message):
            TASK.build_augment(bad["augment"], data, torch.device("cpu"))

    # Through the engine: the trainer's progress drives the size; evaluation always sees the full size.
    from zoo.families.cnn.model import CNN

    _write_folder(tmp_path / "f", per_class=4, size=(16, 16))
    seen, forward = [], CNN.forward_intermediates
    monkeypatch.setattr(CNN, "forward_intermediates",
                        lambda self, x: seen.append((self.training, x.shape[-1])) or forward(self, x))
    assert main(["train", "cnn/finetune", "model.pretrained=false", "data.dataset=folder",
                 f"data.root={tmp_path / 'f'}", "train.max_steps=4", "train.batch_size=4", "augment.resize_from=8",
                 "augment.resize_until=0.5", "--runs", str(tmp_path / "runs")]) == 0
    assert [size for training, size in seen if training] == [8, 12, 16, 16]
    assert {size for training, size in seen if not training} == {16}


def test_evaluate_predict_and_confusion(tmp_path):
    _write_folder(tmp_path / "f", per_class=4)
    model = zoo.create("cnn", num_classes=3, widths=[8, 16, 32], depths=[1, 1, 1]).eval()
    spec = {"size": [12, 12], "channels": 1, "mean": [0.4], "std": [0.3]}
    model.pretrained_cfg.update(input_spec=spec, labels=["cat", "dog", "fox"])
    data = I.read_image_folder(tmp_path / "f")["all"]
    recipe = _recipe("model.pretrained=false")
    with torch.no_grad():
        metrics = TASK.evaluate(model, ImageBatches.of(data, spec), _ctx(recipe))
    assert set(metrics) == {"accuracy", "balanced_accuracy", "loss"} and 0 <= metrics["accuracy"] <= 1
    paths = TASK.predict(model, str(tmp_path / "f"), tmp_path / "out")
    assert {p.name for p in paths} == {"predictions.png", "predictions.csv", "metrics.json", "confusion.png"}
    assert all(p.stat().st_size > 1000 for p in paths if p.suffix == ".png")
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "image,label,top1,p1,top2,p2,top3,p3" and len(rows) == 13
    one = TASK.predict(model, str(tmp_path / "f" / "dog" / "0.png"), tmp_path / "one")
    assert [p.name for p in one] == ["predictions.png", "predictions.csv"]


def test_test_time_augmentation_averages_the_views(tmp_path):
    _write_folder(tmp_path / "f", per_class=4)
    data = I.read_image_folder(tmp_path / "f")["all"]
    model = zoo.create("cnn", num_classes=3, widths=[8, 16, 32], depths=[1, 1, 1]).eval()
    spec = {"size": [12, 12], "channels": 1, "mean": [0.4], "std": [0.3]}
    ctx = _ctx(_recipe("model.pretrained=false", "augment.tta=[flip]"))
    built = TASK.build_data({k: f[1] for k, f in TASK.DATA_SCHEMA.items()} | {"dataset": "folder",
                            "root": str(tmp_path / "f"), "val_size": 0}, ctx)
    assert built.info["input_spec"]["tta"] == ["flip"]  # into the card, so eval and predict use it too
    with torch.no_grad():
        plain, labels = TASK.predictions(model, ImageBatches.of(data, spec))
        mirrored, _ = TASK.predictions(model, ImageBatches(data.images.flip(-1), data.labels, spec, data.classes))
        both, _, single = TASK.predictions(model, ImageBatches.of(data, spec | {"tta": ["flip"]}), single_view=True)
        metrics = TASK.evaluate(model, ImageBatches.of(data, spec | {"tta": ["flip", "shift"]}), ctx)
    assert torch.allclose(both, (plain + mirrored) / 2, atol=1e-6) and torch.equal(single, plain)
    assert {"accuracy", "accuracy_single_view"} <= set(metrics)
    TASK.write_eval_report(model, ImageBatches.of(data, spec | {"tta": ["flip"]}), tmp_path / "report")
    assert "accuracy_single_view" in json.loads((tmp_path / "report" / "metrics.json").read_text())
    with pytest.raises(ValueError, match=r"augment.tta=\['rotate'\]: each entry must be one of flip, shift"):
        TASK.build_data({k: f[1] for k, f in TASK.DATA_SCHEMA.items()} | {"dataset": "folder",
                        "root": str(tmp_path / "f")}, _ctx(_recipe("model.pretrained=false", "augment.tta=[rotate]")))


def test_metrics_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    labels = torch.tensor([0, 1, 1, 2])
    m = classification_metrics(probs, labels)
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert confusion_matrix(probs.argmax(1), labels, 3).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_recipes_build_their_models():
    for name in ("cnn/fashion_mnist", "cnn/digits"):
        recipe = _recipe(name=name)
        assert recipe["task"] == "classification" and recipe["expect"]["value"] >= 0.94
    recipe = _recipe("model.name=timm/test_resnet", "model.pretrained=false")
    from zoo.tasks.base import Data

    model = build_model(recipe, TASK, Data(info={"num_classes": 5, "in_chans": 1}))
    assert model.pretrained_cfg["arch"] == "timm" and model(torch.randn(1, 1, 32, 32)).shape == (1, 5)


def test_train_timm_through_the_engine(tmp_path):
    _write_folder(tmp_path / "f", per_class=4, mode="RGB")
    code = main(["train", "cnn/finetune", "model.name=timm/test_resnet", "model.pretrained=false",
                 "data.dataset=folder", f"data.root={tmp_path / 'f'}", "train.max_steps=2", "train.batch_size=4",
                 "--runs", str(tmp_path / "runs")])
    assert code == 0
    run = next((tmp_path / "runs").iterdir())
    again = zoo.create(f"local-dir:{run / 'model'}", pretrained=True)
    assert again.pretrained_cfg["arch"] == "timm" and again(torch.randn(1, 3, 12, 12)).shape == (1, 3)


def test_finetune_on_a_generated_folder(tmp_path, capsys):
    if "cnn.fashion_mnist" not in zoo.list_pretrained():
        pytest.skip("cnn.fashion_mnist is not published yet")
    _write_folder(tmp_path / "rgb", classes=("red", "green"), per_class=5, mode="RGB", size=(20, 20))
    code = main(["finetune", "cnn", "--data", str(tmp_path / "rgb"), "train.max_steps=2", "--runs",
                 str(tmp_path / "runs")])
    assert code == 0, capsys.readouterr().err
    run = next((tmp_path / "runs").iterdir())
    card = json.loads((run / "model" / "config.json").read_text())
    assert card["model_args"]["in_chans"] == 3 and card["model_args"]["num_classes"] == 2
    assert card["labels"] == ["green", "red"] and card["input_spec"]["size"] == [20, 20]
    model = zoo.create(f"local-dir:{run / 'model'}", pretrained=True)
    assert model(torch.randn(1, 3, 20, 20)).shape == (1, 2)


# --------------------------------------------------------------------------- published cards


def _card_recheck(tag, capsys):
    if tag not in zoo.list_pretrained():
        pytest.skip(f"{tag} is not published yet")
    card = zoo.model_info(tag)
    assert main(["eval", tag, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert measured["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=2e-3)
    assert measured["accuracy"] >= card["expect"]["value"]


def test_digits_card_rechecked(capsys):
    _card_recheck("cnn.digits", capsys)


@pytest.mark.slow
def test_fashion_mnist_card_rechecked(capsys):
    _card_recheck("cnn.fashion_mnist", capsys)


def test_predict_on_the_card_data(tmp_path):
    if "cnn.digits" not in zoo.list_pretrained():
        pytest.skip("cnn.digits is not published yet")
    model = zoo.create("cnn.digits", pretrained=True)
    paths = TASK.predict(model, None, tmp_path)
    assert (tmp_path / "confusion.png").is_file() and len(paths) == 4
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] >= 0.99


def test_load_sets_fashion_subset():
    if I._find_fashion_mnist(None) is None:
        pytest.skip("Fashion-MNIST not installed")
    cfg = {k: f[1] for k, f in TASK.DATA_SCHEMA.items()} | {"dataset": "fashion_mnist", "train_limit": 500,
                                                              "val_size": 100}
    train, val, test = load_sets(cfg)
    assert (len(train), len(val), len(test)) == (400, 100, 10000)


def test_finetune_refuses_a_one_class_folder(tmp_path, capsys):
    """One class folder would 'train' to accuracy 1.0: refused before any step, with what to do instead."""
    _write_folder(tmp_path / "only", classes=("good",), per_class=8)
    recipe = _recipe(f"data.root={tmp_path / 'only'}", "data.dataset=folder", "model.pretrained=false")
    with pytest.raises(ValueError, match=r"one class \('good'\); a classifier needs at least two"):
        TASK.build_data(recipe["data"], _ctx(recipe))
    code = main(["finetune", "cnn", "--data", str(tmp_path / "only"), "--runs", str(tmp_path / "runs")])
    assert code != 0 and "at least two" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/model"))  # nothing was trained or written as a model

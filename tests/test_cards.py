"""Model cards tell the truth: a changed model carries no parent metrics, usage lines load as written, no "None"
lines, and the metadata is Hugging Face model-index (read back by huggingface_hub's ModelCard)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

import zoo
from zoo.cli import main
from zoo.utils import bundled_dir

torch.set_num_threads(1)


def _usage(readme: str) -> str:
    lines = re.findall(r"^model = zoo\.create\(.*\)$", readme, flags=re.M)
    assert len(lines) == 1, readme
    return lines[0]


def _loads_as_written(readme: str, cwd: Path):
    """Run the card's usage line as a user would, from `cwd`; returns the model."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        scope: dict = {"zoo": zoo}
        exec(_usage(readme), scope)
        return scope["model"]
    finally:
        os.chdir(here)


def _no_none(readme: str) -> None:
    bad = [line for line in readme.splitlines() if "None" in line]
    assert not bad, bad


@pytest.mark.parametrize("tag", zoo.list_pretrained())
def test_bundled_cards_are_model_index_and_say_no_none(tag):
    folder = bundled_dir("weights") / tag
    if not folder.is_dir():
        pytest.skip(f"{tag} has no bundled folder")
    readme = (folder / "README.md").read_text()
    card = ModelCard(readme)  # raises on a model-index huggingface_hub cannot parse
    cfg = json.loads((folder / "config.json").read_text())
    metrics = {k: v for k, v in cfg["metrics"].items() if isinstance(v, (int, float))}
    assert card.data.model_name == tag and card.data.license == cfg["license"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == pytest.approx(metrics)
    assert {r.dataset_name for r in card.data.eval_results} == {cfg["datasets"][0]}
    _no_none(readme)
    assert _usage(readme) == f'model = zoo.create("{tag}", pretrained=True)'


def test_adapted_model_does_not_carry_its_parents_metrics(tmp_path):
    model = zoo.create("cnn.fashion_mnist", pretrained=True, num_classes=5, in_chans=3)
    assert model.pretrained_cfg["metrics"] == {} and model.pretrained_cfg["derived_from"]["tag"] == "cnn.fashion_mnist"
    folder = zoo.save_pretrained(model, tmp_path / "five")
    cfg = json.loads((folder / "config.json").read_text())
    readme = (folder / "README.md").read_text()
    assert cfg["metrics"] == {} and cfg["tag"] != "cnn.fashion_mnist"
    assert cfg["derived_from"]["changes"] == ["stem.conv.weight adapted from 1 to 3 input channels",
                                              "head.fc re-initialised for 5 classes (was 10)"]
    card = ModelCard(readme)
    assert card.data.eval_results is None and card.data.base_model == "zoo-models/cnn.fashion_mnist"
    assert "0.9446" not in readme and "Derived from `cnn.fashion_mnist`" in readme and "Not evaluated" in readme
    _no_none(readme)
    again = _loads_as_written(readme, tmp_path)
    assert again.pretrained_cfg["model_args"]["num_classes"] == 5
    assert again(zoo.transforms(again)(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))).shape == (2, 5)


def test_weights_changed_after_loading_drop_the_metrics(tmp_path):
    model = zoo.create("cnn.digits", pretrained=True)
    same = json.loads((zoo.save_pretrained(model, tmp_path / "same") / "config.json").read_text())
    assert same["metrics"] == zoo.model_info("cnn.digits")["metrics"] and "derived_from" not in same
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # a fine-tune in the user's own loop
    cfg = json.loads((zoo.save_pretrained(model, tmp_path / "tuned") / "config.json").read_text())
    assert cfg["metrics"] == {} and cfg["derived_from"]["tag"] == "cnn.digits"
    measured = zoo.save_pretrained(model, tmp_path / "measured", config={"metrics": {"accuracy": 0.5}})
    assert json.loads((measured / "config.json").read_text())["metrics"] == {"accuracy": 0.5}


def _rgb_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i, cls in enumerate(("dark", "light")):
        (root / cls).mkdir(parents=True)
        for j in range(6):
            pixels = np.clip(rng.normal(60 + 120 * i, 20, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{j}.png")
    return root


def test_finetune_card_is_truthful_and_its_usage_line_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _rgb_folder(tmp_path / "imgs")
    assert main(["finetune", "cnn", "--data", str(data), "train.max_steps=2", "--runs", "runs"]) == 0
    run = next(Path("runs").iterdir())
    readme = (run / "model" / "README.md").read_text()
    cfg = json.loads((run / "model" / "config.json").read_text())
    assert cfg["derived_from"]["tag"] == "cnn.fashion_mnist" and "fine-tuned on folder, imgs" in readme
    assert set(cfg["metrics"]) >= {"accuracy"} and "0.9446" not in readme  # its own metrics, not the parent's
    results = ModelCard(readme).data.eval_results
    assert {r.dataset_name for r in results} == {"folder, imgs"} and cfg["metrics"]["accuracy"] in [
        r.metric_value for r in results]
    _no_none(readme)
    assert _loads_as_written(readme, tmp_path).pretrained_cfg["model_args"]["num_classes"] == 2
    # published from the run (engine.publish): the card still names what it is and still loads as written
    from zoo.engine.run import publish

    dest = publish(run, "cnn.my_colours", to=tmp_path / "published")
    published = (dest / "README.md").read_text()
    _no_none(published)
    assert "Card check" not in published  # a fine-tune recipe has no expect: no check line at all
    assert _loads_as_written(published, tmp_path / "published").pretrained_cfg["tag"] == "cnn.my_colours"
    ModelCard(published)

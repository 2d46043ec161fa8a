"""Registry-wide checks, parametrised over every registered model and every published card."""

from __future__ import annotations

import json
import socket

import pytest
import torch

import zoo
from zoo import registry
from zoo import weights as W

MODELS = zoo.list_models()
CARDS = zoo.list_pretrained()


def _float_outputs(out):
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _float_outputs(o)]
    return []


def _build(name):
    torch.manual_seed(0)
    return zoo.create(name)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward(name):
    model = _build(name).train()
    args = model.example_inputs(2)
    outs = _float_outputs(model(*args))
    assert outs, f"{name} returned no float tensor"
    assert all(torch.isfinite(o).all() for o in outs)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if trainable:
        sum(o.float().mean() for o in outs).backward()
        assert any(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path):
    model = _build(name).eval()
    args = model.example_inputs(2)
    folder = zoo.save_pretrained(model, tmp_path / name, config={"tag": f"{name}.test"})
    again = zoo.create(f"local-dir:{folder}", pretrained=True)
    with torch.no_grad():
        a, b = _float_outputs(model(*args)), _float_outputs(again(*args))
    assert len(a) == len(b) and all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b))


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_names_expected_shape(name):
    model = _build(name).eval()
    first, *rest = model.example_inputs(2)
    with pytest.raises(ValueError, match=r"expects .*(shape|dtype)"):
        model(first[0], *rest)  # batch dimension dropped
    wrong = first.to(torch.int64) if first.is_floating_point() else first.float() + 0.5
    with pytest.raises(ValueError, match=r"expects .*(shape|dtype)"):
        model(wrong, *rest)


def test_registry_api():
    assert "toy_mlp" in zoo.list_models("toy*")
    assert zoo.list_models("toy*", task="nope") == []
    assert zoo.is_model("toy_mlp") and not zoo.is_model("nope")
    assert zoo.model_info("toy_mlp")["task"] == "toy"
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model("toy_mlp", task="x")(lambda: None)
    with pytest.raises(KeyError, match="did you mean toy_mlp"):
        zoo.create("toy_mpl")
    with pytest.raises(ValueError, match="bad constructor arguments"):
        zoo.create("toy_mlp", widht=3)


def test_import_zoo_is_light():
    import subprocess
    import sys

    code = ("import sys, zoo; print([m for m in ('torch_geometric', 'gymnasium', 'kornia', 'timm') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_index_matches_bundled_folders():
    """zoo/weights_index.json (what an installed wheel knows) equals the bundled folders' configs."""
    index = json.loads(W.INDEX_PATH.read_text())
    folders = {p.parent.name: json.loads(p.read_text()) for p in W.bundled_dir("weights").glob("*/config.json")}
    assert index == folders, ("run `zoo publish RUN --into-package` (or weights.write_index()) "
                              "after changing a weights folder")


@pytest.mark.parametrize("tag", CARDS)
def test_card_hash_and_metadata(tag):
    card = W.get_card(tag)
    missing = [k for k in W.REQUIRED_CARD_KEYS if k not in card]
    assert not missing, f"{tag} card lacks {missing}"
    assert card["tag"] == tag and tag.startswith(card["arch"] + ".")
    assert card.get("expect") and card["expect"]["metric"] in card["metrics"], "the card states what it claims"
    folder = W.resolve(tag)
    for name in W.FOLDER_FILES:
        assert (folder / name).is_file(), f"{folder} lacks {name}"
    assert W.verify_file(folder / W.WEIGHTS_FILE, card["files"][W.WEIGHTS_FILE]["sha256"])
    assert (folder / W.WEIGHTS_FILE).stat().st_size < 20 * 2**20, "keep published weights to a few MB"
    readme = (folder / "README.md").read_text()
    from huggingface_hub import ModelCard

    assert ModelCard(readme).data.license == card["license"] and "zoo reproduce" in readme  # Hub-parsable header


@pytest.mark.parametrize("tag", CARDS)
def test_card_loads_with_network_disabled(tag, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network access while loading published weights")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    model = zoo.create(tag, pretrained=True)
    assert model.pretrained_cfg["tag"] == tag and not model.training
    assert model.pretrained_cfg["sha256"] == W.get_card(tag)["files"][W.WEIGHTS_FILE]["sha256"]


def test_every_family_default_tag_is_published():
    for name in MODELS:
        spec = registry.get_spec(name)
        if spec.default_tag and not spec.family == "toy":
            assert spec.default_tag in CARDS, f"{name}'s default tag {spec.default_tag} has no weights folder"

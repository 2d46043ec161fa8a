"""Weights: folders, hashes, pickles refused, adaptation, and the Hub path end to end.

The Hub tests run the real huggingface_hub client against tests/hub_server.py (loopback only).
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from hub_server import HubServer, configure_client

import zoo
from zoo import weights as W

TAG = "toy_mlp.blobs"


@pytest.fixture
def toy_folder(tmp_path):
    torch.manual_seed(0)
    model = zoo.create("toy_mlp")
    folder = W.save_pretrained(model, tmp_path / "w" / TAG, config={
        "tag": TAG, "task": "toy", "metrics": {"accuracy": 0.9},
        "input_spec": {"features": 2}, "labels": ["a", "b", "c"]})
    return model, folder


@pytest.fixture
def card_index(tmp_path, monkeypatch, toy_folder):
    """Make zoo know the toy card through its index only (no local folder), as an installed wheel would."""
    _, folder = toy_folder
    index = tmp_path / "index.json"
    index.write_text(json.dumps({TAG: json.loads((folder / "config.json").read_text())}))
    monkeypatch.setattr(W, "INDEX_PATH", index)
    monkeypatch.setattr(W, "bundled_weights_dir", lambda: tmp_path / "no_bundled_weights")
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
    return json.loads(index.read_text())[TAG]


def _publish(hub: HubServer, folder, repo=f"{W.HUB_ORG}/{TAG}"):
    return hub.add_files(repo, {p.name: p.read_bytes() for p in folder.iterdir()})


def test_save_load_round_trip(toy_folder):
    model, folder = toy_folder
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = zoo.create(f"local-dir:{folder}", pretrained=True)
    x = torch.randn(4, 2)
    assert torch.equal(model(x), loaded(x))
    assert loaded.pretrained_cfg["labels"] == ["a", "b", "c"]
    assert not loaded.training
    readme = (folder / "README.md").read_text()
    from huggingface_hub import ModelCard

    assert ModelCard(readme).data.license == "apache-2.0"  # the Hub's own parser reads the header


def test_sha_mismatch_names_file_and_both_hashes(toy_folder):
    _, folder = toy_folder
    cfg = json.loads((folder / "config.json").read_text())
    cfg["files"]["model.safetensors"]["sha256"] = "0" * 64
    (folder / "config.json").write_text(json.dumps(cfg))
    expected = r"sha256 mismatch for .*model.safetensors: the card says 0{64}, the file has"
    with pytest.raises(W.WeightsError, match=expected):
        zoo.create(f"local-dir:{folder}", pretrained=True)


def test_pickle_is_refused_without_unpickling(toy_folder, monkeypatch):
    _, folder = toy_folder

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("a pickle was unpickled",))

    (folder / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(W.WeightsError, match="the file is a pickle"):
        W.read_folder(folder)
    (folder / "model.safetensors").unlink()
    torch.save({"x": torch.ones(1)}, folder / "pytorch_model.bin")
    with pytest.raises(W.WeightsError, match="which zoo refuses to unpickle"):
        W.read_folder(folder)


@pytest.mark.parametrize("repo", ["../etc", "org/..", "org/a/b", "/abs/x", "org\\x", "", "org/"])
def test_bad_repo_ids_rejected(repo):
    with pytest.raises(ValueError, match="invalid Hugging Face repo id"):
        W.check_repo_id(repo)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a\\b", ""])
def test_bad_filenames_rejected(name):
    with pytest.raises(ValueError, match="invalid file name"):
        W.check_filename(name)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("new_in", [1, 2, 5])
def test_adapt_first_conv_any_dimension(dims, new_in):
    conv = [torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d][dims - 1](3, 8, 3)
    w = W.adapt_input_weight(conv.weight.detach(), new_in)
    assert w.shape == (8, new_in) + conv.weight.shape[2:]
    if new_in == 1:  # grey input equal to R=G=B gives the same response
        assert torch.allclose(w[:, 0], conv.weight.detach().sum(1), atol=1e-6)
    else:  # a constant input gives the same response as before
        assert torch.allclose(w.sum(1), conv.weight.detach().sum(1), atol=1e-5)


def test_create_adapts_head_and_stem(toy_folder, caplog):
    _, folder = toy_folder
    with caplog.at_level("WARNING", logger="zoo"):
        model = zoo.create(f"local-dir:{folder}", pretrained=True, num_classes=5, in_chans=4)
    assert model(torch.randn(2, 4)).shape == (2, 5)
    assert "re-initialised for 5 classes (was 3)" in caplog.text
    assert "adapted from 2 to 4 input channels" in caplog.text
    assert model.pretrained_cfg["labels"] is None


def test_hub_download_then_offline(tmp_path, monkeypatch, toy_folder, card_index):
    model, folder = toy_folder
    with HubServer() as hub:
        configure_client(monkeypatch, hub.url, tmp_path / "hf")
        _publish(hub, folder)
        from_hub = zoo.create("toy_mlp", pretrained=True)
        assert "snapshots" in from_hub.pretrained_cfg["source"]
        assert any("/resolve/" in r.path for r in hub.requests)
    configure_client(monkeypatch, hub.url, tmp_path / "hf", offline=True)  # server stopped, offline mode
    again = zoo.create("toy_mlp", pretrained=True)
    x = torch.randn(3, 2)
    assert torch.equal(again(x), model(x))
    assert again.pretrained_cfg["sha256"] == card_index["files"]["model.safetensors"]["sha256"]


def test_hub_file_differing_from_card_is_refused(tmp_path, monkeypatch, toy_folder, card_index):
    _, folder = toy_folder
    other = W.save_pretrained(zoo.create("toy_mlp", hidden=32), tmp_path / "other", config={"tag": TAG})
    with HubServer() as hub:
        configure_client(monkeypatch, hub.url, tmp_path / "hf")
        _publish(hub, folder)
        hub.add_file(f"{W.HUB_ORG}/{TAG}", "model.safetensors", (other / "model.safetensors").read_bytes())
        with pytest.raises(W.WeightsError, match="sha256 mismatch .* the card says"):
            zoo.create("toy_mlp", pretrained=True)


@pytest.mark.parametrize("fault", ["500", "truncate"])
def test_hub_faults_never_leave_a_corrupt_file(tmp_path, monkeypatch, toy_folder, card_index, fault):
    _, folder = toy_folder
    with HubServer() as hub:
        configure_client(monkeypatch, hub.url, tmp_path / "hf")
        _publish(hub, folder)
        hub.set_fault(fault, path_glob="*/model.safetensors", times=10, method="GET")
        with pytest.raises(Exception):  # noqa: B017 - the client's own error type varies by fault
            zoo.create("toy_mlp", pretrained=True)
        blobs = list((tmp_path / "hf").rglob("snapshots/*/model.safetensors"))
        assert blobs == []
        hub.clear_faults()
        model = zoo.create("toy_mlp", pretrained=True)  # recovers once the server behaves
        assert model.pretrained_cfg["sha256"] == card_index["files"]["model.safetensors"]["sha256"]


def test_push_to_hub_and_download_for_air_gap(tmp_path, monkeypatch, toy_folder, card_index):
    model, folder = toy_folder
    with HubServer() as hub:
        configure_client(monkeypatch, hub.url, tmp_path / "hf")
        monkeypatch.setenv("HF_TOKEN", "test-token")
        sha = zoo.push_to_hub(folder, f"{W.HUB_ORG}/{TAG}")
        assert len(sha) == 40
        assert set(hub.files(f"{W.HUB_ORG}/{TAG}")) == {"config.json", "model.safetensors", "README.md"}
        got = zoo.download([TAG], local_dir=tmp_path / "airgap")
        assert (got[TAG] / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "airgap"))
    assert zoo.create("toy_mlp", pretrained=True).pretrained_cfg["source"] == str(tmp_path / "airgap" / TAG)


def test_unknown_tag_suggests(card_index):
    with pytest.raises(KeyError, match="did you mean toy_mlp.blobs"):
        zoo.create("toy_mlp.blobz", pretrained=True)


def test_download_bundled_tag_offline_to_a_dir_then_load_only_from_it(tmp_path, monkeypatch, capsys):
    """Issue 26 item 4: `zoo download TAG --to DIR`, then ZOO_WEIGHTS_DIR=DIR loads from DIR (the tag's folder),
    a bundled tag needs no network, and a tag DIR lacks is an error rather than another copy."""
    from zoo.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "cnn", "--to", str(tmp_path / "airgap")]) == 0
    folder = tmp_path / "airgap" / "cnn.fashion_mnist"
    assert str(folder) in capsys.readouterr().out
    assert (folder / "model.safetensors").read_bytes() == (W.bundled_weights_dir() / folder.name /
                                                           "model.safetensors").read_bytes()
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "airgap"))
    assert zoo.create("cnn", pretrained=True).pretrained_cfg["source"] == str(folder)
    with pytest.raises(W.WeightsError, match=r"ZOO_WEIGHTS_DIR=.*airgap has no folder gcn.cora/"):
        zoo.create("gcn.cora", pretrained=True)
    assert main(["eval", "gcn.cora"]) == 2
    assert "zoo download gcn.cora --to DIR" in capsys.readouterr().err


def test_a_known_tag_is_checked_against_the_packaged_index_not_its_folder(tmp_path, monkeypatch):
    src = W.bundled_weights_dir() / "cnn.fashion_mnist"
    dest = tmp_path / "cnn.fashion_mnist"
    dest.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dest / f.name).write_bytes(f.read_bytes())
    model = zoo.create("cnn")  # other weights under the published tag, with a card that vouches for them
    W.save_pretrained(model, dest, config={"tag": "cnn.fashion_mnist"})
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    assert W.get_card("cnn.fashion_mnist") == W.packaged_index()["cnn.fashion_mnist"]
    with pytest.raises(W.WeightsError, match="sha256 mismatch"):
        zoo.create("cnn.fashion_mnist", pretrained=True)


def test_run_dirs_and_folders_are_names_in_create_as_on_the_cli(tmp_path, toy_folder, monkeypatch):
    """Issue 26 item 5: a run directory or a folder path works in zoo.create wherever it works on the CLI."""
    model, folder = toy_folder
    run = tmp_path / "runs" / "toy-run"
    (run / "model").mkdir(parents=True)
    for f in folder.iterdir():
        (run / "model" / f.name).write_bytes(f.read_bytes())
    x = torch.randn(3, 2)
    monkeypatch.chdir(tmp_path)
    for name in (str(run), "runs/toy-run", "./runs/toy-run", str(folder), f"local-dir:{run / 'model'}"):
        loaded = zoo.create(name, pretrained=True)
        assert torch.equal(loaded(x), model(x)), name
    with pytest.raises(FileNotFoundError, match="runs/nope: no such folder"):
        zoo.create("runs/nope", pretrained=True)
    with pytest.raises(FileNotFoundError, match="elsewhere/nope: no such weights folder or run directory"):
        zoo.create("elsewhere/nope", pretrained=True)

"""(f) Traversal in every user-supplied name: tags, run names, repo ids, revisions, recipe keys, card tags,
and symlinks inside a target folder. Each is refused with a named error (or, for a run name derived from a
file name, made safe), and nothing is written outside the target folder."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from faultkit import package_files, snapshot

import zoo
from zoo import recipes as R
from zoo import weights as W
from zoo.engine import publish, train
from zoo.engine.run import new_run_dir
from zoo.utils import check_name, safe_join

BAD = ["../x.y", "../../victim/.", "/abs/where.x", "a/../../b.c", "..", ".", "", "a\\b.c", "x\x00y.z", "~/x.y",
       " x.y", "x.y\n", ".hidden.x", "-rf.x", "a" * 200 + ".x", "x.y/", "x.y/.."]
TOY = "tests/example_family/recipes/toy.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run, _ = train(TOY, ["train.epochs=1"], runs_root=tmp_path_factory.mktemp("runs"))
    return run


@pytest.fixture
def sandbox(tmp_path):
    """tmp/outside (must stay untouched) and tmp/target (the folder the user named)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "README.md").write_text("the victim's file\n")
    (tmp_path / "target").mkdir()
    return tmp_path


def _untouched(sandbox, before):
    assert snapshot(sandbox / "outside", *package_files()) == before


@pytest.mark.parametrize("name", BAD, ids=range(len(BAD)))
def test_bad_tags_are_refused_everywhere(name, sandbox, run_dir):
    before = snapshot(sandbox / "outside", *package_files())
    with pytest.raises(ValueError):
        W.check_tag(name)
    with pytest.raises(ValueError):
        publish(run_dir, name, to=sandbox / "target")
    with pytest.raises((ValueError, KeyError)):
        W.download([name], local_dir=sandbox / "target")
    with pytest.raises((ValueError, KeyError, FileNotFoundError)):
        W.resolve(name)
    with pytest.raises(R.RecipeError, match="weights.tag"):
        R.validate(R.apply_overrides(R.load(TOY)[0], [f"weights.tag={json.dumps(name)}"]), {})
    assert not any((sandbox / "target").iterdir())
    _untouched(sandbox, before)


@pytest.mark.parametrize("name", BAD + ["org", "org/a/b", "org//x"], ids=range(len(BAD) + 3))
def test_bad_repo_ids_and_revisions_are_refused_before_any_request(name, tmp_path):
    with pytest.raises(ValueError):
        W.check_repo_id(name)
    with pytest.raises(ValueError):
        zoo.push_to_hub(tmp_path, name)
    with pytest.raises(ValueError):
        W.download([f"hf-hub:{name}"])
    if name not in ("org", "org/a/b", "org//x"):  # those are fine revisions
        with pytest.raises(ValueError):
            W.download([f"hf-hub:org/repo@{name}"])


@pytest.mark.parametrize("name", BAD, ids=range(len(BAD)))
def test_run_names_made_from_file_names_stay_inside_the_runs_folder(name, tmp_path):
    run = new_run_dir(tmp_path / "runs", name)
    assert run.parent == tmp_path / "runs" and check_name(run.name, "run name")


def test_a_symlink_inside_the_target_does_not_lead_outside(sandbox, run_dir):
    before = snapshot(sandbox / "outside", *package_files())
    os.symlink(sandbox / "outside", sandbox / "target" / "toy_mlp.evil")
    with pytest.raises(ValueError, match="resolves outside"):
        publish(run_dir, "toy_mlp.evil", to=sandbox / "target")
    with pytest.raises(ValueError, match="resolves outside"):
        safe_join(sandbox / "target", "toy_mlp.evil")
    os.symlink(sandbox / "outside", sandbox / "target" / "cnn.fashion_mnist")
    with pytest.raises(ValueError, match="resolves outside"):
        zoo.download(["cnn"], local_dir=sandbox / "target")
    _untouched(sandbox, before)


def test_a_card_cannot_name_itself_into_another_tag(tmp_path, monkeypatch):
    """A folder's config.json tag is data: a card whose tag differs from its folder's name is ignored."""
    folder = W.save_pretrained(zoo.create("toy_mlp"), tmp_path / "toy_mlp.mine",
                               config={"tag": "toy_mlp.mine", "task": "toy"})
    cfg = json.loads((folder / "config.json").read_text())
    shutil.copytree(folder, tmp_path / "toy_mlp.other")
    cfg["tag"] = "../../victim/."
    (tmp_path / "toy_mlp.other" / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    cards = W.load_index()
    assert "toy_mlp.mine" in cards and "../../victim/." not in cards and "toy_mlp.other" not in cards
    assert zoo.create("toy_mlp.mine", pretrained=True)(torch.randn(1, 2)).shape == (1, 3)


def test_publish_never_writes_into_the_package_unless_asked(run_dir, sandbox):
    before = snapshot(*package_files())
    with pytest.raises(ValueError, match="--to DIR"):
        publish(run_dir)
    dest = publish(run_dir, "toy_mlp.mine", to=sandbox / "target")
    assert dest == sandbox / "target" / "toy_mlp.mine" and (dest / "model.safetensors").is_file()
    assert snapshot(*package_files()) == before

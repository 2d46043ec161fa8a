"""`make tour` on a fresh machine: every family runs from what the package ships, with no data set at all.

The Debian data packages' folders are hidden and ZOO_DATA is an empty folder; every reader of a real data
set raises if the tour calls it. The tour must still exit 0 with all seven families' rows and pictures,
and write nothing into ZOO_DATA. Also: the sample inputs ship in the wheel, and `zoo predict TAG` with no
input uses them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import zoo
from zoo import weights
from zoo.data import images
from zoo.families.gcn import data as graphs
from zoo.families.unet3d import data as volumes
from zoo.tour import tour
from zoo.utils import bundled_dir

FAMILIES = ("bev", "cnn", "dqn", "gcn", "nerf", "patchcore", "unet3d")


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """ZOO_DATA empty, the data packages' folders hidden, every data set reader forbidden."""
    data = tmp_path / "zoo_data"
    data.mkdir()
    monkeypatch.setenv("ZOO_DATA", str(data))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(images, "FASHION_MNIST_DIRS", (str(tmp_path / "hidden" / "fashion-mnist"),))
    monkeypatch.setattr(volumes, "COLIN27_DIR", str(tmp_path / "hidden" / "mricron"))

    def forbidden(name):
        def reader(*args, **kwargs):
            raise AssertionError(f"the tour read a data set: {name}{args}")
        return reader

    for module, name in ((images, "fashion_mnist"), (images, "digits_split"), (volumes, "mni152_tissue"),
                         (volumes, "colin27_gm"), (volumes, "nilearn_data_dir"), (graphs, "planetoid")):
        monkeypatch.setattr(module, name, forbidden(f"{module.__name__}.{name}"))
    return data


def test_tour_runs_every_family_without_any_data_set(no_data, tmp_path, capsys):
    out = tmp_path / "tour"
    rc = tour(out=out)
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "FAILED" not in text, text
    for family in FAMILIES:
        assert (out / f"{family}.png").is_file(), f"no {family} picture:\n{text}"
        assert any(line.startswith(f"{family} ") for line in text.splitlines()), text
    assert (out / "gallery.png").is_file()
    assert not any(no_data.iterdir()), f"the tour wrote into ZOO_DATA: {list(no_data.iterdir())}"


@pytest.mark.parametrize("tag", ["cnn.fashion_mnist", "gcn.cora", "unet3d.mni152_tissue"])
def test_predict_without_input_uses_the_shipped_samples(no_data, tmp_path, tag):
    from zoo.tasks import get_task

    model = zoo.create(tag, pretrained=True)
    paths = get_task(weights.get_card(tag)["task"]).predict(model, None, tmp_path / "out")
    assert paths and all(Path(p).is_file() for p in paths)
    assert not any(no_data.iterdir())


def _reads_a_data_set(tag: str) -> bool:
    card = weights.get_card(tag)
    return card["task"] in ("classification", "node_classification") or card.get("labels") == volumes.TISSUE_LABELS


@pytest.mark.parametrize("tag", [t for t in sorted(weights.load_index()) if _reads_a_data_set(t)])
def test_tags_that_read_a_data_set_ship_samples(tag):
    """Tags whose tour/predict input would otherwise be a data set carry samples/ in their weights folder
    (package data: pyproject's zoo._bundled.weights = ["**/*"] puts it in the wheel). The other tasks
    generate their input (bev scenes, dqn environments, nerf cameras, patchcore textures)."""
    folder = bundled_dir("weights") / tag / "samples"
    assert (folder / "README.md").is_file() and len(os.listdir(folder)) > 1, f"{tag}: no samples/ shipped"

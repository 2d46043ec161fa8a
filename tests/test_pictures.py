"""The prediction pictures a new user looks at first: sizes, order, notes, names and the card's figures."""

from __future__ import annotations

import torch
from PIL import Image

import zoo
from zoo import weights
from zoo.families.cnn.task import LOW_CONFIDENCE, draw_predictions
from zoo.families.dqn.task import training_curve
from zoo.families.gcn.data import PLANETOID_CLASSES


def test_one_image_is_drawn_alone_at_a_readable_size(tmp_path):
    image = torch.randint(0, 255, (1, 1, 28, 28), dtype=torch.uint8)
    path = draw_predictions(image, torch.tensor([[0, 1]]), torch.tensor([[0.9, 0.1]]), torch.tensor([-1]),
                            ["a", "b"], tmp_path / "one.png")
    width, height = Image.open(path).size
    assert 200 <= width <= 400 and 200 <= height <= 500  # not a 1,360 px canvas with one small image


def test_predict_shows_wrong_guesses_first_and_notes_low_confidence(tmp_path, monkeypatch):
    import zoo.families.cnn.task as C

    shown = {}

    def spy(images, top_i, top_p, labels, classes, path, **kw):  # what predict hands the drawing, in order
        shown.update(top_i=top_i, top_p=top_p, labels=labels)
        return path

    monkeypatch.setattr(C, "draw_predictions", spy)
    model = zoo.create("cnn.fashion_mnist", pretrained=True)
    C.TASK.predict(model, None, tmp_path, grid=20)
    wrong = (shown["top_i"][:, 0] != shown["labels"]).tolist()
    assert wrong == sorted(wrong, reverse=True)  # every wrong guess before the first right one


def test_a_low_top_probability_gets_a_note(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    titles = []
    real = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, text, *a, **k: (titles.append(text), real(self, text, *a, **k)))
    image = torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8)
    p = torch.tensor([[LOW_CONFIDENCE - 0.1, 0.3], [0.95, 0.05]])
    draw_predictions(image, torch.tensor([[0, 1], [1, 0]]), p, torch.tensor([-1, -1]), ["a", "b"], tmp_path / "x.png")
    assert "unsure" in titles[0] and "unsure" not in titles[1]


def test_planetoid_tags_name_their_classes():
    for tag in ("gcn.cora", "dagnn.cora", "gcn.citeseer"):
        card = weights.get_card(tag)
        assert card["labels"] == PLANETOID_CLASSES[card["input_spec"]["dataset"]]
        assert len(card["labels"]) == card["model_args"]["num_classes"]


def test_dqn_curve_carries_the_cards_greedy_figure():
    curve = training_curve(zoo.create("dqn.cartpole", pretrained=True))
    card = weights.get_card("dqn.cartpole")
    assert curve["card"]["mean"] == card["metrics"]["return_mean"] and curve["card"]["episodes"] == 100
    assert curve["train"] and curve["card"]["target"] == card["expect"]["value"]

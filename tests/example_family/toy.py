"""A tiny example family that proves the machinery end to end (registry, engine, export, reproduce).

It is what docs/adding-a-family.md walks through: one model file's worth of code (a registered
MLP) and one task's worth (generated 2-D blobs, cross-entropy, accuracy). Loaded through
ZOO_PLUGINS=tests.example_family.toy, exactly as a third-party family would be.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from zoo.engine import sequential_batches
from zoo.recipes import F as Field
from zoo.registry import register_model
from zoo.tasks import Data, Task, TensorBatches
from zoo.utils import check_tensor


class ToyMLP(nn.Module):
    first_conv = "stem"  # state-dict prefixes that zoo.create adapts for in_chans / num_classes
    classifier = "head"

    def __init__(self, in_chans: int = 2, num_classes: int = 3, hidden: int = 32, dropout: float = 0.1):
        super().__init__()
        self.in_chans = in_chans
        self.stem = nn.Linear(in_chans, hidden)
        self.body = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x", ("B", self.in_chans), owner="toy_mlp")
        return self.head(self.body(self.stem(x)))

    def example_inputs(self, batch_size: int = 2) -> tuple:
        return (torch.randn(batch_size, self.in_chans),)


@register_model("toy_mlp", task="tests.example_family.toy", family="toy", default_tag="toy_mlp.blobs",
                input_spec={"features": 2})
def toy_mlp(in_chans: int = 2, num_classes: int = 3, hidden: int = 32, dropout: float = 0.1) -> ToyMLP:
    """A two-hidden-layer MLP on feature vectors (the example family)."""
    return ToyMLP(in_chans, num_classes, hidden, dropout)


def make_blobs(n: int, num_classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234)) * 6.0
    y = torch.randint(0, num_classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


class ToyTask(Task):
    name = "tests.example_family.toy"
    main_metric = "accuracy"
    mode = "max"
    DATA_SCHEMA = {"n_train": Field(int, 512), "n_val": Field(int, 256), "num_classes": Field(int, 3),
                   "dim": Field(int, 2), "seed": Field(int, 0), "root": Field((str, type(None)), None),
                   "step_sleep": Field(float, 0.0, "seconds each step sleeps (lets a test kill a run mid-epoch)")}

    def build_data(self, cfg, ctx) -> Data:
        k, d = cfg["num_classes"], cfg["dim"]
        xtr, ytr = make_blobs(cfg["n_train"], k, d, cfg["seed"])
        xva, yva = make_blobs(cfg["n_val"], k, d, cfg["seed"] + 1)
        return Data(TensorBatches(xtr, ytr), TensorBatches(xva, yva), None,
                    {"num_classes": k, "in_chans": d, "labels": [f"blob{i}" for i in range(k)],
                     "input_spec": {"features": d}})

    def model_args(self, data):
        return {"num_classes": data.info["num_classes"], "in_chans": data.info["in_chans"]}

    def train_step(self, model, batch, ctx):
        if ctx.recipe["data"]["step_sleep"]:
            time.sleep(ctx.recipe["data"]["step_sleep"])
        x, y = batch
        loss = F.cross_entropy(model(x), y)
        return loss, {}

    def evaluate(self, model, dataset, ctx):
        correct = total = 0
        loss = 0.0
        for x, y in sequential_batches(dataset, 256, ctx.device):
            logits = model(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
        return {"accuracy": correct / total, "loss": loss / total}


TASK = ToyTask()

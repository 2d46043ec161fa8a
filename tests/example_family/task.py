"""The example family's task: generated 2-D blobs, cross-entropy, accuracy (the name its model registers: "toy")."""

from __future__ import annotations

import time

import torch.nn.functional as F

from zoo.engine import sequential_batches
from zoo.recipes import F as Field
from zoo.tasks import Data, Task, TensorBatches

from .data import make_blobs


class ToyTask(Task):
    name = "toy"
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

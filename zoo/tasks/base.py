"""The task interface: what differs between domains, behind one shape.

A task module (zoo/families/<family>/task.py) defines a subclass of `Task` and exposes an instance as
`TASK`. The CLI and the engine only ever talk to this interface:

    data    = task.build_data(recipe["data"], ctx)            -> Data(train, val, test, info)
    model   = zoo.create(recipe["model"]["name"], **task.model_args(data), ...)
    metrics = task.fit(model, data, ctx)                      (default: the engine's loop)
    metrics = task.evaluate(model, data.test, ctx)            -> {"accuracy": 0.94, ...}
    paths   = task.predict(model, input_path, out_dir)        pictures / files for a person
    batch   = task.sample_input(model)                        for the tour and smoke tests

The default `fit` is `ctx.trainer.fit(...)`, which calls `task.train_step(model, batch, ctx)`
for each batch. Datasets are either torch Datasets (loaded with a DataLoader) or objects with
`__len__` and `get_batch(indices: LongTensor)` that return a whole batch in one vectorised call
(much faster than per-sample collation for in-memory tensors, rays or graphs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def unwrap(model):
    """The model inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers, for its own attributes."""
    for attr in ("module", "_orig_mod"):
        while hasattr(model, attr):
            model = getattr(model, attr)
    return model


@dataclass
class Data:
    train: Any = None
    val: Any = None
    test: Any = None
    info: dict = field(default_factory=dict)  # num_classes, in_chans, labels, input_spec, ...
    fitted: Any = None  # what `fit` learnt for the card besides the weights: a zoo.specs.FitSpec, or None


class TensorBatches:
    """An in-memory dataset of aligned tensors with vectorised `get_batch` (no per-sample collate)."""

    def __init__(self, *tensors, names: tuple[str, ...] | None = None):
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"TensorBatches: tensors of different lengths {[len(t) for t in tensors]}")
        self.tensors = tensors
        self.names = names

    def __len__(self) -> int:
        return len(self.tensors[0])

    def get_batch(self, idx):
        out = tuple(t[idx] for t in self.tensors)
        return dict(zip(self.names, out)) if self.names else out


class Task:
    """Base class; subclasses override what their domain needs."""

    name: str = "task"
    main_metric: str = "loss"
    mode: str = "min"  # "max" when higher main_metric is better
    DATA_SCHEMA: dict | None = None  # schema of the recipe's data section (zoo.recipes.F fields)
    AUGMENT_SCHEMA: dict | None = None
    # engine sections this task uses only in part: {"train": (keys it reads), "optim": ()}; other keys are refused
    ENGINE_KEYS: dict[str, tuple[str, ...]] = {}
    MOVED: dict[str, str] = {}  # {old key path: new one}: refused with where the key lives now
    # overrides that make any of this task's recipes run a few steps in seconds (the CI smoke test)
    smoke_overrides: tuple[str, ...] = ("train.max_steps=4", "train.log_every=1")
    smoke_loss_decreases: bool = True  # the smoke test checks the loss went down over those steps

    def sections(self) -> dict[str, dict | None]:
        """The recipe sections this task owns, with their schemas (None: any mapping): data, and augment where
        the task has an `AUGMENT_SCHEMA`; a task with its own hyper-parameters adds a section (dqn's `algo`)."""
        return {"data": self.DATA_SCHEMA, **({"augment": self.AUGMENT_SCHEMA} if self.AUGMENT_SCHEMA else {})}

    # ----------------------------------------------------------------- data and model
    def build_data(self, cfg: dict, ctx) -> Data:
        raise NotImplementedError

    def model_args(self, data: Data) -> dict:
        """Constructor arguments that follow from the data (num_classes, in_chans, ...)."""
        return {}

    def card_extras(self, data: Data) -> dict:
        """What goes into the weight card besides metrics: input_spec, labels, and what `fit` set on `data.fitted`."""
        out = {k: data.info[k] for k in ("input_spec", "labels") if k in data.info}
        return {**out, **(data.fitted.to_card() if data.fitted is not None else {})}

    def build_augment(self, cfg: dict, data: Data, device) -> Any:
        return None

    # ----------------------------------------------------------------- training
    def train_step(self, model, batch, ctx) -> tuple[Any, dict]:
        """(loss tensor, dict of floats to log) for one batch already on ctx.device."""
        raise NotImplementedError

    def fit(self, model, data: Data, ctx) -> dict:
        return ctx.trainer.fit(model, data)

    def evaluate(self, model, dataset, ctx) -> dict[str, float]:
        raise NotImplementedError

    # ----------------------------------------------------------------- use
    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None) -> list[Path]:
        raise NotImplementedError(f"task {self.name} has no predict yet")

    def sample_input(self, model) -> tuple:
        """A small real or generated input for the tour: args for model(...)."""
        return model.example_inputs(1)

    def draw_sample(self, model, out_path: Path) -> Path | None:
        """One picture of the model's output on `sample_input`, for the tour's gallery."""
        return None

    def finetune_overrides(self, data_path: str) -> list[str]:
        """Data-only overrides pointing a recipe at a user's data (`zoo finetune --data`, `zoo eval --data`)."""
        return [f"data.root={data_path}"]

"""Tasks: how each domain builds data, trains, evaluates, predicts and draws (one file each)."""

from __future__ import annotations

import importlib

from .base import Data, Task, TensorBatches, unwrap

__all__ = ["Data", "Task", "TensorBatches", "get_task", "unwrap"]


def get_task(name: str) -> Task:
    """The TASK object of zoo.tasks.<name> (or of a dotted module path for plug-in tasks)."""
    module = name if "." in name else f"zoo.tasks.{name}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ValueError(f"unknown task {name!r}: no module {module}") from e
    return mod.TASK

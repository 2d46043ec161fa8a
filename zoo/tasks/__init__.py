"""Tasks: the interface (zoo.tasks.base) every domain implements to build data, train, evaluate, predict and draw.

Each family's task lives next to its model, in zoo/families/<family>/task.py; `get_task` finds it
by the name its models register (`task="bev_segmentation"`), or takes a dotted module path for
plug-in tasks (`task="my_pkg.my_task"`).
"""

from __future__ import annotations

import importlib

from .base import Data, Task, TensorBatches, unwrap

__all__ = ["Data", "Task", "TensorBatches", "get_task", "unwrap"]


def get_task(name: str) -> Task:
    """The TASK of the task module next to the models registered with `task=name`, or of a dotted module path."""
    if "." in name:
        modules = [name]
    else:
        from zoo.registry import task_modules

        modules = task_modules(name)
    for module in modules:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise  # the task module exists but something it imports is missing
            continue
        task = getattr(mod, "TASK", None)
        if task is not None and ("." in name or task.name == name):
            return task
    if "." in name:
        raise ValueError(f"unknown task {name!r}: no module {name} with a TASK")
    from zoo.registry import _MODELS

    known = sorted({s.task for s in _MODELS.values()})
    raise ValueError(f"unknown task {name!r}: no registered model's family defines it in its task.py "
                     f"(known: {', '.join(known)})")

"""The shared trainer and the run lifecycle (train, evaluate, publish, reproduce)."""

from .loop import Loop
from .reproducing import reproduce
from .run import evaluate, publish, train
from .state import pick_device, seed_everything
from .trainer import Context, Trainer, sequential_batches

__all__ = ["Context", "Loop", "Trainer", "evaluate", "pick_device", "publish", "reproduce", "seed_everything",
           "sequential_batches", "train"]

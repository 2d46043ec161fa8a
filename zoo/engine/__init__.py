"""The shared trainer and the run lifecycle (train, evaluate, export, reproduce)."""

from .reproduce import reproduce
from .run import evaluate, export, train
from .state import pick_device, seed_everything
from .trainer import Context, Trainer, sequential_batches

__all__ = ["Context", "Trainer", "evaluate", "export", "pick_device", "reproduce", "seed_everything",
           "sequential_batches", "train"]

"""The example family's model: a two-hidden-layer MLP on feature vectors, registered as toy_mlp."""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import register_model
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


# The class itself is registered: its __init__ signature is what a card's model_args record.
register_model("toy_mlp", task="toy", family="toy", default_tag="toy_mlp.blobs", input_spec={"features": 2},
               description="A two-hidden-layer MLP on feature vectors (the example family).")(ToyMLP)

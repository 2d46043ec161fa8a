"""Input checks shared by the augmentation modules: errors name the expected layout and dtype."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def is_integer(x: torch.Tensor) -> bool:
    return not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)


def label_map_with_channel(
    owner: str, name: str, labels: torch.Tensor, batch: int, spatial: Sequence[int]
) -> torch.Tensor:
    """View integer labels of shape (B, *S) or (B, 1, *S) as (B, 1, *S); else a ValueError naming both."""
    plain, with_channel = (batch, *spatial), (batch, 1, *spatial)
    if tuple(labels.shape) not in (plain, with_channel) or not is_integer(labels):
        raise ValueError(
            f"{owner} expects integer {name} of shape {plain} or {with_channel}, "
            f"got {labels.dtype} {tuple(labels.shape)}"
        )
    return labels.view(with_channel)

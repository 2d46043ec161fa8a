"""Randomness for batch augmentation: torch's global RNGs, optionally re-seeded for one call.

Kornia draws from torch's global RNG, and so do zoo's own samplers (small parameter tensors on
CPU, per-voxel noise on the batch's device). That keeps one rule for everything: the engine's
`torch.manual_seed` makes a run reproducible. When a call passes `generator=` (a
`torch.Generator` or an int seed), the global CPU RNG (and the CUDA RNG of the batch's device)
are forked, seeded from it, and restored on exit, so the call is reproducible on its own and
leaves the rest of the program's random stream untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

Seed = torch.Generator | int | None


def draw_seed(generator: torch.Generator | int) -> int:
    """An int seed from an int (itself) or a generator (one draw, so successive calls differ)."""
    if isinstance(generator, int):
        return generator
    return int(torch.randint(2**62, (), generator=generator, device=generator.device))


@contextmanager
def seeded(generator: Seed, device: torch.device) -> Iterator[None]:
    """Run the block on the global RNG, seeded from `generator`; no-op when it is None.

    Args:
        generator: a `torch.Generator`, an int seed, or None (use the global RNG as it is).
        device: the batch's device; its CUDA RNG is forked and seeded too.
    """
    if generator is None:
        yield
        return
    seed = draw_seed(generator)
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def uniform(n: int, low: float, high: float) -> torch.Tensor:
    """n draws from U[low, high) on CPU (parameters are tiny; they move to the batch's device once)."""
    return torch.empty(n).uniform_(low, high)


def bernoulli(n: int, p: float) -> torch.Tensor:
    """n bool draws, True with probability p, on CPU."""
    return torch.rand(n) < p

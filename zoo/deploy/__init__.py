"""Deployment: export (ONNX, torch.export .pt2, TorchScript, AOTInductor), int8 quantization, pruning,
distillation (an engine feature: train.distill) and profiling. See docs/deploy.md.

    import zoo.deploy
    folder = zoo.deploy.export("cnn.fashion_mnist", "onnx", "out/cnn-onnx")   # model.onnx + its card
    runner = zoo.deploy.load_exported(folder)                                 # an nn.Module over onnxruntime

Importing zoo.deploy is light (the `zoo` command registers its verbs from here): torch, onnx and
onnxruntime load when a function below is first called.
"""

from __future__ import annotations

# format -> file in the export folder; aoti: the torch.export program compiled ahead of time by AOTInductor
# (a package C++ loads without Python)
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "torchscript": "model.ts", "aoti": "model.aoti.pt2"}
DEFAULT_OPSET = 18  # torch.onnx's dynamo exporter emits opset 18; lower ones go through onnx's version converter
RUNTIMES = {"onnxruntime": "onnx", "torch.export": "pt2", "torchscript": "torchscript"}  # zoo eval --runtime


def export(name_or_model, fmt: str = "onnx", out_dir="export", **kwargs):
    """Export and check a model; see :func:`zoo.deploy.exporter.export`."""
    from .exporter import export as run

    return run(name_or_model, fmt, out_dir, **kwargs)


def load_exported(path, threads: int | None = None):
    """An nn.Module over an exported file or folder; see :func:`zoo.deploy.runtime.load_exported`."""
    from .runtime import load_exported as load

    return load(path, threads)


__all__ = ["export", "load_exported"]

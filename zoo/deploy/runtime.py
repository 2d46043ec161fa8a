"""Run exported files from Python: an onnxruntime session, a .pt2 program or a TorchScript file as a callable.

`load_exported(folder_or_file)` returns an `nn.Module` whose forward takes and returns torch tensors like
the exported graph, so a task's `evaluate` can run it in place of the PyTorch model.
"""

from __future__ import annotations

import inspect
import os
import types
from pathlib import Path

import torch
from torch import nn

from . import FILES


def need(module: str, extra: str = "deploy"):
    """Import an optional dependency or raise an error that names the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"zoo.deploy needs {module}: pip install 'zoo[{extra}]'") from e


def ort_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session (`threads` intra-op threads; default onnxruntime's choice)."""
    ort = need("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxModule(nn.Module):
    """An onnxruntime session behind a torch-style forward: tensors in (CPU), a tensor or tuple out."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = ort_session(path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, *inputs: torch.Tensor):
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.path.name} takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                             f"got {len(inputs)}")
        feed = {n: t.detach().cpu().numpy() for n, t in zip(self.input_names, inputs)}
        out = [torch.from_numpy(o) for o in self.session.run(None, feed)]
        return out[0] if len(out) == 1 else tuple(out)


def load_exported(path: str | os.PathLike, threads: int | None = None) -> nn.Module:
    """A callable over an exported file (model.onnx / .pt2 / .ts / .aoti.pt2) or the folder that holds one."""
    path = Path(path)
    if path.is_dir():
        found = [path / f for f in FILES.values() if (path / f).is_file()]
        if not found:
            raise FileNotFoundError(f"{path} holds none of {', '.join(FILES.values())}: export a model there first")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    if path.suffix == ".onnx":
        return OnnxModule(path, threads)
    if path.name.endswith(".aoti.pt2"):
        return torch._inductor.aoti_load_package(str(path))
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()
    if path.suffix == ".ts":
        return torch.jit.load(str(path)).eval()
    raise ValueError(f"{path.name}: unknown exported format (expected .onnx, .pt2 or .ts)")


class ExportedModel(nn.Module):
    """An exported file standing in for its PyTorch model, so a task's `evaluate` runs it unchanged.

    `forward` runs the export (a tuple of outputs becomes the model's dict again where the model returns
    one); every other attribute is the model's, and its methods are bound to this stand-in, so that e.g.
    `unet3d.segment` tiles a volume through the export and `dqn.act` picks actions with it.
    """

    runs_on_cpu = True  # zoo eval measures it on the CPU (onnxruntime's CPU provider, torch.export on CPU)

    def __init__(self, model: nn.Module, runner: nn.Module, output_names: list[str], dict_outputs: bool):
        super().__init__()
        object.__setattr__(self, "_model", model)  # not a submodule: its parameters are not what runs
        self.runner, self.output_names, self.dict_outputs = runner, output_names, dict_outputs
        # code that asks `next(model.parameters()).device` learns that the export runs on the CPU
        self.device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def train(self, mode: bool = True):
        """Only the flag: an export has no training mode (a .pt2 program refuses train() and eval())."""
        self.training = mode
        return self

    def forward(self, *inputs):
        # exported graphs take dense tensors (gcn's sparse node features included)
        out = self.runner(*(x.cpu() if x.layout == torch.strided else x.cpu().to_dense() for x in inputs))
        if self.dict_outputs:
            return dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))
        return out

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        model = object.__getattribute__(self, "_model")
        if isinstance(inspect.getattr_static(type(model), name, None), types.FunctionType):
            return getattr(type(model), name).__get__(self)  # a method of the model, run on the export
        return getattr(model, name)

"""Export a zoo model to ONNX, torch.export (.pt2) or TorchScript, checked against PyTorch.

    import zoo.deploy
    folder = zoo.deploy.export("cnn.fashion_mnist", "onnx", "out/cnn-onnx")   # model.onnx + deploy.json + README.md

Every export is run back through its runtime (onnxruntime CPU, `torch.export.load`, `torch.jit.load`)
on inputs of two batch sizes and compared with the PyTorch model: the largest absolute difference
goes on the export's card (deploy.json), and an export above `tolerance` is an error, not a file.
What each family exports (and what stays outside the graph) is in zoo.deploy.graphs.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..utils import sha256_file, write_json
from . import DEFAULT_OPSET, RUNTIMES
from .graphs import GraphSpec, graph_spec
from .runtime import FILES, ExportedModel, load_exported, need

FORMATS = tuple(FILES)
TOLERANCE = 1e-4
PARITY_BATCHES = (1, 3)


def load_model(name_or_model) -> nn.Module:
    """A model from a tag / family name, a weights folder, a run dir, or an `nn.Module` as it is."""
    if isinstance(name_or_model, nn.Module):
        return name_or_model.eval()
    from ..registry import create

    p = Path(name_or_model)
    if (p / "model" / "config.json").is_file():  # a run dir
        p = p / "model"
    if (p / "config.json").is_file():
        return create(f"local-dir:{p}", pretrained=True).eval()
    if p.exists():
        raise FileNotFoundError(f"{p} is neither a weights folder (config.json) nor a run dir (model/config.json)")
    return create(str(name_or_model), pretrained=True).eval()


def source_info(model: nn.Module) -> dict:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {"tag": cfg.get("tag"), "arch": cfg.get("arch", type(model).__name__), "sha256": cfg.get("sha256")}


def _dims(spec: GraphSpec, dynamic: bool) -> tuple:
    """torch.export dynamic shapes, one dict per input, with one Dim object per symbolic name."""
    dims: dict[str, torch.export.Dim] = {}
    out = []
    for name in spec.input_names:
        axes = spec.dynamic.get(name, {}) if dynamic else {}
        out.append({axis: dims.setdefault(sym, torch.export.Dim(sym, min=2)) for axis, sym in axes.items()} or None)
    return tuple(out)


def _as_tuple(out) -> tuple:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, dict):
        return tuple(out.values())
    return tuple(out)


def _shapes(names: list[str], a: tuple, b: tuple, dynamic: dict[str, dict[int, str]], batch_name: str) -> list:
    """[{name, shape, dtype}]: axes that differ between the runs at two batch sizes get their symbolic name."""
    rows = []
    for name, x, y in zip(names, a, b):
        shape = [dynamic.get(name, {}).get(i) or (batch_name if p != q else int(p))
                 for i, (p, q) in enumerate(zip(x.shape, y.shape))]
        rows.append({"name": name, "shape": shape, "dtype": str(x.dtype).replace("torch.", "")})
    return rows


def _write(spec: GraphSpec, fmt: str, path: Path, opset: int, dynamic: bool) -> None:
    inputs = spec.example_inputs(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            need("onnxscript")
            torch.onnx.export(spec.module, inputs, str(path), dynamo=True, opset_version=opset,
                              input_names=spec.input_names, output_names=spec.output_names,
                              dynamic_shapes=_dims(spec, dynamic), external_data=False, verbose=False)
        elif fmt in ("pt2", "aoti"):
            program = torch.export.export(spec.module, inputs, dynamic_shapes=_dims(spec, dynamic))
            if fmt == "pt2":
                torch.export.save(program, str(path))
            else:  # compiled to a shared library inside the package: needs a C++ compiler now, not at run time
                torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        else:  # TorchScript by trace: torch.jit.script is deprecated, and trace follows the eager forward
            with torch.no_grad():
                traced = torch.jit.trace(spec.module, inputs, check_trace=False)
            traced.save(str(path))


def check_parity(spec: GraphSpec, runner, batch_sizes=PARITY_BATCHES) -> tuple[float, tuple, tuple]:
    """Largest |exported - PyTorch| over all outputs at each batch size; also the outputs at the first two."""
    worst, outs = 0.0, []
    reference = spec.reference or spec.module
    for b in batch_sizes:
        inputs = spec.example_inputs(b)
        with torch.no_grad():
            ref = _as_tuple(reference(*inputs))
            got = _as_tuple(runner(*inputs))
        if len(got) != len(ref):
            raise RuntimeError(f"exported graph returns {len(got)} outputs, the model {len(ref)}")
        for r, g in zip(ref, got):
            if tuple(r.shape) != tuple(g.shape):
                raise RuntimeError(f"batch {b}: exported output shape {tuple(g.shape)} != PyTorch {tuple(r.shape)}")
            if r.numel():
                worst = max(worst, float((r.float() - g.float()).abs().max()))
        outs.append((inputs, ref))
    return worst, outs[0], outs[-1]


def export(name_or_model, fmt: str = "onnx", out_dir: str | os.PathLike = "export", *, opset: int = DEFAULT_OPSET,
           dynamic_batch: bool = True, tolerance: float = TOLERANCE, batch_sizes=PARITY_BATCHES) -> Path:
    """Export a model to `out_dir/model.{onnx,pt2,ts}` with a card (`deploy.json`, `README.md`); returns out_dir.

    Args:
        name_or_model: a tag ("cnn.fashion_mnist"), a weights folder, a run dir, or a zoo model.
        fmt: "onnx", "pt2", "torchscript" or "aoti" (the .pt2 program compiled by AOTInductor, which C++ runs:
            zoo/deploy/cpp/run_aoti.cpp).
        out_dir: the folder to write (created; nothing is written outside it).
        opset: ONNX opset (ignored by the other formats).
        dynamic_batch: keep the batch axis (or the family's batch-like axes, e.g. gcn's nodes and edges)
            symbolic; False fixes every shape at batch size 2.
        tolerance: largest allowed |exported - PyTorch| on the parity inputs.
        batch_sizes: the batch sizes of the parity check (with dynamic_batch=False only 2 is checked).

    Raises ValueError for an unknown format or an opset the family cannot be expressed in, and
    RuntimeError when the exported model disagrees with PyTorch by more than `tolerance`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model = load_model(name_or_model)
    spec = graph_spec(model)
    if fmt == "onnx" and opset < spec.min_opset:
        raise ValueError(f"{source_info(model)['arch']} cannot be exported at ONNX opset {opset}: "
                         f"{spec.min_opset_why}; use --opset {spec.min_opset} or higher")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / FILES[fmt]
    t0 = time.perf_counter()
    _write(spec, fmt, path, opset, dynamic_batch)
    export_s = time.perf_counter() - t0
    runner = load_exported(path, threads=None)
    sizes = tuple(batch_sizes) if dynamic_batch else (2,)
    diff, (in_a, out_a), (in_b, out_b) = check_parity(spec, runner, sizes)
    dyn = spec.dynamic if dynamic_batch else {}
    batch_name = next((s for axes in dyn.values() for s in axes.values()), "batch")
    card = {
        "source": source_info(model),
        "format": fmt,
        "file": {"name": path.name, "sha256": sha256_file(path), "size": path.stat().st_size},
        "opset": opset if fmt == "onnx" else None,
        "inputs": _shapes(spec.input_names, in_a, in_b, dyn, batch_name),
        "outputs": _shapes(spec.output_names, out_a, out_b, {}, batch_name),
        "parity": {"runtime": _runtime_name(fmt), "batch_sizes": list(sizes), "max_abs_diff": diff,
                   "tolerance": tolerance, "passed": diff <= tolerance},
        "notes": spec.notes,
        "torch": torch.__version__,
        "export_seconds": round(export_s, 2),
    }
    write_json(out / "deploy.json", card)
    (out / "README.md").write_text(card_markdown(card))
    if diff > tolerance:
        raise RuntimeError(f"{fmt} export of {card['source']['tag'] or card['source']['arch']} differs from PyTorch "
                           f"by {diff:.3g} (> {tolerance:g}); card written to {out / 'deploy.json'}")
    return out


def _runtime_name(fmt: str) -> str:
    if fmt == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider"
    loader = {"pt2": "torch.export.load", "torchscript": "torch.jit.load", "aoti": "torch._inductor.aoti_load_package"}
    return f"{loader[fmt]} (torch {torch.__version__})"


def card_markdown(card: dict) -> str:
    """The export's README.md: what it came from, what it takes and returns, how close it is to PyTorch."""
    src, par = card["source"], card["parity"]
    rows = "\n".join(f"| {kind} | `{t['name']}` | {t['shape']} | {t['dtype']} |"
                     for kind, key in (("input", "inputs"), ("output", "outputs")) for t in card[key])
    notes = "".join(f"- {n}\n" for n in card["notes"]) or "- none\n"
    opset = f", opset {card['opset']}" if card["opset"] else ""
    return f"""# {src['tag'] or src['arch']} — {card['format']}{opset}

Exported by `zoo.deploy` from `{src['tag'] or src['arch']}` (weights sha256 `{src['sha256']}`)
with torch {card['torch']}. File `{card['file']['name']}`, {card['file']['size']:,} bytes,
sha256 `{card['file']['sha256']}`.

| | name | shape | dtype |
|---|---|---|---|
{rows}

Parity with PyTorch ({par['runtime']}, batch sizes {par['batch_sizes']}): max abs difference
{par['max_abs_diff']:.3g} (tolerance {par['tolerance']:g}): {'passed' if par['passed'] else 'FAILED'}.

Outside the graph:
{notes}"""


def stand_in(model: nn.Module, runtime: str, folder: str | os.PathLike, threads: int | None = None) -> ExportedModel:
    """Export `model` into `folder` and return the export wrapped to stand in for it (see ExportedModel)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    spec = graph_spec(model)
    if not spec.whole_model:
        raise ValueError(f"{source_info(model)['arch']}: the export holds a part of the model only "
                         f"({'; '.join(spec.notes)}), so its metric cannot be measured through {runtime}")
    fmt = RUNTIMES[runtime]
    export(model, fmt, folder)
    return ExportedModel(model, load_exported(Path(folder) / FILES[fmt], threads), spec.output_names,
                         spec.dict_outputs)

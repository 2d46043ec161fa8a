"""int8 quantization with onnxruntime: static (QDQ, calibrated) for conv nets, dynamic for Linear-heavy ones.

    zoo quantize cnn.fashion_mnist --method static --calib 512      # -> cnn.fashion_mnist-int8/

The folder holds model.onnx (int8), the fp32 export it came from is re-measured beside it, and the card
(deploy.json + README.md) gives, measured in this run: the card's metric through the int8 and the fp32
onnxruntime models, images (rows) per second of both at one batch size and thread count, and file sizes.

Calibration inputs are recorded, not invented: the task's own evaluation runs on the validation split
(else the training split, else the evaluation split: see `calibration_inputs`) with a recorder standing in
for the model, which keeps the first `calib` preprocessed inputs exactly as the model sees them and stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ..utils import write_json
from .exporter import FILES, export, load_model, source_info
from .folder import write_folder
from .graphs import graph_spec
from .runtime import ExportedModel, OnnxModule, need

METHODS = ("static", "dynamic")
BACKENDS = ("onnxruntime",)


class _Enough(Exception):
    """Raised by the recorder once it holds enough calibration inputs."""


class Recorder(nn.Module):
    """Runs the model and keeps its inputs until `rows` are held, then stops the pass. Used as the runner of an
    ExportedModel, so the model's own methods (unet3d.segment's tiles, dqn.act) feed it too."""

    def __init__(self, model: nn.Module, rows: int):
        super().__init__()
        self.model, self.rows, self.inputs, self.held = model, rows, [], 0

    def forward(self, *inputs):
        self.inputs.append(tuple(x.detach().cpu() for x in inputs))
        self.held += len(inputs[0])
        if self.held >= self.rows:
            raise _Enough
        return self.model(*inputs)


def calibration_inputs(name: str, rows: int) -> tuple[str, list[tuple[torch.Tensor, ...]]]:
    """(split, the first `rows` inputs the model sees when its task evaluates that split): the validation
    split, else the training split, else (where the task evaluates neither, e.g. unet3d's patch splits) the
    evaluation split itself (inputs only: no label takes part in calibration)."""
    from ..engine.run import evaluate

    reasons = []
    for split in ("val", "train", "test"):
        rec = None

        def record(model):
            nonlocal rec
            rec = Recorder(model, rows)
            return ExportedModel(model, rec, [], dict_outputs=False)

        try:
            evaluate(name, model=record, split=split)
        except _Enough:
            pass
        except (ValueError, TypeError, AttributeError, KeyError) as e:  # no such split, or not evaluable
            reasons.append(f"{split}: {e}")
            continue
        if rec is not None and rec.inputs:
            return split, rec.inputs
    raise RuntimeError(f"{name}: no split gave inputs to calibrate on ({'; '.join(reasons)})")


def throughput(runner, inputs: tuple, seconds: float = 3.0) -> float:
    """Rows per second of `runner(*inputs)` (after one warm-up call), over at least `seconds`."""
    with torch.no_grad():
        runner(*inputs)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            runner(*inputs)
            n += 1
    return n * len(inputs[0]) / (time.perf_counter() - t0)


def quantize(name: str, method: str = "static", *, calib: int = 512, backend: str = "onnxruntime",
             out_dir: str | os.PathLike | None = None, batch: int = 64, threads: int = 2,
             measure: bool = True) -> Path:
    """Write `<tag>-int8/` (or `out_dir`) with the int8 ONNX model and a card that re-measures it; returns it.

    Args:
        name: a tag, weights folder or run dir (its recipe says which data the metric is measured on).
        method: "static" (activations calibrated on `calib` recorded inputs, QDQ, per-channel weights) or
            "dynamic" (weights int8, activations quantized on the fly: for Linear-heavy models).
        backend: "onnxruntime" (PT2E is not implemented here: see docs/deploy.md).
        batch, threads: the batch size and onnxruntime threads of the speed measurement.
        measure: False skips the metric and speed (the card then says so).
    """
    if method not in METHODS:
        raise ValueError(f"quantize method must be one of {', '.join(METHODS)}, got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"quantize backend must be one of {', '.join(BACKENDS)}, got {backend!r} "
                         "(pt2e is not implemented yet)")
    if calib < 1:
        raise ValueError(f"--calib must be >= 1, got {calib}")
    need("onnxruntime")
    from onnxruntime import quantization as Q

    model = load_model(name)
    src = source_info(model)
    spec = graph_spec(model)
    out = Path(out_dir or f"{src['tag'] or src['arch']}-int8")
    out.mkdir(parents=True, exist_ok=True)
    fp32_dir = out / "fp32"
    export(model, "onnx", fp32_dir)
    int8 = out / FILES["onnx"]
    split = None
    with tempfile.TemporaryDirectory() as tmp:
        prep = Path(tmp) / "prep.onnx"
        Q.quant_pre_process(str(fp32_dir / FILES["onnx"]), str(prep), skip_symbolic_shape=True)
        if method == "static":
            split, inputs = calibration_inputs(name, calib)
            feeds = [dict(zip(spec.input_names, (x.numpy() for x in xs))) for xs in inputs]
            reader = _Reader(feeds)
            Q.quantize_static(str(prep), str(int8), reader, quant_format=Q.QuantFormat.QDQ, per_channel=True,
                              activation_type=Q.QuantType.QUInt8, weight_type=Q.QuantType.QInt8,
                              calibrate_method=Q.CalibrationMethod.MinMax)
        else:
            Q.quantize_dynamic(str(prep), str(int8), weight_type=Q.QuantType.QInt8)
    sizes = {"fp32": (fp32_dir / FILES["onnx"]).stat().st_size, "int8": int8.stat().st_size}
    card = {"source": src, "tag": f"{src['tag'] or src['arch']}-int8", "kind": "int8", "format": "onnx",
            "backend": backend,
            "method": method, "calibration": {"rows": calib, "split": split} if method == "static" else None,
            "size_bytes": sizes, "size_ratio": sizes["int8"] / sizes["fp32"]}
    if measure:
        card.update(_measure(name, model, spec, fp32_dir / FILES["onnx"], int8, batch, threads))
    write_json(out / "deploy.json", card)
    deploy = {k: card[k] for k in ("kind", "backend", "method", "calibration", "size_bytes", "size_ratio")}
    write_folder(out, model, deploy, card["metrics"]["int8"] if measure else None, _readme(card))
    shutil.rmtree(fp32_dir / "__pycache__", ignore_errors=True)
    return out


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def _measure(name, model, spec, fp32: Path, int8: Path, batch: int, threads: int) -> dict:
    """The card's metric through both onnxruntime models, and their rows/s at `batch` on `threads` threads."""
    from ..engine.run import evaluate

    def through(path):
        return lambda m: ExportedModel(m, OnnxModule(path, threads), spec.output_names, spec.dict_outputs)

    metrics = {"fp32": evaluate(name, model=through(fp32)), "int8": evaluate(name, model=through(int8))}
    x = spec.example_inputs(batch)
    speed = {k: throughput(OnnxModule(p, threads), x) for k, p in (("fp32", fp32), ("int8", int8))}
    with torch.no_grad():
        speed["eager_fp32"] = throughput(model, x)
    return {"metrics": metrics, "rows_per_second": speed, "speedup_vs_fp32_onnxruntime": speed["int8"] / speed["fp32"],
            "speed_setting": {"batch": batch, "threads": threads, "eager_threads": torch.get_num_threads()}}


def _readme(card: dict) -> str:
    lines = [f"# {card['tag']}", "",
             f"{card['method']} int8 ({card['backend']}) of `{card['source']['tag']}` "
             f"(weights sha256 `{card['source']['sha256']}`).", "",
             f"- size: {card['size_bytes']['int8']:,} bytes, {card['size_ratio']:.2f}x the fp32 ONNX model"]
    if "metrics" in card:
        for key, value in card["metrics"]["int8"].items():
            lines.append(f"- {key}: {value:.4f} int8 vs {card['metrics']['fp32'][key]:.4f} fp32")
        s, cfg = card["rows_per_second"], card["speed_setting"]
        lines.append(f"- speed (batch {cfg['batch']}, {cfg['threads']} onnxruntime threads): {s['int8']:.0f} rows/s "
                     f"int8 vs {s['fp32']:.0f} fp32 onnxruntime ({card['speedup_vs_fp32_onnxruntime']:.2f}x) "
                     f"vs {s['eager_fp32']:.0f} eager PyTorch")
    else:
        lines.append("- metric and speed: not measured (measure=False)")
    return "\n".join(lines) + "\n"

"""int8 quantization: static (calibrated) for conv nets, dynamic for Linear-heavy ones, by onnxruntime (QDQ
ONNX) or PT2E (torch.export + torchao's X86InductorQuantizer, a .pt2 program).

    zoo quantize cnn.fashion_mnist --method static --calib 512                   # -> cnn.fashion_mnist-int8/
    zoo quantize cnn.fashion_mnist --method static --backend pt2e --out cnn-pt2e

The folder holds model.onnx (or model.pt2) in int8 and fp32/ (the fp32 export it came from, re-measured
beside it); the card (config.json + deploy.json + README.md) gives, measured in this run: the card's
metric through the int8 and the fp32 exports, rows per second of both at one batch size and thread count,
and file sizes. The folder loads like a weights folder (zoo.create, zoo eval, zoo predict: zoo.deploy.folder).

Calibration inputs are recorded, not invented, and never come from the test split: the task's own
evaluation runs on the validation split (else the training split; see `calibration_inputs`) with a
recorder standing in for the model, which keeps the first `calib` preprocessed inputs exactly as the model
sees them and stops.
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
from .runtime import ExportedModel, load_exported, need

METHODS = ("static", "dynamic")
BACKENDS = ("onnxruntime", "pt2e")
CALIBRATION_SPLITS = ("val", "train")  # never "test": the card measures the int8 model there
# onnxruntime's calibration methods; "minmax-mean" is MinMax over the mean of each calibration batch's extremes
# (onnxruntime's CalibMovingAverage) instead of the extremes of all batches, which widen with every batch added
CALIBRATE = {"minmax": "MinMax", "minmax-mean": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
# Per-family defaults of the onnxruntime backend, each measured (docs/deploy.md, "what mattered"):
# unet3d: QDQ around InstanceNorm / LeakyReLU / MaxPool / Concat cost 0.023 Dice; convolutions only lose 0.006,
#         but that Dice still moved with the calibration set (0.918-0.932 over 64-512 patches, fp32 0.9385); the
#         4 layers the sensitivity pass ranks first (the full-resolution convolutions) kept fp32: 0.9382-0.9384.
# dqn: the Q head's int8 error (~0.5 on Q-values near 60) exceeds the gap between the two actions, and the raw
#      observation's per-tensor uint8 range drowns the pole angle: first and last Linear stay fp32 (500 vs 92).
# bev: the image encoder only (the brief's scope: attention, sampling and heads stay fp32).
FAMILY_OPTIONS = {"unet3d": {"ops": ("Conv", "ConvTranspose"), "keep_sensitive": 4}, "dqn": {"keep_ends": True},
                  "bev": {"scope": "encoder"}}
# reduce_range: 7-bit weights. onnxruntime multiplies uint8 activations by int8 weights with AVX2's pmaddubsw on
# CPUs without VNNI, whose int16 pair sums saturate with 8-bit weights: cnn.fashion_mnist's static int8 fell to
# 0.929 (fp32 0.945) on an AVX2-only AMD EPYC, and with 7-bit weights gave 0.945 there. The file runs on any CPU.
DEFAULT_OPTIONS = {"ops": None, "keep_ends": False, "per_channel": True, "calibrate": "minmax", "scope": None,
                   "keep_sensitive": 0, "reduce_range": True}
SENSITIVITY_ROWS = 64  # calibration inputs the sensitivity pass calibrates and measures each layer on
QUANTIZABLE = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # the layers keep_ends counts


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
    split, else the training split; never the test split, whose metric the int8 card reports. Where the
    task cannot evaluate a split (unet3d's training patches), its dataset's own batches (`get_batch`, the
    patches training feeds the model) are taken instead. Inputs only: no label takes part in calibration."""
    from ..engine.run import evaluate

    reasons = []
    for split in CALIBRATION_SPLITS:
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
        if rec is not None and rec.inputs:  # a metric that failed after the model ran (patchcore's normals only)
            return split, rec.inputs
        patches = _dataset_batches(name, split, rows)
        if patches:
            return split, patches
    raise RuntimeError(f"{name}: neither the validation nor the training split gave inputs to calibrate on "
                       f"({'; '.join(reasons)}); the test split is never used")


def _dataset_batches(name: str, split: str, rows: int, size: int = 8) -> list[tuple[torch.Tensor]]:
    """The first `rows` inputs of `split`'s dataset through its `get_batch` (batches of `size`), or []."""
    from ..engine.run import load_for_eval, make_context, resolve_recipe

    _, raw = load_for_eval(name)
    recipe, task = resolve_recipe(raw)
    ctx = make_context(recipe, task, run_dir=None, device="cpu", resume=False)
    data = getattr(task.build_data(recipe["data"], ctx), split, None)
    if data is None or not hasattr(data, "get_batch"):
        return []
    n = min(rows, len(data))
    return [(data.get_batch(torch.arange(i, min(i + size, n)))["image"],) for i in range(0, n, size)]


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
             measure: bool = True, **options) -> Path:
    """Write `<tag>-int8/` (or `out_dir`) with the int8 model and a card that re-measures it; returns it.

    Args:
        name: a tag, weights folder or run dir (its recipe says which data the metric is measured on).
        method: "static" (activations calibrated on `calib` recorded inputs, per-channel weights) or
            "dynamic" (weights int8, activations quantized on the fly: for Linear-heavy models).
        calib: calibration inputs for static (from the validation or training split, never the test split).
        backend: "onnxruntime" (QDQ ONNX, `model.onnx`) or "pt2e" (torch.export + PT2E with torchao's
            X86InductorQuantizer, `model.pt2`; needs torchao).
        batch, threads: the batch size and threads of the speed measurement.
        measure: False skips the metric and speed (the card then says so).
        **options: `ops` (op types to quantize, default all), `keep_ends` (first and last Conv/Linear in fp32),
            `per_channel` (weights, default True), `calibrate` ("minmax", "minmax-mean", "percentile",
            "entropy"), `scope` (a submodule name: only its ops are quantized; pt2e honours only this one),
            `keep_sensitive` (static: the K layers whose int8 alone moves the outputs most on the calibration
            inputs stay fp32), `reduce_range` (7-bit weights, default True: no int16 saturation on CPUs
            without VNNI, so the file gives the same numbers on an AVX2-only CPU). Unset ones take the
            family's measured defaults (FAMILY_OPTIONS), then DEFAULT_OPTIONS; the card records them.
    """
    if method not in METHODS:
        raise ValueError(f"quantize method must be one of {', '.join(METHODS)}, got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"quantize backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if calib < 1:
        raise ValueError(f"--calib must be >= 1, got {calib}")
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise ValueError(f"unknown quantize options {sorted(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
    given = {k: v for k, v in options.items() if v is not None}
    if backend == "pt2e" and set(given) - {"scope"}:
        raise ValueError(f"the pt2e backend takes only the scope option, not {sorted(set(given) - {'scope'})}")
    if int(given.get("keep_sensitive") or 0) < 0 or (given.get("keep_sensitive") and method != "static"):
        raise ValueError(f"keep_sensitive must be >= 0 and needs --method static (its layers are ranked on the "
                         f"calibration inputs), got {given['keep_sensitive']!r} with --method {method}")
    if given.get("calibrate", DEFAULT_OPTIONS["calibrate"]) not in CALIBRATE:
        raise ValueError(f"calibrate must be one of {', '.join(CALIBRATE)}, got {given['calibrate']!r}")
    need("onnxruntime" if backend == "onnxruntime" else "torchao")
    model = load_model(name)
    src = source_info(model)
    spec = graph_spec(model)
    family = FAMILY_OPTIONS.get((getattr(model, "pretrained_cfg", None) or {}).get("family"), {})
    if backend == "pt2e":
        family = {k: v for k, v in family.items() if k == "scope"}
    if method != "static":
        family = {k: v for k, v in family.items() if k != "keep_sensitive"}
    options = {**DEFAULT_OPTIONS, **family, **given}
    # every argument is checked before anything is written: a refused call leaves no folder behind
    out = Path(out_dir or f"{src['tag'] or src['arch']}-int8")
    out.mkdir(parents=True, exist_ok=True)
    fmt = "onnx" if backend == "onnxruntime" else "pt2"
    fp32, int8 = out / "fp32" / FILES[fmt], out / FILES[fmt]
    export(model, fmt, fp32.parent)
    split, inputs = calibration_inputs(name, calib) if method == "static" else (None, [])
    sensitivity = (_onnxruntime if backend == "onnxruntime" else _pt2e)(spec, method, inputs, fp32, int8, options)
    sizes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
    card = {"source": src, "tag": f"{src['tag'] or src['arch']}-int8", "kind": "int8", "format": fmt,
            "backend": backend,
            "method": method, "options": options, "sensitivity": sensitivity,
            "calibration": {"rows": calib, "split": split} if method == "static" else None,
            "size_bytes": sizes, "size_ratio": sizes["int8"] / sizes["fp32"]}
    if measure:
        card.update(_measure(name, model, spec, fp32, int8, batch, threads))
    write_json(out / "deploy.json", card)
    deploy = {k: card[k] for k in ("kind", "backend", "method", "options", "sensitivity", "calibration", "size_bytes",
                                   "size_ratio")}
    write_folder(out, model, deploy, card["metrics"]["int8"] if measure else None, _readme(card), file=int8.name)
    shutil.rmtree(fp32.parent / "__pycache__", ignore_errors=True)
    return out


def _onnxruntime(spec, method: str, inputs: list, fp32: Path, int8: Path, options: dict) -> dict | None:
    """onnxruntime QDQ static (int8 weights, uint8 activations calibrated on `inputs`) or dynamic int8.
    Returns the sensitivity pass's ranking when `keep_sensitive` asked for one (else None)."""
    from onnxruntime import quantization as Q

    feeds = [dict(zip(spec.input_names, (x.numpy() for x in xs))) for xs in inputs]

    def run(source: Path, target: Path, calibration: list, **nodes) -> None:
        common = dict(weight_type=Q.QuantType.QInt8, per_channel=options["per_channel"],
                      reduce_range=options["reduce_range"], op_types_to_quantize=options["ops"], **nodes)
        if method == "static":
            Q.quantize_static(str(source), str(target), _Reader(calibration), quant_format=Q.QuantFormat.QDQ,
                              activation_type=Q.QuantType.QUInt8,
                              calibrate_method=getattr(Q.CalibrationMethod, CALIBRATE[options["calibrate"]]),
                              extra_options={"CalibMovingAverage": options["calibrate"] == "minmax-mean"}, **common)
        else:
            Q.quantize_dynamic(str(source), str(target), **common)

    with tempfile.TemporaryDirectory() as tmp:
        prep = Path(tmp) / "prep.onnx"
        Q.quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)
        chosen = _node_choice(prep, options, scopes_from=fp32)
        ranking = None
        if options["keep_sensitive"]:
            ranking = _sensitivity(prep, feeds, chosen, options, run, Path(tmp))
            kept = list(ranking)[:options["keep_sensitive"]]
            chosen["nodes_to_exclude"] = [*chosen.get("nodes_to_exclude", []), *kept]
        run(prep, int8, feeds, **chosen)
    return ranking


def _sensitivity(prep: Path, feeds: list, chosen: dict, options: dict, run, tmp: Path) -> dict:
    """Each quantizable layer's output change when it alone is int8 (`_output_change`), largest first.

    One int8 copy per layer (the others fp32), calibrated and measured on the first SENSITIVITY_ROWS rows of
    the calibration inputs (never the test split), scored by `_output_change`. The layers at the top are the
    ones `keep_sensitive` leaves in fp32: the standard mixed-precision fallback."""
    import onnx
    import onnxruntime as ort

    nodes = onnx.load(str(prep)).graph.node
    types = tuple(options["ops"] or QUANTIZABLE)
    inside = set(chosen.get("nodes_to_quantize") or [n.name for n in nodes])
    excluded = set(chosen.get("nodes_to_exclude", []))
    candidates = [n.name for n in nodes if n.op_type in types and n.op_type in QUANTIZABLE and n.name in inside
                  and n.name not in excluded]
    probe, rows = [], 0
    for feed in feeds:
        if rows >= SENSITIVITY_ROWS:
            break
        probe.append(feed)
        rows += len(next(iter(feed.values())))

    def outputs(path: Path) -> list:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [session.run(None, feed) for feed in probe]

    reference = outputs(prep)
    errors = {}
    for name in candidates:
        one = tmp / "one.onnx"
        run(prep, one, probe, nodes_to_quantize=[name])
        got = outputs(one)
        errors[name] = sum(_output_change(a, b) for ref, out in zip(reference, got) for a, b in zip(ref, out))
    return dict(sorted(errors.items(), key=lambda kv: -kv[1]))


def _node_choice(model_path: Path, options: dict, scopes_from: Path | None = None) -> dict:
    """nodes_to_quantize (those inside `scope`) and nodes_to_exclude (the first and last layer: keep_ends),
    from the node names and the torch module scopes the ONNX exporter records on each node.

    `scopes_from`: the export those scopes are read from, by node name, when `model_path` is a copy that
    lost them (onnxruntime's quant_pre_process keeps the node names but drops their metadata).
    """
    import onnx

    nodes = onnx.load(str(model_path)).graph.node
    out = {}
    if options["scope"]:
        scope = options["scope"]
        recorded = {n.name: n for n in onnx.load(str(scopes_from)).graph.node} if scopes_from else {}

        def inside(node):
            props = recorded.get(node.name, node).metadata_props
            scopes = next((p.value for p in props if p.key == "pkg.torch.onnx.name_scopes"), "")
            return any(s == scope or s.endswith("." + scope) for s in _scope_list(scopes))

        out["nodes_to_quantize"] = [n.name for n in nodes if inside(n)]
        if not out["nodes_to_quantize"]:
            raise ValueError(f"quantize scope {scope!r}: no ONNX node comes from a module of that name")
    if options["keep_ends"]:
        layers = [n.name for n in nodes if n.op_type in QUANTIZABLE]
        # the dynamic quantizer splits a Gemm into MatMul + Add first: exclude the MatMul's name too
        out["nodes_to_exclude"] = [x for n in {layers[0], layers[-1]} for x in (n, f"{n}_MatMul")]
    return out


def _output_change(fp32, int8) -> float:
    """How much int8 changed one output: the share of decisions that flip where the output has a class axis
    (axis 1 of a (batch, classes, ...) score map: a segmentation's voxels, a classifier's images), plus the
    relative squared error ||int8 - fp32||^2 / ||fp32||^2, which alone ranks outputs without one (Q-values,
    densities) and breaks ties. A logit's error matters only where it changes the decision."""
    import numpy as np

    error = float(((fp32 - int8) ** 2).sum() / max(float((fp32 ** 2).sum()), 1e-12))
    if fp32.ndim >= 2 and fp32.shape[1] > 1:
        return float(np.mean(fp32.argmax(1) != int8.argmax(1))) + 1e-3 * min(error, 1.0)
    return error


def _scope_list(text: str) -> list[str]:
    """The exporter's "['', 'model', 'model.encoder']" as a list (literal syntax only)."""
    import ast

    try:
        value = ast.literal_eval(text) if text else []
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _pt2e(spec, method: str, inputs: list, fp32: Path, int8: Path, options: dict) -> None:
    """torch.export -> prepare_pt2e(X86InductorQuantizer) -> calibrate -> convert_pt2e -> torch.export.save.

    The saved program holds int8 weights with quantize/dequantize ops around each quantized op: exact int8
    numerics when run as it is, int8 kernels once torch.compile / AOTInductor fuse those patterns."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as X86

    from .exporter import _dims

    example = spec.example_inputs(2)
    graph = torch.export.export(spec.module, example, dynamic_shapes=_dims(spec, True)).module()
    config = X86.get_default_x86_inductor_quantization_config(is_dynamic=method == "dynamic")
    quantizer = X86.X86InductorQuantizer()
    if options["scope"]:  # the submodule's full name inside the exported module (graph wrappers add a prefix)
        scope = options["scope"]
        names = [n for n, _ in spec.module.named_modules() if n == scope or n.endswith("." + scope)]
        if not names:
            raise ValueError(f"quantize scope {options['scope']!r}: the model has no submodule of that name")
        quantizer.set_module_name_qconfig(names[0], config)
    else:
        quantizer.set_global(config)
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for xs in _batches(inputs) if method == "static" else [example]:
            prepared(*xs)
    converted = convert_pt2e(prepared)
    used = {n.target for n in converted.graph.nodes if n.op == "get_attr"}
    for key, _ in [*converted.named_parameters(), *converted.named_buffers()]:
        if key not in used:  # the fp32 weights the int8 ones replaced: kept, they would double the file
            owner, _, attr = key.rpartition(".")
            delattr(converted.get_submodule(owner) if owner else converted, attr)
    program = torch.export.export(converted, example, dynamic_shapes=_dims(spec, True))
    torch.export.save(program, str(int8))


def _batches(inputs: list[tuple], size: int = 32) -> list[tuple]:
    """The recorded inputs re-cut into batches of `size` (the exported graph's batch axis is >= 2)."""
    joined = [torch.cat(parts) for parts in zip(*inputs)]
    n = len(joined[0])
    cuts = [(i, min(i + size, n)) for i in range(0, n, size)]
    if len(cuts) > 1 and cuts[-1][1] - cuts[-1][0] < 2:  # a last batch of one joins the one before
        cuts[-2:] = [(cuts[-2][0], n)]
    return [tuple(x[a:b] for x in joined) for a, b in cuts]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def _measure(name, model, spec, fp32: Path, int8: Path, batch: int, threads: int) -> dict:
    """The card's metric through the fp32 and int8 exports, and their rows/s at `batch` on `threads` threads."""
    from ..engine.run import evaluate

    torch.set_num_threads(threads)  # the .pt2 programs run on torch's threads, the ONNX ones on onnxruntime's

    def through(path):
        return lambda m: ExportedModel(m, load_exported(path, threads), spec.output_names, spec.dict_outputs)

    metrics = {"fp32": evaluate(name, model=through(fp32)), "int8": evaluate(name, model=through(int8))}
    x = spec.example_inputs(batch)
    speed = {k: throughput(load_exported(p, threads), x) for k, p in (("fp32", fp32), ("int8", int8))}
    with torch.no_grad():
        speed["eager_fp32"] = throughput(spec.module, x)
    return {"metrics": metrics, "rows_per_second": speed, "speedup_vs_fp32_export": speed["int8"] / speed["fp32"],
            "speed_setting": {"batch": batch, "threads": threads, "eager_threads": torch.get_num_threads()}}


def _readme(card: dict) -> str:
    lines = [f"# {card['tag']}", "",
             f"{card['method']} int8 ({card['backend']}) of `{card['source']['tag']}` "
             f"(weights sha256 `{card['source']['sha256']}`).", "",
             f"- size: {card['size_bytes']['int8']:,} bytes, {card['size_ratio']:.2f}x the fp32 {card['format']} model",
             "- calibration: " + (f"{card['calibration']['rows']} inputs of the {card['calibration']['split']} split"
                                  if card["calibration"] else "none (dynamic)"),
             "- options: " + ", ".join(f"{k}={v}" for k, v in card["options"].items())]
    if card.get("sensitivity"):
        kept = list(card["sensitivity"])[:card["options"]["keep_sensitive"]]
        lines.append(f"- kept in fp32 (largest output error when int8 alone, of {len(card['sensitivity'])} layers): "
                     + ", ".join(f"{n} ({card['sensitivity'][n]:.2g})" for n in kept))
    if "metrics" in card:
        for key, value in card["metrics"]["int8"].items():
            lines.append(f"- {key}: {value:.4f} int8 vs {card['metrics']['fp32'][key]:.4f} fp32")
        s, cfg = card["rows_per_second"], card["speed_setting"]
        runtime = "onnxruntime" if card["format"] == "onnx" else "torch.export (no torch.compile)"
        lines.append(f"- speed (batch {cfg['batch']}, {cfg['threads']} threads): {s['int8']:.0f} rows/s "
                     f"int8 vs {s['fp32']:.0f} fp32 {runtime} ({card['speedup_vs_fp32_export']:.2f}x) "
                     f"vs {s['eager_fp32']:.0f} eager PyTorch")
    else:
        lines.append("- metric and speed: not measured (measure=False)")
    return "\n".join(lines) + "\n"

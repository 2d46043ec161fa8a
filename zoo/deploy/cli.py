"""The deployment verbs of the `zoo` command; zoo.cli calls `add_commands(add)` once.

  zoo export NAME_OR_RUN --format onnx|pt2|torchscript|aoti [--opset N] [--no-dynamic-batch] --out DIR
  zoo quantize NAME --method static|dynamic [--calib N] [--backend onnxruntime|pt2e] [--ops OP ...]
               [--keep-ends] [--calibrate minmax|minmax-mean|percentile|entropy] [--scope MODULE]
               [--keep-sensitive K] [--no-reduce-range] [--out DIR]
  zoo prune NAME --amount A [--minutes M] [--scope MODULE] [--out DIR]
  zoo profile NAME [--batch B ...] [--trace DIR]
"""

from __future__ import annotations

import argparse
import json


def cmd_export(a) -> int:
    from .exporter import export

    out = export(a.name, a.format, a.out, opset=a.opset, dynamic_batch=a.dynamic_batch)
    card = json.loads((out / "deploy.json").read_text())
    par = card["parity"]
    print(f"{out / card['file']['name']}  ({card['file']['size']:,} bytes)")
    print(f"parity with PyTorch ({par['runtime']}, batch sizes {par['batch_sizes']}): "
          f"max abs diff {par['max_abs_diff']:.3g} <= {par['tolerance']:g}")
    for note in card["notes"]:
        print(f"note: {note}")
    return 0


def cmd_quantize(a) -> int:
    from .quantize import quantize

    out = quantize(a.name, a.method, calib=a.calib, backend=a.backend, out_dir=a.out, batch=a.batch,
                   threads=a.threads, ops=a.ops, keep_ends=a.keep_ends, per_channel=a.per_channel,
                   calibrate=a.calibrate, scope=a.scope, keep_sensitive=a.keep_sensitive,
                   reduce_range=a.reduce_range)
    print(out)
    print((out / "README.md").read_text(), end="")
    return 0


def cmd_prune(a) -> int:
    from .prune import prune

    out = prune(a.name, a.amount, minutes=a.minutes, out_dir=a.out, overrides=a.overrides, scope=a.scope)
    card = json.loads((out / "prune.json").read_text())
    print(out)
    print(f"FLOPs {card['flops']['dense']:,} -> {card['flops']['pruned']:,} ({card['flops']['removed']:.1%} removed), "
          f"params {card['params']['dense']:,} -> {card['params']['pruned']:,}, eager speed-up "
          f"{card['speedup_eager']:.2f}x")
    print(json.dumps(card["metrics"], indent=2))
    return 0


def cmd_profile(a) -> int:
    from .profile import profile

    report = profile(a.name, a.batch, trace_dir=a.trace, repeats=a.repeats)
    print(f"{report['model']} on {report['device']} ({report['threads']} threads)")
    header = f"{'batch':>6} {'latency ms':>11} {'GFLOPs':>9} {'GFLOP/s':>8} {'peak MB':>8}"
    print(header)
    for r in report["rows"]:
        print(f"{r['batch']:>6} {r['latency_ms']:>11.2f} {r['flops'] / 1e9:>9.3f} {r['gflops_per_s']:>8.1f} "
              f"{r['peak_memory_bytes'] / 2**20:>8.1f}")
    print(report["top_ops"])
    if report["trace"]:
        print(f"trace: {report['trace']} (TensorBoard's profiler plugin, or Perfetto: ui.perfetto.dev)")
    return 0


def add_commands(add) -> None:
    """Register the deployment verbs with zoo.cli's `add(name, fn, help)` (which returns the subparser)."""
    from . import DEFAULT_OPSET, FILES

    sp = add("export", cmd_export, "export a model to ONNX, torch.export (.pt2) or TorchScript, checked against "
             "PyTorch, with a card (deploy.json, README.md)")
    sp.add_argument("name", help="tag, family name, weights folder or run dir")
    sp.add_argument("--format", required=True, choices=list(FILES))
    sp.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    sp.add_argument("--dynamic-batch", action="store_true", default=True,
                    help="keep the batch axis symbolic (the default)")
    sp.add_argument("--no-dynamic-batch", dest="dynamic_batch", action="store_false",
                    help="fix every shape at batch size 2")
    sp.add_argument("--out", required=True, help="folder to write (created)")

    sp = add("quantize", cmd_quantize, "int8 quantization to a new <tag>-int8 folder whose card re-measures the "
             "metric, speed and size")
    sp.add_argument("name", help="tag, weights folder or run dir")
    sp.add_argument("--method", required=True, choices=["static", "dynamic"])
    sp.add_argument("--calib", type=int, default=512, help="calibration inputs for static (default 512), from the "
                    "validation split, else the training split; never the test split")
    sp.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "pt2e"],  # quantize.BACKENDS
                    help="onnxruntime: QDQ model.onnx (default); pt2e: torch.export + torchao's X86InductorQuantizer, "
                    "model.pt2")
    sp.add_argument("--ops", nargs="+", help="ONNX op types to quantize (default: all; unet3d: Conv ConvTranspose)")
    sp.add_argument("--keep-ends", action=argparse.BooleanOptionalAction, default=None,
                    help="keep the first and last Conv/Linear in fp32 (default for dqn)")
    sp.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=None,
                    help="per-channel weight scales (default on)")
    sp.add_argument("--calibrate", choices=["minmax", "minmax-mean", "percentile", "entropy"],  # quantize.CALIBRATE
                    help="activation ranges (the family default, else minmax)")
    sp.add_argument("--scope", help="quantize only this submodule (default for bev: encoder)")
    sp.add_argument("--keep-sensitive", type=int, metavar="K", help="static: keep in fp32 the K layers whose int8 "
                    "alone moves the outputs most on the calibration inputs (default 0; unet3d: 4)")
    sp.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=None,
                    help="7-bit weights (default on): 8-bit ones saturate onnxruntime's int16 sums on CPUs "
                    "without VNNI (AVX2-only)")
    sp.add_argument("--out", help="folder (default ./<tag>-int8)")
    sp.add_argument("--batch", type=int, default=64, help="batch size of the speed measurement")
    sp.add_argument("--threads", type=int, default=2, help="threads of the speed measurement")

    sp = add("prune", cmd_prune, "structured channel pruning (torch-pruning) + a recovery fine-tune, "
             "exported to ONNX with a card")
    sp.add_argument("name", help="tag, weights folder or run dir")
    sp.add_argument("--amount", type=float, required=True, help="share of channels to remove, in (0, 1)")
    sp.add_argument("--minutes", type=float, default=5.0, help="recovery fine-tune budget (default 5)")
    sp.add_argument("--scope", help="prune only the layers of this submodule, e.g. encoder (default: the family's "
                    "own, bev: encoder; else the whole model); its last layer keeps its outputs")
    sp.add_argument("--out", help="folder (default ./<tag>-pruned)")
    sp.add_argument("overrides", nargs="*", help="recipe key=value overrides for the fine-tune")

    sp = add("profile", cmd_profile, "top operators, FLOPs, latency per batch size, peak memory, and a trace")
    sp.add_argument("name", help="tag, family name, weights folder or run dir")
    sp.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes (default 1 64)")
    sp.add_argument("--trace", help="folder for the trace file (TensorBoard / Perfetto)")
    sp.add_argument("--repeats", type=int, default=10, help="timed calls per batch size (default 10)")

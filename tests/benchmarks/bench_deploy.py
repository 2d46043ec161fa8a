"""Deployment table for docs/deploy.md: every family's default weights x {onnx, pt2, torchscript, int8, pruned}.

    python tests/benchmarks/bench_deploy.py [--families cnn dqn ...] [--batch 64] [--threads 2] [--out table.md]

One run, side by side, on this machine: each format's parity with PyTorch (max abs difference over batch
sizes 1 and 3), file size, and latency at `--batch` on `--threads` threads (eager PyTorch, onnxruntime fp32,
onnxruntime int8). int8 is static QDQ (calibrated on inputs recorded from the task's evaluation of the
validation or training split) for the conv families and dynamic for the Linear-heavy ones, with each family's
measured options (zoo.deploy.quantize.FAMILY_OPTIONS: bev's image encoder only, unet3d's convolutions only,
dqn's first and last Linear in fp32); its metric is on the card `zoo quantize` writes, not here.
pruned: 30% of the channels removed by torch-pruning, no fine-tune (FLOPs and latency only; `zoo prune` gives
the recovered metric). A cell that fails says why; nothing is skipped silently.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import zoo  # noqa: E402
from zoo.deploy.exporter import export  # noqa: E402
from zoo.deploy.graphs import graph_spec  # noqa: E402
from zoo.deploy.prune import NotPrunable, flops_and_params, prune_channels  # noqa: E402
from zoo.deploy.quantize import quantize, throughput  # noqa: E402
from zoo.deploy.runtime import OnnxModule  # noqa: E402

TAGS = {"cnn": "cnn.fashion_mnist", "unet3d": "unet3d.mni152_tissue", "bev": "bev.synthetic", "gcn": "gcn.cora",
        "nerf": "nerf.lego", "patchcore": "patchcore.brick", "dqn": "dqn.cartpole"}
STATIC = {"cnn", "unet3d", "bev", "patchcore"}  # conv nets: static QDQ; the rest dynamic
BATCH_CAP = {"unet3d": 4, "bev": 4, "patchcore": 8}  # (B, 1, 32^3) patches, six-camera rigs, 224 px images


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


def cell(fn) -> str:
    try:
        return fn()
    except NotPrunable as e:  # not a failure: the family has nothing torch-pruning can remove
        return f"n/a: {str(e).splitlines()[0][:90]}"
    except Exception as e:  # the table says what failed
        traceback.print_exc(file=sys.stderr)
        return f"fails: {type(e).__name__}: {str(e).splitlines()[0][:80]}"


def bench_family(family: str, batch: int, threads: int, tmp: Path) -> dict:
    tag = TAGS[family]
    batch = min(batch, BATCH_CAP.get(family, batch))
    model = zoo.create(tag, pretrained=True).eval()
    spec = graph_spec(model)
    x = spec.example_inputs(batch)
    row = {"family": family, "tag": tag, "batch": batch}
    lat = {}

    def fmt(name):
        def run():
            card = json.loads((export(model, name, tmp / f"{family}-{name}") / "deploy.json").read_text())
            return f"{card['parity']['max_abs_diff']:.1e} / {_mb(card['file']['size'])}"
        return run

    for name in ("onnx", "pt2", "torchscript"):
        row[name] = cell(fmt(name))
    torch.set_num_threads(threads)
    lat["eager"] = cell(lambda: f"{1e3 * batch / throughput(spec.module, x):.1f}")
    onnx_file = tmp / f"{family}-onnx" / "model.onnx"
    lat["onnxruntime"] = cell(lambda: f"{1e3 * batch / throughput(OnnxModule(onnx_file, threads), x):.1f}")

    def int8():
        method = "static" if family in STATIC else "dynamic"
        out = quantize(tag, method, calib=256, out_dir=tmp / f"{family}-int8", measure=False)
        card = json.loads((out / "deploy.json").read_text())
        lat["int8"] = f"{1e3 * batch / throughput(OnnxModule(out / 'model.onnx', threads), x):.1f}"
        return f"{method}, {_mb(card['size_bytes']['int8'])} ({card['size_ratio']:.2f}x)"

    row["int8"] = cell(int8)

    def pruned():
        small = prune_channels(model, 0.3, spec.example_inputs(2))
        small_spec = graph_spec(small)
        f0, p0 = flops_and_params(spec.module, x)
        f1, p1 = flops_and_params(small_spec.module, x)
        ms = 1e3 * batch / throughput(small_spec.module, x)
        return f"-{1 - f1 / f0:.0%} FLOPs, -{1 - p1 / p0:.0%} params, eager {ms:.1f} ms"

    row["pruned"] = cell(pruned)
    row["latency_ms"] = " / ".join(lat.get(k, "-") for k in ("eager", "onnxruntime", "int8"))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", default=list(TAGS), choices=list(TAGS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="also write the markdown table to this file")
    a = p.parse_args(argv)
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in a.families:
            rows.append(bench_family(family, a.batch, a.threads, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    head = ("| family | onnx: parity / size | pt2: parity / size | torchscript: parity / size | int8 "
            f"| pruned (30% ch.) | batch | ms per batch: eager / onnxruntime / int8 ({a.threads} threads) |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} (`{r['tag']}`) | {r['onnx']} | {r['pt2']} | {r['torchscript']} | {r['int8']} "
              f"| {r['pruned']} | {r['batch']} | {r['latency_ms']} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    print(f"({time.time() - t0:.0f} s, torch {torch.__version__})")
    if a.out:
        Path(a.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

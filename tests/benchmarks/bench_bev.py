"""BEVFormer-style lift vs Lift-Splat-style lift: frames/s and vehicle IoU, same backbone, same data, same run.

    python tests/benchmarks/bench_bev.py            # published weights on the cards' 300 test scenes + fps,
                                                    # then both trained from scratch for --steps steps
    python tests/benchmarks/bench_bev.py --quick    # tiny data, 10 steps each: a smoke run of this script

Frames/s: one sample (6 cameras of --size px, default 96x168 as recipes/bev/synthetic.yaml) per forward
pass, eval mode, no autograd, CPU threads as given; the from-scratch runs of both models also use that
image size, so they see the same data. Both models use the same zoo CNN backbone + FPN and the same BEV
decoder and heads; only the lift differs. The published IoUs are each card's own (bev.synthetic was
trained at 96x168, bev_lss.synthetic at 64x112). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import zoo
from zoo.engine import train
from zoo.engine.run import evaluate
from zoo.families.bev import data as D

MODELS = {"bev": ("bev/synthetic", "bev.synthetic"), "bev_lss": ("bev/lss_synthetic", "bev_lss.synthetic")}


def frames_per_second(model, size=(64, 112), repeats: int = 20) -> float:
    k, e = D.make_rig(size)
    args = (torch.rand(1, 6, 3, *size), torch.from_numpy(k)[None], torch.from_numpy(e)[None])
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 3):
            t = time.perf_counter()
            model(*args)
            times.append(time.perf_counter() - t)
    return 1.0 / statistics.median(times[3:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny data and 10 steps: checks the script runs")
    p.add_argument("--steps", type=int, default=300, help="training steps per model from scratch (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[96, 168], metavar=("H", "W"),
                   help="camera image size of the frames/s and from-scratch figures (both models)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    steps = 10 if a.quick else a.steps
    size = (32, 56) if a.quick else tuple(a.size)
    data = ["data.n_val=0", f"data.image_size=[{size[0]}, {size[1]}]"]
    if a.quick:
        data += ["data.n_train=16", "data.n_test=8"]
    rows = []
    for name, (recipe, tag) in MODELS.items():
        model = zoo.create(name, image_size=list(size))
        row = {"model": name, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
               "fps_b1": frames_per_second(model, size)}
        if not a.quick and tag in zoo.list_pretrained():
            row["published_iou"] = evaluate(tag, overrides=["data.n_train=50", "data.n_val=0"])["iou_vehicle"]
        if steps:
            with tempfile.TemporaryDirectory() as runs:
                t = time.perf_counter()
                _, result = train(recipe, [*data, f"train.max_steps={steps}", "train.eval_every=1000",
                                           f"train.threads={a.threads}", "train.log_every=50"], runs_root=runs)
                row[f"scratch_{steps}_steps_iou"] = result["metrics"]["iou_vehicle"]
                row["scratch_train_s"] = time.perf_counter() - t
        rows.append(row)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in keys))


if __name__ == "__main__":
    main()

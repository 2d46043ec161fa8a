"""Benchmark: zoo's UNet3D against MONAI's BasicUNet of similar size, same machine, same run.

Prints training throughput (voxels/s of fwd + bwd + AdamW step with Dice + CE on random patches)
and sliding-window inference time for a 128^3 volume (64^3 tiles, overlap 0.5, Gaussian
blending, 4 tiles per pass: zoo's `model.segment` vs `monai.inferers.sliding_window_inference`).
Three networks: zoo's published configuration (16-32-64-128), MONAI's BasicUNet at a similar
parameter count, and zoo's UNet3D with BasicUNet's own widths (16-16-32-64-128, 5 levels): equal
parameters do not mean equal work (the published widths double at every level, BasicUNet's
configuration keeps 16 channels for two levels), so the GFLOP column (forward pass of one 64^3 tile,
torch's FlopCounterMode) says how much of a difference is the architecture and the last row compares
the implementations at the same shape. Figures only, no assertions. MONAI is a dev-only dependency.

    python tests/benchmarks/bench_unet3d.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from zoo.families.unet3d.model import UNet3D
from zoo.families.unet3d.task import dice_ce_loss


def params(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def train_voxels_per_s(model, patch: int, batch: int, steps: int) -> float:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, patch, patch, patch, generator=g)
    y = torch.randint(0, 3, (batch, patch, patch, patch), generator=g)
    times = []
    for _ in range(steps + 1):  # the first step warms up kernels and the allocator
        t = time.perf_counter()
        loss, _ = dice_ce_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return batch * patch**3 / statistics.median(times[1:])


def gflop_per_tile(model, tile: int = 64) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 1, tile, tile, tile))
    return counter.get_total_flops() / 1e9


def infer_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        with torch.no_grad():
            fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNet

    steps, repeats, patch, batch = (2, 1, 32, 2) if a.quick else (8, 3, 48, 2)
    # zoo: 4 levels 16-32-64-128 (the published width); MONAI BasicUNet needs 5 levels, so its
    # widths are picked to land at a similar parameter count (same norm and activation family).
    zoo_net = UNet3D(1, 3, [16, 32, 64, 128], norm="instance", act="leaky_relu", patch_size=64)
    monai_net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=3, features=(16, 16, 32, 64, 128, 16))
    zoo_same = UNet3D(1, 3, [16, 16, 32, 64, 128], norm="instance", act="leaky_relu", patch_size=64)
    volume = torch.randn(1, 1, 128, 128, 128, generator=torch.Generator().manual_seed(1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); train patch {batch}x{patch}^3, "
          f"{steps} timed steps; inference 128^3, tiles 64^3, overlap 0.5, 4 tiles/pass, {repeats} repeat(s)")
    rows = []
    for name, net in [("zoo UNet3D", zoo_net), ("MONAI BasicUNet", monai_net), ("zoo, BasicUNet widths", zoo_same)]:
        flops = gflop_per_tile(net)
        vox = train_voxels_per_s(net, patch, batch, steps)
        net.eval()
        if name.startswith("zoo"):
            run = lambda n=net: n.segment(volume, patch_size=64, overlap=0.5, sw_batch_size=4)  # noqa: E731
        else:
            run = lambda n=net: sliding_window_inference(volume, (64, 64, 64), 4, n, overlap=0.5,  # noqa: E731
                                                         mode="gaussian").argmax(1)
        sec = infer_seconds(run, repeats)
        rows.append((name, params(net), flops, vox, sec))
    print(f"{'model':<22} {'params':>8} {'GFLOP/64^3':>11} {'train vox/s':>12} {'128^3 sliding window':>21}")
    for name, p, flops, vox, sec in rows:
        print(f"{name:<22} {p:>7.2f}M {flops:>11.1f} {vox:>12,.0f} {sec:>20.2f}s")


if __name__ == "__main__":
    main()

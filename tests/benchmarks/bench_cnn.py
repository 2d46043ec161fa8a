"""Benchmark the cnn family's training pipeline on Fashion-MNIST against the usual timm/torchvision one.

zoo:   uint8 images in memory, one vectorised `get_batch` per step, augmentation on the whole batch
       (zoo.augment.ClassificationAugment after a pad; progressive resizing if the recipe sets it), the `cnn`
       ResNet of recipes/cnn/fashion_mnist.yaml.
timm:  the same ResNet built with timm's ByobNet (3x3 stem of the recipe's stride, its widths, basic blocks,
       downsampling and head pooling),
       fed by a torch DataLoader (num_workers=2) running torchvision's per-sample RandomCrop(28, padding=2),
       RandomHorizontalFlip, ToTensor and Normalize on PIL images.
Both use the recipe's optimiser, one-cycle schedule, label smoothing, train.amp (bf16 autocast where the
CPU has it in hardware, docs/training.md) and channels_last, on the same training images, one after the
other in the same process. Test accuracy here is single-view (the recipe's test-time augmentation is
left out: the benchmark compares the training pipelines).

Printed: training images/s; time to `--target` test accuracy (training time only, evaluations excluded);
torch.mm GFLOP/s of this machine in fp32 and bf16; the model's training FLOPs per image (forward +
backward, torch.utils.flop_counter); and the fraction of the matmul rate that zoo's training reaches.

    python tests/benchmarks/bench_cnn.py --quick     # < 2 min: throughput and FLOP figures only
    python tests/benchmarks/bench_cnn.py             # full: --epochs (default 20) per pipeline, by steps
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from zoo.engine.optim import build_optimizer, build_scheduler
from zoo.engine.run import build_model, resolve_recipe
from zoo.engine.trainer import Context, epoch_order
from zoo.families.cnn.task import TASK
from zoo.recipes import load


def matmul_gflops(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def train_flops_per_image(model: torch.nn.Module, shape: tuple[int, ...], batch: int = 8) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, *shape)
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def millions_of_parameters(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def timm_equivalent(num_classes: int, in_chans: int, widths: list[int], depths: list[int],
                    stem_stride: int = 1, downsample: str = "stride", head_pool: int = 1) -> torch.nn.Module:
    """timm's ByobNet configured as the zoo `cnn` of the recipe: the same widths, blocks per stage,
    stem stride (its 3x3 stem conv is stride 2 by design; set to the recipe's) and downsampling (with
    "maxpool"/"avgpool" each later stage's first block runs at stride 1 after the same 2x2 pool)."""
    from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg

    from zoo.families.cnn.model import DOWNSAMPLE

    blocks = tuple(ByoBlockCfg(type="basic", d=d, c=c, s=1 if i == 0 else 2, br=1.0)
                   for i, (c, d) in enumerate(zip(widths, depths)))
    model = ByobNet(ByoModelCfg(blocks=blocks, stem_chs=widths[0], stem_type="", stem_pool="", num_features=0),
                    num_classes=num_classes, in_chans=in_chans)
    model.stem.conv.stride = (stem_stride, stem_stride)
    if downsample != "stride":
        for i in range(1, len(model.stages)):
            first = model.stages[i][0]
            first.conv1_kxk.conv.stride = first.shortcut.conv.stride = (1, 1)
            model.stages[i] = torch.nn.Sequential(DOWNSAMPLE[downsample](), *model.stages[i])
    if head_pool > 1:  # zoo's pooled head: average to a grid, flatten, linear
        model.head.global_pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(head_pool), torch.nn.Flatten(1))
        model.head.fc = torch.nn.Linear(widths[-1] * head_pool**2, num_classes)
    return model


class PerSampleDataset(torch.utils.data.Dataset):
    """The torchvision habit: one PIL image per __getitem__, transformed on its own in a worker."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: list[float], std: list[float]):
        import torchvision.transforms as T

        self.images, self.labels = images[:, 0].numpy(), labels.numpy()
        self.transform = T.Compose([T.RandomCrop(28, padding=2), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def zoo_batches(data, batch: int, seed: int, device):
    n = len(data.train)
    for epoch in range(10**9):
        order = epoch_order(n, seed, epoch)
        for start in range(0, n, batch):
            images, labels = data.train.get_batch(order[start:start + batch])
            yield images.to(device), labels.to(device)


def timm_batches(loader, device):
    while True:
        for images, labels in loader:
            yield images.to(device), labels.to(device)


def run(name: str, model, batches, transform, ctx, data, steps: int, steps_per_epoch: int, target: float,
        eval_every: int, eval_limit: int | None) -> dict:
    """Train `steps` steps; test accuracy every `eval_every` steps; times exclude the evaluations."""
    recipe = ctx.recipe
    model.to(memory_format=torch.channels_last).train()
    opt = build_optimizer(model, recipe["optim"])
    sched = build_scheduler(opt, recipe["schedule"], steps, steps_per_epoch)
    smoothing = recipe["augment"]["label_smoothing"]
    test = data.test if eval_limit is None else type(data.test)(
        data.test.tensors[0][:eval_limit], data.test.tensors[1][:eval_limit], data.test.spec, data.test.classes)
    train_time, seen, reached, history = 0.0, 0, None, []
    warmup = 3  # the first steps pay for allocations and oneDNN kernel selection
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        images, labels = next(batches)
        with ctx.autocast():
            logits = model(transform(images, (step - 1) / steps))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if step > warmup:
            train_time += time.perf_counter() - t0
            seen += len(labels)
        if step % eval_every == 0 or step == steps:
            model.eval()
            with torch.no_grad(), ctx.autocast():
                acc = TASK.evaluate(model, test, ctx)["accuracy"]
            model.train()
            history.append((step, acc))
            print(f"  {name}: step {step}/{steps} test accuracy {acc:.4f}, {seen / max(train_time, 1e-9):.0f} img/s",
                  flush=True)
            if reached is None and acc >= target:
                reached = train_time
                if eval_limit is None:
                    break
    return {"images_per_s": seen / train_time, "time_to_target_s": reached, "history": history}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few hundred steps on a subset (< 2 min)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the timm pipeline")
    p.add_argument("--target", type=float, default=0.93)
    p.add_argument("--epochs", type=float, default=20,
                   help="schedule length by steps (the recipe plans 26 on the clock and fits ~20.5 in its budget)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = ["data.train_limit=6000", "data.val_size=0"] if args.quick else []
    raw, _ = load("cnn/fashion_mnist", overrides)
    recipe, _ = resolve_recipe(raw)
    torch.manual_seed(recipe["train"]["seed"])
    ctx = Context(recipe=recipe, task=TASK, device=torch.device("cpu"))
    data = TASK.build_data(recipe["data"], ctx)
    batch = recipe["train"]["batch_size"]
    steps_per_epoch = math.ceil(len(data.train) / batch)
    steps = 40 if args.quick else int(args.epochs * steps_per_epoch)
    for split in (data.train, data.test):
        split.spec = {k: v for k, v in split.spec.items() if k != "tta"}  # single-view accuracy
    eval_every = steps if args.quick else steps_per_epoch // 2
    eval_limit = 2000 if args.quick else None
    spec = data.info["input_spec"]

    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    zoo_model = build_model(recipe, TASK, data)
    flops = train_flops_per_image(zoo_model, (spec["channels"], *spec["size"]))
    print(f"machine: torch.mm {fp32:.0f} GFLOP/s fp32, {bf16:.0f} GFLOP/s bf16 ({args.threads} threads)")
    print(f"model: {millions_of_parameters(zoo_model):.2f}M parameters, "
          f"{flops / 1e6:.0f} MFLOP per training image (forward + backward)")
    print(f"training: {len(data.train)} images, {steps} steps of {batch}, test accuracy every {eval_every} steps")

    results = {}
    augment = TASK.build_augment(recipe["augment"], data, ctx.device)
    results["zoo"] = run("zoo", zoo_model, zoo_batches(data, batch, recipe["train"]["seed"], ctx.device), augment,
                         ctx, data, steps, steps_per_epoch, args.target, eval_every, eval_limit)
    torch.manual_seed(recipe["train"]["seed"])
    loader = torch.utils.data.DataLoader(
        PerSampleDataset(data.train.tensors[0], data.train.tensors[1], spec["mean"], spec["std"]),
        batch_size=batch, shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0)
    shape = recipe["model"]["args"]
    timm_model = timm_equivalent(data.info["num_classes"], spec["channels"], shape["widths"], shape["depths"],
                                 shape.get("stem_stride", 1), shape.get("downsample", "stride"),
                                 shape.get("head_pool", 1))
    print(f"timm equivalent: {millions_of_parameters(timm_model):.2f}M parameters")
    results["timm"] = run("timm", timm_model,
                          timm_batches(loader, ctx.device), lambda x, progress: x, ctx, data, steps, steps_per_epoch,
                          args.target, eval_every, eval_limit)

    print(f"\n{'pipeline':<10} {'train img/s':>12} {'time to ' + str(args.target):>16} {'final test acc':>15}")
    for name, r in results.items():
        reach = f"{r['time_to_target_s']:.0f} s" if r["time_to_target_s"] is not None else "not reached"
        print(f"{name:<10} {r['images_per_s']:>12.0f} {reach:>16} {r['history'][-1][1]:>15.4f}")
    rate = results["zoo"]["images_per_s"] * flops / 1e9
    speedup = results["zoo"]["images_per_s"] / results["timm"]["images_per_s"]
    peaks = {"bf16": bf16, "fp32": fp32}  # train.amp as resolved on this CPU (docs/training.md) first
    used = "bf16" if ctx.amp_dtype is not None else "fp32"
    other = "fp32" if used == "bf16" else "bf16"
    print(f"\nzoo training ({ctx.precision}) reaches {rate:.0f} GFLOP/s: {100 * rate / peaks[used]:.1f}% of "
          f"{used} torch.mm ({100 * rate / peaks[other]:.1f}% of {other}); zoo/timm speed {speedup:.2f}x")
    if args.quick:
        print("(--quick: 40 steps on 6,000 images, accuracy on 2,000 test images; the target needs the full run)")


if __name__ == "__main__":
    main()

"""Throughput of zoo.augment's batched pipelines against torchvision's per-sample pipeline.

Classification: images/s of `ClassificationAugment` (train) applied to whole batches after a
DataLoader that only collates uint8 images, against torchvision.transforms.v2 doing the same
operations (RandomResizedCrop, RandomHorizontalFlip, ColorJitter, ToDtype, Normalize) per sample
inside the DataLoader's workers. Both loaders use `--workers` worker processes and the same
in-memory uint8 source images (a little larger than the output). For reference, the same
operations as a plain Kornia AugmentationSequential on the batch. Volumes: volume+label pairs/s
of `VolumeAugment3D` on 64^3 batches.

Prints a table; asserts nothing. Run: python tests/benchmarks/bench_augment.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import kornia.augmentation as K
import torch
import torchvision.transforms.v2 as T
from torch.utils.data import DataLoader, Dataset

from zoo.augment import ClassificationAugment, VolumeAugment3D

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
JITTER = (0.4, 0.4, 0.4, 0.1)


class InMemory(Dataset):
    """uint8 images held in memory, optionally transformed per sample (in the loader's workers)."""

    def __init__(self, images: torch.Tensor, transform: Callable | None = None) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.images[i]
        return self.transform(image) if self.transform else image


def per_sample_transform(size: int) -> T.Compose:
    return T.Compose(
        [
            T.RandomResizedCrop(size, antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(*JITTER),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(MEAN, STD),
        ]
    )


def kornia_pipeline(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    aug = K.AugmentationSequential(
        K.RandomResizedCrop((size, size)),
        K.RandomHorizontalFlip(),
        K.ColorJitter(*JITTER, p=1.0),
        K.Normalize(torch.tensor(MEAN), torch.tensor(STD)),
    )
    return lambda batch: aug(batch.float() / 255)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(
    loader: DataLoader, step: Callable[[torch.Tensor], torch.Tensor], device: torch.device, batches: int
) -> float:
    """Images/s over `batches` batches after one warm-up batch (workers started, caches filled)."""
    seen, start = 0, 0.0
    for i, batch in enumerate(loader):
        out = step(batch.to(device, non_blocking=True))
        if i == 0:
            sync(device)
            start = time.perf_counter()
            continue
        seen += len(out)
        if i == batches:
            break
    sync(device)
    return seen / (time.perf_counter() - start)


def batch_rate(step: Callable[[], torch.Tensor], batch: int, device: torch.device, batches: int) -> float:
    """Items/s of `step` on a batch already on the device, after one warm-up call."""
    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    sync(device)
    return batches * batch / (time.perf_counter() - start)


def best_of(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """The best rate of each measure over `repeats` round-robin rounds: on a shared machine the
    best round is the one least disturbed by other work, and round-robin spreads the disturbance."""
    best = dict.fromkeys(measures, 0.0)
    for _ in range(repeats):
        for name, measure in measures.items():
            best[name] = max(best[name], measure())
    return best


def bench_classification(size: int, device: torch.device, args: argparse.Namespace) -> list[tuple]:
    source = int(size * 1.15)
    images = torch.randint(0, 256, ((args.batches + 1) * args.batch, 3, source, source), dtype=torch.uint8)
    common = dict(batch_size=args.batch, num_workers=args.workers, pin_memory=device.type == "cuda")
    per_sample = DataLoader(InMemory(images, per_sample_transform(size)), **common)
    batched = DataLoader(InMemory(images), **common)
    aug, kornia_aug = ClassificationAugment(size, MEAN, STD, color_jitter=JITTER), kornia_pipeline(size)
    on_device = images[: args.batch].to(device)
    rates = best_of(
        {
            "torchvision v2 per sample in loader": lambda: loader_rate(
                per_sample, lambda x: x, device, args.batches
            ),
            "zoo batched after loader": lambda: loader_rate(batched, aug, device, args.batches),
            "zoo batched, augmentation only": lambda: batch_rate(
                lambda: aug(on_device), args.batch, device, args.batches
            ),
            "kornia batched after loader": lambda: loader_rate(batched, kornia_aug, device, args.batches),
        },
        args.repeats,
    )
    name = f"classification {size}x{size} (from {source}x{source})"
    baseline = rates["torchvision v2 per sample in loader"]
    return [(name, device.type, pipeline, rate, rate / baseline) for pipeline, rate in rates.items()]


def bench_volume(device: torch.device, args: argparse.Namespace) -> list[tuple]:
    volume = torch.rand(8, 1, 64, 64, 64, device=device)
    labels = torch.randint(0, 4, (8, 64, 64, 64), device=device)
    aug = VolumeAugment3D()
    rate = best_of(
        {"volume": lambda: batch_rate(lambda: aug(volume, labels), 8, device, args.batches)}, args.repeats
    )
    return [
        ("volume+labels 64^3, batch 8", device.type, "zoo VolumeAugment3D (pairs/s)", rate["volume"], None)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few batches, 64x64 only: a smoke run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=None, help="timed batches per measurement")
    parser.add_argument("--repeats", type=int, default=None, help="round-robin rounds; the best is kept")
    parser.add_argument("--workers", type=int, default=2)
    default_devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--devices", nargs="+", default=default_devices)
    args = parser.parse_args()
    args.batches = args.batches or (2 if args.quick else 8)
    args.repeats = args.repeats or (1 if args.quick else 3)
    sizes = [64] if args.quick else [64, 224]

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.workers} loader workers, {args.batches} timed batches, best of {args.repeats} rounds"
    )
    rows = []
    for name in args.devices:
        device = torch.device(name)
        for size in sizes:
            rows += bench_classification(size, device, args)
        rows += bench_volume(device, args)

    header = f"{'workload':42s} {'device':6s} {'pipeline':38s} {'items/s':>10s} {'vs per-sample':>13s}"
    print(header + "\n" + "-" * len(header))
    for workload, device, pipeline, rate, ratio in rows:
        speedup = "" if ratio is None else f"{ratio:.2f}x"
        print(f"{workload:42s} {device:6s} {pipeline:38s} {rate:10.0f} {speedup:>13s}")


if __name__ == "__main__":
    main()

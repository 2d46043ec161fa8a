"""The tour: every family's default published model, loaded offline, run on a sample.

Prints a table (model, tag, params, card metric, latency) and writes one gallery PNG with
each family's own picture of its output.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from .deps import MissingExtra
from .utils import text_table


def _latency_ms(model, args, repeats: int = 5) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            model(*args)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times[1:] if len(times) > 1 else times)


def tour(out: Path = Path("out/tour")) -> int:
    from . import registry, weights
    from .tasks import get_task

    out.mkdir(parents=True, exist_ok=True)
    print("registry:", ", ".join(registry.list_models()))
    print("published:", ", ".join(registry.list_pretrained()) or "none yet")
    rows, pictures, failures = [], [], 0
    families = {}
    for name in registry.list_models():
        spec = registry.get_spec(name)
        if spec.family not in families or spec.name == spec.family:  # the family's own arch ("gcn", not "dagnn")
            families[spec.family] = spec
    for family, spec in sorted(families.items()):
        tag = spec.default_tag
        if not tag or tag not in weights.load_index():
            rows.append([family, "-", "-", "no published weights yet", "-"])
            continue
        try:
            t = time.perf_counter()
            model = registry.create(family, pretrained=True)
            load_s = time.perf_counter() - t
            task = get_task(spec.task)
            args = task.sample_input(model)
            ms = _latency_ms(model, args)
            s = weights.card_summary(weights.get_card(tag))
            params = sum(p.numel() for p in model.parameters())
            buffers = sum(b.numel() for b in model.buffers())
            size = f"{params / 1e6:.2f}M"
            if buffers > params:  # PatchCore: a frozen backbone and a memory bank, stored as buffers
                size += f" (+{buffers / 1e6:.2f}M in buffers)"
            value = f"{s['metric']}={s['value']:.4f}" if isinstance(s["value"], float) else str(s["value"])
            rows.append([family, tag, size, value, f"{ms:.1f} ms (load {load_s:.1f} s)"])
            pic = task.draw_sample(model, out / f"{family}.png")
            if pic is not None:
                pictures.append((tag, Path(pic)))
        except MissingExtra as e:  # a core install without this domain's extra: say what to install
            rows.append([family, tag, "-", f"skipped: {e}"[:80], "-"])
        except Exception as e:  # the tour reports every family, even when one fails
            failures += 1
            rows.append([family, tag, "-", f"FAILED: {type(e).__name__}: {e}"[:80], "-"])
    print(text_table(rows, ["family", "tag", "params", "card metric", "latency (CPU, batch 1)"]))
    if pictures:
        gallery = out / "gallery.png"
        _gallery(pictures, gallery)
        print(f"gallery: {gallery}")
    return 1 if failures else 0


def _gallery(pictures: list[tuple[str, Path]], path: Path) -> None:
    from .drawing import pyplot, save

    plt = pyplot()

    cols = min(3, len(pictures))
    rows = -(-len(pictures) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (tag, pic) in zip(axes.flat, pictures):
        ax.imshow(plt.imread(pic))
        ax.set_title(tag)
    save(fig, path, dpi=100)

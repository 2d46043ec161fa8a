"""Benchmark of the nerf family on the real lego scene: the fast `nerf` against the original `nerf_vanilla`.

Prints, side by side, the training time each needs to reach a PSNR (default 25 dB) on held-out lego
views rendered at 100x100, the best PSNR reached, training rays/s and rendering rays/s. Both train
with their recipes (recipes/nerf/lego.yaml, recipes/nerf/vanilla_lego.yaml) through the task's own
train_step; evaluation time is not counted. The vanilla model stops once it reaches the target or
after `--vanilla-factor` times the time `nerf` needed (enough to bound the speed-up from below).

    python tests/benchmarks/bench_nerf.py [--quick] [--threads N] [--target DB] [--clock cpu]
    python tests/benchmarks/bench_nerf.py --quick --budget 20 --vanilla-budget 10 --eval-views 1 \
        --render-size 32 --clock cpu      # a smoke run of the script itself (about a CPU minute)

Times are wall-clock and CPU seconds of this process. Budgets, speed-up and rays/s use the wall
clock, or with `--clock cpu` this process's CPU time: on a shared (or niced) machine the wall time is
inflated by other jobs, the CPU time much less so (with one thread it approximates an idle machine's
wall time).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _setup(recipe: str, overrides: list[str]):
    from zoo import recipes as R
    from zoo.engine.run import build_model, make_context, resolve_recipe

    raw, _ = R.load(ROOT / "recipes" / "nerf" / recipe, overrides)
    recipe_cfg, task = resolve_recipe(raw)
    ctx = make_context(recipe_cfg, task, run_dir=None, device="cpu", resume=False)
    data = task.build_data(recipe_cfg["data"], ctx)
    return recipe_cfg, task, ctx, data, build_model(recipe_cfg, task, data).train()


def train_to_target(recipe: str, target: float, budget_s: float, eval_every: int, threads: int,
                    eval_views: int, render_size: int = 100, clock: str = "wall") -> dict:
    """Train until the held-out PSNR reaches `target` or the training time exceeds `budget_s`."""
    from zoo.engine.optim import build_optimizer, build_scheduler
    from zoo.engine.trainer import epoch_order

    cfg, task, ctx, data, model = _setup(recipe, [f"train.threads={threads}", f"data.val_views={eval_views}"])
    torch.set_num_threads(threads)
    opt = build_optimizer(model, cfg["optim"])
    sched = build_scheduler(opt, cfg["schedule"], cfg["train"]["max_steps"], 1)
    batch = cfg["train"]["batch_size"]
    if hasattr(model, "update_occupancy"):
        model.update_occupancy()  # what task.fit does first
    wall = cpu = 0.0
    step, rays, reached, best, order = 0, 0, None, 0.0, torch.empty(0, dtype=torch.long)
    while (cpu if clock == "cpu" else wall) < budget_s and reached is None:
        if len(order) < batch:
            order = epoch_order(len(data.train), 0, step)
        idx, order = order[:batch], order[batch:]
        w0, c0 = time.perf_counter(), time.process_time()
        loss, logs = task.train_step(model, data.train.get_batch(idx), ctx)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        step += 1
        rays += int(logs["rays"])
        if step % eval_every == 0:
            model.eval()
            with torch.no_grad():
                psnr = task.evaluate(model, data.val, ctx)["psnr"]
            model.train()
            best = max(best, psnr)
            print(f"  {cfg['model']['name']:13s} step {step:6d}  train {wall:7.1f} s wall / {cpu:7.1f} s CPU  "
                  f"held-out PSNR {psnr:5.2f} dB", flush=True)
            if psnr >= target:
                reached = (wall, cpu, step)
    model.eval()
    views = data.val.scene.resized(render_size)
    fx = float(views.intrinsics[0, 0])
    w0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        model.render(views.c2w[0], views.height, views.width, fx)
    render_s = (time.process_time() - c0) if clock == "cpu" else (time.perf_counter() - w0)
    return {"model": cfg["model"]["name"], "steps": step, "wall": wall, "cpu": cpu, "reached": reached,
            "best": best if step >= eval_every else None,
            "train_rays_s": rays / max(cpu if clock == "cpu" else wall, 1e-9),
            "render_rays_s": views.height * views.width / max(render_s, 1e-9)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short budgets: a few minutes in all")
    p.add_argument("--target", type=float, default=25.0, help="held-out PSNR to reach (dB)")
    p.add_argument("--threads", type=int, default=1, help="1 on a shared machine: idle OpenMP threads spin")
    p.add_argument("--eval-views", type=int, default=3, help="held-out lego views evaluated")
    p.add_argument("--vanilla-factor", type=float, default=12.0,
                   help="vanilla stops after this many times nerf's time to target")
    p.add_argument("--budget", type=float, default=None,
                   help="nerf's training-time budget in seconds (default 150 with --quick, else 1200)")
    p.add_argument("--vanilla-budget", type=float, default=None,
                   help="cap on nerf_vanilla's training time in seconds (default 120 with --quick, else 3600)")
    p.add_argument("--render-size", type=int, default=100, help="image side for the rendering rays/s")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what budgets, speed-up and rays/s measure: wall time, or CPU time on a shared machine")
    a = p.parse_args()
    os.environ.setdefault("ZOO_DATA", str((ROOT.parent / "shared" / "data").resolve()))
    nerf_budget = a.budget if a.budget is not None else (150.0 if a.quick else 1200.0)
    cap = a.vanilla_budget if a.vanilla_budget is not None else (120.0 if a.quick else 3600.0)
    print(f"lego, held-out views rendered at 100x100, target {a.target} dB, {a.threads} threads, "
          f"budgets and rates in {a.clock} time")
    fast = train_to_target("lego.yaml", a.target, nerf_budget, 25 if a.quick else 50, a.threads, a.eval_views,
                           a.render_size, a.clock)
    k = 1 if a.clock == "cpu" else 0  # index of the budget clock in `reached`
    vanilla_budget = min(cap, 60.0) if a.quick and fast["reached"] is None else \
        cap if fast["reached"] is None else min(a.vanilla_factor * fast["reached"][k], cap)
    slow = train_to_target("vanilla_lego.yaml", a.target, vanilla_budget, 10 if a.quick else 100, a.threads,
                           a.eval_views, a.render_size, a.clock)
    print()
    print(f"{'model':14s} {'time to ' + str(a.target) + ' dB (wall / CPU)':32s} {'steps':>7s} {'best dB':>8s} "
          f"{'train rays/s':>13s} {'render rays/s':>14s}")
    for r in (fast, slow):
        to = (f"{r['reached'][0]:.0f} s / {r['reached'][1]:.0f} s" if r["reached"] else
              f"not reached in {r['wall']:.0f} s / {r['cpu']:.0f} s")
        best = "n/a" if r["best"] is None else f"{r['best']:.2f}"  # n/a: stopped before its first evaluation
        print(f"{r['model']:14s} {to:32s} {r['steps']:7d} {best:>8s} {r['train_rays_s']:13.0f} "
              f"{r['render_rays_s']:14.0f}")
    if fast["reached"]:
        ratio = (slow["reached"][k] if slow["reached"] else slow["cpu" if k else "wall"]) / fast["reached"][k]
        print(f"speed-up of nerf over nerf_vanilla to {a.target} dB ({a.clock} time): "
              f"{'' if slow['reached'] else '>= '}{ratio:.1f}x")


if __name__ == "__main__":
    main()

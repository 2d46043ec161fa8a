"""The supervised training loop: batches in a reproducible order, AMP, compile, accumulation,
clipping, schedules, EMA and DDP under torchrun. Its lifecycle (position, atomic checkpoints and exact
resume, evaluation with best weights and early stopping, the max_minutes deadline, metrics.jsonl
(+ TensorBoard when installed), the progress bar) is the engine's `Loop` (zoo/engine/loop.py), which
the DQN and PatchCore fits share; `Trainer.fit` supplies the batch step.

Exact resume: the order of samples in epoch e is a permutation drawn from a generator seeded
with (seed, e), so a checkpoint only needs (epoch, batch index) plus the model, optimiser,
scheduler, EMA and global RNG states (augmentation and dropout draw from the latter).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .loop import Loop
from .optim import EMA, build_optimizer, build_scheduler
from .state import load_checkpoint, save_checkpoint, to_device


@dataclass
class Context:
    """What a task sees of the run: recipe, device, run dir, trainer, rank."""

    recipe: dict
    task: Any
    device: torch.device
    run_dir: Path | None = None
    rank: int = 0
    world_size: int = 1
    resume: bool = False
    trainer: Trainer | None = None
    augment: Any = None
    extra: dict = field(default_factory=dict)
    progress: float = 0.0  # share of the run done before this step: steps, or train.max_minutes when further

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @functools.cached_property
    def amp_dtype(self) -> torch.dtype | None:
        """`train.amp` resolved once on this run's device (see `autocast_dtype`)."""
        return autocast_dtype(self.recipe.get("train", {}).get("amp", "auto"), self.device)

    def autocast(self):
        """bf16 autocast where `train.amp` resolves to it, else a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def precision(self) -> str:
        """What `train.amp` resolved to on this device, for the run's result and card."""
        return "bf16 autocast" if self.amp_dtype is not None else "fp32"


AMP_VALUES = ("auto", True, False, "force")


@functools.cache
def cpu_isa() -> str:
    """The CPU's widest vector extension that matters for training speed (bf16 needs AVX-512 BF16 or AMX).

    When ATEN_CPU_CAPABILITY caps PyTorch's kernels below that (`zoo reproduce --isa avx2` emulating an
    AVX2-only CPU), the capped ISA, saying so: "AVX2 (capped on an AVX-512 BF16 CPU)"; bf16 is then not native.
    """
    hw = "no AVX2"
    for name, check in (("AMX", "_is_amx_tile_supported"), ("AVX-512 BF16", "_is_avx512_bf16_supported"),
                        ("AVX-512", "_is_avx512_supported"), ("AVX2", "_is_avx2_supported")):
        if getattr(torch.cpu, check, lambda: False)():
            hw = name
            break
    order = ["no AVX2", "AVX2", "AVX-512", "AVX-512 BF16", "AMX"]
    cap = {"DEFAULT": "no AVX2", "AVX2": "AVX2"}.get(torch.backends.cpu.get_cpu_capability())
    if cap and hw in order and order.index(cap) < order.index(hw):
        return f"{cap} (capped on an {hw} CPU)"
    return hw


@functools.cache
def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 matrix products in hardware: a CUDA GPU from Ampere on, or a CPU with
    AVX-512 BF16 or AMX.

    Elsewhere (an AVX2-only CPU, for one) bf16 is emulated: a 1024^2 matmul measured 1 GFLOP/s in bf16
    against 123 in fp32 on an AVX2 AMD EPYC, so bf16 autocast would make training ~100x slower.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_isa() in ("AMX", "AVX-512 BF16")
    return False


_warned_emulated = False


def autocast_dtype(amp, device: torch.device) -> torch.dtype | None:
    """Resolve `train.amp` on `device` to an autocast dtype (bf16) or None (fp32).

    auto   bf16 on a CUDA GPU that has it, fp32 on CPU (the default: a recipe trains the same way on
           every CPU);
    true   bf16 where the device has it in hardware (`native_bf16`); fp32 with a warning elsewhere,
           because emulated bf16 is slower than fp32, the opposite of what amp is asked for;
    force  bf16 on any device (tests of the bf16 path on CPUs without native bf16);
    false  fp32.
    """
    global _warned_emulated
    if amp not in AMP_VALUES or isinstance(amp, int) and not isinstance(amp, bool):
        raise ValueError(f"train.amp={amp!r}: expected one of auto, true, false, force")
    if amp is False or (amp == "auto" and (device.type != "cuda" or not native_bf16(device))):
        return None
    if amp is True and not native_bf16(device):
        if not _warned_emulated:
            lacks = "AVX-512 BF16 or AMX" if device.type == "cpu" else "bf16 units (before Ampere)"
            warnings.warn(f"train.amp=true: this {device.type} has no native bf16 (no {lacks}), where bf16 "
                          "autocast is slower than fp32; training in fp32 (train.amp=force insists)", stacklevel=2)
            _warned_emulated = True
        return None
    return torch.bfloat16


class MetricLogger:
    """metrics.jsonl on rank 0, mirrored to TensorBoard when it is installed."""

    def __init__(self, run_dir: Path | None, enabled: bool):
        self.path = run_dir / "metrics.jsonl" if (run_dir and enabled) else None
        self.tb = None
        if self.path is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def log(self, record: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            prefix = record.get("split", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, record.get("step", 0))


def time_progress(schedule: dict, train: dict) -> bool:
    """Whether the LR schedule also advances with time (`schedule.progress: time`, an opt-in for users).

    Published recipes define their work in steps or epochs (the default, `progress: steps`), so the same
    recipe does the same work on any machine; `train.max_minutes` alone is a safety stop, and a run it
    stopped says so (`fit`'s `stopped_by: max_minutes`, on the card). `progress: time` makes the work
    depend on the hardware: the schedule's position is then the further of (optimiser steps done) and
    (elapsed share of `train.max_minutes` x planned steps): on a machine fast enough for the planned steps nothing
    changes; on a slower one the schedule reaches its end (annealed) at the deadline, where the run
    stops, instead of being cut off at a high learning rate. The number of steps then depends on the
    machine's speed, so such a run is reproducible in its data order and randomness, not in its length.
    """
    mode = schedule.get("progress", "steps")
    if mode not in ("steps", "time"):
        raise ValueError(f"schedule.progress={mode!r}: expected steps or time")
    if mode == "time" and not train.get("max_minutes"):
        raise ValueError("schedule.progress=time needs a time budget: set train.max_minutes")
    return mode == "time"


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def sequential_batches(dataset, batch_size: int, device: torch.device):
    """Yield batches of `dataset` in order (for evaluation), on `device`."""
    n = len(dataset)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        yield to_device(fetch(dataset, idx), device)


def fetch(dataset, idx: torch.Tensor):
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(idx)
    return torch.utils.data.default_collate([dataset[int(i)] for i in idx])


class Trainer:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.cfg = ctx.recipe["train"]
        self.logger = MetricLogger(ctx.run_dir, ctx.is_main)
        self.ckpt_dir = ctx.run_dir / "checkpoints" if ctx.run_dir else None
        self.history: list[dict] = []

    # ------------------------------------------------------------------ checkpoints (also for custom fits)
    def save(self, name: str, payload: dict) -> None:
        if self.ckpt_dir is not None and self.ctx.is_main:
            save_checkpoint(self.ckpt_dir / f"{name}.pt", payload)

    def restore(self, name: str = "last") -> dict | None:
        if not self.ctx.resume or self.ckpt_dir is None or not (self.ckpt_dir / f"{name}.pt").is_file():
            return None
        return load_checkpoint(self.ckpt_dir / f"{name}.pt")

    def log(self, record: dict) -> None:
        self.history.append(record)
        self.logger.log(record)

    def progress(self, total: int, initial: int = 0, desc: str = "train"):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, disable=not self.ctx.is_main, dynamic_ncols=True,
                    mininterval=1.0)

    # ------------------------------------------------------------------ the default loop
    def fit(self, model: torch.nn.Module, data) -> dict:
        ctx, cfg, task = self.ctx, self.cfg, self.ctx.task
        device, world, rank = ctx.device, ctx.world_size, ctx.rank
        model.to(device)
        if cfg["channels_last"] is True or (cfg["channels_last"] == "auto" and device.type == "cuda"):
            model.to(memory_format=torch.channels_last)
        _ = ctx.amp_dtype  # resolved up front: a bad train.amp, or amp without native bf16, is said now
        n = len(data.train)
        batch = min(cfg["batch_size"], n)
        if batch % world:
            raise ValueError(f"train.batch_size={batch} must be divisible by the {world} processes")
        steps_per_epoch = math.ceil(n / batch)
        total = cfg["max_steps"] or math.ceil(cfg["epochs"] * steps_per_epoch)
        accum = cfg["accumulate"]
        opt = build_optimizer(model, ctx.recipe["optim"])
        sched = build_scheduler(opt, ctx.recipe["schedule"], total // accum, max(1, steps_per_epoch // accum))
        by_time = time_progress(ctx.recipe["schedule"], cfg)
        ema = EMA(model, cfg["ema"]) if cfg["ema"] else None
        # built before any RNG state is restored, so a resumed run draws exactly what the original drew
        ctx.augment = task.build_augment(ctx.recipe.get("augment", {}), data, device)
        if cfg["distill"]["teacher"]:  # train.distill: the task's step mixes in the teacher (zoo.deploy.distill)
            from ..deploy.distill import load_teacher

            ctx.extra["teacher"] = load_teacher(cfg["distill"], device)
        eval_every = max(1, int(round(cfg["eval_every"] * steps_per_epoch))) if cfg["eval_every"] else 0
        # steps between validations (0: none before the end); the final weights are always validated, so
        # that best-weights selection can pick the annealed end of a schedule
        loop = Loop(ctx, total=total, unit="train", log_every=cfg["log_every"],
                    eval_every=eval_every if data.val is not None else 0,
                    ckpt_every=cfg["ckpt_every"] or steps_per_epoch, ckpt_min_seconds=cfg["ckpt_min_seconds"],
                    eval_at_end=True, patience=cfg["early_stop"], position={"epoch": 0, "batch": 0})
        pos = loop.pos
        ckpt = loop.restore()
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
        train_model = model
        if world > 1:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg["compile"]:
            train_model = torch.compile(train_model)
        profiler = None
        if cfg["profile"] and ctx.is_main and ctx.run_dir is not None:  # train.profile: a trace of a few steps
            from ..deploy.profile import TrainingProfiler

            profiler = TrainingProfiler(ctx.run_dir)
        order, order_epoch = None, None
        meter = {"seen": 0, "t": time.perf_counter(), "losses": []}

        def step() -> int:
            """One batch: forward, backward, and on an accumulation boundary the optimiser, schedule and EMA."""
            nonlocal order, order_epoch
            if pos["batch"] >= steps_per_epoch:
                pos["epoch"] += 1
                pos["batch"] = 0
            if order_epoch != pos["epoch"]:  # the epoch's sample order, a function of (seed, epoch)
                order, order_epoch = epoch_order(n, cfg["seed"], pos["epoch"]), pos["epoch"]
            idx = order[pos["batch"] * batch:(pos["batch"] + 1) * batch][rank::world]
            b = to_device(fetch(data.train, idx), device)
            boundary = (pos["step"] + 1) % accum == 0 or pos["step"] + 1 == total
            ctx.progress = min(1.0, max(pos["step"] / total, loop.used))
            sync = contextlib.nullcontext() if (boundary or world == 1) else train_model.no_sync()
            with sync, ctx.autocast():
                loss, logs = task.train_step(train_model, b, ctx)
                (loss / accum).backward()
            used = loop.time_used()
            loop.at_boundary = boundary
            if boundary:
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
                opt.step()
                opt.zero_grad(set_to_none=True)
                if by_time:  # jump ahead to the elapsed share of the budget when that is further along
                    ahead = int(used * (total // accum))
                    sched.last_epoch = max(sched.last_epoch, ahead - 1)
                sched.step()
                if ema is not None:
                    ema.update(model)
            pos["batch"] += 1
            meter["seen"] += len(idx) * world
            meter["losses"].append(float(loss.detach()))
            meter["logs"] = logs
            if profiler is not None:
                profiler.step()
            return 1

        def record() -> dict:
            rate = meter["seen"] / max(1e-9, time.perf_counter() - meter["t"])
            rec = {"step": pos["step"], "epoch": pos["epoch"], "loss": self._mean(meter["losses"]),
                   "lr": opt.param_groups[0]["lr"], "samples_per_s": rate,
                   **{k: float(v) for k, v in meter["logs"].items()}}
            loop.show(loss=f"{rec['loss']:.4f}", rate=f"{rate:.0f}/s")
            meter.update(seen=0, t=time.perf_counter(), losses=[])
            return rec

        def evaluate() -> dict:
            net = ema.module if ema else model
            net.eval()
            with torch.no_grad(), ctx.autocast():
                metrics = task.evaluate(net, data.val, ctx)
            model.train()
            return metrics

        def state() -> dict:
            return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "ema": ema.state_dict() if ema else None}

        model.train()
        info = loop.run(step, state=state, record=record, evaluate=evaluate if data.val is not None else None,
                        keep=ema.module if ema else model)
        if profiler is not None:
            profiler.close()
        if ema is not None:
            model.load_state_dict(ema.state_dict())
        loop.load_best(model)
        epochs = pos["epoch"] + pos["batch"] / steps_per_epoch
        return {**info, "steps": pos["step"], "epochs": epochs, "planned_steps": total}

    def _mean(self, values: list[float]) -> float:
        v = torch.tensor([sum(values), len(values)], dtype=torch.float64)
        if self.ctx.world_size > 1:
            dist.all_reduce(v)  # the logged loss is the mean over every rank's batches
        return float(v[0] / max(1, v[1]))

"""The run lifecycle shared by every task's fit: `Loop` owns what is the same in any training loop.

    loop = Loop(ctx, total=..., unit="steps", log_every=..., ckpt_every=..., eval_every=...)
    ckpt = loop.restore()                   # None, or the task's checkpoint (position and RNGs already set)
    loop.run(step, record=..., evaluate=..., state=..., keep=model)
    loop.load_best(model)                   # the best evaluated weights, from memory or best.pt

A task writes only its steps, as plain functions: `step()` does one unit of work (a batch; a round
of env steps and updates; building a memory bank) and returns how far the position moved;
`record()` is the metrics.jsonl line when one is due; `evaluate()` the validation metrics;
`state()` what the task adds to a checkpoint. The loop owns the rest:

- the position (`loop.pos`: step, elapsed seconds, best score, evaluations, and whatever counters the
  task adds), saved in every checkpoint with the global RNG states and restored exactly by `restore`;
- the cadence of logs, evaluations and checkpoints (every `log_every` / `eval_every` / `ckpt_every`
  units, a checkpoint not before `ckpt_min_seconds` since the last, and a final one);
- best weights: a CPU copy on each improvement of the task's main metric, written to best.pt at the
  next checkpoint (one write, and best.pt never runs ahead of last.pt), with early stopping after
  `patience` evaluations without improvement or once the metric reaches `stop_at`;
- the deadline: `train.max_minutes` as a safety stop counted across resumes (the largest share over
  the DDP ranks, so every rank stops at the same step), recorded as `stopped_by: max_minutes`;
- the progress bar and metrics.jsonl (through the `Trainer`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from .state import load_checkpoint, rng_state, set_rng_state

Metrics = dict[str, float]


class Loop:
    """One run's position, checkpoints, best weights, deadline, logs and progress bar.

    Args:
        ctx: the run's Context (its trainer writes checkpoints and metrics).
        total: units of work the recipe defines (optimiser steps, env steps, 1 for a one-pass fit).
        unit: what a unit is, for the progress bar.
        log_every / eval_every / ckpt_every: units between logs, evaluations (0: none) and checkpoints
            (0 or None: only the final one).
        ckpt_min_seconds: a due checkpoint is skipped until this long after the last one.
        eval_at_end: evaluate the final weights (and at the deadline), so best-weights selection can pick them.
        patience: stop after this many evaluations without improvement (None: never).
        stop_at: stop once the main metric reaches this value (None: never).
        position: the task's own counters, saved and restored with the loop's.
        progress_bar: show a bar of `total` units.
    """

    def __init__(self, ctx, *, total: int, unit: str = "steps", log_every: int = 1, eval_every: int = 0,
                 ckpt_every: int | None = None, ckpt_min_seconds: float = 0, eval_at_end: bool = False,
                 patience: int | None = None, stop_at: float | None = None, position: dict | None = None,
                 progress_bar: bool = True):
        self.ctx, self.trainer, self.task = ctx, ctx.trainer, ctx.task
        self.total, self.unit = total, unit
        self.log_every, self.eval_every, self.ckpt_every = log_every, eval_every, ckpt_every or 0
        self.ckpt_min_seconds, self.eval_at_end = ckpt_min_seconds, eval_at_end
        self.patience, self.stop_at, self.progress_bar = patience, stop_at, progress_bar
        self.pos: dict = {"step": 0, "elapsed": 0.0, "best": None, "bad_evals": 0, "evals": 0, "stopped_by": None,
                          **(position or {})}
        minutes = ctx.recipe["train"].get("max_minutes")
        self.budget = 60 * minutes if minutes else None
        self.used = 0.0  # elapsed share of the budget (0 without one)
        self.at_boundary = True  # a step may clear it (mid gradient accumulation): no checkpoint there
        self.best_state: dict | None = None  # the best weights (CPU), also written to best.pt
        self._best_unsaved = False
        self._clocked = False
        self.bar = None
        self._start = time.monotonic()

    # ------------------------------------------------------------------ checkpoints
    def restore(self) -> dict | None:
        """On `zoo train --resume`: the last checkpoint, with the position and global RNG states restored here;
        the task loads its own parts (`state()`'s keys) from the returned dict. None on a fresh run."""
        ckpt = self.trainer.restore("last")
        if ckpt is not None:
            self.pos.update(ckpt["position"], stopped_by=None)  # in place: steps may hold `loop.pos`
            set_rng_state(ckpt["rng"])
        return ckpt

    def checkpoint(self, state: dict) -> None:
        """Write last.pt (`state` + position + RNGs), and first best.pt when the best weights changed since."""
        if self._best_unsaved:
            self.trainer.save("best", self._best_payload)
            self._best_unsaved = False
        self.trainer.save("last", {**state, "position": dict(self.pos), "rng": rng_state()})

    # ------------------------------------------------------------------ deadline
    def time_used(self) -> float:
        """The elapsed share of train.max_minutes (0 without one), the largest over the ranks. A step that needs
        it mid-way (a schedule that follows time) calls it; otherwise the loop does, once per step."""
        self._clocked = True
        if self.budget is None:
            return 0.0
        share = (time.monotonic() - self._start) / self.budget
        if self.ctx.world_size > 1:
            shared = torch.tensor([share], device=self.ctx.device)
            dist.all_reduce(shared, op=dist.ReduceOp.MAX)
            share = float(shared)
        self.used = share
        return share

    # ------------------------------------------------------------------ evaluation and best weights
    def _evaluate(self, evaluate: Callable[[], Metrics], keep) -> bool:
        """Evaluate on rank 0, share the result, log it, keep the best weights; True means stop."""
        metrics = [None]
        if self.ctx.is_main:
            metrics[0] = {k: float(v) for k, v in evaluate().items()}
        if self.ctx.world_size > 1:
            dist.broadcast_object_list(metrics, src=0)
        m, pos = metrics[0], self.pos
        pos["evals"] += 1
        self.trainer.log({"step": pos["step"], **({"epoch": pos["epoch"]} if "epoch" in pos else {}),
                          "split": "val", **m})
        key = self.task.main_metric
        if key not in m:
            return False
        value = m[key]
        better = pos["best"] is None or (value > pos["best"] if self.task.mode == "max" else value < pos["best"])
        if better:
            pos["best"], pos["bad_evals"] = value, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in keep.state_dict().items()}
            self._best_payload = {"model": self.best_state, "metrics": m, "step": pos["step"]}
            self._best_unsaved = True
        else:
            pos["bad_evals"] += 1
        if self.patience and pos["bad_evals"] >= self.patience:
            pos["stopped_by"] = "early_stop"
        elif self.stop_at is not None and (value >= self.stop_at if self.task.mode == "max" else value <= self.stop_at):
            pos["stopped_by"] = "stop_at"
        return pos["stopped_by"] is not None

    def load_best(self, model) -> bool:
        """Load the best evaluated weights into `model` (from memory, or best.pt after a resume); False if none."""
        state = self.best_state
        ckpt_dir = self.trainer.ckpt_dir
        if state is None and self.pos["best"] is not None and ckpt_dir is not None and (ckpt_dir / "best.pt").is_file():
            state = load_checkpoint(ckpt_dir / "best.pt")["model"]
        if state is None:
            return False
        model.load_state_dict(state)
        return True

    def show(self, **values) -> None:
        """Figures next to the progress bar (a `record` function's summary)."""
        if self.bar is not None:
            self.bar.set_postfix(**values)

    # ------------------------------------------------------------------ the loop
    def run(self, step: Callable[[], int], *, state: Callable[[], dict], record: Callable[[], dict] | None = None,
            evaluate: Callable[[], Metrics] | None = None, keep=None) -> dict:
        """Call `step()` until the position reaches `total`, an early stop or the deadline; returns
        {"train_seconds", "stopped_by"?}. `keep` is the module whose weights an improving evaluation keeps."""
        if evaluate is not None and keep is None:
            raise TypeError("Loop.run: an evaluate function needs `keep`, the module whose best weights to keep")
        pos = self.pos
        self._start = time.monotonic() - pos["elapsed"]
        next_due = {name: (pos["step"] // every + 1) * every if every else math.inf
                    for name, every in (("log", self.log_every), ("eval", self.eval_every),
                                        ("ckpt", self.ckpt_every))}
        last_ckpt = time.monotonic()
        bar = self.bar = self.trainer.progress(self.total, min(pos["step"], self.total), desc=self.unit) \
            if self.progress_bar else None
        if self.budget is not None:
            self.time_used()
        stop = False
        while pos["step"] < self.total and not stop:
            self._clocked = False
            self.at_boundary = True
            moved = step()
            pos["step"] += moved
            if bar is not None:
                bar.update(moved)
            if not self._clocked:
                self.time_used()
            end = pos["step"] >= self.total
            if record is not None and (pos["step"] >= next_due["log"] or end):
                next_due["log"] += self.log_every
                rec = record()
                if rec:
                    self.trainer.log(rec)
            out_of_time = self.used >= 1.0
            eval_due = pos["step"] >= next_due["eval"]
            if eval_due:
                next_due["eval"] += self.eval_every
            if evaluate is not None and (eval_due or (self.eval_at_end and (end or out_of_time))):
                stop = self._evaluate(evaluate, keep)
            pos["elapsed"] = time.monotonic() - self._start
            stop = stop or out_of_time
            if pos["step"] >= next_due["ckpt"]:
                next_due["ckpt"] += self.ckpt_every
                if (not stop and not end and self.at_boundary
                        and time.monotonic() - last_ckpt >= self.ckpt_min_seconds):
                    self.checkpoint(state())
                    last_ckpt = time.monotonic()
            if out_of_time and pos["step"] < self.total:
                pos["stopped_by"] = "max_minutes"  # the safety stop fired: less work than the recipe defines
        if bar is not None:
            bar.close()
        pos["elapsed"] = time.monotonic() - self._start
        self.checkpoint(state())
        info = {"train_seconds": pos["elapsed"]}
        if pos["stopped_by"] is not None:
            info["stopped_by"] = pos["stopped_by"]
        return info

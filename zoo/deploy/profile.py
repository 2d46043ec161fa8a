"""Where a model spends its time: `zoo profile NAME [--batch B ...] [--trace DIR]` and `train.profile=true`.

For each batch size: latency (median of `repeats` calls after a warm-up), FLOPs (torch's FlopCounterMode),
peak memory (CUDA's allocator peak on a GPU; on the CPU the running total of the profiler's allocation
events), and, for the first batch size, the top operators by self time from torch.profiler. With a trace
folder, torch.profiler's TensorBoard handler writes `<host>.<pid>.pt.trace.json` there: TensorBoard's
profiler plugin and Perfetto (ui.perfetto.dev, or chrome://tracing) both open it.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, tensorboard_trace_handler
from torch.profiler import profile as torch_profile

from .exporter import load_model
from .graphs import graph_spec
from .prune import flops_and_params


def _activities() -> list:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])


def _peak_bytes(prof) -> int:
    """Largest running total of allocated bytes over the profiler's memory events, in time order."""
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    peak = total = 0
    for e in events:
        total += e.cpu_memory_usage
        peak = max(peak, total)
    return peak


def profile(name_or_model, batches=(1, 64), *, trace_dir: str | os.PathLike | None = None, repeats: int = 10,
            top: int = 10) -> dict:
    """{"model", "device", "rows": [{batch, latency_ms, flops, gflops_per_s, peak_memory_bytes, params}],
    "top_ops" (a table), "trace" (the trace file, with `trace_dir`)}."""
    if not batches or min(batches) < 1 or repeats < 1:
        raise ValueError(f"profile needs batch sizes >= 1 and repeats >= 1, got {list(batches)} and {repeats}")
    model = load_model(name_or_model)
    spec = graph_spec(model)
    run = spec.reference or spec.module
    rows, top_ops, trace = [], "", None
    for i, b in enumerate(batches):
        x = spec.example_inputs(b)
        flops, params = flops_and_params(spec.module, x)
        with torch.no_grad():
            run(*x)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run(*x)
                times.append(time.perf_counter() - t0)
            handler = tensorboard_trace_handler(str(trace_dir)) if trace_dir and i == 0 else None
            with torch_profile(activities=_activities(), profile_memory=True, record_shapes=True,
                               on_trace_ready=handler) as prof:
                run(*x)
        latency = statistics.median(times)
        rows.append({"batch": b, "latency_ms": 1e3 * latency, "flops": flops, "gflops_per_s": flops / latency / 1e9,
                     "peak_memory_bytes": _peak_bytes(prof), "params": params})
        if i == 0:
            top_ops = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    if trace_dir:
        traces = sorted(Path(trace_dir).glob("*.pt.trace.json"), key=lambda p: p.stat().st_mtime)
        trace = str(traces[-1]) if traces else None
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {"model": cfg.get("tag") or type(model).__name__, "device": "cpu", "threads": torch.get_num_threads(),
            "rows": rows, "top_ops": top_ops, "trace": trace}


class TrainingProfiler:
    """`train.profile=true`: torch.profiler over training steps 2-4 (one wait, one warm-up, three recorded);
    the trace goes to <run_dir>/profile/ for TensorBoard or Perfetto. The trainer calls `step()` per step."""

    WAIT, WARMUP, ACTIVE = 1, 1, 3

    def __init__(self, run_dir: Path):
        folder = Path(run_dir) / "profile"
        sched = torch.profiler.schedule(wait=self.WAIT, warmup=self.WARMUP, active=self.ACTIVE, repeat=1)
        self.prof = torch_profile(activities=_activities(), schedule=sched, profile_memory=True,
                                  on_trace_ready=tensorboard_trace_handler(str(folder)))
        self.prof.start()
        self.steps = 0

    def step(self) -> None:
        if self.prof is None:
            return
        self.prof.step()
        self.steps += 1
        if self.steps >= self.WAIT + self.WARMUP + self.ACTIVE:
            self.prof.stop()
            self.prof = None

    def close(self) -> None:
        if self.prof is not None:
            self.prof.stop()
            self.prof = None

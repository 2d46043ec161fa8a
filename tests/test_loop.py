"""zoo.engine.loop.Loop on its own: exact resume, the deadline, best weights and early stops; and the recipe
keys a task's loop does not read, which are refused."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
import torch

from zoo import recipes as R
from zoo.engine.loop import Loop
from zoo.engine.run import resolve_recipe
from zoo.engine.state import load_checkpoint
from zoo.engine.trainer import Context, Trainer


def _ctx(run_dir, resume=False, max_minutes=None, mode="max"):
    task = SimpleNamespace(main_metric="score", mode=mode)
    ctx = Context(recipe={"train": {"max_minutes": max_minutes}}, task=task, device=torch.device("cpu"),
                  run_dir=run_dir, resume=resume)
    ctx.trainer = Trainer(ctx)
    return ctx


class Counter:
    """A task's steps: each draws from the global RNG (as augmentation does) into a running sum."""

    def __init__(self, loop, fail_at=None, sleep=0.0):
        self.loop, self.total, self.fail_at, self.sleep = loop, torch.zeros(()), fail_at, sleep

    def step(self) -> int:
        if self.loop.pos["step"] == self.fail_at:
            raise KeyboardInterrupt("killed")
        time.sleep(self.sleep)
        self.total += torch.rand(())
        return 1

    def state(self) -> dict:
        return {"total": self.total.clone()}

    def record(self) -> dict:
        return {"step": self.loop.pos["step"], "total": float(self.total)}


def _run(run_dir, resume=False, fail_at=None, **kw):
    torch.manual_seed(0)
    loop = Loop(_ctx(run_dir, resume), total=10, log_every=2, ckpt_every=3, **kw)
    c = Counter(loop, fail_at)
    ckpt = loop.restore()
    if ckpt is not None:
        c.total = ckpt["total"]
    try:
        loop.run(c.step, state=c.state, record=c.record)
    except KeyboardInterrupt:
        pass
    return loop, c


def test_an_interrupted_run_resumes_exactly(tmp_path):
    ref_loop, ref = _run(tmp_path / "ref")
    _, cut = _run(tmp_path / "cut", fail_at=7)  # killed after the checkpoint at step 6
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["position"]["step"] == 6
    loop, resumed = _run(tmp_path / "cut", resume=True)
    assert loop.pos["step"] == ref_loop.pos["step"] == 10
    assert torch.equal(resumed.total, ref.total)  # the RNG draws continue where the checkpoint left them
    logged = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 6, 8, 10]


def test_the_deadline_stops_the_run_and_says_so(tmp_path):
    loop = Loop(_ctx(tmp_path, max_minutes=0.001), total=1000, log_every=10)
    c = Counter(loop, sleep=0.01)
    info = loop.run(c.step, state=c.state)
    assert info["stopped_by"] == "max_minutes" and 0 < loop.pos["step"] < 1000
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["position"]["stopped_by"] == "max_minutes"


@pytest.mark.parametrize("mode, keeps", [("max", 3.0), ("min", 1.0)])
def test_best_weights_and_patience(tmp_path, mode, keeps):
    """Scores 1, 3, 2, 2 (every 2 steps): the best weights are those of the best score, in memory and in
    best.pt; with patience 2 the run stops after two evaluations without improvement."""
    net = torch.nn.Linear(1, 1, bias=False)
    scores = iter([1.0, 3.0, 2.0, 2.0, 2.0])
    loop = Loop(_ctx(tmp_path, mode=mode), total=20, eval_every=2, patience=2)

    def step():
        with torch.no_grad():
            net.weight.fill_(float(loop.pos["step"]))
        return 1

    info = loop.run(step, state=lambda: {}, evaluate=lambda: {"score": next(scores)}, keep=net)
    best_step = {"max": 3, "min": 1}[mode]  # the evaluations see the weights of steps 1, 3, 5, ...
    assert info["stopped_by"] == "early_stop" and loop.pos["best"] == keeps
    assert loop.load_best(net) and float(net.weight.detach()) == best_step
    assert float(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]["weight"]) == best_step


def test_stop_at_a_target(tmp_path):
    loop = Loop(_ctx(tmp_path), total=100, eval_every=5, stop_at=2.0)
    scores = iter([1.0, 2.5, 9.0])
    info = loop.run(lambda: 1, state=lambda: {}, evaluate=lambda: {"score": next(scores)},
                    keep=torch.nn.Linear(1, 1))
    assert info["stopped_by"] == "stop_at" and loop.pos["step"] == 10


@pytest.mark.parametrize("override, says", [
    ("optim.lr=0.1", r"optim: task anomaly_detection does not use this section"),
    ("train.epochs=2", r"train\.epochs: not used by task anomaly_detection"),
    ("train.max_minutes=5", r"train\.max_minutes: not used by task anomaly_detection"),
    ("augment.flip=true", r"unknown key 'augment'"),
])
def test_keys_the_memory_bank_fit_does_not_read_are_refused(override, says):
    with pytest.raises(R.RecipeError, match=says):
        resolve_recipe(R.load("patchcore/brick", [override])[0])
    resolved = resolve_recipe(R.load("patchcore/brick")[0])[0]
    assert "optim" not in resolved and set(resolved["train"]) <= {"batch_size", "eval_batch_size", "seed",
                                                                  "deterministic", "device", "threads"}


def test_train_num_workers_is_gone():
    with pytest.raises(R.RecipeError, match="unknown key 'train.num_workers'"):
        resolve_recipe(R.load("cnn/digits", ["train.num_workers=2"])[0])

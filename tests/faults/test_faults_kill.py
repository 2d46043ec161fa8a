"""(d) kill -9 at random points of training and checkpointing, N times in a row, then resume: the weights
are bitwise identical to an uninterrupted run and no temporary file is left behind."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from zoo.engine import train

ROOT = Path(__file__).resolve().parents[2]
TOY = str(ROOT / "tests" / "example_family" / "recipes" / "toy.yaml")
# a checkpoint every step: most random kill points land in or near a checkpoint write
OVERRIDES = ["data.step_sleep=0.01", "train.ckpt_every=1", "train.epochs=2"]
ARGS = ["train", TOY, *OVERRIDES]
KILLS = 3


def _zoo(args, env):
    return subprocess.run([sys.executable, "-m", "zoo", *args], env=env, capture_output=True, text=True, timeout=300)


def _kill_after(args, env, delay: float, ckpt_glob: str, root: Path) -> bool:
    """Start `zoo ARGS`, SIGKILL it `delay` s after its first checkpoint (or at once if delay < 0);
    False when it finished first."""
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while delay >= 0 and time.time() < deadline and proc.poll() is None and not list(root.glob(ckpt_glob)):
        time.sleep(0.005)
    time.sleep(max(delay, 0.0))
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


def test_repeated_kills_then_resume_is_bitwise_identical_and_leaves_no_temporaries(tmp_path, run_env):
    ref_dir, _ = train(TOY, OVERRIDES, runs_root=tmp_path / "ref")  # the uninterrupted run (same code, in-process)
    rng = random.Random(20)
    runs = tmp_path / "killed"
    killed = _kill_after([*ARGS, "--runs", str(runs)], run_env, rng.uniform(0.0, 0.3), "*/checkpoints/last.pt", runs)
    (run_dir,) = list(runs.iterdir())
    kills = int(killed)
    for i in range(KILLS - 1):
        # a torn write as a kill inside torch.save leaves it (the atomic rename never happened)
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        (run_dir / "checkpoints" / f".last.pt.torn{i}.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
        delay = -1.0 if i == 0 else rng.uniform(0.0, 0.3)  # one kill during start-up, before any step
        kills += _kill_after(["train", "--resume", str(run_dir)], run_env, delay, "checkpoints/last.pt", run_dir)
    assert kills >= KILLS - 1, "the runs finished before they could be killed"
    resumed = _zoo(["train", "--resume", str(run_dir)], run_env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    w_ref = load_file(str(ref_dir / "model" / "model.safetensors"))
    w_res = load_file(str(run_dir / "model" / "model.safetensors"))
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref), "resumed weights differ from the uninterrupted run"
    assert [p for p in run_dir.rglob("*.tmp")] == [], "temporary files survived the resume"
    assert len(list(runs.iterdir())) == 1, "a resume made another run directory"

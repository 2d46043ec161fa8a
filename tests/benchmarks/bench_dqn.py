"""Throughput and time-to-solve of the dqn family on this machine (prints figures, asserts nothing).

    python tests/benchmarks/bench_dqn.py            # collection + update rates, CartPole solved for 3 seeds
    python tests/benchmarks/bench_dqn.py --quick    # a few seconds: rates only, one short CartPole run
(progress bars go to stderr: add 2>/dev/null for the figures alone)

Figures:
  - env steps/s: the DQN loop collecting CartPole-v1 / MinAtar Breakout transitions with no updates
    (vector env step + epsilon-greedy forward pass + replay insert);
  - gradient updates/s: the loop's update (replay sample, Double DQN target, Huber loss, Adam) for the
    CartPole MLP (batch 128) and the MinAtar CNN (batch 64);
  - time to solve CartPole: recipes/dqn/cartpole.yaml for seeds 0, 1, 2 (stops when a 20-episode
    greedy evaluation reaches 490), with its env steps and the final 100-episode return.
Run with `train.threads=1` semantics (the recipes set it); the machine may be shared, so say so when
quoting the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(recipe: str, overrides: list[str], root: Path) -> dict:
    from zoo.engine import train

    t = time.perf_counter()
    _, result = train(ROOT / "recipes" / "dqn" / f"{recipe}.yaml", overrides, runs_root=root)
    result["wall"] = time.perf_counter() - t
    return result


def rates(recipe: str, steps: int, root: Path) -> tuple[float, float]:
    """(env steps/s with no updates, gradient updates/s) measured inside the DQN loop."""
    common = ["algo.eval_every=0", "data.eval_episodes=1", f"algo.total_steps={steps}",
              "train.log_every=1000000", "algo.stop_return=null"]
    collect = run(recipe, [*common, f"algo.learning_starts={steps + 1}"], root)["fit"]
    both = run(recipe, [*common, "algo.learning_starts=0", "algo.train_every=4",
                        "algo.gradient_steps=1"], root)["fit"]
    return collect["env_steps"] / collect["train_seconds"], both["updates"] / both["update_seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="seconds, not minutes")
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores visible, 1 torch thread")
        sizes = {"cartpole": 2000 if a.quick else 20000, "minatar_breakout": 1000 if a.quick else 8000}
        for recipe, steps in sizes.items():
            env_rate, upd_rate = rates(recipe, steps, root)
            print(f"{recipe:>17}: {env_rate:8.0f} env steps/s (collection)   {upd_rate:7.0f} gradient updates/s")
        seeds = [0] if a.quick else [0, 1, 2]
        extra = ["algo.total_steps=5000", "data.eval_episodes=10"] if a.quick else []
        print("CartPole-v1 (recipes/dqn/cartpole.yaml):")
        for seed in seeds:
            r = run("cartpole", [f"train.seed={seed}", *extra], root)
            f, m = r["fit"], r["metrics"]
            state = "solved" if f["stopped_early"] else "not solved"
            print(f"  seed {seed}: {state} after {f['env_steps']} env steps in {f['train_seconds']:.1f} s "
                  f"(wall {r['wall']:.1f} s); {int(m['episodes'])}-episode return {m['return_mean']:.1f} "
                  f"± {m['return_std']:.1f}")


if __name__ == "__main__":
    main()

"""(e) Concurrent runs: two or more runs of one recipe started in the same second never share a directory."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from zoo.engine.run import new_run_dir

ROOT = Path(__file__).resolve().parents[2]
TOY = str(ROOT / "tests" / "example_family" / "recipes" / "toy.yaml")


def test_run_directories_are_created_exclusively_under_a_race(tmp_path):
    made, start = [], threading.Barrier(24)

    def one():
        start.wait()
        made.append(new_run_dir(tmp_path, "toy"))

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 24 and all(p.is_dir() and p.parent == tmp_path for p in made)


def test_simultaneous_runs_of_one_recipe_get_their_own_directories(tmp_path, run_env):
    runs = tmp_path / "runs"
    procs = [subprocess.Popen([sys.executable, "-m", "zoo", "train", TOY, "train.epochs=1", f"train.seed={i}",
                               "--runs", str(runs)], env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    reported = {line.split(": ", 1)[1] for out, _ in outs for line in out.splitlines() if line.startswith("run: ")}
    dirs = sorted(runs.iterdir())
    assert len(dirs) == 2 and {str(d) for d in dirs} == reported
    seeds = set()
    for d in dirs:
        seeds.add(json.loads((d / "run.json").read_text())["overrides"][-1])
        records = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert records and (d / "result.json").is_file() and (d / "model" / "model.safetensors").is_file()
        assert max(r.get("step", 0) for r in records) <= 16, "metrics of two runs were mixed in one file"
    assert seeds == {"train.seed=0", "train.seed=1"}

"""The engine on the example family: train, kill and resume exactly, DDP, publish, reproduce."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.engine import publish, reproduce, train
from zoo.engine.state import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "tests" / "example_family" / "recipes" / "toy.yaml"


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def _zoo(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "zoo", *args], env=env, capture_output=True, text=True,
                          timeout=300, **kw)


def test_train_writes_run_dir(tmp_path):
    run_dir, result = train(TOY, ["train.epochs=2"], runs_root=tmp_path)
    for name in ("recipe.yaml", "metrics.jsonl", "result.json", "run.json", "checkpoints/last.pt",
                 "checkpoints/best.pt", "model/config.json", "model/model.safetensors"):
        assert (run_dir / name).is_file(), name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("split") == "val" for r in records)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)
    assert result["metrics"]["accuracy"] > 0.5


def test_same_seed_same_weights(tmp_path):
    a, _ = train(TOY, ["train.epochs=1"], runs_root=tmp_path / "a")
    b, _ = train(TOY, ["train.epochs=1"], runs_root=tmp_path / "b")
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path, run_env):
    """Kill a training process with SIGKILL mid-epoch, resume it, compare with an uninterrupted run."""
    args = ["train", str(TOY), "data.step_sleep=0.03", "train.ckpt_every=3", "train.epochs=3", "--runs"]
    ref = _zoo([*args, str(tmp_path / "ref")], run_env)
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *args, str(tmp_path / "killed")], env=run_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "killed").glob("*/checkpoints/last.pt"))
        if found:
            time.sleep(0.15)  # let it run on past the checkpoint, so work is lost and redone
            ckpt = found[0]
            break
        time.sleep(0.02)
    assert ckpt is not None and proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    position = load_checkpoint(ckpt)["position"]
    assert 0 < position["step"] < 48
    run_dir = ckpt.parent.parent
    assert not (run_dir / "result.json").exists()
    resumed = _zoo(["train", "--resume", str(run_dir)], run_env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ref_dir = next((tmp_path / "ref").iterdir())
    w_ref, w_res = _weights(ref_dir), _weights(run_dir)
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref), "resumed weights differ from the uninterrupted run"


def test_torchrun_two_processes_matches_single(tmp_path, run_env):
    """DDP with gloo on 2 CPU processes: same global batches, gradients averaged -> same weights (1e-5)."""
    common = [str(TOY), "model.args.dropout=0.0", "train.epochs=2"]
    single = _zoo(["train", *common, "--runs", str(tmp_path / "single")], run_env)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--standalone", "-m", "zoo", "train", *common, "--runs", str(tmp_path / "ddp")],
                         env={**run_env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    runs = list((tmp_path / "ddp").iterdir())
    assert len(runs) == 1, "only rank 0 writes a run directory"
    w1, w2 = _weights(next((tmp_path / "single").iterdir())), _weights(runs[0])
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert diff < 1e-5, f"DDP weights differ from single-process by {diff}"


def test_publish_create_and_reproduce(tmp_path, monkeypatch):
    run_dir, result = train(TOY, [], runs_root=tmp_path / "runs")
    weights_root = tmp_path / "weights"
    folder = publish(run_dir, to=weights_root)
    assert folder.name == "toy_mlp.blobs"
    for name in ("config.json", "model.safetensors", "README.md", "recipe.yaml"):
        assert (folder / name).is_file()
    card = json.loads((folder / "config.json").read_text())
    assert card["metrics"]["accuracy"] == pytest.approx(result["metrics"]["accuracy"])
    assert card["training"]["command"].startswith("zoo train")
    assert "license: apache-2.0" in (folder / "README.md").read_text()
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(weights_root))
    model = zoo.create("toy_mlp", pretrained=True)
    assert model.pretrained_cfg["tag"] == "toy_mlp.blobs"
    assert model.pretrained_cfg["sha256"] == card["files"]["model.safetensors"]["sha256"]
    ok, info = reproduce("toy_mlp.blobs", runs_root=tmp_path / "again")
    assert ok, info
    assert info["measured"] == pytest.approx(info["card"])  # deterministic recipe: the exact number
    # a run trained from the folder's resolved recipe.yaml (as `zoo reproduce` trains) names the card's own recipe
    again, _ = train(folder / "recipe.yaml", ["train.seed=1"], runs_root=tmp_path / "seed1")
    other = json.loads((publish(again, "toy_mlp.blobs_seed1", to=tmp_path / "w2") / "config.json").read_text())
    assert other["training"]["recipe"] == card["training"]["recipe"]
    assert other["training"]["command"] == f"zoo train {card['training']['recipe']} train.seed=1"


def test_early_stopping_and_ema(tmp_path):
    _, result = train(TOY, ["train.epochs=20", "train.early_stop=1", "train.ema=0.9"], runs_root=tmp_path)
    assert result["fit"]["epochs"] < 20


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle", "step"])
def test_schedules_and_accumulation(tmp_path, schedule):
    _, result = train(TOY, [f"schedule.name={schedule}", "train.accumulate=2", "train.grad_clip=1.0",
                            "train.epochs=1"], runs_root=tmp_path)
    assert result["metrics"]["accuracy"] > 0.3


def test_ckpt_min_seconds_skips_checkpoints_of_a_short_run(tmp_path, monkeypatch):
    import zoo.engine.trainer as trainer

    written = []
    real = trainer.save_checkpoint

    def save(path, payload):
        written.append(path.name)
        real(path, payload)

    monkeypatch.setattr(trainer, "save_checkpoint", save)
    run_dir, _ = train(TOY, ["train.epochs=3", "train.ckpt_every=2"], runs_root=tmp_path / "a")
    assert written.count("last.pt") > 1
    written.clear()
    run_dir, _ = train(TOY, ["train.epochs=3", "train.ckpt_every=2", "train.ckpt_min_seconds=3600"],
                       runs_root=tmp_path / "b")
    assert written.count("last.pt") == 1  # only the final one
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["metrics"]  # the best weights still reach disk


def _val_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r.get("split") == "val"]


def test_the_final_weights_are_always_validated(tmp_path):
    """Validation every 0.4 epoch of a 2-epoch run, and at its end (not on the 0.4 grid); 0 = only the end."""
    run_dir, _ = train(TOY, ["train.epochs=2", "train.eval_every=0.4"], runs_root=tmp_path / "a")
    steps_per_epoch = json.loads((run_dir / "result.json").read_text())["fit"]["steps"] // 2
    every = round(0.4 * steps_per_epoch)
    total = 2 * steps_per_epoch
    assert total % every, "the toy run should end off the validation grid"
    assert _val_steps(run_dir) == list(range(every, total, every)) + [total]
    run_dir, _ = train(TOY, ["train.epochs=2", "train.eval_every=0"], runs_root=tmp_path / "b")
    assert _val_steps(run_dir) == [total]
    with pytest.raises(ValueError, match=r"train.eval_every: must be >= 0, got -1"):  # the recipe schema
        train(TOY, ["train.epochs=1", "train.eval_every=-1"], runs_root=tmp_path / "c")
    assert not (tmp_path / "c").exists(), "a recipe error must not leave a runs folder"


def test_recipe_errors_before_training(tmp_path):
    from zoo.recipes import RecipeError

    with pytest.raises(RecipeError, match=r"unknown key 'train.epohcs' \(did you mean 'train.epochs'\?\)"):
        train(TOY, ["train.epohcs=3"], runs_root=tmp_path)
    with pytest.raises(RecipeError, match="train.batch_size: expected int"):
        train(TOY, ["train.batch_size=big"], runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_checkpoint_is_atomic(tmp_path):
    from zoo.engine.state import save_checkpoint

    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": torch.ones(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    assert path.stat().st_mode & 0o044, "readable by others like any file (mkstemp's 0600 not kept)"
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(3))
    path.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_device_auto_is_cpu_here():
    from zoo.engine import pick_device

    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_env_is_clean():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_amp_bf16_path_runs_on_cpu(tmp_path):
    """The autocast path (bf16 on GPU) exercised on CPU, where bf16 autocast also exists."""
    _, result = train(TOY, ["train.amp=force", "train.epochs=1"], runs_root=tmp_path)
    assert result["precision"] == "bf16 autocast"
    assert result["metrics"]["accuracy"] > 0.3


def test_amp_resolves_to_bf16_only_where_the_hardware_has_it(monkeypatch):
    from zoo.engine import trainer as T

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert T.autocast_dtype("force", cpu) is torch.bfloat16
    monkeypatch.setattr(T, "native_bf16", lambda device: True)  # an Ampere+ GPU, an AVX-512 BF16 CPU
    assert T.autocast_dtype("auto", cpu) is None and T.autocast_dtype("auto", cuda) is torch.bfloat16
    assert T.autocast_dtype(False, cuda) is None
    assert T.autocast_dtype(True, cpu) is torch.bfloat16
    monkeypatch.setattr(T, "native_bf16", lambda device: False)  # an AVX2-only CPU: emulated bf16 is slow
    monkeypatch.setattr(T, "_warned_emulated", False)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert T.autocast_dtype(True, cpu) is None
    assert T.autocast_dtype("auto", cuda) is None  # a pre-Ampere GPU
    for bad in ("bf16", "yes", 1):
        with pytest.raises(ValueError, match="train.amp"):
            T.autocast_dtype(bad, cpu)


def _lrs(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["lr"] for r in records if r.get("split") is None]


def test_time_progress_anneals_by_the_deadline_on_a_slow_machine(tmp_path):
    """A machine too slow for the planned steps: with schedule.progress=time the cosine reaches its end
    at train.max_minutes; counted in steps alone, the run is cut at a high learning rate."""
    slow = ["data.step_sleep=0.02", "train.epochs=10", "train.log_every=1", "train.max_minutes=0.02",
            "train.eval_every=0"]  # 160 planned steps of >= 20 ms each: 3.2 s, budget 1.2 s
    cut, by_steps = train(TOY, slow, runs_root=tmp_path / "steps")
    timed, by_time = train(TOY, [*slow, "schedule.progress=time"], runs_root=tmp_path / "time")
    for result in (by_steps, by_time):
        assert 1.2 <= result["fit"]["train_seconds"] < 3.0 and result["fit"]["steps"] < 160
    assert _lrs(cut)[-1] > 0.5 * 0.01  # stopped mid-cosine
    lrs = _lrs(timed)
    assert lrs[-1] < 0.05 * 0.01  # annealed by the deadline
    assert all(b <= a + 1e-12 for a, b in zip(lrs[4:], lrs[5:]))  # and monotone after the warm-up
    with pytest.raises(ValueError, match="max_minutes"):
        train(TOY, ["schedule.progress=time"], runs_root=tmp_path / "bad")
    with pytest.raises(ValueError, match="schedule.progress"):
        train(TOY, ["schedule.progress=epochs"], runs_root=tmp_path / "bad")


def test_time_progress_changes_nothing_on_a_fast_enough_machine(tmp_path):
    a, _ = train(TOY, ["train.epochs=1"], runs_root=tmp_path / "a")
    b, _ = train(TOY, ["train.epochs=1", "schedule.progress=time", "train.max_minutes=10"], runs_root=tmp_path / "b")
    assert _lrs(a) == _lrs(b)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a).values(), _weights(b).values()))


@pytest.mark.slow
def test_torch_compile_path(tmp_path):
    _, result = train(TOY, ["train.compile=true", "train.epochs=1"], runs_root=tmp_path)
    assert result["metrics"]["accuracy"] > 0.3

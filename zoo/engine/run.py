"""From a recipe to a run directory and from a run directory to a published weights folder.

    train(recipe, overrides)  -> runs/<recipe>-<time>/{recipe.yaml, metrics.jsonl, checkpoints/, model/, result.json}
    evaluate(name_or_run)     -> metrics of a tag / folder / run on its card's evaluation data
    export(run_dir, tag)      -> weights/<tag>/ (config.json, model.safetensors, README.md, recipe.yaml)
    reproduce(tag)            -> re-run the card's recipe and compare with the card within tolerance
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from .. import recipes as R
from .. import weights as W
from ..registry import create, get_spec
from ..tasks import get_task
from ..utils import bundled_dir, write_json
from .state import pick_device, seed_everything
from .trainer import Context, Trainer, cpu_isa


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    desc = f"{threads} CPU thread{'s' if threads != 1 else ''} ({cpu}, {cpu_isa()})"
    if torch.cuda.is_available():
        desc = f"{torch.cuda.get_device_name()} + " + desc
    return desc


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def resolve_recipe(raw: dict) -> tuple[dict, object]:
    if "task" not in raw:
        raise R.RecipeError("missing required key 'task'")
    task = get_task(raw["task"])
    recipe = R.validate(raw, {"data": task.DATA_SCHEMA or R.F(dict, {}),
                              "augment": task.AUGMENT_SCHEMA or R.F(dict, {})})
    return recipe, task


def make_context(recipe: dict, task, *, run_dir: Path | None, device: str | None, resume: bool) -> Context:
    rank, world = _distributed()
    tcfg = recipe["train"]
    if tcfg["threads"]:
        torch.set_num_threads(tcfg["threads"])
    seed_everything(tcfg["seed"], tcfg["deterministic"])  # same seed on every rank: identical initial weights
    ctx = Context(recipe=recipe, task=task, device=pick_device(device or tcfg["device"]), run_dir=run_dir,
                  rank=rank, world_size=world, resume=resume)
    ctx.trainer = Trainer(ctx)
    return ctx


def build_model(recipe: dict, task, data):
    mcfg = recipe["model"]
    derived = task.model_args(data)
    adapt = {k: derived.pop(k) for k in ("num_classes", "in_chans") if k in derived}
    return create(mcfg["name"], pretrained=mcfg["pretrained"], **adapt, **{**derived, **mcfg["args"]})


def train(recipe_name, overrides=(), *, resume: str | Path | None = None, run_dir: str | Path | None = None,
          device: str | None = None, runs_root: str | Path = "runs") -> tuple[Path, dict]:
    """Run a recipe (or resume a run directory) to completion; returns (run_dir, result)."""
    if resume is not None:
        run_dir = Path(resume)
        raw = yaml.safe_load((run_dir / "recipe.yaml").read_text())
        raw = R.apply_overrides(raw, overrides)
        name = json.loads((run_dir / "run.json").read_text())["recipe"]
    else:
        raw, path = R.load(recipe_name, overrides)
        bundled = path.resolve().parent.parent == R.recipes_dir().resolve()
        name = f"{path.parent.name}-{path.stem}" if bundled else path.stem  # runs/cnn-fashion_mnist-<time>
    recipe, task = resolve_recipe(raw)
    if run_dir is None:
        run_dir = Path(runs_root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    ctx = make_context(recipe, task, run_dir=Path(run_dir), device=device, resume=resume is not None)
    if ctx.world_size > 1:  # every rank uses rank 0's run dir (timestamps may differ between processes)
        shared = [str(run_dir)]
        dist.broadcast_object_list(shared, src=0)
        ctx.run_dir = run_dir = Path(shared[0])
        ctx.trainer = Trainer(ctx)
    run_dir = Path(run_dir)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(R.dump(recipe))
        if resume is None:
            cmd = "zoo train " + " ".join([str(recipe_name), *overrides])
            write_json(run_dir / "run.json", {"recipe": str(recipe_name), "command": cmd,
                                              "overrides": list(overrides), "started": time.time()})
    data = task.build_data(recipe["data"], ctx)
    model = build_model(recipe, task, data)
    t0 = time.monotonic()
    fit_info = task.fit(model, data, ctx) or {}
    wall = time.monotonic() - t0
    result: dict = {}
    if ctx.is_main:
        model.eval()
        with torch.no_grad():
            metrics = task.evaluate(model, data.test if data.test is not None else data.val, ctx)
        metrics = {k: float(v) for k, v in metrics.items()}
        result = {"metrics": metrics, "fit": fit_info, "wall_seconds": wall, "hardware": hardware(),
                  "precision": ctx.precision, "device": str(ctx.device), "world_size": ctx.world_size,
                  "torch": torch.__version__}
        if "expect" in recipe:
            result["expect"] = check_expect(recipe["expect"], metrics)
        card = {"task": task.name, "metrics": metrics, **task.card_extras(data)}
        if "weights" in recipe:
            card.update(tag=recipe["weights"]["tag"], license=recipe["weights"]["license"],
                        datasets=recipe["weights"]["datasets"])
        else:  # a fine-tuned model is not the published tag it started from: the run names it
            arch = (getattr(model, "pretrained_cfg", None) or {}).get("arch", "model")  # set by zoo.create
            card.update(tag=f"{arch}.{run_dir.name}")
        W.save_pretrained(model, run_dir / "model", config=card, recipe=recipe)
        write_json(run_dir / "result.json", result)
    if ctx.world_size > 1:
        dist.barrier()
    return run_dir, result


def check_expect(expect: dict, metrics: dict) -> dict:
    got = metrics.get(expect["metric"])
    if got is None:
        return {**expect, "measured": None, "passed": False}
    if expect["mode"] == "max":
        passed = got >= expect["value"] - expect["tolerance"]
    else:
        passed = got <= expect["value"] + expect["tolerance"]
    return {**expect, "measured": got, "passed": bool(passed)}


def load_for_eval(name_or_run: str):
    """(model, recipe) from a run dir, a weights folder or a tag/family name."""
    p = Path(name_or_run)
    if (p / "model" / "config.json").is_file():  # a run dir
        model = create(f"local-dir:{p / 'model'}", pretrained=True)
        return model, yaml.safe_load((p / "recipe.yaml").read_text())
    if (p / "config.json").is_file():
        model = create(f"local-dir:{p}", pretrained=True)
        folder = p
    else:
        model = create(name_or_run, pretrained=True)
        folder = Path(model.pretrained_cfg["source"])
    recipe_file = folder / "recipe.yaml"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{folder} has no recipe.yaml: zoo cannot tell which data to evaluate on")
    return model, yaml.safe_load(recipe_file.read_text())


def evaluate(name_or_run: str, *, data: str | None = None, overrides=(), device: str | None = None,
             runtime: str | None = None, model=None, split: str = "test") -> dict:
    """Metrics on the card's evaluation data; with `runtime` ("onnxruntime", "torch.export", "torchscript")
    through the model exported to that runtime (on the CPU) instead of the PyTorch model.

    `model` (a callable `model(pytorch_model) -> module`) replaces the loaded model, e.g. with an int8 export
    standing in for it; `split`: "test" (the test set, else validation), "val" or "train".
    """
    loaded, raw = load_for_eval(name_or_run)
    raw = R.apply_overrides(raw, list(overrides))
    recipe, task = resolve_recipe(raw)
    if data:  # the task says how its recipe points at a user's data (the same hook `zoo finetune --data` uses)
        recipe, task = resolve_recipe(R.apply_overrides(raw, task.finetune_overrides(data)))
    on_cpu = runtime or model is not None
    ctx = make_context(recipe, task, run_dir=None, device="cpu" if on_cpu else device, resume=False)
    ds = task.build_data(recipe["data"], ctx)
    order = {"test": [ds.test, ds.val], "val": [ds.val], "train": [ds.train]}[split]
    subset = next((s for s in order if s is not None), None)
    if subset is None:
        raise ValueError(f"{name_or_run}: its recipe's data has no {split} split")
    loaded.to(ctx.device).eval()
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        if runtime:
            from ..deploy.exporter import stand_in

            loaded = stand_in(loaded, runtime, tmp, threads=torch.get_num_threads())
        elif model is not None:
            loaded = model(loaded)
        return {k: float(v) for k, v in task.evaluate(loaded, subset, ctx).items()}


def card_body(config: dict, recipe: dict, result: dict, run: dict) -> str:
    tag = config["tag"]
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in config["metrics"].items())
    expect = result.get("expect", {})
    summary = recipe.get("weights", {}).get("summary") or recipe.get("description", "")
    datasets = ", ".join(recipe.get("weights", {}).get("datasets", [])) or "see recipe"
    recipe_path = f"recipes/{config['family']}/{Path(run.get('recipe', tag)).stem}.yaml"
    return f"""# {tag}

{summary}

```python
import zoo
model = zoo.create("{tag}", pretrained=True)
```

## Results

| metric | value |
|---|---|
{rows}

Card check: `{expect.get('metric')}` must be {'>=' if expect.get('mode') == 'max' else '<='} {expect.get('value')}
(tolerance {expect.get('tolerance')}) — re-checked by `zoo reproduce {tag}` and the test suite.

## Training

- data: {datasets}
- recipe: `{recipe_path}` (resolved copy in recipe.yaml)
- command: `{run.get('command', '')}`
- hardware: {result.get('hardware')} ({result.get('device')}, {result.get('world_size', 1)} process(es)\
{', ' + result['precision'] if result.get('precision') else ''})
- training time: {result.get('fit', {}).get('train_seconds', result.get('wall_seconds', 0)):.0f} s
  (wall, including evaluation: {result.get('wall_seconds', 0):.0f} s), torch {result.get('torch')}

## Intended use and license

Reference weights for research and teaching, reproducible from the recipe on a CPU machine.
License: {config.get('license')}. Input: {json.dumps(config.get('input_spec', {}))}
"""


def export(run_dir: str | Path, tag: str | None = None, *, weights_root: str | Path | None = None) -> Path:
    """Copy a finished run's model into a hub-ready weights folder and refresh the card index."""
    run_dir = Path(run_dir)
    src = run_dir / "model"
    config, _ = W.read_folder(src)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    tag = tag or config.get("tag") or recipe.get("weights", {}).get("tag")
    if not tag or "." not in tag:
        raise ValueError(f"export needs a tag of the form arch.name, got {tag!r}")
    get_spec(config["arch"])
    config["tag"] = tag
    hub_repo = recipe.get("weights", {}).get("hub_repo") or f"{W.HUB_ORG}/{tag}"
    config["hub"] = {"repo_id": hub_repo, "revision": None}
    config["expect"] = recipe.get("expect")
    config["training"] = {"command": run.get("command"), "hardware": result.get("hardware"),
                          "precision": result.get("precision"),
                          "train_seconds": result.get("fit", {}).get("train_seconds"),
                          "wall_seconds": result.get("wall_seconds"), "recipe": run.get("recipe")}
    bundled = weights_root is None
    dest = Path(weights_root or bundled_dir("weights")) / tag
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / W.WEIGHTS_FILE, dest / W.WEIGHTS_FILE)
    write_json(dest / "config.json", config)
    (dest / "recipe.yaml").write_text(R.dump(recipe))
    (dest / "README.md").write_text(W.card_readme(config, card_body(config, recipe, result, run)))
    if bundled:
        W.write_index()
    return dest


def reproduce(tag: str, overrides=(), *, device: str | None = None, runs_root="runs") -> tuple[bool, dict]:
    """Re-run the card's recipe; (passed, {"metric", "card", "measured", "tolerance"})."""
    card = W.get_card(tag)
    folder = W.resolve(tag)
    recipe_file = folder / "recipe.yaml"
    run_dir, result = train(recipe_file, overrides, device=device, runs_root=runs_root)
    exp = card.get("expect") or {}
    metric = exp.get("metric")
    measured = result["metrics"].get(metric)
    ref = card["metrics"].get(metric)
    tol = exp.get("tolerance", 0.0)
    if measured is None:
        ok = False
    elif exp.get("mode", "max") == "max":
        ok = measured >= ref - tol
    else:
        ok = measured <= ref + tol
    return ok, {"metric": metric, "card": ref, "measured": measured, "tolerance": tol, "run_dir": str(run_dir)}

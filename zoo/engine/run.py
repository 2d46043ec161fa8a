"""From a recipe to a run directory and from a run directory to a published weights folder.

    train(recipe, overrides)  -> runs/<recipe>-<time>/{recipe.yaml, metrics.jsonl, checkpoints/, model/, result.json}
    evaluate(name_or_run)     -> metrics of a tag / folder / run on its card's evaluation data
    publish(run_dir, to=DIR)  -> DIR/<tag>/ (config.json, model.safetensors, README.md, recipe.yaml)
    (re-running a card: zoo/engine/reproducing.py)

One run, one directory: each run's directory is created exclusively (a -2, -3, ... suffix when two runs
start in the same second). A run that fails before anything resumable exists leaves no directory behind;
a later failure is recorded in run.json ("status": "failed"). Resuming removes the temporary files a
killed checkpoint write left.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from .. import cards
from .. import recipes as R
from .. import weights as W
from ..registry import create, get_spec
from ..tasks import get_task
from ..utils import atomic_path, check_name, read_json_object, remove_stale_temporaries, safe_join, write_json
from . import reproducing as RP
from .state import pick_device, seed_everything
from .trainer import Context, Trainer, cpu_isa


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> str:
    threads = torch.get_num_threads()
    desc = f"{threads} CPU thread{'s' if threads != 1 else ''} ({cpu_name()}, {cpu_isa()})"
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
    recipe = R.validate(raw, task.sections(), engine_keys=task.ENGINE_KEYS, moved=task.MOVED,
                        task=f"task {task.name}")
    return recipe, task


@contextlib.contextmanager
def _keeping_threads():
    """`train.threads` holds for one train or evaluate call; after it the caller's thread count is back (in
    `zoo reproduce --all`, a recipe with threads: null must not inherit the previous tag's threads)."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def new_run_dir(runs_root: str | Path, name: str) -> Path:
    """Create `runs_root/<name>-<time>[-k]` exclusively: two runs never share a directory."""
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", name)).lstrip("._-")[:80] or "run"  # a stem
    check_name(name, "run name")
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1, 10_000):
        run_dir = safe_join(root, f"{name}-{stamp}" + (f"-{k}" if k > 1 else ""), what="run name")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"{root}: no free run directory name for {name}-{stamp}")


def _resumable(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("*.pt")) or (run_dir / "metrics.jsonl").is_file()


def _fail(run_dir: Path, fresh: bool, error: BaseException, new_root: Path | None = None) -> None:
    """A fresh run that failed before anything resumable exists leaves nothing (not even the runs folder it
    created); otherwise run.json says so."""
    if fresh and not _resumable(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        if new_root is not None and new_root.is_dir() and not any(new_root.iterdir()):
            new_root.rmdir()
        return
    run_json = run_dir / "run.json"
    try:
        info = read_json_object(run_json) if run_json.is_file() else {}
        write_json(run_json, {**info, "status": "failed", "error": f"{type(error).__name__}: {error}"[:2000]})
    except (OSError, ValueError):
        pass


def train(recipe_name, overrides=(), *, resume: str | Path | None = None, run_dir: str | Path | None = None,
          device: str | None = None, runs_root: str | Path = "runs") -> tuple[Path, dict]:
    """Run a recipe (or resume a run directory) to completion; returns (run_dir, result)."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "recipe.yaml").is_file():
            raise FileNotFoundError(f"{run_dir}: not a run directory (no recipe.yaml)")
        raw = R.apply_overrides(R.load_yaml(run_dir / "recipe.yaml"), overrides)
    else:
        raw, path = R.load(recipe_name, overrides)
        bundled = path.resolve().parent.parent == R.recipes_dir().resolve()
        name = f"{path.parent.name}-{path.stem}" if bundled else path.stem  # runs/cnn-fashion_mnist-<time>
    recipe, task = resolve_recipe(raw)
    rank, world = _distributed()
    fresh = resume is None
    new_root = None if run_dir is not None or Path(runs_root).exists() else Path(runs_root)
    if rank == 0:
        if run_dir is None:
            run_dir = new_run_dir(runs_root, name)
        elif fresh:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
    if world > 1:  # every rank uses rank 0's run dir
        shared = [str(run_dir)]
        dist.broadcast_object_list(shared, src=0)
        run_dir = shared[0]
    run_dir = Path(run_dir)
    try:
        with _keeping_threads():
            return _train(run_dir, recipe, task, recipe_name, overrides, device=device, resume=resume)
    except BaseException as e:
        if rank == 0:
            _fail(run_dir, fresh, e, new_root)
        raise


def _train(run_dir: Path, recipe: dict, task, recipe_name, overrides, *, device, resume) -> tuple[Path, dict]:
    ctx = make_context(recipe, task, run_dir=run_dir, device=device, resume=resume is not None)
    if ctx.is_main:
        if resume is not None:
            remove_stale_temporaries(run_dir)
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
                  "threads": torch.get_num_threads(), "precision": ctx.precision, "device": str(ctx.device),
                  "world_size": ctx.world_size, "torch": torch.__version__}
        if "expect" in recipe:
            result["expect"] = check_expect(recipe["expect"], metrics)
        card = {"task": task.name, "metrics": metrics, **task.card_extras(data)}
        if "weights" in recipe:
            card.update(tag=recipe["weights"]["tag"], license=recipe["weights"]["license"],
                        datasets=recipe["weights"]["datasets"])
        else:  # a fine-tuned model is not the published tag it started from: the run names it
            cfg = getattr(model, "pretrained_cfg", None) or {}  # set by zoo.create
            data = cards.data_words(recipe)
            card.update(tag=f"{cfg.get('arch', 'model')}.{run_dir.name}", datasets=[data])
            if cfg.get("sha256"):  # started from published weights: the card names them
                card["derived_from"] = cards.derived_from(cfg, [f"fine-tuned on {data}"])
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


def load_for_eval(name_or_run: str, *, trust_unverified: bool = False):
    """(model, recipe) from a run dir, a weights folder or a tag/family name (the rule of zoo.create)."""
    model = create(str(name_or_run), pretrained=True, trust_unverified=trust_unverified)
    folder = Path(model.pretrained_cfg["source"])
    for recipe_file in (folder / "recipe.yaml", folder.parent / "recipe.yaml"):  # a folder, or a run dir's model/
        if recipe_file.is_file():
            return model, R.load_yaml(recipe_file)
    raise FileNotFoundError(f"{folder} has no recipe.yaml: zoo cannot tell which data to evaluate on")


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
    on_cpu = runtime or model is not None or getattr(loaded, "runs_on_cpu", False)  # an int8 / pruned folder
    with _keeping_threads():
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


def _recipe_origin(run: dict) -> dict:
    """A run trained from a weights folder's recipe.yaml (what `zoo reproduce` does) names the recipe that card
    was trained from, and a command that runs it, instead of the folder's resolved copy."""
    path = Path(run.get("recipe") or "")
    config = path.parent / "config.json"
    if path.name != "recipe.yaml" or not config.is_file():
        return run
    origin = (read_json_object(config).get("training") or {}).get("recipe")
    if not origin:
        return run
    return {**run, "recipe": origin, "command": " ".join(["zoo train", origin, *run.get("overrides", [])])}


def publish(run_dir: str | Path, tag: str | None = None, *, to: str | Path | None = None,
            into_package: bool = False) -> Path:
    """Write a finished run's model as a hub-ready weights folder `to/<tag>/`.

    Never into the installed package unless `into_package=True` (maintainers republishing a bundled
    tag; the card index is then refreshed). The tag follows the name grammar and the folder is created
    inside `to`; a tag zoo already publishes is refused outside the package (its hash is zoo's).
    """
    if (to is None) == (not into_package):
        raise ValueError("publish needs a destination: --to DIR (or, for maintainers, --into-package; not both)")
    run_dir = Path(run_dir)
    src = run_dir / "model"
    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no model/config.json)")
    config, _ = W.read_folder(src)
    recipe = R.load_yaml(run_dir / "recipe.yaml")
    result = read_json_object(run_dir / "result.json")
    run = _recipe_origin(read_json_object(run_dir / "run.json") if (run_dir / "run.json").is_file() else {})
    weights_cfg = recipe.get("weights") if isinstance(recipe.get("weights"), dict) else {}
    tag = W.check_tag(tag if tag is not None else config.get("tag") or weights_cfg.get("tag") or "")
    if not into_package and tag in W.packaged_index():
        raise ValueError(f"tag {tag!r} is published by zoo and always checked against zoo's own hash, so this "
                         f"run's weights would never load under it; pick another tag, e.g. --tag {tag}_mine")
    get_spec(config["arch"])
    config["tag"] = tag
    hub_repo = W.check_repo_id(weights_cfg.get("hub_repo") or f"{W.HUB_ORG}/{tag}")
    config["hub"] = {"repo_id": hub_repo, "revision": None}
    config["expect"] = recipe.get("expect")
    config["training"] = {"command": run.get("command"), "hardware": result.get("hardware"),
                          "precision": result.get("precision"),
                          "train_seconds": result.get("fit", {}).get("train_seconds"),
                          "wall_seconds": result.get("wall_seconds"), "recipe": run.get("recipe")}
    dest = safe_join(W.bundled_weights_dir() if into_package else Path(to), tag, what="tag")
    if (dest / "config.json").is_file() and (dest / "recipe.yaml").is_file():  # a republish: keep what still holds
        block, said = RP.carried_block(read_json_object(dest / "config.json"), R.load_yaml(dest / "recipe.yaml"),
                                       recipe)
        if block:
            config["reproducibility"] = block
        if said:
            print(f"{tag}: {said}", file=sys.stderr)
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest, recursive=False)
    with atomic_path(dest / W.WEIGHTS_FILE) as tmp:
        shutil.copyfile(src / W.WEIGHTS_FILE, tmp)
    write_json(dest / "config.json", config)
    with atomic_path(dest / "recipe.yaml") as tmp:
        tmp.write_text(R.dump(recipe))
    with atomic_path(dest / "README.md") as tmp:
        readme = cards.card_readme(config, cards.publish_body(config, recipe, result, run, dest))
        tmp.write_text(RP.replace_section(readme, RP.reproducibility_markdown(config))
                       if config.get("reproducibility") else readme)
    if into_package:
        W.write_index()
    return dest


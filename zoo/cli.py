"""The `zoo` command (also `python -m zoo`).

  zoo list [FILTER] [--pretrained] [--task T]     models or published tags, as a table
  zoo info NAME                                   a model's spec or a tag's card
  zoo download NAMES... [--to DIR]                fill the Hub cache for offline use
  zoo verify                                      re-check every card's sha256 (exit 1 on mismatch)
  zoo recipes | cat RECIPE | cp RECIPE DEST       browse and copy recipes
  zoo train RECIPE [key=value ...] [--resume RUN] train (also under torchrun)
  zoo eval NAME_OR_RUN [--data PATH] [--json]     metrics on the card's evaluation data
  zoo finetune NAME --data PATH [key=value ...]   the family's fine-tune recipe on your data
  zoo reproduce TAG                               re-run a card's recipe and compare (exit 1 outside tolerance)
  zoo predict NAME INPUT --out DIR                run the model and draw its output
  zoo export NAME --format onnx|pt2|torchscript --out DIR   export, checked against PyTorch, with a card
  zoo push FOLDER REPO_ID                         upload a weights folder to the Hugging Face Hub
  zoo tour                                        every family's default model on a sample, a table and a gallery
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(a) -> int:
    from . import registry, weights

    if a.pretrained:
        rows = []
        for tag in registry.list_models(a.filter or "", task=a.task, pretrained=True):
            card = weights.get_card(tag)
            s = weights.card_summary(card)
            val = f"{s['value']:.4f}" if isinstance(s["value"], float) else s["value"]
            rows.append([tag, card.get("task", ""), s["metric"], val, card.get("license", "")])
        print(_table(rows, ["tag", "task", "metric", "value", "license"]))
    else:
        rows = []
        for name in registry.list_models(a.filter or "", task=a.task):
            spec = registry.get_spec(name)
            rows.append([name, spec.family, spec.task, spec.default_tag or "-", spec.description[:60]])
        print(_table(rows, ["model", "family", "task", "default weights", "description"]))
    return 0


def cmd_info(a) -> int:
    from .registry import model_info

    print(json.dumps(model_info(a.name), indent=2, default=str))
    return 0


def cmd_download(a) -> int:
    from .weights import download

    for name, folder in download(a.names, local_dir=a.to).items():
        print(f"{name}: {folder}")
    return 0


def cmd_verify(a) -> int:
    from .weights import verify_all

    rows = verify_all()
    print(_table([list(r) for r in rows], ["tag", "status", "detail"]))
    return 1 if any(r[1] == "MISMATCH" for r in rows) else 0


def cmd_recipes(a) -> int:
    from .recipes import list_recipes

    print("\n".join(list_recipes()))
    return 0


def cmd_cat(a) -> int:
    from .engine.run import resolve_recipe
    from .recipes import dump, load

    raw, _ = load(a.recipe, a.overrides)
    print(dump(resolve_recipe(raw)[0]), end="")
    return 0


def cmd_cp(a) -> int:
    from .recipes import find

    src = find(a.recipe)
    dest = Path(a.dest)
    if dest.is_dir():
        dest = dest / src.name
    shutil.copyfile(src, dest)
    print(dest)
    return 0


def _report(run_dir, result) -> int:
    if not result:  # not rank 0
        return 0
    print(f"run: {run_dir}")
    print(json.dumps(result["metrics"], indent=2))
    exp = result.get("expect")
    if exp:
        verdict = "meets" if exp["passed"] else "MISSES"
        print(f"{verdict} the recipe's expectation: {exp['metric']} = {exp['measured']} "
              f"(expected {'>=' if exp['mode'] == 'max' else '<='} {exp['value']} ± {exp['tolerance']})")
    return 0


def cmd_train(a) -> int:
    from .engine import train

    if not a.recipe and not a.resume:
        raise ValueError("give a RECIPE to train, or --resume RUN_DIR")
    return _report(*train(a.recipe, a.overrides, resume=a.resume, device=a.device, runs_root=a.runs))


def cmd_finetune(a) -> int:
    from .engine import train
    from .registry import get_spec
    from .tasks import get_task

    spec = get_spec(a.name.split(".")[0])
    task = get_task(spec.task)
    overrides = task.finetune_overrides(a.data) + list(a.overrides)
    return _report(*train(f"{spec.family}/finetune", overrides, device=a.device, runs_root=a.runs))


def cmd_eval(a) -> int:
    from .engine import evaluate

    overrides = list(a.overrides) + ([f"data.eval_episodes={a.episodes}"] if a.episodes else [])
    metrics = evaluate(a.name, data=a.data, overrides=overrides, device=a.device, runtime=a.runtime)
    if a.json:
        print(json.dumps(metrics))
        return 0
    print(_table([[k, f"{v:.4f}"] for k, v in metrics.items()], ["metric", "value"]))
    for key in metrics:  # return_mean + return_std -> "return: 500.00 ± 0.00"
        if key.endswith("_mean") and f"{key[:-5]}_std" in metrics:
            print(f"{key[:-5]}: {metrics[key]:.2f} ± {metrics[key[:-5] + '_std']:.2f}")
    return 0


def cmd_reproduce(a) -> int:
    from .engine import reproduce

    ok, info = reproduce(a.tag, a.overrides, device=a.device, runs_root=a.runs)
    print(f"{a.tag}: {info['metric']} measured {info['measured']} vs card {info['card']} "
          f"(tolerance {info['tolerance']}) -> {'OK' if ok else 'OUTSIDE TOLERANCE'}")
    return 0 if ok else 1


def cmd_predict(a) -> int:
    from .engine.run import load_for_eval
    from .tasks import get_task

    model, _ = load_for_eval(a.name)
    task = get_task(model.pretrained_cfg["task"])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in task.predict(model, a.input, out):
        print(p)
    return 0


def cmd_push(a) -> int:
    from .weights import push_to_hub

    print(push_to_hub(a.folder, a.repo_id, revision=a.revision, private=a.private))
    return 0


def cmd_tour(a) -> int:
    from .tour import tour

    return tour(out=Path(a.out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description=__doc__.split("\n\n", 1)[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("list", cmd_list, "list registered models, or published tags with --pretrained")
    sp.add_argument("filter", nargs="?", help="fnmatch pattern, e.g. 'nerf*'")
    sp.add_argument("--pretrained", action="store_true", help="list published weights (tags)")
    sp.add_argument("--task", help="only this task")
    add("info", cmd_info, "show a model's spec or a tag's card").add_argument("name")
    sp = add("download", cmd_download, "download weights into the Hugging Face cache (for offline use)")
    sp.add_argument("names", nargs="+", help="tags, family names or hf-hub:org/repo[@rev]")
    sp.add_argument("--to", help="also copy each folder into this directory")
    add("verify", cmd_verify, "re-check the sha256 of every local weights folder against its card")
    add("recipes", cmd_recipes, "list the bundled recipes")
    sp = add("cat", cmd_cat, "print a recipe with defaults filled in and overrides applied")
    sp.add_argument("recipe")
    sp.add_argument("overrides", nargs="*", help="key.path=value or ~key.path")
    sp = add("cp", cmd_cp, "copy a recipe to edit it")
    sp.add_argument("recipe")
    sp.add_argument("dest")

    def run_opts(sp):
        sp.add_argument("overrides", nargs="*", help="key.path=value (YAML-typed) or ~key.path to delete")
        sp.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: the recipe's)")
        sp.add_argument("--runs", default="runs", help="where run directories go (default: runs/)")

    sp = add("train", cmd_train, "train from a recipe")
    sp.add_argument("recipe", nargs="?", help="a path or a bundled name such as cnn/fashion_mnist")
    sp.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    run_opts(sp)
    sp = add("finetune", cmd_finetune, "fine-tune a family's pretrained model on your data")
    sp.add_argument("name", help="family or tag, e.g. cnn")
    sp.add_argument("--data", required=True, help="your data, in the format the family documents")
    run_opts(sp)
    sp = add("eval", cmd_eval, "evaluate a tag, weights folder or run dir on its card's data")
    sp.add_argument("name")
    sp.add_argument("--data", help="evaluate on this data instead")
    sp.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    sp.add_argument("--episodes", type=int, help="evaluation episodes (reinforcement learning families)")
    sp.add_argument("--runtime", choices=["onnxruntime", "torch.export", "torchscript"],  # zoo.deploy.RUNTIMES
                    help="measure through the model exported to this runtime (CPU) instead of PyTorch")
    sp.add_argument("overrides", nargs="*")
    sp.add_argument("--device")
    sp = add("reproduce", cmd_reproduce, "re-run a card's recipe; exit 1 when the metric is outside tolerance")
    sp.add_argument("tag")
    run_opts(sp)
    sp = add("predict", cmd_predict, "run a model on an input and draw the result")
    sp.add_argument("name", help="tag, weights folder or run dir")
    sp.add_argument("input", nargs="?", help="input file or folder (default: a generated sample)")
    sp.add_argument("--out", required=True, help="output directory")
    from .deploy.cli import add_commands

    add_commands(add)  # export, quantize, prune, profile
    sp = add("push", cmd_push, "upload a weights folder to the Hugging Face Hub")
    sp.add_argument("folder")
    sp.add_argument("repo_id")
    sp.add_argument("--revision")
    sp.add_argument("--private", action="store_true")
    sp = add("tour", cmd_tour, "load every family's default weights offline, run them, print a table, draw a gallery")
    sp.add_argument("--out", default="out/tour", help="where the gallery PNG goes")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may follow options (`zoo train R --device cpu train.epochs=3`); argparse only takes
    # positionals before the first option, so the rest are collected here.
    stray = [e for e in extra if e.startswith("-") and not e.startswith("~")]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides or []) + extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.fn(args) or 0
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as e:
        if args.verbose:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"zoo {args.cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

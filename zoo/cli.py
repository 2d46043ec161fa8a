"""The `zoo` command (also `python -m zoo`).

  zoo list [FILTER] [--pretrained] [--task T]     models or published tags, as a table
  zoo info NAME [--json]                          a readable summary of a model's spec or a tag's card
  zoo download NAMES... [--to DIR] [--force]      fetch weights for offline use (--force repairs the cache)
  zoo verify [NAMES_OR_FOLDERS...]                re-check sha256s (exit 1 on anything unverifiable)
  zoo recipes | cat RECIPE | cp RECIPE DEST       browse and copy recipes
  zoo train RECIPE [key=value ...] [--resume RUN]  train (also under torchrun)
  zoo eval NAME_OR_RUN [--data PATH] [--json]     metrics on the card's evaluation data
  zoo finetune NAME --data PATH [key=value ...]   the family's fine-tune recipe on your data
  zoo reproduce TAG|--all [--fast] [--seeds N]    re-run cards' recipes, compare with their seed studies
  zoo predict NAME [INPUT] --out DIR              run the model and draw its output (no INPUT: shipped samples)
  zoo publish RUN_DIR --to DIR [--tag TAG]        write DIR/<TAG>/, a hub-ready weights folder, from a run
  zoo export NAME --format onnx|pt2|torchscript --out DIR   export, checked against PyTorch, with a card
  zoo push FOLDER REPO_ID                         upload a weights folder to the Hugging Face Hub
  zoo tour                                        every family's default model on a sample, a table and a gallery

User and environment errors (bad files, keys, names, numbers, network, Hub, permissions) exit 2 with one
line naming the file, key or URL; -v shows the traceback. Internal bugs show a traceback and exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from .utils import text_table


def cmd_list(a) -> int:
    from . import registry, weights

    if a.pretrained:
        rows = []
        for tag in registry.list_models(a.filter or "", task=a.task, pretrained=True):
            card = weights.get_card(tag)
            s = weights.card_summary(card)
            val = f"{s['value']:.4f}" if isinstance(s["value"], float) else s["value"]
            rows.append([tag, card.get("task", ""), s["metric"], val, card.get("license", "")])
        print(text_table(rows, ["tag", "task", "metric", "value", "license"]))
    else:
        rows = []
        for name in registry.list_models(a.filter or "", task=a.task):
            spec = registry.get_spec(name)
            rows.append([name, spec.family, spec.task, spec.default_tag or "-", spec.description[:60]])
        print(text_table(rows, ["model", "family", "task", "default weights", "description"]))
    return 0


def _brief(value, width: int = 100) -> str:
    """One line for a card field: dicts as k=v, lists joined, floats to 4 significant digits, cut at `width`."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={f'[{_brief(v)}]' if isinstance(v, (list, tuple)) else _brief(v)}"
                         for k, v in value.items() if v not in (None, {}, []))
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_brief(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _card_lines(card: dict) -> list[tuple[str, str]]:
    """(field, text) rows of a weight card, headline first."""
    from .weights import card_summary

    s, expect, train = card_summary(card), card.get("expect") or {}, card.get("training") or {}
    rows = []
    if s["metric"]:
        head = f"{s['metric']} = {_brief(s['value'])}"
        if expect.get("value") is not None:
            sign = ">=" if expect.get("mode", "max") == "max" else "<="
            tol = f" ± {_brief(expect['tolerance'])}" if expect.get("tolerance") else ""
            head += f"  (recipe target {sign} {_brief(expect['value'])}{tol})"
        rows.append(("metric", head))
    others = {k: v for k, v in (card.get("metrics") or {}).items() if k != s["metric"]}
    rows += [("metrics", _brief(others))] if others else []
    labels = card.get("labels")
    rows += [("labels", f"{len(labels)}: {_brief(labels)}")] if labels else []
    rows += [(key, _brief(card[key])) for key in ("input_spec", "datasets", "license") if card.get(key)]
    if train:
        took = f"{train['train_seconds']:.0f} s training" if isinstance(train.get("train_seconds"), float) else ""
        rows.append(("training", "; ".join(x for x in (train.get("command"), took, train.get("hardware")) if x)))
    for name, f in (card.get("files") or {}).items():
        rows.append(("weights", f"{name} {f.get('size', 0):,} bytes, sha256 {str(f.get('sha256'))[:16]}..."))
    repo = (card.get("hub") or {}).get("repo_id")
    rows += [("hub", repo)] if repo else []
    if card.get("tag"):
        rows.append(("use", f'zoo.create("{card["tag"]}", pretrained=True)   zoo predict {card["tag"]} --out out/'))
    return rows


def cmd_info(a) -> int:
    """A readable summary of a tag's card or an architecture's spec; --json prints the raw card."""
    from .registry import model_info

    info = model_info(a.name)
    if a.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    if "default_card" in info or "pretrained" in info:  # an architecture
        print(f"{info['arch']}  ({info['family']} family, task {info['task']})")
        rows = [("about", info["description"]), ("weights", _brief(info["pretrained"]) or "none published"),
                ("default", info["default_tag"] or "-"), ("input_spec", _brief(info["input_spec"] or {}))]
        rows += [(f"  {k}", v) for k, v in _card_lines(info.get("default_card") or {})]
    else:
        print(f"{info.get('tag') or a.name}  ({info.get('family')} family, task {info.get('task')})")
        rows = _card_lines(info)
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows))
    print(f"the whole card: zoo info {a.name} --json")
    return 0


def cmd_download(a) -> int:
    from .registry import download

    for name, folder in download(a.names, local_dir=a.to, force=a.force, trust_unverified=a.trust_unverified).items():
        print(f"{name}: {folder}")
    return 0


def cmd_verify(a) -> int:
    from .weights import VERIFY_FAILURES, verify_all

    rows = verify_all(a.names)
    print(text_table([list(r) for r in rows], ["tag", "status", "detail"]))
    return 1 if any(r[1] in VERIFY_FAILURES for r in rows) else 0


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
    if dest.exists() and dest.resolve() == src.resolve():
        raise ValueError(f"{dest}: is the recipe itself; copy it somewhere else")
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
    print(text_table([[k, f"{v:.4f}"] for k, v in metrics.items()], ["metric", "value"]))
    for key in metrics:  # return_mean + return_std -> "return: 500.00 ± 0.00"
        if key.endswith("_mean") and f"{key[:-5]}_std" in metrics:
            print(f"{key[:-5]}: {metrics[key]:.2f} ± {metrics[key[:-5] + '_std']:.2f}")
    return 0


def cmd_reproduce(a) -> int:
    from .engine import reproducing as RP

    if a.readme:
        if a.tag or a.all:
            raise ValueError("--readme only regenerates README.md's table from the cards: no TAG or --all")
        print("README.md " + ("updated from the cards" if RP.update_readme() else "already matches the cards"))
        return 0
    if a.fast and not a.all:
        raise ValueError("--fast selects among --all: zoo reproduce --all --fast")
    if a.all == bool(a.tag):
        raise ValueError("name one TAG or --all")
    if a.isa:
        if not RP.isa_capped(a.isa):  # the caps must be in the environment before torch picks its kernels
            return RP.run_capped(a.isa, a.argv)
        RP.check_capped(a.isa)
    tags = [a.tag] if a.tag else (RP.fast_tags(a.max_minutes) if a.fast else RP.all_tags())
    rows, failed = [], 0
    for tag in tags:
        if a.record_study:
            card = RP.W.get_card(tag)
            runs = RP.run_seeds(tag, RP.study_seeds(RP.published_seed(card), a.seeds), a.overrides,
                                device=a.device, runs_root=a.runs)
            if a.record:  # the published seed's run is a reproduction: judged by the card as it was before the study
                ok, said = RP.record_published_run(card, runs, note=a.note)
                failed += not ok
                print(said)
            block = RP.record_study(tag, runs, note=a.note)
            for prec, st in block["seed_study"].items():
                print(f"{tag} [{prec}]: {st['metric']} mean {st['mean']:.4f} std {st['std']:.4f} n {st['n']} "
                      f"(recorded in the card)")
            continue
        ok, v = RP.reproduce(tag, a.overrides, seeds=a.seeds, device=a.device, runs_root=a.runs)
        failed += not ok
        if a.record and v["measured"] is not None:  # a pass, or where the card's number did not hold
            RP.record_result(v, note=a.note)
        rows.append([tag, v["metric"], v["precision"], f"{v['mean']:.4f}", f"{v['measured']:.4f}"
                     if v["measured"] is not None else "-", f"±{v['bound']:.4f}" if v["bound"] is not None else "-",
                     v["source"], v["machine"]["threads"], f"{v['seconds']:.0f} s",
                     "OK" if ok else "OUTSIDE TOLERANCE"])
    if rows:
        print(text_table(rows, ["tag", "metric", "precision", "reference", "measured", "within", "from", "threads",
                                "time", "verdict"]))
        from .engine.run import cpu_name

        m = RP.machine()
        print(f"machine: {cpu_name()}; ISA {m['isa']}; torch {m['torch']}")
    return 1 if failed else 0


def cmd_predict(a) -> int:
    from .engine.run import load_for_eval
    from .tasks import get_task

    model, _ = load_for_eval(a.name)
    task = get_task(model.pretrained_cfg["task"])
    if a.input is not None and not Path(a.input).exists():
        raise FileNotFoundError(f"{a.input}: no such input file or folder")
    out = Path(a.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        for p in task.predict(model, a.input, out):
            print(p)
    except BaseException:
        if created and not any(out.iterdir()):  # a failed predict leaves no empty folder behind
            out.rmdir()
        raise
    return 0


def cmd_publish(a) -> int:
    from .engine import publish

    print(publish(a.run_dir, a.tag, to=a.to, into_package=a.into_package))
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
    p.add_argument("-v", "--verbose", action="store_true", help="log more; show the traceback of an error")
    p.add_argument("--trust-unverified", action="store_true",
                   help="load weights whose card has no sha256 (with a warning) instead of refusing them")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("list", cmd_list, "list registered models, or published tags with --pretrained")
    sp.add_argument("filter", nargs="?", help="fnmatch pattern, e.g. 'nerf*'")
    sp.add_argument("--pretrained", action="store_true", help="list published weights (tags)")
    sp.add_argument("--task", help="only this task")
    sp = add("info", cmd_info, "a readable summary of a model's spec or a tag's card")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true", help="print the whole card as JSON")
    sp = add("download", cmd_download, "download weights into the Hugging Face cache (for offline use)")
    sp.add_argument("names", nargs="+", help="tags, family names or hf-hub:org/repo[@rev]")
    sp.add_argument("--to", help="also copy each into DIR/<tag>/ (then ZOO_WEIGHTS_DIR=DIR loads from there)")
    sp.add_argument("--force", action="store_true", help="download again even if cached (repairs a corrupt cache)")
    sp = add("verify", cmd_verify, "re-check the sha256 of local weights against their trusted hash")
    sp.add_argument("names", nargs="*", help="tags or weights folders (default: everything on this machine)")
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
    sp = add("reproduce", cmd_reproduce, "re-run a card's recipe; exit 1 when the metric is outside k std of the "
             "card's seed study (or the recipe's tolerance where the card has none)")
    sp.add_argument("tag", nargs="?", help="a published tag (or --all)")
    sp.add_argument("--seeds", type=int, default=1, help="run N seeds and compare their mean (default 1)")
    sp.add_argument("--all", action="store_true", help="every published tag (with --fast: the quick ones)")
    sp.add_argument("--fast", action="store_true", help="with --all: only tags whose card measured <= --max-minutes")
    sp.add_argument("--max-minutes", type=float, default=2.0, help="--fast's limit per tag (default 2)")
    sp.add_argument("--record", action="store_true",
                    help="put the result on the card: a pass in its 'reproduced on' list, a miss in 'not "
                    "reproduced on' (with --record-study: the published seed's run, judged by the card as it was "
                    "before the study)")
    sp.add_argument("--record-study", action="store_true",
                    help="put the --seeds runs on the card as its seed study (mean, std, n, machine, date)")
    sp.add_argument("--note", default="", help="with --record/--record-study: a word on the machine (e.g. shared)")
    sp.add_argument("--isa", choices=["avx2"], help="re-run under PyTorch/oneDNN kernels capped at this ISA: an "
                    "AVX2-only CPU emulated on an AVX-512 one (fp32, no bf16 autocast); the card records the cap")
    sp.add_argument("--readme", action="store_true",
                    help="regenerate the reproduce table of README.md (a source checkout) from the cards; no run")
    run_opts(sp)
    sp = add("predict", cmd_predict, "run a model on an input and draw the result")
    sp.add_argument("name", help="tag, weights folder or run dir")
    sp.add_argument("input", nargs="?", help="input file or folder (default: a generated sample)")
    sp.add_argument("--out", required=True, help="output directory")
    sp = add("publish", cmd_publish, "write a hub-ready weights folder DIR/<tag>/ from a finished run")
    sp.add_argument("run_dir")
    sp.add_argument("--tag", help="arch.name (default: the run's tag)")
    dest = sp.add_mutually_exclusive_group(required=True)
    dest.add_argument("--to", metavar="DIR", help="the folder that receives <tag>/")
    dest.add_argument("--into-package", action="store_true",
                      help="maintainers: write into the package's weights/ and refresh the card index")
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
    if not args.verbose:  # the Hub client's retry chatter: the one error line says what failed
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")  # read when huggingface_hub configures its logger
        if "huggingface_hub" in sys.modules:
            logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    from . import weights

    weights.TRUST_UNVERIFIED = args.trust_unverified
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a command that re-runs itself (reproduce --isa)
    try:
        code = args.fn(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:  # `zoo info x | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except user_errors() as e:
        if args.verbose:
            raise
        print(f"zoo {args.cmd}: error: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        weights.TRUST_UNVERIFIED = False


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that come from the user's input or environment (exit 2, one line) rather than from a bug.

    zoo's own errors (recipe, weights, names, model inputs) are ValueError/KeyError/WeightsError, a missing
    domain library is MissingExtra (it names the `pip install "zoo[...]"`); files and
    permissions are OSError; the Hub's errors are OSError (HfHubHTTPError) or httpx's HTTPError (a dropped
    connection). A RuntimeError or TypeError from torch is not listed: it is a bug, and it shows a traceback.
    """
    from .deps import MissingExtra
    from .engine.state import CheckpointError
    from .weights import WeightsError

    errors: list[type[BaseException]] = [KeyError, ValueError, OSError, WeightsError, CheckpointError, MissingExtra]
    try:
        import yaml

        errors.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover - a core dependency
        pass
    for module in ("httpx2", "httpx"):  # huggingface_hub's transport (its name depends on the version)
        try:
            errors.append(__import__(module).HTTPError)
        except ImportError:
            pass
    return tuple(errors)


def one_line(e: BaseException) -> str:
    """The error's message on one line (KeyError's repr quotes stripped), with its type when it is bare."""
    msg = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
    msg = " ".join(str(msg).split())
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in msg:
        msg = f"{e.filename}: {msg}"
    return msg or type(e).__name__


if __name__ == "__main__":
    raise SystemExit(main())

"""`zoo reproduce`: re-run a card's recipe and judge the result against the card's seed variance.

A card's `reproducibility` block (config.json) holds what judging needs:

    seed_study      per precision ("fp32", "bf16 autocast"): the recipe over n seeds (train.seed =
                    published seed + SEED_STRIDE * i), their values, mean, std, the machine, the date;
                    or {"status": "not run", "reason": ...} where the recipe is too expensive to repeat
    minutes         measured minutes of one run of the recipe (`--all --fast` runs those <= FAST_MINUTES)
    reproduced_on   every machine where `zoo reproduce` passed: value, seconds, precision, date

A run passes when its value lies within k * std of the study's mean for the precision it ran in
(k = K_STD by default), with a floor of FLOOR (relative to the mean's magnitude, at least ABS_FLOOR)
so a deterministic recipe (std 0) passes on tiny numerical differences. A metric can depend on the
precision (bf16 autocast on AVX-512 BF16 vs fp32 on AVX2): a run is compared with the study of its own
precision; a card without one for it falls back to the recipe's `expect` tolerance and says so.
`--seeds N` runs N seeds and compares the distributions (the mean of N runs against the card's mean,
within k * sqrt(std_card^2/n_card + std_run^2/N) plus the floor).

Cross-machine evidence without a second machine: `zoo reproduce --isa avx2` re-executes itself with
PyTorch's and oneDNN's kernels capped at AVX2 (ISA_CAPS), so an AVX-512 machine runs the code paths of an
AVX2-only CPU. The run records its ISA as "AVX2 (capped on an AVX-512 BF16 CPU)" and trains without bf16
autocast (no native bf16 under the cap), so it is judged against the card's fp32 figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from .. import recipes as R
from .. import weights as W

K_STD = 3.0
FLOOR = 0.002       # relative: 0.2% of the mean's magnitude ...
ABS_FLOOR = 1e-3    # ... and never below this
SEED_STRIDE = 1000  # seeds far apart: a recipe that trains seeds s, s+1, ... (gcn) gets disjoint sets
FAST_MINUTES = 2.0
RESULT_LISTS = ("reproduced_on", "not_reproduced_on")  # a card's recorded reproductions: passes, misses
# `--isa NAME`: the environment that caps PyTorch's (ATen) and oneDNN's kernels at that ISA, and the
# capability torch.backends.cpu.get_cpu_capability() must then report
ISA_CAPS = {"avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2")}


def machine(run: dict | None = None) -> dict:
    """The card's `machine` entry (CPU/GPU, vector ISA, threads, torch): of `run` (a record of run_seeds: its
    hardware and threads as it trained), else of this process now."""
    from .run import hardware
    from .trainer import cpu_isa

    run = run or {}
    return {"hardware": run.get("hardware") or hardware(), "isa": cpu_isa(),
            "threads": run.get("threads") or torch.get_num_threads(), "torch": torch.__version__}


def isa_env(isa: str) -> dict:
    """The environment variables that cap the kernels at `isa` (a key of ISA_CAPS)."""
    if isa not in ISA_CAPS:
        raise ValueError(f"--isa {isa}: expected one of {', '.join(ISA_CAPS)}")
    return ISA_CAPS[isa][0]


def isa_capped(isa: str) -> bool:
    """Whether this process already runs under `isa`'s caps (set before torch chose its kernels)."""
    return all(os.environ.get(k) == v for k, v in isa_env(isa).items())


def run_capped(isa: str, argv: list[str]) -> int:
    """Run `zoo ARGV` again in a child process under `isa`'s caps (they must be in the environment
    before torch starts); its exit status."""
    import subprocess

    return subprocess.call([sys.executable, "-m", "zoo", *argv], env={**os.environ, **isa_env(isa)})


def check_capped(isa: str) -> None:
    """Raise unless PyTorch really dispatches to `isa`'s kernels (the caps were set too late, or ignored)."""
    got = torch.backends.cpu.get_cpu_capability()
    if got != ISA_CAPS[isa][1]:
        raise ValueError(f"--isa {isa}: PyTorch dispatches to {got} kernels, not {ISA_CAPS[isa][1]}, under "
                         f"{isa_env(isa)} (a CPU without {ISA_CAPS[isa][1]}, or caps set after torch started)")


def run_seeds(tag: str, seeds: list[int], overrides=(), *, device: str | None = None, runs_root="runs") -> list[dict]:
    """Train the card's recipe once per seed; one record per run (seed, value, seconds, precision)."""
    from .run import train

    card = W.get_card(tag)
    metric = (card.get("expect") or {}).get("metric")
    if not metric:
        raise ValueError(f"{tag}: the card has no expect.metric, so there is nothing to reproduce")
    recipe_file = W.resolve(tag) / "recipe.yaml"
    # a card trained by the clock names the same work in steps (recipe_overrides): every machine does that work
    overrides = [*(card.get("reproducibility") or {}).get("recipe_overrides", []), *overrides]
    out = []
    for s in seeds:
        t0 = time.monotonic()
        run_dir, result = train(recipe_file, [*overrides, f"train.seed={s}"], device=device, runs_root=runs_root)
        out.append({"seed": s, "value": result["metrics"].get(metric), "seconds": round(time.monotonic() - t0, 1),
                    "precision": result.get("precision") or "fp32", "hardware": result.get("hardware"),
                    "threads": result.get("threads"),
                    "stopped_by": result.get("fit", {}).get("stopped_by"), "run_dir": str(run_dir)})
    return out


def planned_precision(tag: str, overrides=(), device: str | None = None) -> str:
    """The precision the card's recipe will train in here ("bf16 autocast" or "fp32"), before training."""
    from .state import pick_device
    from .trainer import autocast_dtype

    card = W.get_card(tag)
    raw = R.load_yaml(W.resolve(tag) / "recipe.yaml")
    raw = R.apply_overrides(raw, [*(card.get("reproducibility") or {}).get("recipe_overrides", []), *overrides])
    tcfg = raw.get("train") or {}
    dev = pick_device(device or tcfg.get("device", "auto"))
    return "bf16 autocast" if autocast_dtype(tcfg.get("amp", "auto"), dev) is not None else "fp32"


def published_seed(card: dict, folder: Path | None = None) -> int:
    folder = folder or W.resolve(card["tag"])
    return int(R.load_yaml(folder / "recipe.yaml").get("train", {}).get("seed", 0))


def study_seeds(first: int, n: int) -> list[int]:
    return [first + SEED_STRIDE * i for i in range(n)]


def summarise(runs: list[dict]) -> dict:
    vals = [r["value"] for r in runs if r["value"] is not None]
    if not vals:
        raise ValueError("no run produced the card's metric")
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def floor_for(mean: float) -> float:
    return max(ABS_FLOOR, FLOOR * abs(mean))


def card_precision(card: dict) -> str:
    """The precision the card's figures were measured in: its training record, or the block's
    `card_precision` where an older card did not record it."""
    block = card.get("reproducibility") or {}
    return (card.get("training") or {}).get("precision") or block.get("card_precision") or "fp32"


def reference(card: dict, precision: str) -> dict:
    """What a run in `precision` is judged against: the seed study of that precision, else the recipe's
    `expect` tolerance around the card's value (flagged, and only when the card was trained in that
    precision; a number measured in another precision is no reference)."""
    exp = card.get("expect") or {}
    metric = exp.get("metric")
    block = card.get("reproducibility") or {}
    study = (block.get("seed_study") or {}).get(precision)
    mode = exp.get("mode", "max")
    if study and study.get("n"):
        return {"metric": metric, "source": f"seed study ({study['n']} seeds, {precision})", "mean": study["mean"],
                "std": study["std"], "n": study["n"], "k": block.get("k", K_STD),
                "floor": floor_for(study["mean"]), "mode": "two-sided"}
    trained = card_precision(card)
    if trained != precision:
        took = f"; one run took {block['minutes']:.0f} min on the card's machine" if block.get("minutes") else ""
        raise ValueError(f"{card['tag']}: the card's {metric} was measured in {trained}; this run is {precision} "
                         f"and the card has no {precision} seed study to compare with (`zoo reproduce {card['tag']} "
                         f"--seeds 3 --record-study` here makes one{took})")
    return {"metric": metric, "source": "recipe tolerance (no seed study on the card)", "mean": card["metrics"][metric],
            "std": 0.0, "n": 1, "k": 0.0, "floor": float(exp.get("tolerance", 0.0)), "mode": mode}


def judge(ref: dict, values: list[float]) -> dict:
    """Compare one run (or the mean of several) with the reference; {"passed", "bound", "measured", ...}."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {**ref, "measured": None, "passed": False, "bound": None}
    got = statistics.fmean(vals)
    spread = ref["std"]
    if len(vals) > 1:  # the spread of a difference of two means
        spread = math.sqrt(ref["std"] ** 2 / ref["n"] + statistics.stdev(vals) ** 2 / len(vals))
    bound = ref["k"] * spread + ref["floor"]
    if ref["mode"] == "max":
        passed = got >= ref["mean"] - bound
    elif ref["mode"] == "min":
        passed = got <= ref["mean"] + bound
    else:
        passed = abs(got - ref["mean"]) <= bound
    return {**ref, "measured": got, "values": vals, "bound": bound, "passed": bool(passed)}


def reproduce(tag: str, overrides=(), *, seeds: int = 1, device: str | None = None,
              runs_root="runs") -> tuple[bool, dict]:
    """Re-run the card's recipe over `seeds` seeds (the published one first) and judge the result."""
    card = W.get_card(tag)
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    reference(card, planned_precision(tag, overrides, device))  # no reference for this precision: say so first
    runs = run_seeds(tag, study_seeds(published_seed(card), seeds), overrides, device=device, runs_root=runs_root)
    verdict = verdict_of(card, runs)
    return verdict["passed"], verdict


def verdict_of(card: dict, runs: list[dict]) -> dict:
    """`runs` (from run_seeds) judged against `card`'s reference for their precision, as `zoo reproduce` reports."""
    precision = runs[0]["precision"]
    verdict = judge(reference(card, precision), [r["value"] for r in runs])
    verdict.update(tag=card["tag"], card=card["metrics"].get(verdict["metric"]), precision=precision, runs=runs,
                   seconds=sum(r["seconds"] for r in runs), machine=machine(runs[0]), tolerance=verdict["bound"],
                   run_dir=runs[0]["run_dir"])
    return verdict


def all_tags() -> list[str]:
    return sorted(W.load_index())


def fast_tags(max_minutes: float = FAST_MINUTES) -> list[str]:
    """Published tags whose recipe measured <= max_minutes per run (their card's reproducibility.minutes)."""
    cards = W.load_index()
    return sorted(t for t, c in cards.items()
                  if (c.get("reproducibility") or {}).get("minutes") is not None
                  and c["reproducibility"]["minutes"] <= max_minutes)


def _folder(tag: str) -> Path:
    folder = W.resolve(tag)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{tag}: no local weights folder to record into ({folder})")
    return folder


def write_block(tag: str, block: dict) -> Path:
    """Store a card's reproducibility block: config.json, the README's section, and (for bundled folders) the
    package's card index and the repository README's reproduce table. model.safetensors is never touched."""
    from ..utils import bundled_dir, write_json

    folder = _folder(tag)
    config = json.loads((folder / "config.json").read_text())
    config["reproducibility"] = block
    write_json(folder / "config.json", config)
    readme = folder / "README.md"
    if readme.is_file():
        readme.write_text(replace_section(readme.read_text(), reproducibility_markdown(config)))
    if folder.resolve().parent == bundled_dir("weights").resolve():
        W.write_index()
        update_readme()
    return folder


def replace_section(text: str, section: str, heading: str = "## Reproducibility") -> str:
    """`text` with its `heading` section (up to the next "## ") replaced by `section`, or `section` appended."""
    start = text.find("\n" + heading + "\n")
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find("\n## ", start + len(heading) + 2)
    return text[:start + 1] + section + ("\n" + text[end + 1:] if end >= 0 else "")


def record_study(tag: str, runs: list[dict], *, date: str | None = None, note: str = "") -> dict:
    """Put a seed study (runs from `run_seeds`, all in one precision) on the card."""
    card = W.get_card(tag)
    precisions = {r["precision"] for r in runs}
    if len(precisions) != 1:
        raise ValueError(f"{tag}: a seed study mixes precisions {sorted(precisions)}; record one precision at a time")
    block = dict(card.get("reproducibility") or {})
    studies = {k: v for k, v in (block.get("seed_study") or {}).items() if v.get("n")}
    study = {**summarise(runs), "metric": card["expect"]["metric"], "values": [r["value"] for r in runs],
             "seeds": [r["seed"] for r in runs], "published_seed": published_seed(card),
             "seconds": [r["seconds"] for r in runs], "machine": machine(runs[0]),
             "date": date or today()}
    if note:
        study["machine"]["note"] = note
    precision = precisions.pop()
    studies[precision] = study
    block.update(seed_study=studies, k=block.get("k", K_STD))
    # `minutes` is one run of the card's own recipe as the card was measured: a study in another precision (fp32
    # on an AVX2-only CPU for a bf16 card) adds its reference, and its times stay in the study
    if precision == card_precision(card) or "minutes" not in block:
        # the fastest run: on a shared machine, other jobs only ever add time
        every = ", ".join(f"{x:.0f}" for x in study["seconds"])
        block.update(minutes=round(min(study["seconds"]) / 60, 2), minutes_note=f"the fastest of the seed study's "
                     f"runs (all: {every} s){', on a ' + note if note else ''}")
    write_block(tag, block)
    return block


def carried_block(old_card: dict, old_recipe: dict, new_recipe: dict) -> tuple[dict | None, str]:
    """What of a replaced card's reproducibility block still holds for weights republished under its tag.

    A seed study describes the recipe, not one set of weights: it is kept when the new run's recipe is the
    old one apart from `train.seed`. The reproductions (passed or not) re-trained that exact recipe, seed
    included, so they are kept only when the seed is the same too. A changed recipe keeps nothing. Returns the
    block (None when nothing is kept) and a sentence saying what happened, for the publisher to read.
    """
    block = old_card.get("reproducibility")
    if not block:
        return None, ""

    def seedless(recipe: dict) -> dict:
        train = {k: v for k, v in (recipe.get("train") or {}).items() if k != "seed"}
        return {**recipe, "train": train}

    old, new = seedless(old_recipe), seedless(new_recipe)
    if old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return None, (f"the card's reproducibility block (seed study, passes) was dropped: the recipe changed "
                      f"({', '.join(changed)}); run `zoo reproduce {old_card.get('tag')} --seeds 3 --record-study`")
    kept = dict(block)
    old_seed = (old_recipe.get("train") or {}).get("seed")
    new_seed = (new_recipe.get("train") or {}).get("seed")
    if old_seed != new_seed and [kept.pop(key, None) for key in RESULT_LISTS] != [None, None]:
        return kept, (f"the card's seed study was kept (same recipe); its reproductions were dropped "
                      f"(they trained seed {old_seed}, these weights seed {new_seed})")
    return kept, "the card's reproducibility block was kept: the recipe is the same"


def record_result(verdict: dict, *, note: str = "") -> None:
    """Put a `zoo reproduce` on the card: a pass in its "reproduced on" list, a run outside the tolerance in its
    "not reproduced on" list (with the reference it missed), so the card says where its number did not hold.
    One row per machine and precision: the latest result there replaces an earlier one in either list."""
    if verdict.get("measured") is None:
        raise ValueError(f"{verdict['tag']}: the run gave no {verdict['metric']}: nothing to record")
    card = W.get_card(verdict["tag"])
    block = dict(card.get("reproducibility") or {})
    m = verdict["machine"]
    hw = m["hardware"] + (f", {note}" if note else "")
    row = {"machine": hw, "isa": m["isa"], "threads": m["threads"], "precision": verdict["precision"],
           "value": verdict["measured"], "seconds": verdict["seconds"], "date": today(), "n": len(verdict["values"]),
           "torch": torch.__version__}
    if not verdict["passed"]:
        row.update(reference=verdict["mean"], bound=verdict["bound"], reference_source=verdict["source"])
    lists = {key: [r for r in block.pop(key, []) if (r["machine"], r["precision"]) != (hw, row["precision"])]
             for key in RESULT_LISTS}
    lists[RESULT_LISTS[0] if verdict["passed"] else RESULT_LISTS[1]].append(row)
    block.update({key: rows for key, rows in lists.items() if rows})
    write_block(verdict["tag"], block)


def record_published_run(card: dict, runs: list[dict], *, note: str = "") -> tuple[bool, str]:
    """A seed study's first run (the published seed) as a reproduction, judged by `card` as it was before the
    study (never by the study it belongs to); recorded, pass or not. Returns (passed, a sentence)."""
    tag = card["tag"]
    try:
        v = verdict_of(card, runs[:1])
    except ValueError as e:  # no reference in the run's precision
        return False, f"{tag}: the published seed's run is not recorded as a pass: {e}"
    if v["measured"] is None:
        return False, f"{tag}: the published seed's run gave no {v['metric']}: not recorded"
    record_result(v, note=note)
    return v["passed"], (f"{tag}: the published seed's run {v['measured']:.4f} against {v['mean']:.4f} ± "
                         f"{v['bound']:.4f} ({v['source']}): "
                         f"{'recorded as a pass' if v['passed'] else 'OUTSIDE TOLERANCE, recorded as not reproduced'}")


def today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")


def reproducibility_markdown(card: dict) -> str:
    """The model card's "Reproducibility" section, from config.json's reproducibility block."""
    tag = card["tag"]
    block = card.get("reproducibility") or {}
    metric = (card.get("expect") or {}).get("metric")
    lines = ["## Reproducibility", ""]
    training = card.get("training") or {}
    hardware = training.get("hardware") or "an unrecorded machine"
    if "CPU" in hardware and "AVX" not in hardware.upper():  # cards trained before the ISA was recorded
        hardware += " (its vector ISA was not recorded: the card predates that field)"
    lines += [f"The card's figures were measured in {card_precision(card)} on {hardware}; a run in another "
              "precision is compared only with a seed study of its own precision.", ""]
    studies = block.get("seed_study") or {}
    if not studies or all(not s.get("n") for s in studies.values()):
        reason = next((s.get("reason") for s in studies.values() if s.get("reason")), None) or block.get("note")
        lines.append(f"Seed study: not run{': ' + reason if reason else ''}. `zoo reproduce {tag}` judges a run "
                     "with the recipe's `expect` tolerance.")
    else:
        k = block.get("k", K_STD)
        lines += [f"`zoo reproduce {tag}` passes when `{metric}` lies within {k:g} std of the seed study's mean for "
                  f"the run's precision (floor {FLOOR:.1%} of the mean, at least {ABS_FLOOR:g}); "
                  f"`--seeds N` compares the mean of N seeds.", "",
                  "| precision | mean | std | n | seeds | published seed | machine | date |",
                  "|---|---|---|---|---|---|---|---|"]
        for prec, s in studies.items():
            if s.get("n"):
                lines.append(f"| {prec} | {s['mean']:.4f} | {s['std']:.4f} | {s['n']} | "
                             f"{', '.join(str(x) for x in s['seeds'])} | {s['published_seed']} | "
                             f"{s['machine']['hardware']}, torch {s['machine']['torch']}"
                             f"{'; ' + s['machine']['note'] if s['machine'].get('note') else ''} | {s['date']} |")
    if block.get("minutes") is not None:
        lines += ["", f"One run of the recipe: {block['minutes']:.1f} min ({block.get('minutes_note', 'measured')})."]
    if block.get("schedule"):
        lines += ["", block["schedule"]]
    rows = block.get("reproduced_on") or []
    lines += ["", "Reproduced on:", ""]
    if rows:
        lines += ["| machine | ISA | threads | precision | value | time | date | source |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"{_result_cells(r)} {_took(r)} | {r['date']} | {r.get('source', '`zoo reproduce`')} |" for r in rows]
    else:
        lines.append("no machine yet (`zoo reproduce` has not passed since the block was added).")
    failed = block.get("not_reproduced_on") or []
    if failed:
        lines += ["", "Not reproduced on (`zoo reproduce` ran the recipe there and the value fell outside the "
                  "tolerance):", "", "| machine | ISA | threads | precision | value | reference | time | date |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"{_result_cells(r)} {r['reference']:.4f} ± {r['bound']:.4f} ({r['reference_source']}) | "
                  f"{_took(r)} | {r['date']} |" for r in failed]
    return "\n".join(lines) + "\n"


def _result_cells(r: dict) -> str:
    """The cells a recorded reproduction's row starts with, passed or not: machine, ISA, threads, precision, value."""
    return f"| {r['machine']} | {r.get('isa', '-')} | {r.get('threads', '-')} | {r['precision']} | {r['value']:.4f} |"


def _took(r: dict) -> str:
    return "-" if r.get("seconds") is None else f"{r['seconds']:.0f} s"


README_START = "<!-- reproduce table: generated from the cards by `zoo reproduce --readme`; do not edit -->"
README_END = "<!-- end of the reproduce table -->"


def _fmt(value: float, scale: float | None = None) -> str:
    """4 decimals for scores, 1 for returns and dB (by the magnitude of `scale`, default the value)."""
    return f"{value:.4f}" if abs(value if scale is None else scale) < 10 else f"{value:.1f}"


def _passes(block: dict) -> str:
    """A card's "reproduced on" rows in one cell: value, machine (threads, CPU, vector ISA, load), time, date;
    then its "not reproduced on" rows, marked as outside the tolerance."""
    cells = []
    for key in RESULT_LISTS:
        for r in block.get(key) or []:
            took = "" if r.get("seconds") is None else f", {r['seconds']:.0f} s"
            outside = "" if key == "reproduced_on" else "**outside the tolerance**: "
            cells.append(f"{outside}{_fmt(r['value'])} ({r['machine']}{took}, {r['date']})")
    return "; ".join(cells)


def readme_table(cards: dict[str, dict] | None = None) -> str:
    """The README's reproduce table, one row per published tag, from the cards' reproducibility blocks:
    the card's value, the seed study (mean ± std, n, per precision), one run's measured minutes (fast = run
    by `zoo reproduce --all --fast` and CI; slow = run by hand) and every recorded `zoo reproduce`, passed or not."""
    cards = W.load_index() if cards is None else cards
    rows = ["| tag | metric | card | seed study (mean ± std, n) | one run | `zoo reproduce` passed (value, ISA, time, "
            "date), or outside the tolerance |", "|---|---|---|---|---|---|"]
    for tag in sorted(cards):
        card = cards[tag]
        block = card.get("reproducibility") or {}
        metric = (card.get("expect") or {}).get("metric") or "-"
        value = (card.get("metrics") or {}).get(metric)
        studies = [f"{_fmt(s['mean'])} ± {_fmt(s['std'], s['mean'])}, n {s['n']} ({prec})"
                   for prec, s in (block.get("seed_study") or {}).items() if s.get("n")] or ["not run"]
        minutes = block.get("minutes")
        speed = "-" if minutes is None else f"{minutes:.1f} min, {'fast' if minutes <= FAST_MINUTES else 'slow'}"
        passes = _passes(block)
        if not block.get("reproduced_on"):
            passes = "; ".join(x for x in (f"none yet: `zoo reproduce {tag}`", passes) if x)
        rows.append(f"| {tag} | {metric} | {'-' if value is None else _fmt(value)} | {'; '.join(studies)} | "
                    f"{speed} | {passes} |")
    return "\n".join(rows)


def readme_with_table(text: str, cards: dict[str, dict] | None = None) -> str:
    """`text` (the repository README) with the block between README_START and README_END regenerated."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README: no reproduce table block ({README_START} ... {README_END})")
    return text[:start + len(README_START)] + "\n" + readme_table(cards) + "\n" + text[end:]


def update_readme(path: Path | None = None) -> bool:
    """Regenerate the repository README's reproduce table (a source checkout only); whether it changed."""
    from ..utils import REPO_ROOT

    path = Path(path) if path else REPO_ROOT / "README.md"
    if not path.is_file() or README_START not in (text := path.read_text()):
        return False
    new = readme_with_table(text)
    if new != text:
        path.write_text(new)
    return new != text

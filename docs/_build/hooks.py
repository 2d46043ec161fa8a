"""mkdocs hooks of zoo's docs site (mkdocs.yml `hooks:`): pages made from the repository, not copied into it.

- index.md    the README, its `docs/...` links made relative to the site (links to files outside docs/
              become plain text: the site only holds docs/).
- results.md  its `<!-- results table -->` block becomes every published weight's card (zoo/weights_index.json)
              as one table: no number typed by hand.
- models/<family>.md gets its family's rows of that table under its title.
- a page of docs/ that mkdocs.yml's nav does not list yet joins "Models" (models/*.md) or "Guides" (the rest),
  so a page another change adds is in the site, not a strict-build failure.

The table is built by `results_table(cards, family=None)`, which tests and other scripts can call too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / "zoo" / "weights_index.json"
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def load_cards(path: Path = INDEX) -> dict[str, dict]:
    """The cards of every published weight, by tag (zoo.weights.write_index writes the file)."""
    try:
        cards = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"docs: cannot read the weight cards {path}: {e}") from e
    if not isinstance(cards, dict) or not all(isinstance(c, dict) for c in cards.values()):
        raise SystemExit(f"docs: {path} must map tag -> card (a JSON object), got {type(cards).__name__}")
    return cards


def _num(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.4g}" if abs(v) < 100 else f"{v:,.1f}"


def _target(expect: dict) -> str:
    if not expect or expect.get("value") is None:
        return "-"
    sign = ">=" if expect.get("mode", "max") == "max" else "<="
    tol = expect.get("tolerance") or 0
    return f"{sign} {_num(expect['value'])}" + (f" ± {_num(tol)}" if tol else "")


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _size(card: dict) -> str:
    total = sum(f.get("size", 0) for f in (card.get("files") or {}).values())
    return f"{total / 1e6:.2f} MB" if total else "-"


def results_table(cards: dict[str, dict], family: str | None = None) -> str:
    """A markdown table of the cards (one row per tag), sorted by tag; "" when there is none.

    Every card: tag (linked to its family page), task, data, headline metric (the card's `expect.metric`) and
    value, the recipe's target, every other metric, training time and hardware, file size. With `family`,
    that family's cards only, for its own page: tag, metric, value, target, training, file.
    """
    columns = ["tag", "metric", "value", "target", "training", "file"]
    if family is None:
        columns[1:1] = ["task", "data"]
        columns.insert(-2, "other metrics")
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for tag in sorted(cards):
        card = cards[tag]
        fam = card.get("family") or tag.split(".")[0]
        if family is not None and fam != family:
            continue
        expect = card.get("expect") or {}
        metrics = card.get("metrics") or {}
        head = expect.get("metric") or next(iter(metrics), None)
        train = card.get("training") or {}
        cell = {
            "tag": f"[{tag}](models/{fam}.md)" if family is None else tag,
            "task": card.get("task", "-"),
            "data": "; ".join(card.get("datasets") or []) or "-",
            "metric": head or "-",
            "value": _num(metrics[head]) if head in metrics else "-",
            "target": _target(expect),
            "other metrics": ", ".join(f"{k} {_num(v)}" for k, v in metrics.items()
                                       if k != head and isinstance(v, (int, float))) or "-",
            "training": f"{_duration(train.get('wall_seconds') or train.get('train_seconds'))}, "
                        f"{train.get('hardware', '-')}",
            "file": _size(card),
        }
        rows.append("| " + " | ".join(cell[c] for c in columns) + " |")
    return "\n".join(rows) if len(rows) > 2 else ""


def readme_page(text: str) -> str:
    """The README as the site's home page: `docs/x.md` links become `x.md`; links to other repository
    files (the site does not hold them) become their text; web links stay."""

    def fix(m: re.Match) -> str:
        bang, label, target = m.groups()
        if re.match(r"^[a-z]+:|^#", target):
            return m.group(0)
        if target.startswith("docs/"):
            return f"{bang}[{label}]({target[len('docs/'):]})"
        return label if not bang else ""

    return _LINK.sub(fix, text)


RESULTS_MARKER = "<!-- results table -->"
# family -> the tag demo/index.md runs (its section ids are the family names)
DEMOS = {"cnn": "cnn.fashion_mnist", "patchcore": "patchcore.brick", "dqn": "dqn.cartpole"}


def _nav_pages(nav) -> set[str]:
    pages = set()
    for item in nav or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages |= _nav_pages(value) if isinstance(value, list) else {value}
    return pages


def _title(path: Path) -> str:
    first = path.read_text().lstrip().split("\n", 1)[0]
    return first.lstrip("# ").split(" — ")[0].split(":")[0].strip() if first.startswith("#") else path.stem


def on_config(config):
    """Pages of docs/ missing from the nav go under "Models" (models/) or "Guides" (the others)."""
    docs = Path(config["docs_dir"])
    listed = _nav_pages(config["nav"])
    sections = {next(iter(i)): i[next(iter(i))] for i in config["nav"] if isinstance(i, dict)}
    for path in sorted(docs.rglob("*.md")):
        rel = path.relative_to(docs).as_posix()
        if rel in listed or rel.startswith(("_build/", "demo/")) or "node_modules" in rel:
            continue
        section = "Models" if rel.startswith("models/") else "Guides"
        if isinstance(sections.get(section), list):
            sections[section].append({_title(path): rel})
    return config


def on_files(files, config):
    """Add the home page made from the README."""
    from mkdocs.structure.files import File

    readme = ROOT / "README.md"
    files.append(File.generated(config, "index.md", content=readme_page(readme.read_text())))
    return files


def on_page_markdown(markdown, page, config, files):
    """Fill results.md's table; put a family's card table under the title of its page (models/<family>.md)."""
    if page.file.src_uri == "results.md":
        head, marker, rest = markdown.partition(RESULTS_MARKER)
        if not marker:
            raise SystemExit(f"docs: results.md lost its {RESULTS_MARKER} block")
        _, end, tail = rest.partition(RESULTS_MARKER)
        return f"{head}{results_table(load_cards())}\n{tail if end else rest}"
    m = re.fullmatch(r"models/([a-z0-9_]+)\.md", page.file.src_uri)
    if not m:
        return markdown
    table = results_table(load_cards(), m.group(1))
    if not table:
        return markdown
    title, _, rest = markdown.partition("\n")
    block = ("**Published weights** (generated from the cards; all tags in [Results](../results.md)):\n\n"
             f"{table}\n")
    if m.group(1) in DEMOS:
        block += f"\nTry `{DEMOS[m.group(1)]}` in your browser: [demo](../demo/index.md#{m.group(1)}).\n"
    return f"{title}\n\n{block}\n{rest}"

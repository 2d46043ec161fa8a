"""Model cards: the README.md of a weights folder, written with huggingface_hub's ModelCard.

The YAML header is built from `ModelCardData` and `EvalResult`, so it is the Hub's own model-index
format (it reads back through `ModelCard.load(...).data.eval_results`). A card states what the
model is: a published weight lists the metrics measured for it; a model changed after loading
(head or first layer adapted, fine-tuned) lists only what was measured for that model, and says
what it was derived from. Its usage line loads as written, and no line reads "None".
"""

from __future__ import annotations

import json
from pathlib import Path

# zoo task -> the Hub's pipeline/task type used in model-index results
HUB_TASK_TYPES = {
    "classification": "image-classification",
    "anomaly_detection": "image-classification",
    "volume_segmentation": "image-segmentation",
    "bev_segmentation": "image-segmentation",
    "node_classification": "graph-ml",
    "novel_view": "image-to-3d",
    "rl": "reinforcement-learning",
}


def state_digest(model) -> str:
    """sha256 over the model's tensors (names, shapes, bytes): tells whether weights changed since loading."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def derived_from(cfg: dict, changes: list[str]) -> dict:
    """The lineage entry of a card: the parent tag, its weights' sha256 and what changed."""
    parent = cfg.get("derived_from") or {}
    return {"tag": parent.get("tag") or cfg.get("tag"), "sha256": parent.get("sha256") or cfg.get("sha256"),
            "changes": [*parent.get("changes", []), *changes]}


def describe_saved(model, config: dict | None) -> dict:
    """The config `save_pretrained` writes: the model's own card, told apart from its parent's.

    Metrics inherited from the loaded card are kept only while the weights are those that were
    loaded (`state_digest`); weights changed since then (fine-tuned in Python, edited) drop them and
    name the parent. Metrics passed in `config` (measured for this model) are kept. The input spec
    is written in its task's typed form (zoo.specs), so every card of a task has the same keys.
    """
    from .specs import spec_of

    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    digest = cfg.pop("state_digest", None)
    explicit = config or {}
    if digest and "metrics" not in explicit and cfg.get("metrics") and state_digest(model) != digest:
        cfg["derived_from"] = derived_from(cfg, ["weights changed after loading (trained or edited)"])
        cfg["metrics"] = {}
    cfg.update(explicit)
    if cfg.get("derived_from") and "tag" not in explicit and cfg.get("tag") == cfg["derived_from"]["tag"]:
        cfg["tag"] = None  # not the published tag any more: save_pretrained names it after its arch
    if cfg.get("task") and cfg.get("input_spec"):
        try:
            cfg["input_spec"] = spec_of(cfg).to_dict()
        except (KeyError, ValueError, TypeError):
            pass  # an architecture's free-form spec (no card yet) is written as it is
    return cfg


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in text.lower().split("(")[0].strip())
    return "-".join(p for p in out.split("-") if p) or "unknown"


def eval_results(config: dict) -> list:
    """The card's numeric metrics as EvalResults on its (first) data set; [] when nothing was measured."""
    from huggingface_hub import EvalResult

    metrics = {k: v for k, v in (config.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    datasets = config.get("datasets") or []
    if not metrics or not datasets:
        return []
    task = config.get("task") or ""
    return [EvalResult(task_type=HUB_TASK_TYPES.get(task, task or "other"), task_name=task or None,
                       dataset_type=_slug(datasets[0]), dataset_name=datasets[0],
                       metric_type=k, metric_name=k, metric_value=float(v)) for k, v in metrics.items()]


def card_data(config: dict):
    """ModelCardData of a zoo config: license, tags, data sets, base model and model-index results."""
    from huggingface_hub import ModelCardData

    tag = config.get("tag") or config.get("arch") or "model"
    results = eval_results(config)
    parent = (config.get("derived_from") or {}).get("tag")
    tags = [t for t in ("zoo", config.get("family"), config.get("task")) if t]
    return ModelCardData(license=config.get("license") or "apache-2.0", library_name="zoo", tags=tags,
                         datasets=list(config.get("datasets") or []) or None,
                         base_model=f"{_hub_repo(parent)}" if parent else None,
                         model_name=tag if results else None, eval_results=results or None)


def _hub_repo(tag: str) -> str:
    from .weights import HUB_ORG

    return f"{HUB_ORG}/{tag}"


def usage_line(config: dict, folder: str | Path | None = None, published: bool = False) -> str:
    """`zoo.create(...)` that loads this model as written: by tag when zoo knows it (or it is being
    published under it), else by its folder."""
    from .weights import load_index

    tag = config.get("tag")
    if tag and (published or (tag in load_index() and not config.get("derived_from"))):
        return f'model = zoo.create("{tag}", pretrained=True)'
    where = str(folder) if folder is not None else "PATH/TO/THIS/FOLDER"
    return f'model = zoo.create("local-dir:{where}", pretrained=True)'


def origin_lines(config: dict) -> list[str]:
    """What the model is, in words: published, adapted from a tag, fine-tuned from one, or untrained."""
    parent = config.get("derived_from") or {}
    lines = []
    if parent.get("tag"):
        sha = f" (model.safetensors sha256 {parent['sha256'][:12]}…)" if parent.get("sha256") else ""
        lines.append(f"Derived from `{parent['tag']}`{sha}.")
        lines += [f"- {change}" for change in parent.get("changes", [])]
    if not config.get("metrics"):
        lines += [""] if lines else []
        lines.append("Not evaluated: this card carries no metrics (a parent's metrics do not describe "
                     "a changed model). Measure them with `zoo eval` on your data.")
    return lines


def default_body(config: dict, folder: str | Path | None = None) -> str:
    """The text of a card written by `zoo.save_pretrained` when no body is given."""
    tag = config.get("tag") or config.get("arch")
    args = ", ".join(f"{k}={v}" for k, v in (config.get("model_args") or {}).items() if v is not None)
    parts = [f"# {tag}", "",
             f"A zoo `{config.get('arch')}` model ({config.get('family')} family, task "
             f"`{config.get('task')}`): {args}.", ""]
    origin = origin_lines(config)
    if origin:
        parts += origin + [""]
    parts += ["```python", "import zoo", usage_line(config, folder), "```", ""]
    parts += metrics_table(config)
    parts += input_lines(config)
    return "\n".join(parts)


def metrics_table(config: dict) -> list[str]:
    metrics = config.get("metrics") or {}
    if not metrics:
        return []
    rows = [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    where = ", ".join(config.get("datasets") or [])
    return ["## Results" + (f" ({where})" if where else ""), "", "| metric | value |", "|---|---|", *rows, ""]


def input_lines(config: dict) -> list[str]:
    """The input the model expects, from the typed spec (what `zoo.transforms` builds its callable from)."""
    from .specs import spec_of
    from .weights import load_index

    try:
        spec = spec_of(config)
    except (KeyError, TypeError, ValueError):
        spec = None
    lines = ["## Input", ""]
    if spec is None:
        raw = config.get("input_spec")
        return lines + [f"`{json.dumps(raw)}`", ""] if raw else []
    lines.append(spec.describe())
    tag = config.get("tag")
    known = tag and not config.get("derived_from") and tag in load_index()
    call = f'zoo.transforms("{tag}")' if known else "zoo.transforms(model)"
    lines += ["", f"`{call}` maps the raw input to it.", ""]
    return lines


def card_readme(config: dict, body: str = "", folder: str | Path | None = None) -> str:
    """README.md text: the Hub metadata (ModelCardData, model-index) then the body (default: `default_body`)."""
    from huggingface_hub import ModelCard

    text = body or default_body(config, folder)
    card = ModelCard(f"---\n{card_data(config).to_yaml()}\n---\n\n{text.lstrip()}")
    return str(card).rstrip("\n") + "\n"


def publish_body(config: dict, recipe: dict, result: dict, run: dict, folder: str | Path | None = None) -> str:
    """Card text of a finished run turned into a weights folder (`zoo publish`): results, check, training."""
    tag = config["tag"]
    summary = recipe.get("weights", {}).get("summary") or recipe.get("description", "")
    datasets = ", ".join(recipe.get("weights", {}).get("datasets", [])) or data_words(recipe)
    parts = [f"# {tag}", ""] + ([summary, ""] if summary else [])
    origin = origin_lines(config)
    if origin:
        parts += origin + [""]
    parts += ["```python", "import zoo", usage_line(config, folder, published="weights" in recipe), "```", ""]
    parts += metrics_table(config)
    expect = result.get("expect") or config.get("expect") or {}
    if expect.get("metric") and expect.get("value") is not None:
        sign = ">=" if expect.get("mode", "max") == "max" else "<="
        parts += [f"Card check: `{expect['metric']}` must be {sign} {expect['value']} (tolerance "
                  f"{expect.get('tolerance', 0)}) — re-checked by `zoo reproduce {tag}` and the test suite.", ""]
    train = result.get("fit", {}).get("train_seconds", result.get("wall_seconds"))
    hw = ", ".join(str(v) for v in (result.get("device"), f"{result.get('world_size', 1)} process(es)",
                                    result.get("precision")) if v)
    rows = [("data", datasets),
            ("recipe", f"`recipes/{config['family']}/{Path(run['recipe']).stem}.yaml` (resolved copy in recipe.yaml)"
             if run.get("recipe") else "recipe.yaml"),
            ("command", f"`{run['command']}`" if run.get("command") else None),
            ("hardware", f"{result['hardware']} ({hw})" if result.get("hardware") else None),
            ("training time", f"{train:.0f} s (wall, including evaluation: {result.get('wall_seconds', 0):.0f} s)"
             if train is not None else None),
            ("torch", result.get("torch"))]
    parts += ["## Training", ""] + [f"- {k}: {v}" for k, v in rows if v] + [""]
    parts += input_lines(config)
    parts += ["## Intended use and license", "",
              "Reference weights for research and teaching, reproducible from the recipe on a CPU machine.",
              f"License: {config.get('license') or 'apache-2.0'}.", ""]
    return "\n".join(parts)


def data_words(recipe: dict) -> str:
    data = recipe.get("data") or {}
    kind = data.get("dataset") or data.get("env") or data.get("name")
    root = data.get("root")
    return ", ".join(str(v) for v in (kind, Path(root).name if root else None) if v) or "see recipe.yaml"


def rewrite_header(readme: str, config: dict) -> str:
    """Replace a README's YAML header by the one `card_data` builds, keeping its text."""
    from huggingface_hub import ModelCard

    return card_readme(config, ModelCard(readme, ignore_metadata_errors=True).text)

"""Deployment folders: what `zoo quantize` and `zoo prune` write, loadable like any weights folder.

A deployment folder holds the exported model (`model.onnx`, int8 or pruned; `model.pt2` for PT2E int8)
instead of `model.safetensors`, with a config.json that names the source model's architecture and
constructor arguments, its input spec and labels, the metrics measured through the exported model, and a
`deploy` block saying what the folder is (kind "int8" or "pruned", method, backend, source tag and
sha256). recipe.yaml and samples/ are the source's, so

    zoo.create("cnn.fashion_mnist-int8/", pretrained=True)   # an ExportedModel, in eval mode
    zoo eval cnn.fashion_mnist-int8/               # the card's metric through the int8 model
    zoo predict cnn.fashion_mnist-int8/ --out preds

work as for a weights folder: the architecture is built (untrained) only for its methods (unet3d's
sliding window, dqn.act, a classifier's input spec), and every forward pass runs the exported model on the CPU.
The file is loaded only when its sha256 matches the one in config.json (or with trust_unverified).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from torch import nn

from ..utils import sha256_file, write_json

ONNX_FILE = "model.onnx"
# what a deployment folder keeps of its source's config.json (the rest describes the fp32 weights)
KEPT = ("arch", "family", "task", "model_args", "input_spec", "labels", "license", "datasets")


def write_folder(out: Path, model: nn.Module, deploy: dict, metrics: dict | None, readme: str,
                 file: str = ONNX_FILE) -> Path:
    """Write config.json (+ recipe.yaml and samples/ copied from the source folder, README.md) beside
    `out/file` (model.onnx, or model.pt2 for PT2E int8).

    `deploy`: the folder's `deploy` block (kind, method, ...; the source is added); `metrics`: those
    measured through out/file, or None when they were not measured (the card then has none).
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    source = {"tag": cfg.get("tag"), "arch": cfg.get("arch"), "sha256": cfg.get("sha256")}
    config = {k: cfg[k] for k in KEPT if k in cfg}
    if "arch" not in config:
        raise ValueError("a deployment folder needs the model's arch: create the model with zoo.create")
    path = out / file
    config.update(tag=f"{source['tag'] or source['arch']}-{deploy['kind']}", metrics=metrics or {},
                  deploy={**deploy, "format": Path(file).suffix[1:], "file": file, "source": source},
                  files={file: {"sha256": sha256_file(path), "size": path.stat().st_size}})
    write_json(out / "config.json", config)
    source_dir = Path(cfg["source"]) if cfg.get("source") else None
    if source_dir is not None and (source_dir / "recipe.yaml").is_file():  # which data zoo eval measures on
        shutil.copyfile(source_dir / "recipe.yaml", out / "recipe.yaml")
    if source_dir is not None and (source_dir / "samples").is_dir():  # what zoo predict runs without an input
        shutil.copytree(source_dir / "samples", out / "samples", dirs_exist_ok=True)
    (out / "README.md").write_text(readme)
    return out


def is_deploy_card(card: dict | None) -> bool:
    return bool(card) and isinstance(card.get("deploy"), dict)


def load_folder(folder: str | os.PathLike, card: dict, *, trust_unverified: bool = False,
                changes: dict | None = None) -> nn.Module:
    """The folder's exported model standing in for its architecture (see the module doc), in eval mode.

    `changes`: the constructor arguments zoo.create was given (None values are ignored); a deployed graph is
    fixed, so any is refused.
    """
    from .. import weights as W
    from ..registry import create
    from .graphs import graph_spec
    from .runtime import ExportedModel, load_exported, need

    folder = Path(folder)
    path = folder / card["deploy"].get("file", ONNX_FILE)
    asked = sorted(k for k, v in (changes or {}).items() if v is not None)
    if asked:
        raise ValueError(f"{folder} is a deployment folder ({card['deploy'].get('kind')}, {path.name}): its graph is "
                         f"fixed, so {', '.join(asked)} cannot be changed; adapt the fp32 weights, then quantize")
    expected = (card.get("files") or {}).get(path.name, {}).get("sha256")
    if not expected and not (trust_unverified or W.TRUST_UNVERIFIED):
        raise W.WeightsError(f"{path}: cannot verify it, {folder / 'config.json'} has no sha256 under "
                             f"files.{path.name}; pass trust_unverified=True (CLI: --trust-unverified) only if "
                             "you trust this folder")
    sha = W.verify_file(path, expected)
    model = create(card["arch"], **card.get("model_args", {}))  # untrained: its methods, not its weights, are used
    spec = graph_spec(model)
    if not spec.whole_model:
        raise ValueError(f"{folder}: its exported model is a part of {card['arch']} only ({'; '.join(spec.notes)}), "
                         "so it cannot stand in for the model; run it with zoo.deploy.load_exported")
    if card["deploy"].get("backend") == "pt2e":
        need("torchao")  # registers the quantize/dequantize ops the int8 program calls
    wrapped = ExportedModel(model, load_exported(path), spec.output_names, spec.dict_outputs).eval()
    wrapped.pretrained_cfg = {**{k: card[k] for k in KEPT if k in card}, "tag": card.get("tag"),
                              "source": str(folder), "sha256": sha, "metrics": card.get("metrics", {}),
                              "deploy": card["deploy"], "revision_resolved": "local"}
    return wrapped

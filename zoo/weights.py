"""Published weights: cards, resolution, verification, loading, saving and pushing.

A published weight is a folder that is exactly a Hugging Face model repo:

    config.json        arch, tag, constructor args, input spec, labels, metrics, file hashes
    model.safetensors  the state dict (never pickle)
    README.md          the model card (YAML metadata + text)
    recipe.yaml        the fully resolved recipe that produced it

Resolution order for a tag: an explicit path -> `ZOO_WEIGHTS_DIR/<tag>` -> the weights/ folder
shipped with zoo -> the Hugging Face Hub through `huggingface_hub` (its cache, `HF_ENDPOINT`,
`HF_HUB_OFFLINE`). The sha256 of model.safetensors is checked against the card on every load.
The package knows every card through `zoo/weights_index.json` even when installed without folders.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .utils import atomic_path, bundled_dir, sha256_file, write_json

log = logging.getLogger("zoo")

HUB_ORG = "zoo-models"
WEIGHTS_FILE = "model.safetensors"
FOLDER_FILES = ("config.json", WEIGHTS_FILE, "README.md", "recipe.yaml")
INDEX_PATH = Path(__file__).resolve().parent / "weights_index.json"
REQUIRED_CARD_KEYS = ("tag", "arch", "family", "task", "model_args", "input_spec", "metrics",
                      "license", "hub", "files")

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_FILENAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


class WeightsError(RuntimeError):
    """A weight folder or file that cannot be trusted or found."""


# --------------------------------------------------------------------------- cards


def weights_dirs() -> list[Path]:
    """Local folders searched for `<tag>/` in order: `ZOO_WEIGHTS_DIR` (os.pathsep list), then the bundled one."""
    dirs = [Path(p).expanduser() for p in os.environ.get("ZOO_WEIGHTS_DIR", "").split(os.pathsep) if p]
    return dirs + [bundled_dir("weights")]


def load_index() -> dict[str, dict]:
    """Every card zoo knows: the packaged index, overridden by any local folder's config.json."""
    cards: dict[str, dict] = {}
    if INDEX_PATH.is_file():
        cards.update(json.loads(INDEX_PATH.read_text()))
    for root in reversed(weights_dirs()):  # earlier dirs win
        if root.is_dir():
            for cfg in sorted(root.glob("*/config.json")):
                try:
                    card = json.loads(cfg.read_text())
                except json.JSONDecodeError as e:
                    raise WeightsError(f"{cfg}: not valid JSON ({e})") from e
                if "tag" in card:
                    cards[card["tag"]] = card
    return cards


def get_card(tag: str) -> dict:
    cards = load_index()
    if tag not in cards:
        import difflib

        close = difflib.get_close_matches(tag, cards, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known tags: {', '.join(sorted(cards))}"
        raise KeyError(f"no published weights tagged {tag!r}{hint}")
    return cards[tag]


def hub_location(card: dict) -> tuple[str, str | None]:
    hub = card.get("hub") or {}
    return hub.get("repo_id") or f"{HUB_ORG}/{card['tag']}", hub.get("revision")


def write_index(cards: dict[str, dict] | None = None) -> Path:
    """Regenerate zoo/weights_index.json from the bundled weight folders (what `zoo export` calls)."""
    if cards is None:
        cards = {}
        for cfg in sorted(bundled_dir("weights").glob("*/config.json")):
            card = json.loads(cfg.read_text())
            cards[card["tag"]] = card
    write_json(INDEX_PATH, dict(sorted(cards.items())))
    return INDEX_PATH


# --------------------------------------------------------------------------- validation


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or ".." in repo_id or not _REPO_ID.match(repo_id):
        raise ValueError(f"invalid Hugging Face repo id {repo_id!r}: expected 'org/name' "
                         "with letters, digits, '.', '_' or '-' and no '..'")
    return repo_id


def check_filename(name: str) -> str:
    if not isinstance(name, str) or ".." in name.split("/") or not _FILENAME.match(name):
        raise ValueError(f"invalid file name {name!r} in a weights repo: relative paths without '..' only")
    return name


def _check_safetensors(path: Path) -> None:
    """Refuse anything that is not a safetensors file before any deserialisation happens.

    safetensors starts with an 8-byte little-endian header length followed by a JSON object;
    pickles start with 0x80 and torch zip checkpoints with 'PK'. Nothing here unpickles.
    """
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if len(head) < 9 or head[8:9] != b"{" or int.from_bytes(head[:8], "little") + 8 > size:
        kinds = {b"\x80": "a pickle", b"PK": "a torch zip checkpoint"}
        kind = kinds.get(head[:1], kinds.get(head[:2], "not safetensors"))
        raise WeightsError(f"{path}: refused to load, the file is {kind}; zoo only loads safetensors weights")


def verify_file(path: Path, expected_sha256: str | None) -> str:
    """sha256 of `path`, raising WeightsError naming both hashes when it differs from the card."""
    if not path.is_file():
        raise WeightsError(f"missing weights file {path}")
    actual = sha256_file(path)
    if expected_sha256 and actual != expected_sha256:
        raise WeightsError(f"sha256 mismatch for {path}: the card says {expected_sha256}, the file has {actual}; "
                           "the file is corrupt or not the published one (delete it and download again)")
    return actual


# --------------------------------------------------------------------------- resolution


def _from_hub(repo_id: str, revision: str | None, filenames=FOLDER_FILES, optional=("README.md", "recipe.yaml")):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    check_repo_id(repo_id)
    folder = None
    for name in filenames:
        check_filename(name)
        try:
            path = Path(hf_hub_download(repo_id, name, revision=revision))
        except EntryNotFoundError:
            if name in optional:
                continue
            raise
        folder = path.parent
    return folder


def resolve(tag: str | None = None, *, path: str | os.PathLike | None = None,
            repo_id: str | None = None, revision: str | None = None) -> Path:
    """Find the folder of a weight: explicit path, local weights dirs, then the Hub."""
    if path is not None:
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise WeightsError(f"{folder} is not a zoo weights folder (no config.json)")
        return folder
    if repo_id is not None:
        return _from_hub(repo_id, revision)
    assert tag is not None
    for root in weights_dirs():
        folder = root / tag
        if (folder / "config.json").is_file() and (folder / WEIGHTS_FILE).is_file():
            return folder
    card = get_card(tag)
    hub_repo, hub_rev = hub_location(card)
    log.info("zoo: %s not found locally, downloading from the Hub repo %s", tag, hub_repo)
    return _from_hub(hub_repo, revision or hub_rev)


def read_folder(folder: Path, expected_sha256: str | None = None) -> tuple[dict, dict]:
    """(config, state_dict) of a verified folder; the card's hash wins over the folder's own."""
    cfg_path = folder / "config.json"
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{cfg_path}: cannot read the weights config ({e})") from e
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = [p.name for p in folder.glob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
        extra = f" (found {', '.join(pickles)}, which zoo refuses to unpickle)" if pickles else ""
        raise WeightsError(f"{folder}: no {WEIGHTS_FILE}{extra}")
    expected = expected_sha256 or config.get("files", {}).get(WEIGHTS_FILE, {}).get("sha256")
    _check_safetensors(weights)
    sha = verify_file(weights, expected)
    from safetensors.torch import load_file

    state = load_file(str(weights))
    config.setdefault("files", {}).setdefault(WEIGHTS_FILE, {})["sha256"] = sha
    return config, state


# --------------------------------------------------------------------------- adaptation


def adapt_input_weight(weight, in_chans: int):
    """Adapt a first-layer weight (out, in, *kernel) to `in_chans` input channels.

    Like timm's 2D rule (sum for one channel, repeat-and-scale for more) but exact in general:
    fewer channels sum the pretrained channels that fold onto them; more channels cycle through
    the pretrained ones, each share scaled by how often its source is reused. Either way a
    constant input gives the same response as before. Conv1d/2d/3d and Linear weights alike.
    """
    import torch

    old = weight.shape[1]
    if in_chans == old:
        return weight
    mix = torch.zeros(in_chans, old, dtype=weight.dtype)
    if in_chans < old:
        mix[torch.arange(old) % in_chans, torch.arange(old)] = 1.0
    else:
        src = torch.arange(in_chans) % old
        mix[torch.arange(in_chans), src] = 1.0 / torch.bincount(src, minlength=old)[src].to(weight.dtype)
    return torch.einsum("oi...,ni->on...", weight, mix.to(weight.device))


def adapt_state_dict(model, state: dict, *, in_chans: int | None, num_classes: int | None,
                     card_in: int | None, card_classes: int | None) -> tuple[dict, list[str]]:
    """Rewrite a state dict for a model built with other in_chans / num_classes than the card.

    The model class names its first layer (`first_conv`) and head (`classifier`, one prefix or a
    tuple) by state-dict prefix; nothing else is ever touched, so loading stays strict elsewhere.
    """
    state = dict(state)
    changed: list[str] = []
    name = type(model).__name__
    if in_chans is not None and card_in is not None and in_chans != card_in:
        first = getattr(model, "first_conv", None)
        if not first:
            raise ValueError(f"{name} cannot change in_chans ({card_in} -> {in_chans}): it names no first_conv")
        key = f"{first}.weight"
        if key not in state:
            raise ValueError(f"{name}.first_conv = {first!r} but the weights have no {key!r}")
        state[key] = adapt_input_weight(state[key], in_chans)
        changed.append(f"{key} adapted from {card_in} to {in_chans} input channels")
    if num_classes is not None and card_classes is not None and num_classes != card_classes:
        heads = getattr(model, "classifier", None)
        if not heads:
            raise ValueError(f"{name} cannot change num_classes ({card_classes} -> {num_classes}): no classifier")
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        dropped = [k for k in state if any(k == h or k.startswith(h + ".") for h in heads)]
        for k in dropped:
            del state[k]
        changed.append(f"{', '.join(heads)} re-initialised for {num_classes} classes (was {card_classes})")
    return state, changed


def load_state(model, state: dict, *, allowed_missing: tuple[str, ...] = ()) -> None:
    """Strict load except for the re-initialised head keys; errors name the keys."""
    own = model.state_dict()
    wrong = [f"{k}: weights {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and not any(k == h or k.startswith(h + ".") for h in allowed_missing)]
    unexpected = [k for k in state if k not in own]
    if wrong or missing or unexpected:
        lines = [f"shape mismatch {w}" for w in wrong] + [f"missing {k}" for k in missing]
        lines += [f"unexpected {k}" for k in unexpected]
        raise WeightsError(f"weights do not fit {type(model).__name__}:\n  " + "\n  ".join(lines[:20]))
    model.load_state_dict(state, strict=False)


# --------------------------------------------------------------------------- saving and pushing


def _state_for_saving(model) -> dict:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def card_readme(config: dict, body: str = "", folder: str | os.PathLike | None = None) -> str:
    """Model card text: Hub metadata (huggingface_hub ModelCardData, model-index) then the body (zoo.cards)."""
    from .cards import card_readme as readme

    return readme(config, body, folder)


def save_pretrained(model, folder: str | os.PathLike, *, config: dict | None = None,
                    readme: str | None = None, recipe: dict | None = None) -> Path:
    """Write a hub-ready folder for `model` (config from `model.pretrained_cfg` unless given)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from .cards import describe_saved

    cfg = describe_saved(model, config)  # what the model is now: a changed model drops its parent's metrics
    if "arch" not in cfg:
        raise ValueError("save_pretrained needs the model's arch: create it with zoo.create "
                         "or pass config={'arch': ...}")
    cfg["tag"] = cfg.get("tag") or cfg["arch"]
    cfg.setdefault("family", cfg["arch"].split("_")[0])
    for key in ("model_args", "input_spec", "metrics"):
        cfg.setdefault(key, {})
    cfg.setdefault("license", "apache-2.0")
    cfg.setdefault("hub", {"repo_id": f"{HUB_ORG}/{cfg['tag']}", "revision": None})
    for transient in ("source", "sha256", "revision_resolved"):
        cfg.pop(transient, None)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(_state_for_saving(model), str(tmp), metadata={"format": "pt", "zoo_tag": cfg["tag"]})
    w = folder / WEIGHTS_FILE
    cfg["files"] = {WEIGHTS_FILE: {"sha256": sha256_file(w), "size": w.stat().st_size}}
    write_json(folder / "config.json", cfg)
    with atomic_path(folder / "README.md") as tmp:
        tmp.write_text(card_readme(cfg, readme or "", folder))
    if recipe is not None:
        import yaml

        with atomic_path(folder / "recipe.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def push_to_hub(model_or_folder, repo_id: str, *, revision: str | None = None, token: str | None = None,
                private: bool = False, commit_message: str = "Upload zoo weights") -> str:
    """Upload a weights folder (or a model, saved first) to the Hub; returns the commit sha."""
    import tempfile

    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model_or_folder, (str, os.PathLike)):
            folder = Path(model_or_folder)
            read_folder(folder)  # never publish a folder that would not load
        else:
            folder = save_pretrained(model_or_folder, Path(tmp) / "w")
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                 commit_message=commit_message, allow_patterns=list(FOLDER_FILES))
    return getattr(info, "oid", None) or str(info)


def download(names, *, local_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Pre-fill the Hugging Face cache (or copy into `local_dir/<tag>`) for an air-gapped machine.

    `names` are tags ("gcn.cora"), family names (their default tag) or "hf-hub:org/repo[@rev]".
    """
    from .registry import default_tag_of

    out: dict[str, Path] = {}
    for name in [names] if isinstance(names, str) else names:
        if name.startswith("hf-hub:"):
            repo, _, rev = name[len("hf-hub:"):].partition("@")
            folder, expected = _from_hub(repo, rev or None), None
        else:
            tag = name if "." in name else default_tag_of(name)
            card = get_card(tag)
            repo, rev = hub_location(card)
            folder = _from_hub(repo, rev)
            expected = card["files"][WEIGHTS_FILE]["sha256"]
        verify_file(folder / WEIGHTS_FILE, expected)
        if local_dir is not None:
            dest = Path(local_dir) / (name if not name.startswith("hf-hub:") else repo.replace("/", "--"))
            dest.mkdir(parents=True, exist_ok=True)
            for f in folder.iterdir():
                shutil.copyfile(f, dest / f.name)
            folder = dest
        out[name] = folder
    return out


def verify_all() -> list[tuple[str, str, str]]:
    """Re-check every card's hash against its local folder: rows (tag, status, detail)."""
    rows = []
    for tag, card in sorted(load_index().items()):
        expected = card.get("files", {}).get(WEIGHTS_FILE, {}).get("sha256")
        folder = next((d / tag for d in weights_dirs() if (d / tag / WEIGHTS_FILE).is_file()), None)
        if folder is None:
            rows.append((tag, "absent", "not in a local weights dir (zoo download fetches it)"))
            continue
        try:
            _check_safetensors(folder / WEIGHTS_FILE)
            verify_file(folder / WEIGHTS_FILE, expected)
            rows.append((tag, "ok", str(folder)))
        except WeightsError as e:
            rows.append((tag, "MISMATCH", str(e)))
    return rows


def card_summary(card: dict) -> dict[str, Any]:
    """The headline numbers of a card for tables: main metric, value."""
    expect = card.get("expect") or {}
    metric = expect.get("metric") or next(iter(card.get("metrics", {})), None)
    return {"metric": metric, "value": card.get("metrics", {}).get(metric) if metric else None}

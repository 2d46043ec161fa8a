"""Published weights: cards, resolution, verification, loading, saving and pushing.

A published weight is a folder that is exactly a Hugging Face model repo:

    config.json        arch, tag, constructor args, input spec, labels, metrics, file hashes
    model.safetensors  the state dict (never pickle)
    README.md          the model card (YAML metadata + text)
    recipe.yaml        the fully resolved recipe that produced it

Resolution order for a tag: an explicit path -> `ZOO_WEIGHTS_DIR/<tag>` (when set, ONLY there: a tag
missing from it is an error, never a silent load of another copy) -> the weights/ folder shipped with zoo
-> the Hugging Face Hub through `huggingface_hub` (its cache, `HF_ENDPOINT`, `HF_HUB_OFFLINE`).
The package knows every card through `zoo/weights_index.json` even when installed without folders.

One integrity rule: model.safetensors is loaded only when its sha256 matches a hash from a source the
user trusts. A tag zoo publishes is checked against the packaged index (a folder's own config.json never
replaces it); a folder or Hub repo the user names is checked against its own card. A card without a
hash is refused unless the caller passes trust_unverified=True (`--trust-unverified`), with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .utils import atomic_path, bundled_dir, check_name, remove_stale_temporaries, safe_join, sha256_file, write_json

log = logging.getLogger("zoo")

HUB_ORG = "zoo-models"
WEIGHTS_FILE = "model.safetensors"
FOLDER_FILES = ("config.json", WEIGHTS_FILE, "README.md", "recipe.yaml")
INDEX_PATH = Path(__file__).resolve().parent / "weights_index.json"
REQUIRED_CARD_KEYS = ("tag", "arch", "family", "task", "model_args", "input_spec", "metrics",
                      "license", "hub", "files")

_FILENAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
TRUST_UNVERIFIED = False  # the CLI's --trust-unverified sets this default for one command


class WeightsError(RuntimeError):
    """A weight folder or file that cannot be trusted or found."""


def check_tag(tag: str) -> str:
    """A tag is one name of the grammar with a '.' between architecture and weights name."""
    check_name(tag, "tag")
    if "." not in tag.strip("."):
        raise ValueError(f"invalid tag {tag!r}: expected arch.name, e.g. cnn.fashion_mnist")
    return tag


# --------------------------------------------------------------------------- cards


def env_weights_dirs() -> list[Path]:
    """The folders named by `ZOO_WEIGHTS_DIR` (an os.pathsep list); empty when it is unset."""
    return [Path(p).expanduser() for p in os.environ.get("ZOO_WEIGHTS_DIR", "").split(os.pathsep) if p]


def bundled_weights_dir() -> Path:
    return bundled_dir("weights")


def weights_dirs() -> list[Path]:
    """Local folders searched for `<tag>/`: the `ZOO_WEIGHTS_DIR` ones when set, else the bundled one."""
    return env_weights_dirs() or [bundled_weights_dir()]


def read_config(path: Path) -> dict:
    """A config.json as a dict, or a WeightsError naming the file (unreadable, not JSON, not an object)."""
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: cannot read the weights config ({e})") from e
    if not isinstance(card, dict):
        raise WeightsError(f"{path}: expected a JSON object, got a JSON {type(card).__name__}")
    for key, kind in (("files", dict), ("tag", str), ("arch", str), ("model_args", dict)):
        if key in card and card[key] is not None and not isinstance(card[key], kind):
            raise WeightsError(f"{path}: key {key!r} must be a JSON {kind.__name__}, got {card[key]!r}")
    return card


def packaged_index() -> dict[str, dict]:
    """The cards zoo publishes (zoo/weights_index.json): the only source of a known tag's hash."""
    return read_config(INDEX_PATH) if INDEX_PATH.is_file() else {}


def load_index() -> dict[str, dict]:
    """Every card zoo knows: the packaged index, plus cards of other tags found in local weights dirs."""
    packaged = packaged_index()
    cards = dict(packaged)
    for root in reversed(weights_dirs()):  # earlier dirs win
        if root.is_dir():
            for cfg in sorted(root.glob("*/config.json")):
                card = read_config(cfg)
                tag = card.get("tag")
                if tag and tag not in packaged and tag == cfg.parent.name:
                    cards[tag] = card
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
    repo, rev = hub.get("repo_id") or f"{HUB_ORG}/{card['tag']}", hub.get("revision")
    return check_repo_id(repo), (check_revision(rev) if rev is not None else None)


def write_index(cards: dict[str, dict] | None = None) -> Path:
    """Regenerate zoo/weights_index.json from the bundled weight folders (`zoo publish --into-package`)."""
    if cards is None:
        cards = {}
        for cfg in sorted(bundled_dir("weights").glob("*/config.json")):
            card = json.loads(cfg.read_text())
            cards[card["tag"]] = card
    write_json(INDEX_PATH, dict(sorted(cards.items())))
    return INDEX_PATH


# --------------------------------------------------------------------------- validation


def check_repo_id(repo_id: str) -> str:
    try:
        return check_name(repo_id, "Hugging Face repo id", slashes=1)
    except ValueError as e:
        raise ValueError(f"invalid Hugging Face repo id {repo_id!r}: expected 'org/name' "
                         "with letters, digits, '.', '_' or '-' and no '..'") from e


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """"hf-hub:org/repo[@rev]" -> (repo id, revision or None), both checked against the name grammar."""
    repo, at, rev = name.removeprefix("hf-hub:").partition("@")
    return check_repo_id(repo), (check_revision(rev) if at else None)


def check_revision(revision: str) -> str:
    """A branch, tag or commit sha; '/' only between segments, as in 'refs/pr/1'."""
    return check_name(revision, "revision", slashes=None)


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


def _repair_hint(path: Path, tag: str | None) -> str:
    if "snapshots" in path.parts and tag:  # a Hub cache entry: the cache itself must be refreshed
        return (f"if the cache is corrupt, `zoo download {tag} --force` fetches it again; if the Hub itself serves "
                "these bytes, they are not the published weights")
    return f"restore the published file (e.g. `zoo download {tag} --to DIR`)" if tag else "restore the file"


def verify_file(path: Path, expected_sha256: str | None, *, tag: str | None = None) -> str:
    """sha256 of `path`, raising WeightsError naming both hashes (and the repair) when it differs."""
    if not path.is_file():
        raise WeightsError(f"missing weights file {path}")
    actual = sha256_file(path)
    if expected_sha256 and actual != expected_sha256:
        raise WeightsError(f"sha256 mismatch for {path}: the card says {expected_sha256}, the file has {actual}; "
                           f"the file is corrupt or not the published one: {_repair_hint(path, tag)}")
    return actual


def trusted_sha256(config: dict, where: Path, *, tag: str | None = None, trust_unverified: bool = False):
    """The hash a folder must match: the packaged index's for a known `tag` it was resolved by, else its own
    card's. No hash -> WeightsError, unless trust_unverified (then a warning and None)."""
    known = packaged_index().get(tag) if tag else None
    source = "zoo's packaged index" if known else f"{where / 'config.json'}"
    sha = ((known or config).get("files") or {}).get(WEIGHTS_FILE, {}).get("sha256")
    if sha:
        return sha
    if trust_unverified:
        log.warning("zoo: WARNING: loading %s without verification: %s has no sha256 for %s (trusted on request)",
                    where / WEIGHTS_FILE, source, WEIGHTS_FILE)
        return None
    raise WeightsError(f"{where / WEIGHTS_FILE}: cannot verify it, {source} has no sha256 under "
                       f"files.{WEIGHTS_FILE}; pass trust_unverified=True (CLI: --trust-unverified) "
                       "only if you trust this folder")


# --------------------------------------------------------------------------- resolution


def _from_hub(repo_id: str, revision: str | None, filenames=FOLDER_FILES, optional=("README.md", "recipe.yaml"),
              force: bool = False):
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    check_repo_id(repo_id)
    if revision is not None:
        check_revision(revision)
    folder = None
    for name in filenames:
        check_filename(name)
        try:
            path = Path(hf_hub_download(repo_id, name, revision=revision, force_download=force))
        except Exception as e:
            # optional files: absent on the server, or not cached while offline; anything else is a failure
            absent = isinstance(e, EntryNotFoundError) and (not isinstance(e, LocalEntryNotFoundError)
                                                            or constants.HF_HUB_OFFLINE)
            if absent and name in optional:
                continue
            if not _is_transfer_error(e):
                raise
            raise WeightsError(f"cannot download {_hub_url(repo_id, revision, name)}: {_root_cause(e)}") from e
        folder = path.parent
    return folder


def _is_transfer_error(e: BaseException) -> bool:
    """The Hub client's network and HTTP errors (OSError subclasses, or httpx's HTTPError)."""
    return isinstance(e, OSError) or any(c.__name__ == "HTTPError" and c.__module__.startswith("httpx")
                                         for c in type(e).__mro__)


def _hub_url(repo_id: str, revision: str | None, name: str) -> str:
    from huggingface_hub import constants

    return f"{constants.ENDPOINT}/{repo_id}/resolve/{revision or 'main'}/{name}"


def _root_cause(e: BaseException) -> str:
    """The first line of the innermost error's message (the client wraps a 500 in 'cannot find in cache')."""
    seen = [e]
    while (nxt := seen[-1].__cause__ or seen[-1].__context__) is not None and nxt not in seen:
        seen.append(nxt)
    msgs = [f"{type(x).__name__}: {str(x).strip().splitlines()[0]}" for x in (seen[-1], e) if str(x).strip()]
    return msgs[0] if len(msgs) < 2 or msgs[0] == msgs[1] else f"{msgs[1]} ({msgs[0]})"


def local_folder(name: str | os.PathLike) -> Path | None:
    """The weights folder a name points at on disk, or None when it is not a path.

    'local-dir:PATH', a weights folder (holding config.json) or a run dir (its model/ folder); the same
    rule for `zoo.create` and every CLI verb. A path-like name that does not exist is an error naming it.
    """
    name = os.fspath(name)
    explicit = name.startswith("local-dir:")
    text = name[len("local-dir:"):] if explicit else name
    path = Path(text).expanduser()
    looks_like_path = explicit or os.sep in text or "/" in text or text.startswith((".", "~"))
    if not looks_like_path or (not explicit and ":" in text.split("/", 1)[0]):
        return None
    if (path / "model" / "config.json").is_file():  # a run directory
        return path / "model"
    if (path / "config.json").is_file():
        return path
    if explicit or path.is_dir() or path.parent.is_dir():
        what = "no such folder" if not path.exists() else "no config.json (not a weights folder or run dir)"
        raise FileNotFoundError(f"{path}: {what}")
    return None


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
    check_tag(tag)
    for root in weights_dirs():
        folder = safe_join(root, tag, what="tag")
        if (folder / "config.json").is_file() and (folder / WEIGHTS_FILE).is_file():
            return folder
    if env_weights_dirs():
        dirs = os.pathsep.join(str(d) for d in env_weights_dirs())
        raise WeightsError(f"ZOO_WEIGHTS_DIR={dirs} has no folder {tag}/ (config.json + {WEIGHTS_FILE}); "
                           f"`zoo download {tag} --to DIR` puts it there, or unset ZOO_WEIGHTS_DIR to use "
                           "the bundled copy or the Hub")
    card = get_card(tag)
    hub_repo, hub_rev = hub_location(card)
    log.info("zoo: %s not found locally, downloading from the Hub repo %s", tag, hub_repo)
    return _from_hub(hub_repo, revision or hub_rev)


def read_folder(folder: Path, *, tag: str | None = None, trust_unverified: bool = False) -> tuple[dict, dict]:
    """(config, state_dict) of a verified folder (`tag`: the published tag it was resolved by, if any)."""
    folder = Path(folder)
    config = read_config(folder / "config.json")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = [p.name for p in folder.glob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
        extra = f" (found {', '.join(pickles)}, which zoo refuses to unpickle)" if pickles else ""
        raise WeightsError(f"{folder}: no {WEIGHTS_FILE}{extra}")
    expected = trusted_sha256(config, folder, tag=tag, trust_unverified=trust_unverified or TRUST_UNVERIFIED)
    _check_safetensors(weights)
    sha = verify_file(weights, expected, tag=tag)
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


def adapt_channel_stats(values, in_chans: int) -> list[float]:
    """A per-channel statistic (input mean or std) for `in_chans` channels: the one rule zoo uses.

    Fewer channels take the average of the given ones (grey from RGB); more channels repeat them
    cyclically, as `adapt_input_weight` cycles the first layer's channels. `zoo.create(in_chans=)` and
    the timm wrapper's input spec both adapt mean and std with it.
    """
    values = [float(v) for v in values]
    if in_chans == len(values):
        return values
    if in_chans < len(values):
        return [sum(values) / len(values)] * in_chans
    return (values * in_chans)[:in_chans]


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


def _copy_folder(folder: Path, dest: Path) -> None:
    """Copy a weights folder's files (names checked) into `dest`, each file atomically."""
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest, recursive=False)
    for f in sorted(folder.iterdir()):
        if f.is_file():
            with atomic_path(safe_join(dest, f.name, what="file name")) as tmp:
                shutil.copyfile(f, tmp)


def download(names, *, local_dir: str | os.PathLike | None = None, force: bool = False,
             trust_unverified: bool = False) -> dict[str, Path]:
    """Fetch weights for an air-gapped machine: into the Hugging Face cache, and with `local_dir` also into
    `local_dir/<tag>/`, the layout `ZOO_WEIGHTS_DIR=local_dir` loads from.

    `names` are tags ("gcn.cora") or "hf-hub:org/repo[@rev]"; `zoo.download` (zoo.registry.download)
    also takes model names (their default tag). A tag shipped with zoo is copied from the package (no
    network). `force` downloads again even when the cache has the file: the repair for a corrupt cache
    entry. Every file is verified before it is reported.
    """
    out: dict[str, Path] = {}
    for name in [names] if isinstance(names, str) else names:
        if name.startswith("hf-hub:"):
            repo, rev = parse_hub_name(name)
            folder = _from_hub(repo, rev, force=force)
            expected = trusted_sha256(read_config(folder / "config.json"), folder,
                                      trust_unverified=trust_unverified)
            tag, dest_name = None, check_repo_id(repo).replace("/", "--")
        else:
            if "." not in name:
                check_name(name, "model name")
                raise ValueError(f"{name!r} is a model name, not a tag: zoo.download resolves it to its default "
                                 f"tag (zoo.weights.download takes tags and hf-hub names only)")
            tag = check_tag(name)
            card = get_card(tag)
            expected = trusted_sha256(card, Path(tag), tag=tag)
            bundled = bundled_weights_dir() / tag
            if not force and (bundled / WEIGHTS_FILE).is_file() and sha256_file(bundled / WEIGHTS_FILE) == expected:
                folder = bundled  # shipped with zoo: nothing to fetch
            else:
                folder = _from_hub(*hub_location(card), force=force)
            dest_name = tag
        _check_safetensors(folder / WEIGHTS_FILE)
        verify_file(folder / WEIGHTS_FILE, expected, tag=tag)
        if local_dir is not None:
            dest = safe_join(local_dir, dest_name, what="tag")
            _copy_folder(folder, dest)
            verify_file(dest / WEIGHTS_FILE, expected, tag=tag)
            folder = dest
        out[name] = folder
    return out


def _cached_folder(tag: str, card: dict) -> Path | None:
    """The Hub-cache snapshot folder of a tag's pinned revision, if its weights file is cached."""
    from huggingface_hub import try_to_load_from_cache

    repo, rev = hub_location(card)
    hit = try_to_load_from_cache(repo, WEIGHTS_FILE, revision=rev)
    return Path(hit).parent if isinstance(hit, str) else None


def verify_all(names=()) -> list[tuple[str, str, str]]:
    """Re-check weights against their trusted hash: rows (name, status, detail).

    Without names: every known tag found in a local weights dir or the Hub cache, plus every folder in
    `ZOO_WEIGHTS_DIR`. Status: ok | MISMATCH | UNVERIFIED (no trusted hash) | absent (not on this machine;
    a failure only for a name asked for). Names may be tags or folder paths.
    """
    cards = load_index()
    todo: list[tuple[str, Path | None, str | None]] = []  # (label, folder, tag resolved by)
    if names:
        for name in names:
            folder = local_folder(name)
            if folder is not None:
                todo.append((str(name), folder, None))
            else:
                tag = check_tag(name)
                get_card(tag)
                todo.append((tag, None, tag))
    else:
        todo = [(tag, None, tag) for tag in sorted(cards)]
        for root in env_weights_dirs():
            todo += [(str(c.parent), c.parent, None) for c in sorted(root.glob("*/config.json"))
                     if c.parent.name not in cards]
    rows = []
    for label, folder, tag in todo:
        if folder is None:
            folder = next((d / tag for d in weights_dirs() if (d / tag / WEIGHTS_FILE).is_file()), None)
            folder = folder or _cached_folder(tag, cards[tag])
        if folder is None:
            rows.append((label, "absent" if not names else "MISSING", "not on this machine (zoo download fetches it)"))
            continue
        try:
            expected = trusted_sha256(read_config(folder / "config.json"), folder, tag=tag)
            _check_safetensors(folder / WEIGHTS_FILE)
            verify_file(folder / WEIGHTS_FILE, expected, tag=tag)
            rows.append((label, "ok", str(folder)))
        except WeightsError as e:
            status = "UNVERIFIED" if "cannot verify" in str(e) else "MISMATCH"
            rows.append((label, status, str(e)))
    return rows


VERIFY_FAILURES = ("MISMATCH", "UNVERIFIED", "MISSING")


def card_summary(card: dict) -> dict[str, Any]:
    """The headline numbers of a card for tables: main metric, value."""
    expect = card.get("expect") or {}
    metric = expect.get("metric") or next(iter(card.get("metrics", {})), None)
    return {"metric": metric, "value": card.get("metrics", {}).get(metric) if metric else None}

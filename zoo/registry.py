"""The model registry and `create`, the one way to build any zoo model.

Names:
  "unet3d"                  a registered architecture (a family name or a variant such as "nerf_vanilla")
  "unet3d.mni152_tissue"    a tag: an architecture plus published weights (its card)
  "hf-hub:org/repo[@rev]"   any Hub repo in zoo's folder format
  "local-dir:PATH"          the same, on disk

Model families register themselves when their model module (zoo/families/<family>/model.py) is
imported; the registry imports them on first use (plus modules named in `ZOO_PLUGINS` and the
`zoo.models` entry-point group), so `import zoo` stays light and adding a family touches nothing here.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import inspect
import logging
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import weights as W

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    task: str
    builder: Callable[..., Any]  # the class (or a partial of it with the variant's model_args) or a function
    default_tag: str | None = None
    description: str = ""
    input_spec: dict = field(default_factory=dict)
    module: str = ""  # where it was registered: its family's model module


_MODELS: dict[str, ModelSpec] = {}
_discovered = False


def register_model(name: str | None = None, *, task: str, default_tag: str | None = None,
                   family: str | None = None, input_spec: dict | None = None, model_args: dict | None = None,
                   description: str | None = None):
    """Decorator registering a model class (or a builder function) under `name` (default: its __name__).

    A class is registered as it is: its `__init__` signature is the model's arguments and defaults,
    written once. A variant passes only what differs, by keyword, as `model_args` (timm's pattern):

        register_model("bev", task="bev_segmentation", default_tag="bev.synthetic")(BEVFormer)
        register_model("cnn_medium", task="classification", model_args={"widths": (64, 128, 256)})(CNN)

    `task` names the task (zoo/families/<family>/task.py, or a dotted module for plug-ins) that trains
    and evaluates it; `default_tag` is the weight `create(name, pretrained=True)` loads; `description`
    defaults to the first line of the docstring. Registering a name twice raises ValueError.
    """

    def deco(fn):
        model_name = name or fn.__name__
        if model_name in _MODELS:
            raise ValueError(f"model {model_name!r} is already registered (by {_MODELS[model_name].module})")
        if "." in model_name or ":" in model_name:
            raise ValueError(f"model name {model_name!r} may not contain '.' or ':' (they mark tags and sources)")
        builder = fn
        if model_args:
            try:
                inspect.signature(fn).bind_partial(**model_args)
            except TypeError as e:
                raise ValueError(f"{model_name}: model_args {sorted(model_args)} do not fit {fn.__name__}: {e}") from e
            builder = functools.partial(fn, **model_args)
        fam = family or _family_of(fn.__module__)
        doc = description or (inspect.getdoc(fn) or "").split("\n", 1)[0]
        _MODELS[model_name] = ModelSpec(model_name, fam, task, builder, default_tag, doc, dict(input_spec or {}),
                                        fn.__module__)
        return fn

    return deco


def _family_of(module: str) -> str:
    """zoo.families.bev.model -> "bev" (a family package's model module); my_pkg.toy -> "toy"."""
    package, _, leaf = module.rpartition(".")
    return package.rpartition(".")[2] if leaf == "model" and package else leaf


def family_modules(part: str = "model") -> list[str]:
    """`zoo.families.<family>.<part>` for every family package that has that part (no import)."""
    from . import families

    out = []
    for m in pkgutil.iter_modules(families.__path__):
        if m.ispkg and not m.name.startswith("_"):
            if (Path(m.module_finder.path) / m.name / f"{part}.py").is_file():
                out.append(f"zoo.families.{m.name}.{part}")
    return out


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    modules = family_modules("model")
    modules += [m.strip() for m in os.environ.get("ZOO_PLUGINS", "").split(",") if m.strip()]
    for mod in modules:
        importlib.import_module(mod)
    from importlib.metadata import entry_points

    for ep in entry_points(group="zoo.models"):
        ep.load()


def task_modules(task: str) -> list[str]:
    """`<package>.task` next to each model module that registers `task` (zoo.families.<family>.task)."""
    _discover()
    out = []
    for spec in _MODELS.values():
        package = spec.module.rpartition(".")[0]
        if spec.task == task and package and f"{package}.task" not in out:
            out.append(f"{package}.task")
    return out


def get_spec(name: str) -> ModelSpec:
    _discover()
    if name not in _MODELS:
        import difflib

        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; see zoo.list_models() ({len(_MODELS)} models)"
        raise KeyError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def is_model(name: str) -> bool:
    _discover()
    arch = name.split(".", 1)[0]
    if arch not in _MODELS:
        return False
    return "." not in name or name in W.load_index()


def list_models(filter: str = "", *, task: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered architectures (or, with pretrained=True, published tags) matching an fnmatch filter."""
    _discover()
    if pretrained:
        names = list_pretrained()
        if task:
            names = [t for t in names if W.get_card(t).get("task") == task]
    else:
        names = sorted(n for n, s in _MODELS.items() if task is None or s.task == task)
    return [n for n in names if not filter or fnmatch.fnmatch(n, filter)]


def list_pretrained(filter: str = "") -> list[str]:
    return sorted(t for t in W.load_index() if not filter or fnmatch.fnmatch(t, filter))


def default_tag_of(name: str) -> str:
    spec = get_spec(name)
    if not spec.default_tag:
        raise ValueError(f"{name!r} has no published default weights; see zoo.list_pretrained('{name}*')")
    return spec.default_tag


def download(names, **kwargs) -> dict[str, Path]:
    """`zoo.weights.download` that also takes model names ("gcn": its default tag); same keywords.

    The keys of the result are the names as given."""
    names = [names] if isinstance(names, str) else list(names)
    tags = {n: n if "." in n or n.startswith("hf-hub:") else default_tag_of(W.check_name(n, "model name"))
            for n in names}
    got = W.download(list(dict.fromkeys(tags.values())), **kwargs)
    return {n: got[t] for n, t in tags.items()}


def model_info(name: str) -> dict:
    """The card of a tag, or for an architecture its spec plus its default card (if any)."""
    if "." in name:
        return dict(W.get_card(name))
    spec = get_spec(name)
    info = {"arch": spec.name, "family": spec.family, "task": spec.task, "description": spec.description,
            "default_tag": spec.default_tag, "input_spec": spec.input_spec,
            "pretrained": list_pretrained(f"{spec.name}.*")}
    if spec.default_tag and spec.default_tag in W.load_index():
        info["default_card"] = W.get_card(spec.default_tag)
    return info


# --------------------------------------------------------------------------- create


def _source_of(name: str, pretrained) -> tuple[str, dict | None, Path | None, str | None]:
    """(arch, card, folder-or-None, the published tag it was resolved by or None) for any accepted name /
    pretrained combination. Only a folder found by tag is checked against the packaged index."""
    folder = W.local_folder(name)  # "local-dir:PATH", a weights folder or a run dir: as on the command line
    card = None
    if folder is not None or name.startswith("hf-hub:"):
        if folder is None:
            repo, rev = W.parse_hub_name(name)
            folder = W.resolve(repo_id=repo, revision=rev)
        card = W.read_config(folder / "config.json")
        if "arch" not in card:
            raise W.WeightsError(f"{folder / 'config.json'}: no 'arch' key, so zoo cannot tell which model it is")
        return card["arch"], card, folder if pretrained else None, None
    arch, _, short = name.partition(".")
    tag = name if short else None
    if isinstance(pretrained, (str, os.PathLike)) and pretrained is not True:
        p = str(pretrained)
        if os.sep in p or p.startswith(".") or Path(p).is_dir():
            folder = W.local_folder(p if os.sep in p or p.startswith(".") else "./" + p)
            card = W.read_config(folder / "config.json")
            return card.get("arch", arch), card, folder, None
        tag = p if "." in p else f"{arch}.{p}"
    elif pretrained is True and tag is None:
        tag = default_tag_of(arch)
    if tag is not None:
        card = W.get_card(tag)
        arch = card["arch"]
        if pretrained:
            folder = W.resolve(tag)
    return arch, card, folder, tag


def _with_defaults(spec: ModelSpec, args: dict) -> dict:
    try:
        bound = inspect.signature(spec.builder).bind(**args)
    except TypeError as e:
        raise ValueError(f"{spec.name}: bad constructor arguments {sorted(args)}: {e}") from e
    bound.apply_defaults()
    out = {}
    for name, param in bound.signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            out.update(bound.arguments.get(name, {}))
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
            out[name] = bound.arguments[name]
    return out


def create(name: str, pretrained: bool | str | os.PathLike = False, *, num_classes: int | None = None,
           in_chans: int | None = None, trust_unverified: bool = False, **kwargs) -> Any:
    """Build a registered model, optionally with published weights, in eval mode.

    Args:
        name: architecture, tag, "hf-hub:org/repo[@rev]" or "local-dir:PATH".
        pretrained: False | True (the tag in `name`, else the family default) | "tag" | a folder path.
        num_classes / in_chans: when they differ from the weights, the head is re-initialised and the
            first layer adapted (any conv dimension); a log line says what changed.
        trust_unverified: load a folder whose card has no sha256 (with a warning) instead of refusing it.
        **kwargs: constructor arguments overriding the card's.
    """
    name = os.fspath(name)
    prefix, slash, inner = name.partition("/")
    if slash and not name.startswith(("hf-hub:", "local-dir:")) and W.local_folder(name) is None:
        # "timm/resnet18": a registered wrapper ("timm") builds an outside model by name; its own
        # library handles pretrained weights and the head, so zoo passes both through.
        if not is_model(prefix):
            raise FileNotFoundError(f"{name}: no such weights folder or run directory "
                                    f"(and {prefix!r} is not a registered model wrapper)")
        spec = get_spec(prefix)
        model = spec.builder(model_name=inner, pretrained=bool(pretrained), num_classes=num_classes,
                             in_chans=in_chans, **kwargs)
        model.pretrained_cfg = {"arch": prefix, "family": spec.family, "task": spec.task,
                                "model_args": {"model_name": inner, **kwargs,
                                               **({"num_classes": num_classes} if num_classes else {}),
                                               **({"in_chans": in_chans} if in_chans else {})},
                                "input_spec": dict(getattr(model, "input_spec", spec.input_spec)),
                                "labels": None, "tag": None, "source": f"{prefix}:{inner}"}
        return model.eval()
    arch, card, folder, by_tag = _source_of(name, pretrained)
    if folder is not None and isinstance((card or {}).get("deploy"), dict):  # zoo quantize / zoo prune output
        from .deploy.folder import load_folder

        return load_folder(folder, card, trust_unverified=trust_unverified,
                           changes={**kwargs, "num_classes": num_classes, "in_chans": in_chans})
    spec = get_spec(arch)
    args = dict((card or {}).get("model_args", {}))
    args.update(kwargs)
    full = _with_defaults(spec, args)
    card_classes, card_in = full.get("num_classes"), full.get("in_chans")
    if num_classes is not None:
        args["num_classes"] = num_classes
    if in_chans is not None:
        args["in_chans"] = in_chans
    args = _with_defaults(spec, args)  # the card records every constructor argument, defaults included
    model = spec.builder(**args)
    cfg: dict[str, Any] = {
        "arch": arch, "family": spec.family, "task": spec.task, "model_args": args,
        "input_spec": dict((card or {}).get("input_spec") or spec.input_spec),
        "labels": (card or {}).get("labels"),
    }
    if folder is not None:
        loaded_cfg, state = W.read_folder(folder, tag=by_tag, trust_unverified=trust_unverified)
        state, changed = W.adapt_state_dict(model, state, in_chans=in_chans, num_classes=num_classes,
                                            card_in=card_in, card_classes=card_classes)
        heads = getattr(model, "classifier", None) if any("re-initialised" in c for c in changed) else None
        heads = () if heads is None else (heads,) if isinstance(heads, str) else tuple(heads)
        W.load_state(model, state, allowed_missing=heads)
        for line in changed:
            log.warning("zoo: %s: %s", loaded_cfg.get("tag", arch), line)
        if heads:
            cfg["labels"] = None
        if in_chans is not None and in_chans != card_in and cfg["input_spec"].get("mean"):
            spec_in = cfg["input_spec"]
            spec_in["channels"] = in_chans
            for key in ("mean", "std"):
                spec_in[key] = W.adapt_channel_stats(spec_in[key], in_chans)
        cfg.update({"tag": loaded_cfg.get("tag"), "source": str(folder),
                    "sha256": loaded_cfg["files"][W.WEIGHTS_FILE]["sha256"],
                    "revision_resolved": folder.name if "snapshots" in folder.parts else "local",
                    "metrics": loaded_cfg.get("metrics", {}), "license": loaded_cfg.get("license"),
                    "datasets": loaded_cfg.get("datasets")})
        if changed:  # an adapted head or first layer is another model: the parent's metrics do not describe it
            from .cards import derived_from

            cfg.update(metrics={}, derived_from=derived_from(cfg, changed))
        from .cards import state_digest

        cfg["state_digest"] = state_digest(model)  # save_pretrained tells a model trained after loading by it
    elif card is not None:
        cfg["tag"] = None  # the card's architecture without its weights
    model.pretrained_cfg = cfg
    return model.eval()

"""Recipes: YAML files that say how a published weight is trained, validated up front.

A recipe has the sections task, model, optim, schedule, train, expect, weights (the engine's) and the
task's own: data and augment for most (`Task.sections()`: its `DATA_SCHEMA` / `AUGMENT_SCHEMA`), others
where a task needs them (dqn's `algo`). A task that uses engine keys only in part says which
(`Task.ENGINE_KEYS`): any other key is refused, never silently ignored; a key a task moved
(`Task.MOVED`) is refused with its new place. Errors name the key path, the expected type and, for
unknown keys, the closest known one. Numbers have ranges (`F(int, 32, ge=1)`) and names a grammar
(`F(str, check=...)`), checked where the keys are, with the key path in the error. A key written twice
in one mapping is an error (PyYAML would silently keep the last). Overrides use `key.sub=value` (value
parsed as YAML) and `~key.sub` to delete a key.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import io
import operator
import re
from pathlib import Path
from typing import Any

import yaml

from .utils import bundled_dir, check_name

REQUIRED = object()
ANY = object()


class RecipeError(ValueError):
    pass


_BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def F(types, default=REQUIRED, doc: str = "", *, check=None, **bounds):
    """A schema field: allowed type(s) (or a nested schema dict), default (REQUIRED if none), and optional
    bounds on numbers (ge=, gt=, le=, lt=) and a `check(value)` that raises ValueError for a bad value."""
    unknown = set(bounds) - set(_BOUNDS)
    if unknown:
        raise TypeError(f"F: unknown bound(s) {sorted(unknown)}; use {', '.join(_BOUNDS)}")
    return (types, default, doc, (check, bounds))


PROB = {"ge": 0.0, "le": 1.0}  # F(NUM, 0.5, **PROB): a probability or fraction in [0, 1]


def fields_from_defaults(defaults: dict) -> dict:
    """Schema fields for a task's augmentation defaults: the type follows the default; a number named as a
    probability (`p`, `*_p`, `p_*`) lies in [0, 1], any other number (degrees, std, strength) is >= 0."""
    def field(key, value):
        if isinstance(value, (bool, list)):
            return F(type(value), value)
        prob = key == "p" or key.endswith("_p") or key.startswith("p_")
        return F(NUM, value, **(PROB if prob else {"ge": 0}))

    return {k: field(k, v) for k, v in defaults.items()}


def _plain(value):
    """A signature default as YAML writes it: tuples become lists (nested too)."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _arg_docs(cls) -> dict[str, str]:
    """{argument: its line} from the `Args:` section of a class docstring (Google style)."""
    docs, inside = {}, False
    for line in (inspect.getdoc(cls) or "").splitlines():
        if line.strip() == "Args:":
            inside = True
        elif inside and line and not line.startswith(" "):
            break
        elif inside and (m := re.match(r"\s+(\w+): (.+)", line)):
            docs[m.group(1)] = m.group(2).strip()
    return docs


def fields_from_signature(cls, exclude: tuple[str, ...] = ()) -> dict:
    """Schema fields for the constructor arguments of an augmentation class: defaults from its signature and
    docs from its docstring's `Args:`, so a recipe's defaults are the class's own (one place, no drift).
    Types and ranges as in `fields_from_defaults`; `exclude` names arguments a recipe does not set."""
    docs = _arg_docs(cls)
    out = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in exclude or param.default is inspect.Parameter.empty:
            continue
        (types, default, _, rule), = fields_from_defaults({name: _plain(param.default)}).values()
        out[name] = (types, default, docs.get(name, ""), rule)
    return out


def _check_value(value, rule, kpath: str) -> None:
    check, bounds = rule
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for name, bound in bounds.items():
            op, sign = _BOUNDS[name]
            if not op(value, bound):
                raise RecipeError(f"{kpath}: must be {sign} {bound}, got {value!r}")
    if check is not None and value is not None:
        try:
            check(value)
        except ValueError as e:
            raise RecipeError(f"{kpath}: {e}") from e


def _tag(value: str) -> None:
    check_name(value, "tag")
    if "." not in value:
        raise ValueError(f"invalid tag {value!r}: expected arch.name")


def _repo(value: str) -> None:
    check_name(value, "Hugging Face repo id", slashes=1)


NUM = (int, float)
OPT_STR = (str, type(None))

ENGINE_SCHEMA: dict[str, Any] = {
    "task": F(str),
    "description": F(str, ""),
    "model": {
        "name": F(str),
        "pretrained": F((bool, str), False),
        "args": F(dict, {}),
    },
    "optim": {
        "name": F(str, "adamw", "adamw | adam | sgd"),
        "lr": F(NUM, 1e-3, ge=0),
        "weight_decay": F(NUM, 0.0, ge=0),
        "momentum": F(NUM, 0.9, **PROB),
        "nesterov": F(bool, False),
        "betas": F(list, [0.9, 0.999]),
        "eps": F(NUM, 1e-8, gt=0),
    },
    "schedule": {
        "name": F(str, "constant", "constant | cosine | onecycle | step"),
        "warmup_steps": F(int, 0, ge=0),
        "warmup_epochs": F(NUM, 0, ge=0),
        "min_lr_ratio": F(NUM, 0.0, **PROB),
        "step_size": F(NUM, 1, "step: decay every this many epochs", gt=0),
        "gamma": F(NUM, 0.1, gt=0),
        "pct_start": F(NUM, 0.25, **PROB),
        "progress": F(str, "steps", "steps | time: time also counts the elapsed share of train.max_minutes, "
                                    "so a slower machine anneals by the deadline"),
    },
    "train": {
        "epochs": F(NUM, 1, ge=0),
        "max_steps": F((int, type(None)), None, ge=1),
        "batch_size": F(int, 32, ge=1),
        "eval_batch_size": F((int, type(None)), None, ge=1),
        "grad_clip": F((int, float, type(None)), None, gt=0),
        "accumulate": F(int, 1, ge=1),
        "amp": F((bool, str), "auto", "auto (bf16 on GPU) | true (bf16 where native: GPU, AVX-512 BF16/AMX CPU) "
                                        "| force | false"),
        "compile": F(bool, False),
        "channels_last": F((bool, str), "auto"),
        "ema": F((float, type(None)), None, "EMA decay of the weights, e.g. 0.999", gt=0, lt=1),
        "early_stop": F((int, type(None)), None, "stop after this many evals without improvement", ge=1),
        "seed": F(int, 0, ge=0),
        "deterministic": F(bool, False),
        "device": F(str, "auto"),
        "eval_every": F(NUM, 1, "epochs between validations (0: only at the end; the end is always validated)",
                        ge=0),
        "ckpt_every": F((int, type(None)), None, "steps between checkpoints (default: each epoch)", ge=1),
        "ckpt_min_seconds": F(NUM, 0, "skip a due checkpoint until this many seconds passed since the last "
                                      "(runs of seconds need only the final one); 0: every ckpt_every steps", ge=0),
        "log_every": F(int, 50, ge=1),
        "max_minutes": F((int, float, type(None)), None, gt=0),
        "threads": F((int, type(None)), None, ge=1),
        "distill": {  # knowledge distillation (Hinton et al. 2015), see zoo.deploy.distill
            "teacher": F(OPT_STR, None, "tag, weights folder or run dir of the teacher; None: no distillation"),
            "temperature": F(NUM, 4.0, "softmax temperature T of the KL term (scaled by T^2)", gt=0),
            "alpha": F(NUM, 0.5, "weight of the KL term; 1 - alpha weighs the task's own loss", **PROB),
        },
        "profile": F(bool, False, "profile a few training steps with torch.profiler (trace in the run dir)"),
    },
    "expect": {
        "metric": F(str),
        "value": F(NUM),
        "tolerance": F(NUM, 0.0, ge=0),
        "mode": F(str, "max", "max: higher is better | min"),
    },
    "weights": {
        "tag": F(str, check=_tag),
        "license": F(str, "apache-2.0"),
        "hub_repo": F(OPT_STR, None, check=_repo),
        "datasets": F(list, []),
        "summary": F(str, ""),
    },
}

TASK_SECTIONS = ("data", "augment")


# --------------------------------------------------------------------------- validation


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_type(value, types) -> bool:
    if types is ANY:
        return True
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False  # YAML's true is not an int here
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _yaml11_float(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def validate_section(values: Any, schema: dict, path: str) -> dict:
    """Fill defaults and check one mapping against `schema`; raises RecipeError naming the key path."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{path or 'recipe'}: expected a mapping, got {type(values).__name__}")
    out: dict[str, Any] = {}
    for key in values:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean {(path + '.' if path else '') + close[0]!r}?)" if close else ""
            raise RecipeError(f"unknown key {(path + '.' if path else '') + str(key)!r}{hint}; "
                              f"known: {', '.join(schema)}")
    for key, field in schema.items():
        kpath = f"{path}.{key}" if path else key
        if isinstance(field, dict):
            out[key] = validate_section(values.get(key), field, kpath)
            continue
        types, default = field[0], field[1]
        if key not in values:
            if default is REQUIRED:
                raise RecipeError(f"missing required key {kpath!r} ({_type_name(types)})")
            out[key] = copy.deepcopy(default)
            continue
        value = values[key]
        if isinstance(value, str) and float in (types if isinstance(types, tuple) else (types,)):
            value = _yaml11_float(value)  # YAML 1.1 reads "3e-4" as a string; every ML user writes it
        if not _check_type(value, types):
            raise RecipeError(f"{kpath}: expected {_type_name(types)}, got {value!r} ({type(value).__name__})")
        if len(field) > 3:
            _check_value(value, field[3], kpath)
        out[key] = value
    return out


def _get(recipe: dict, dotted: str):
    node = recipe
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


def validate(recipe: dict, task_schemas: dict[str, dict] | None = None, *, engine_keys: dict | None = None,
             moved: dict[str, str] | None = None, task: str = "this task") -> dict:
    """The fully resolved recipe: engine sections checked here, the task's own sections (data, augment, or
    whatever `task_schemas` names, e.g. dqn's algo) by its schemas.

    engine_keys: {section: keys the task uses} for engine sections it uses only in part (an empty tuple: not at
        all); a key outside them is refused, naming it, and left out of the resolved recipe.
    moved: {old key path: new key path} for keys a task moved; the old one is refused with where to write it.
    """
    if not isinstance(recipe, dict):
        raise RecipeError(f"a recipe is a mapping of sections, got {type(recipe).__name__}")
    for old, new in (moved or {}).items():
        if _get(recipe, old) is not None:
            raise RecipeError(f"{old}: {task} reads this from {new} now; move it there (`{new}:`)")
    schema = dict(ENGINE_SCHEMA)
    for section, keys in (engine_keys or {}).items():
        given = recipe.get(section)
        unused = [k for k in (given if isinstance(given, dict) else {}) if k in schema[section] and k not in keys]
        if not keys and given is not None:
            raise RecipeError(f"{section}: {task} does not use this section; remove it")
        if unused:
            raise RecipeError(f"{', '.join(f'{section}.{k}' for k in unused)}: not used by {task}, which reads only "
                              f"{', '.join(f'{section}.{k}' for k in keys)}; remove it")
        schema[section] = {k: v for k, v in schema[section].items() if k in keys}
        if not keys:
            del schema[section]
    task_schemas = task_schemas or {s: F(dict, {}) for s in TASK_SECTIONS}
    for section, sub in task_schemas.items():
        if section in schema:
            raise TypeError(f"task section {section!r} clashes with the engine's section of that name")
        schema[section] = sub if sub is not None else F(dict, {})
    if "weights" not in recipe:
        schema = {k: v for k, v in schema.items() if k != "weights"}
    if "expect" not in recipe:
        schema = {k: v for k, v in schema.items() if k != "expect"}
    return validate_section(recipe, schema, "")


# --------------------------------------------------------------------------- files and overrides


def recipes_dir() -> Path:
    return bundled_dir("recipes")


def list_recipes() -> list[str]:
    root = recipes_dir()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml"))


def find(name: str | Path) -> Path:
    """A recipe by path, or by name 'family/name' (also 'family.name', with or without .yaml)."""
    p = Path(name)
    if p.is_file():
        return p
    key = str(name).removesuffix(".yaml")
    if "/" not in key:
        key = key.replace(".", "/", 1)
    cand = recipes_dir() / f"{key}.yaml"
    if cand.is_file():
        return cand
    close = difflib.get_close_matches(key, list_recipes(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `zoo recipes` lists them"
    raise RecipeError(f"no recipe {str(name)!r}{hint}")


def load(name: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict, Path]:
    """(raw recipe with overrides applied, its path). Validation happens once the task is known."""
    path = find(name)
    return apply_overrides(load_yaml(path), overrides), path


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key written twice in one mapping (and, like safe_load, any tag)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (line {mark.line + 1}): a recipe says each key once", mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str = "<string>") -> Any:
    """YAML text -> data with duplicate keys refused; RecipeError naming `where` for anything invalid."""
    stream = io.StringIO(text)
    stream.name = where  # PyYAML names the stream in its error marks
    try:
        return yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise RecipeError(f"{where}: not valid YAML: {e}") from e


def load_yaml(path: str | Path) -> dict:
    """A recipe file as a mapping: unreadable, invalid, duplicate-keyed or non-mapping files are RecipeErrors."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: cannot read the recipe ({e})") from e
    raw = parse_yaml(text, str(path)) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got a YAML {type(raw).__name__}")
    return raw


def apply_overrides(recipe: dict, overrides) -> dict:
    recipe = copy.deepcopy(recipe)
    for item in overrides:
        if item.startswith("~"):
            keys = item[1:].split(".")
            node = recipe
            for k in keys[:-1]:
                node = node.get(k, {}) if isinstance(node, dict) else {}
            if not isinstance(node, dict) or keys[-1] not in node:
                raise RecipeError(f"override {item!r}: no key {item[1:]!r} to delete")
            del node[keys[-1]]
            continue
        if "=" not in item:
            raise RecipeError(f"override {item!r}: expected key.path=value or ~key.path")
        key, _, text = item.partition("=")
        value = parse_yaml(text, f"override {item!r}") if text != "" else None
        node = recipe
        keys = key.strip().split(".")
        if not all(keys):
            raise RecipeError(f"override {item!r}: empty key in {key!r}")
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return recipe


def dump(recipe: dict) -> str:
    return yaml.safe_dump(recipe, sort_keys=False)

"""The package layout: families as packages, the old module paths (deprecated), an acyclic import graph."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import zoo
from zoo._compat import MOVED
from zoo.registry import family_modules
from zoo.tasks import get_task

FAMILIES = ("bev", "cnn", "dqn", "gcn", "nerf", "patchcore", "unet3d")


def test_every_family_is_a_package_with_model_and_task():
    assert [m.split(".")[2] for m in family_modules("model")] == list(FAMILIES)
    assert [m.split(".")[2] for m in family_modules("task")] == list(FAMILIES)
    for fam in FAMILIES:
        doc = importlib.import_module(f"zoo.families.{fam}").__doc__
        assert "model.py" in doc and "task.py" in doc and f"recipes/{fam}/" in doc, fam


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_same_module_with_a_warning(old):
    new = importlib.import_module(MOVED[old])
    saved = sys.modules.pop(old, None)
    try:
        with pytest.warns(DeprecationWarning, match=rf"{old} moved to {MOVED[old]}"):
            alias = importlib.import_module(old)
        assert alias is new
        assert alias.__name__ == MOVED[old] and alias.__spec__.name == MOVED[old]
        package, _, leaf = old.rpartition(".")
        assert getattr(sys.modules[package], leaf) is new
    finally:
        if saved is not None:
            sys.modules[old] = saved


def test_from_import_of_an_old_path():
    sys.modules.pop("zoo.tasks.rl", None)
    with pytest.warns(DeprecationWarning):
        from zoo.tasks.rl import TASK
    assert TASK is get_task("rl")


def test_rig_augment_old_attribute():
    from zoo.families.bev.augment import RigAugment

    with pytest.warns(DeprecationWarning, match="zoo.augment.RigAugment moved"):
        assert zoo.augment.RigAugment is RigAugment
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        zoo.augment.Nope  # noqa: B018


def test_tasks_found_by_name_next_to_their_models():
    for arch in zoo.list_models():
        spec = zoo.registry.get_spec(arch)
        if spec.module.startswith("zoo.families."):
            task = get_task(spec.task)
            assert type(task).__module__ == spec.module.replace(".model", ".task")
            assert spec.family == spec.module.split(".")[2]
    with pytest.raises(ValueError, match=r"unknown task 'segmentation'.*known: .*bev_segmentation"):
        get_task("segmentation")
    with pytest.raises(ValueError, match="no module nope.task"):
        get_task("nope.task")


def test_no_warning_on_the_new_paths():
    import subprocess

    code = ("import warnings; warnings.simplefilter('always'); import zoo\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    zoo.list_models()\n"
            "    from zoo.tasks import get_task\n"
            "    [get_task(t) for t in ('classification', 'rl', 'bev_segmentation', 'novel_view')]\n"
            "print([str(w.message) for w in seen if 'moved to' in str(w.message)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_classes_are_registered_and_variants_pass_only_what_differs():
    from zoo.families.cnn.model import CNN
    from zoo.families.gcn.model import GCN

    assert zoo.registry.get_spec("cnn").builder is CNN  # the class itself: its defaults are written once
    medium = zoo.create("cnn_medium").pretrained_cfg["model_args"]
    assert medium["widths"] == (64, 128, 256) and medium["drop_rate"] == 0.1 and medium["depths"] == (2, 2, 2)
    assert zoo.create("cnn_medium", drop_rate=0.0).pretrained_cfg["model_args"]["drop_rate"] == 0.0
    assert zoo.create("gcn").pretrained_cfg["model_args"]["in_chans"] == 1433
    with pytest.raises(ValueError, match="model_args \\['nope'\\] do not fit GCN"):
        zoo.register_model("gcn_bad", task="node_classification", model_args={"nope": 1})(GCN)


def test_one_channel_statistics_rule():
    from zoo.families.cnn.model import timm_input_spec
    from zoo.weights import adapt_channel_stats

    assert adapt_channel_stats([0.2, 0.4, 0.6], 1) == pytest.approx([0.4])
    assert adapt_channel_stats([0.5], 3) == [0.5, 0.5, 0.5]
    assert adapt_channel_stats([1, 2], 3) == [1.0, 2.0, 1.0]
    assert adapt_channel_stats([1, 2, 3], 3) == [1.0, 2.0, 3.0]
    spec = timm_input_spec({"mean": (0.2, 0.4, 0.6), "std": (0.1, 0.2, 0.3)}, 1)
    assert spec["mean"] == pytest.approx([0.4]) and spec["std"] == pytest.approx([0.2])
    created = zoo.create("cnn", pretrained=True, in_chans=3).pretrained_cfg["input_spec"]
    card = zoo.model_info("cnn.fashion_mnist")["input_spec"]
    assert created["mean"] == adapt_channel_stats(card["mean"], 3) and created["channels"] == 3


# --------------------------------------------------------------------------- the import graph

ZOO = Path(__file__).resolve().parent.parent / "zoo"

# Imports inside functions that close a cycle, each with why it stays lazy. A new lazy cycle fails
# the test until it is removed or listed here with its reason.
LAZY_CYCLES = {
    frozenset({"zoo.cards", "zoo.weights"}):
        "weights writes a card's README with zoo.cards; cards read the packaged index (weights) to name a "
        "derived model's parent. cards is the text view of weights' data and loads only when a card is written",
    frozenset({"zoo.deploy.profile", "zoo.deploy.prune", "zoo.deploy.quantize", "zoo.engine",
               "zoo.engine.reproducing", "zoo.engine.run", "zoo.engine.trainer"}):
        "deploy's distill/prune recovery trains with the engine, and `zoo reproduce` re-runs deploy cards",
    frozenset({"zoo.deploy", "zoo.deploy.exporter", "zoo.deploy.folder", "zoo.deploy.graphs", "zoo.registry",
               "zoo.families.nerf.model", "zoo.families.patchcore.model"}):
        "zoo.create hands a deployed (quantized or pruned) folder to zoo.deploy.folder, which first builds the "
        "float model with zoo.create; the exporter builds its model with zoo.create too, and its export graphs "
        "call the families' own functions (patchcore's blur, nerf's spherical harmonics) so that they agree",
    frozenset({"zoo.families.cnn.task", "zoo.samples"}):
        "the shipped samples are cut from the cnn task's test split; the task draws them with zoo.samples",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ZOO.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level: bool) -> set[str]:
    """Modules a file imports (`from pkg import name` counts pkg.name too: it may be a module)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and module_level:
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - child.level + 1] if child.level else []
                target = ".".join(base + ([child.module] if child.module else []))
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph(module_level: bool) -> dict[str, set[str]]:
    """zoo module -> the zoo modules it imports (a package's __init__ counts when it is not the importer's own)."""
    files = {_module_name(p): p for p in ZOO.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        edges = set()
        for target in _imports(path, module_level):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                own_package = module == name or module.startswith(name + ".")
                if name in files and not own_package and (i == len(parts) or name != target):
                    edges.add(name)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_module_level_import_graph_is_acyclic():
    assert cycles(import_graph(module_level=True)) == []


def test_lazy_import_cycles_are_the_listed_ones():
    found = cycles(import_graph(module_level=False))
    unlisted = [sorted(c) for c in found if not any(c <= allowed for allowed in LAZY_CYCLES)]
    assert not unlisted, f"new import cycles through function-level imports (break them or list them): {unlisted}"
    for pair in ({"zoo.cli", "zoo.tour"}, {"zoo.registry", "zoo.weights"}):  # the cycles issue 21 removed
        assert not any(pair <= c for c in found), f"{sorted(pair)} import each other again"


def test_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_files_in_zoo_stay_short():
    lengths = {str(p.relative_to(ZOO.parent)): len(p.read_text().splitlines()) for p in ZOO.rglob("*.py")}
    long = {path: n for path, n in lengths.items() if n > 700}
    assert not long, f"files over 700 lines (split them by responsibility): {long}"

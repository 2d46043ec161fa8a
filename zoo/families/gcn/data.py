"""Graphs for node classification: Planetoid citation graphs, custom graphs, a generator.

Sources
  planetoid(name)          Cora, CiteSeer or PubMed with the fixed public split of Kipf & Welling
                           (20 labelled nodes per class for training, 500 validation, 1,000 test).
                           The raw files are read offline from `data_root()/planetoid/<Name>/raw/`;
                           PyG's `Planetoid` processes them in a cache folder (the data root is
                           never written to). Without local raw files PyG downloads them as usual.
  read_graph(path)         a custom graph: a saved PyG `Data` file or a folder of CSV files (below).
  synthetic_graph(...)     a stochastic block model with class-dependent sparse features (tests,
                           docs, and a stand-in for "your own graph").

Custom graphs, validated up front (errors name the file, the row and what was expected):
  graph.pt      `torch.save(data, "graph.pt")` of a `torch_geometric.data.Data` (or a dict) with
                x (N, F) float, edge_index (2, E) int, y (N,) int (-1 = unlabelled) and optional
                train_mask / val_mask / test_mask (N,) bool. Loaded with
                `torch.load(..., weights_only=True)` with only PyG's Data classes allowed as globals,
                so nothing else can be unpickled. Or `graph.safetensors`: the same named tensors in a
                safetensors file (no pickle at all; what zoo's shipped samples use).
  a folder with
    features.csv  header `node_id,<feature names...>`; one row per node; ids 0..N-1, each once.
    edges.csv     header `source,target`; one edge per row (made undirected unless asked not to).
    labels.csv    header `node_id,label`; an integer class index or a class name per node. Nodes
                  without a row are unlabelled: they take part in message passing only.
    splits.csv    optional, header `node_id,split` with split = train | val | test. Without it,
                  the labelled nodes are split at random by the recipe's ratio.

A graph here is a PyG `Data` with x, edge_index, y, train_mask, val_mask, test_mask and
`classes` (a list of class names) when the labels have names (`class_names(graph)`).
"""

from __future__ import annotations

import csv
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from zoo.deps import import_pyg
from zoo.utils import cache_dir, data_root

PLANETOID = ("Cora", "CiteSeer", "PubMed")
# Class names in the order of Planetoid's label indices (the raw files hold indices only). Checked against
# the data: each class's node count matches the original data set's (Cora: Theory 351, ..., Rule_Learning 180;
# CiteSeer: AI 249 + the 15 isolated test nodes, which Planetoid labels 0).
PLANETOID_CLASSES = {
    "Cora": ["Theory", "Reinforcement_Learning", "Genetic_Algorithms", "Neural_Networks", "Probabilistic_Methods",
             "Case_Based", "Rule_Learning"],
    "CiteSeer": ["AI", "ML", "IR", "DB", "Agents", "HCI"],
}
RAW_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
SPLITS = ("train", "val", "test")
CSV_FILES = {"features": "features.csv", "edges": "edges.csv", "labels": "labels.csv", "splits": "splits.csv"}


# --------------------------------------------------------------------------- Planetoid


def planetoid_name(name: str) -> str:
    """The canonical spelling ("Cora") of a Planetoid data set name, any case."""
    names = {n.lower(): n for n in PLANETOID}
    if name.lower() not in names:
        raise ValueError(f"data.name: unknown Planetoid data set {name!r}; choose one of {', '.join(PLANETOID)} "
                         "or point data.root at your own graph")
    return names[name.lower()]


def _cache_root() -> Path:
    """A writable folder for PyG's processed/ files (`zoo.utils.cache_dir`), never the data root."""
    return cache_dir("planetoid")


def _link_raw(raw: Path, work: Path) -> None:
    """Make work/raw a symlink to `raw`; a link to another source also drops the stale processed/ files."""
    link = work / "raw"
    if link.is_symlink() and Path(os.readlink(link)) == raw:
        return
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
        shutil.rmtree(work / "processed", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(raw, target_is_directory=True)
    except FileExistsError:  # another process linked it a moment ago
        pass


def planetoid(name: str, root: str | os.PathLike | None = None):
    """Cora / CiteSeer / PubMed as one PyG `Data` with the public split masks (features not normalised).

    Args:
        name: "Cora", "CiteSeer" or "PubMed" (any case).
        root: folder holding `<Name>/raw/` (default `data_root()/planetoid`). When its raw files are
            all there they are read offline and processed in a cache folder; otherwise PyG downloads
            them into `root` when given (as `Planetoid(root, name)` always does), else into zoo's cache
            (`zoo.utils.cache_dir`): the data root is never written to.
    """
    import_pyg()
    from torch_geometric.datasets import Planetoid

    name = planetoid_name(name)
    src = Path(root) if root is not None else data_root() / "planetoid"
    raw = (src / name / "raw").resolve()
    if all((raw / f"ind.{name.lower()}.{part}").is_file() for part in RAW_PARTS):
        cache = _cache_root()
        _link_raw(raw, cache / name)
        graph = Planetoid(str(cache), name)[0]
    else:  # PyG downloads: into the folder the caller named, else zoo's cache (never into ZOO_DATA)
        target = Path(root) if root is not None else cache_dir("planetoid_download")
        try:
            graph = Planetoid(str(target), name)[0]
        except Exception as e:  # no network, a proxy error, a read-only root: say what was looked for
            raise FileNotFoundError(
                f"Planetoid {name}: no raw files in {raw} and PyG's download into {target} failed "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); set ZOO_DATA to a "
                f"folder holding planetoid/{name}/raw/ind.{name.lower()}.* or allow the download") from e
    if name in PLANETOID_CLASSES:  # the raw files carry class indices only
        graph.classes = list(PLANETOID_CLASSES[name])
    return graph


# --------------------------------------------------------------------------- custom graphs


def read_graph(path: str | os.PathLike, *, undirected: bool = True, require_labels: bool = True):
    """A custom graph from a saved PyG Data file or a folder of CSV files, validated (see module doc).

    `require_labels=False` (prediction) accepts a graph without labels: y is then -1 everywhere.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return read_csv_graph(path, undirected=undirected, require_labels=require_labels)
    if path.is_file():
        return read_data_file(path, require_labels=require_labels)
    raise FileNotFoundError(f"data.root: {path} does not exist; expected a folder with {CSV_FILES['features']}, "
                            f"{CSV_FILES['edges']} and {CSV_FILES['labels']}, or a torch.save'd PyG Data file")


def read_data_file(path: Path, *, require_labels: bool = True):
    """A `torch.save`d PyG Data (or dict of tensors), loaded with weights_only=True, or a `.safetensors` file of
    named tensors (x, edge_index, y, masks: what zoo's shipped samples are), validated."""
    import_pyg()
    from torch_geometric.data import Data

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except SafetensorError as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
        return _validated(tensors, path, require_labels)
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    # PyG allow-lists Data itself; a pickled Data also names these classes. Nothing else unpickles
    # (PyG's own torch_load would fall back to weights_only=False here). Only classes not yet allowed
    # are passed: leaving safe_globals removes every class it was given.
    known = torch.serialization.get_safe_globals()
    extra = [c for c in (Data, DataEdgeAttr, DataTensorAttr, GlobalStorage) if c not in known]
    try:
        with torch.serialization.safe_globals(extra):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with other classes, a torn file, not a torch file at all
        raise ValueError(f"{path}: cannot load it as a saved PyG Data with torch.load(weights_only=True) "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); save the graph with "
                         "torch.save(Data(x=..., edge_index=..., y=...), path)") from e
    return _validated(obj, path, require_labels)


def _validated(obj, path: Path, require_labels: bool):
    """A loaded graph object (Data or dict of tensors) checked and reduced to what node classification reads."""
    from torch_geometric.data import Data

    if isinstance(obj, dict):
        obj = Data(**obj)
    if not isinstance(obj, Data):
        raise ValueError(f"{path}: expected a torch_geometric.data.Data or a dict of tensors, got {type(obj).__name__}")
    if getattr(obj, "y", None) is None and not require_labels and getattr(obj, "x", None) is not None:
        obj.y = torch.full((obj.x.shape[0],), -1, dtype=torch.long)
    for key in ("x", "edge_index", "y"):
        if getattr(obj, key, None) is None:
            raise ValueError(f"{path}: the graph has no {key!r}; node classification needs x (N, F) features, "
                             "edge_index (2, E) and y (N,) labels")
    graph = Data(x=obj.x.float(), edge_index=obj.edge_index, y=obj.y)
    for split in SPLITS:
        mask = getattr(obj, f"{split}_mask", None)
        if mask is not None:
            graph[f"{split}_mask"] = mask
    if getattr(obj, "classes", None) is not None:
        graph.classes = list(obj.classes)
    check_graph(graph, str(path), require_labels=require_labels)
    return graph


def class_names(graph) -> list[str] | None:
    """The class names of a graph's labels, or None when its labels are plain indices."""
    names = getattr(graph, "classes", None)
    return list(names) if names is not None else None


def check_graph(graph, where: str, *, require_labels: bool = True) -> None:
    """Shapes, dtypes, node id range and labels of a graph; ValueError naming `where` and the field."""
    x, ei, y = graph.x, graph.edge_index, graph.y
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"{where}: x must be a float tensor (num_nodes, num_features), got {x.dtype} {tuple(x.shape)}")
    n = x.shape[0]
    if ei.ndim != 2 or ei.shape[0] != 2 or ei.is_floating_point():
        raise ValueError(f"{where}: edge_index must be an integer tensor (2, num_edges), "
                         f"got {ei.dtype} {tuple(ei.shape)}")
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        bad = int(((ei < 0) | (ei >= n)).any(0).nonzero()[0])
        raise ValueError(f"{where}: edge {bad} ({int(ei[0, bad])} -> {int(ei[1, bad])}) has a node id outside "
                         f"0..{n - 1} (x has {n} rows)")
    if y.shape != (n,) or y.is_floating_point():
        raise ValueError(f"{where}: y must be an integer tensor ({n},) with -1 for unlabelled nodes, "
                         f"got {y.dtype} {tuple(y.shape)}")
    if (y < -1).any():
        raise ValueError(f"{where}: y has labels below -1 (-1 marks an unlabelled node)")
    if require_labels and not (y >= 0).any():
        raise ValueError(f"{where}: labels missing: no node has a label (y >= 0)")
    for split in SPLITS:
        mask = getattr(graph, f"{split}_mask", None)
        if mask is None:
            continue
        if mask.shape != (n,) or mask.dtype != torch.bool:
            raise ValueError(f"{where}: {split}_mask must be a bool tensor ({n},), "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        unlabelled = (mask & (y < 0)).nonzero().flatten()
        if require_labels and len(unlabelled):
            raise ValueError(f"{where}: labels missing: node {int(unlabelled[0])} is in {split}_mask but has no "
                             f"label (y = -1); {len(unlabelled)} such node(s)")
    classes = class_names(graph)
    if classes is not None and int(y.max()) >= len(classes):
        raise ValueError(f"{where}: label {int(y.max())} but only {len(classes)} class names")


def _rows(path: Path, header: Sequence[str], *, min_columns: int | None = None):
    """Yield (row number, cells) of a CSV whose header starts with `header`; the header row is row 1."""
    if not path.is_file():
        needed = ", ".join(list(CSV_FILES.values())[:3])
        raise FileNotFoundError(f"{path}: missing; a custom graph folder needs {needed}")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if head is None or [h.strip() for h in head[:len(header)]] != list(header):
            raise ValueError(f"{path}: row 1 must be the header {','.join(header)}{',...' if min_columns else ''}, "
                             f"got {','.join(head or [])!r}")
        width = len(head)
        if min_columns and width < min_columns:
            raise ValueError(f"{path}: the header names no feature columns after node_id")
        for i, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != width:
                what = "the header has" if min_columns else "expected"
                why = " (feature width mismatch)" if min_columns else ""
                raise ValueError(f"{path}: row {i} has {len(row)} values, {what} {width}{why}")
            yield i, [c.strip() for c in row]


def _node_id(text: str, path: Path, row: int, num_nodes: int | None) -> int:
    try:
        node = int(text)
    except ValueError:
        raise ValueError(f"{path}: row {row}: node id {text!r} is not an integer") from None
    if node < 0 or (num_nodes is not None and node >= num_nodes):
        raise ValueError(f"{path}: row {row}: node id {node} out of range 0..{(num_nodes or 0) - 1} "
                         f"({num_nodes} nodes in {CSV_FILES['features']})")
    return node


def read_csv_graph(folder: str | os.PathLike, *, undirected: bool = True, require_labels: bool = True):
    """features.csv + edges.csv + labels.csv (+ splits.csv) from `folder` as a validated PyG Data."""
    import_pyg()
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    folder = Path(folder)
    fpath = folder / CSV_FILES["features"]
    rows = list(_rows(fpath, ("node_id",), min_columns=2))
    if not rows:
        raise ValueError(f"{fpath}: no nodes (only a header)")
    n = len(rows)
    x = torch.empty(n, len(rows[0][1]) - 1)
    seen = torch.zeros(n, dtype=torch.bool)
    for i, cells in rows:
        node = _node_id(cells[0], fpath, i, n)
        if seen[node]:
            raise ValueError(f"{fpath}: row {i}: node id {node} appears twice")
        seen[node] = True
        try:
            x[node] = torch.tensor([float(c) for c in cells[1:]])
        except ValueError:
            bad = next(c for c in cells[1:] if not _is_float(c))
            raise ValueError(f"{fpath}: row {i}: feature value {bad!r} is not a number") from None

    epath = folder / CSV_FILES["edges"]
    edges = [(_node_id(c[0], epath, i, n), _node_id(c[1], epath, i, n))
             for i, c in _rows(epath, ("source", "target"))]
    edge_index = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    if undirected:
        edge_index = to_undirected(edge_index, num_nodes=n)

    lpath = folder / CSV_FILES["labels"]
    raw_labels: dict[int, tuple[int, str]] = {}
    label_rows = _rows(lpath, ("node_id", "label")) if require_labels or lpath.is_file() else iter(())
    for i, (node_text, label) in label_rows:
        node = _node_id(node_text, lpath, i, n)
        if not label:
            raise ValueError(f"{lpath}: row {i}: node {node} has an empty label (leave the row out for an "
                             "unlabelled node)")
        if node in raw_labels:
            raise ValueError(f"{lpath}: row {i}: node {node} is labelled twice (first on row {raw_labels[node][0]})")
        raw_labels[node] = (i, label)
    if not raw_labels and require_labels:
        raise ValueError(f"{lpath}: labels missing: the file has no label rows")
    y, classes = _encode_labels({k: v[1] for k, v in raw_labels.items()}, n, lpath)

    graph = Data(x=x, edge_index=edge_index, y=y)
    if classes is not None:
        graph.classes = classes
    spath = folder / CSV_FILES["splits"]
    if spath.is_file():
        masks = {s: torch.zeros(n, dtype=torch.bool) for s in SPLITS}
        for i, (node_text, split) in _rows(spath, ("node_id", "split")):
            node = _node_id(node_text, spath, i, n)
            if split not in masks:
                raise ValueError(f"{spath}: row {i}: split {split!r} is not one of {', '.join(SPLITS)}")
            if require_labels and y[node] < 0:
                raise ValueError(f"{spath}: row {i}: labels missing: node {node} is in {split!r} but has no row "
                                 f"in {lpath.name}")
            masks[split][node] = True
        for s, m in masks.items():
            graph[f"{s}_mask"] = m
    check_graph(graph, str(folder), require_labels=require_labels)
    return graph


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _encode_labels(labels: dict[int, str], n: int, path: Path) -> tuple[torch.Tensor, list[str] | None]:
    """(y with -1 for unlabelled nodes, class names or None): integer labels are class indices."""
    y = torch.full((n,), -1, dtype=torch.long)
    if all(v.lstrip("-").isdigit() for v in labels.values()):
        for node, v in labels.items():
            if int(v) < 0:
                raise ValueError(f"{path}: node {node} has the negative class index {v}")
            y[node] = int(v)
        return y, None
    classes = sorted(set(labels.values()))
    index = {c: k for k, c in enumerate(classes)}
    for node, v in labels.items():
        y[node] = index[v]
    return y, classes


def random_split(graph, fractions: Sequence[float], seed: int) -> None:
    """Give a graph without masks train/val/test masks: `fractions` of its labelled nodes, at random."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0 < sum(fractions) <= 1.0 + 1e-9:
        raise ValueError(f"data.split: expected three fractions [train, val, test] summing to at most 1, "
                         f"got {list(fractions)}")
    labelled = (graph.y >= 0).nonzero().flatten()
    order = labelled[torch.randperm(len(labelled), generator=torch.Generator().manual_seed(seed))]
    counts = [int(round(f * len(order))) for f in fractions]
    if counts[0] == 0 or counts[1] == 0:
        raise ValueError(f"data.split {list(fractions)} leaves no training or no validation node "
                         f"({len(order)} labelled nodes)")
    start = 0
    for split, count in zip(SPLITS, counts):
        mask = torch.zeros(graph.num_nodes, dtype=torch.bool)
        mask[order[start:start + count]] = True
        graph[f"{split}_mask"] = mask
        start += count


def sparsify_features(graph, max_density: float = 0.1) -> bool:
    """Store x as a sparse CSR tensor when under `max_density` of it is non-zero; True if it did.

    Bag-of-words features (Cora: 1.3% non-zeros) then cost a fraction in dropout and the first
    matmul. The models in zoo.families.gcn.model accept dense and sparse x alike.
    """
    if graph.x.layout != torch.strided or graph.x.count_nonzero() >= max_density * graph.x.numel():
        return False
    with warnings.catch_warnings():  # torch warns once per process that CSR support is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        graph.x = graph.x.to_sparse_csr()
    return True


def normalize_features(graph) -> None:
    """Row-normalise x in place as PyG's NormalizeFeatures does: shift to >= 0, rows sum to 1.

    (Calling the PyG transform would not do: it works on a shallow copy of the graph.) Rows that sum
    to less than 1, all-zero rows included, are only shifted.
    """
    x = graph.x - graph.x.min()
    graph.x = x / x.sum(dim=-1, keepdim=True).clamp(min=1.0)


# --------------------------------------------------------------------------- generator and writer


def synthetic_graph(num_nodes: int = 300, num_classes: int = 3, num_features: int = 32, *, p_in: float = 0.05,
                    p_out: float = 0.005, seed: int = 0):
    """A stochastic block model: dense within classes, sparse across, bag-of-words-like features.

    Each class favours its own slice of the feature columns, so both the features and the graph
    carry the label (as in citation graphs). All nodes are labelled; no split masks.
    """
    import_pyg()
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_nodes) % num_classes
    y = y[torch.randperm(num_nodes, generator=g)]
    same = y[:, None] == y[None, :]
    prob = torch.where(same, torch.tensor(p_in), torch.tensor(p_out))
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=g) < prob, diagonal=1)
    edge_index = to_undirected(upper.nonzero().t(), num_nodes=num_nodes)
    favour = (torch.arange(num_features) % num_classes)[None, :] == y[:, None]
    rate = torch.where(favour, torch.tensor(0.3), torch.tensor(0.05))
    x = (torch.rand(num_nodes, num_features, generator=g) < rate).float()
    return Data(x=x, edge_index=edge_index, y=y)


def write_csv_graph(graph, folder: str | os.PathLike, *, class_names: Sequence[str] | None = None,
                    with_splits: bool = True) -> Path:
    """Write a graph in the CSV layout `read_csv_graph` reads (each undirected edge once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x = graph.x.tolist()
    with open(folder / CSV_FILES["features"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["node_id"] + [f"f{j}" for j in range(graph.x.shape[1])])
        w.writerows([i] + [f"{v:g}" for v in row] for i, row in enumerate(x))
    src, dst = graph.edge_index
    keep = src <= dst
    with open(folder / CSV_FILES["edges"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "target"])
        w.writerows(zip(src[keep].tolist(), dst[keep].tolist()))
    with open(folder / CSV_FILES["labels"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["node_id", "label"])
        w.writerows((i, class_names[c] if class_names else c) for i, c in enumerate(graph.y.tolist()) if c >= 0)
    if with_splits and getattr(graph, "train_mask", None) is not None:
        with open(folder / CSV_FILES["splits"], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["node_id", "split"])
            for split in SPLITS:
                w.writerows((int(i), split) for i in graph[f"{split}_mask"].nonzero().flatten())
    return folder

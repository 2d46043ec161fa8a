"""Node classification on one graph, trained full batch (Kipf & Welling's transductive setting).

Data (recipe `data` section):
  name     a Planetoid data set (Cora, CiteSeer, PubMed) with its fixed public split, read offline
           from `data_root()/planetoid` (zoo.families.gcn.data.planetoid).
  root     a custom graph instead: a folder of CSV files or a torch.save'd PyG Data file
           (zoo.families.gcn.data.read_graph documents the layout). Without split masks the labelled
           nodes are split at random by `split` (train, val, test fractions).
  seeds    how many seeds to train (train.seed, train.seed + 1, ...). The test metrics of every
           seed are summarised as accuracy_mean / accuracy_std in the run's metrics (and so in
           the weight card); the weights are the train.seed run's. GCN results on these graphs
           vary by about a point between seeds, so a single run says little.

Every split is a dataset of length 1 whose batch is the whole graph plus that split's node mask,
kept on the training device: one engine step is one epoch, as in the paper. The engine evaluates
the validation mask after each epoch and keeps the best checkpoint (`main_metric`); the final
metrics are on the test mask.

predict writes predictions.csv (node, predicted class, confidence, known label, split) and
embedding.png: a t-SNE map of the model's hidden node features, coloured by class.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.drawing import pyplot, save
from zoo.engine import Trainer
from zoo.engine.state import seed_everything
from zoo.families.gcn import data as G
from zoo.recipes import OPT_STR
from zoo.recipes import F as Field
from zoo.samples import sample_dir
from zoo.tasks.base import Data, Task


class GraphSplit:
    """One split of a graph as a dataset of length 1: the batch is the whole graph and the split's mask.

    Shapes: get_batch(...) -> {"x": (N, F) float, "edge_index": (2, E) int64, "y": (N,) int64,
    "mask": (N,) bool}.
    """

    def __init__(self, graph, split: str):
        self.graph, self.split = graph, split
        self.mask = graph[f"{split}_mask"]

    def __len__(self) -> int:
        return 1

    def get_batch(self, idx) -> dict:
        g = self.graph
        return {"x": g.x, "edge_index": g.edge_index, "y": g.y, "mask": self.mask}


def masked_metrics(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean cross-entropy over the nodes in `mask`."""
    logits, y = logits[mask], y[mask]
    return {"accuracy": float((logits.argmax(1) == y).float().mean()),
            "loss": float(F.cross_entropy(logits.float(), y))}


def load_graph(cfg: dict):
    """The recipe's graph with split masks and (optionally) row-normalised features.

    A custom graph without train and val masks is split at random by `split`; one without a test
    mask has no test nodes (the final metrics are then the validation nodes').
    """
    if cfg["root"]:
        graph = G.read_graph(cfg["root"], undirected=cfg["undirected"])
        if getattr(graph, "train_mask", None) is None or getattr(graph, "val_mask", None) is None:
            G.random_split(graph, cfg["split"], cfg["split_seed"])
        elif getattr(graph, "test_mask", None) is None:
            graph.test_mask = torch.zeros(graph.num_nodes, dtype=torch.bool)
    else:
        graph = G.planetoid(cfg["name"])
    if cfg["normalize_features"]:
        G.normalize_features(graph)
    return graph


class NodeClassificationTask(Task):
    name = "node_classification"
    main_metric = "loss"  # validation cross-entropy picks the checkpoint: smoother than accuracy on 500 nodes
    mode = "min"
    DATA_SCHEMA = {
        "name": Field(str, "Cora", "Planetoid data set: Cora | CiteSeer | PubMed (unused when root is set)"),
        "root": Field(OPT_STR, None, "a custom graph: a folder of CSV files or a torch.save'd PyG Data file"),
        "normalize_features": Field(bool, True, "row-normalise node features (Kipf & Welling)"),
        "undirected": Field(bool, True, "CSV graphs: add the reverse of every edge"),
        "split": Field(list, [0.6, 0.2, 0.2], "train/val/test fractions of the labelled nodes (graphs without masks)"),
        "split_seed": Field(int, 0),
        "seeds": Field(int, 1, "train this many seeds and report the mean/std of the test metrics", ge=1),
        "sparse_features": Field(bool, True, "keep features with under 10% non-zeros as a sparse CSR tensor"),
    }

    # ----------------------------------------------------------------- data and model
    def build_data(self, cfg: dict, ctx) -> Data:
        if cfg["seeds"] < 1:
            raise ValueError(f"data.seeds: expected at least 1, got {cfg['seeds']}")
        if cfg["seeds"] > 1 and ctx.recipe["model"]["pretrained"]:
            raise ValueError("data.seeds > 1 re-initialises the model for every seed, which would discard "
                             "model.pretrained; fine-tune with data.seeds=1")
        graph = load_graph(cfg)
        num_features = graph.x.shape[1]
        if cfg["sparse_features"]:
            G.sparsify_features(graph)
        graph = graph.to(ctx.device)  # the whole graph lives on the device for the run
        where = cfg["root"] or cfg["name"]
        if not graph.train_mask.any() or not graph.val_mask.any():
            raise ValueError(f"{where}: the split has {int(graph.train_mask.sum())} training and "
                             f"{int(graph.val_mask.sum())} validation nodes; both need at least one")
        names = G.class_names(graph)
        num_classes = len(names) if names is not None else int(graph.y.max()) + 1
        dataset = "custom" if cfg["root"] else G.planetoid_name(cfg["name"])
        info = {"num_classes": num_classes, "in_chans": num_features,
                "input_spec": {"features": num_features, "dataset": dataset,
                               "normalize_features": cfg["normalize_features"]}}
        if names is not None:
            info["labels"] = names
        test = GraphSplit(graph, "test") if graph.test_mask.any() else None
        return Data(GraphSplit(graph, "train"), GraphSplit(graph, "val"), test, info)

    def model_args(self, data: Data) -> dict:
        return {"num_classes": data.info["num_classes"], "in_chans": data.info["in_chans"]}

    # ----------------------------------------------------------------- training
    def train_step(self, model, batch, ctx):
        logits = model(batch["x"], batch["edge_index"])
        mask = batch["mask"]
        return F.cross_entropy(logits[mask], batch["y"][mask]), {}

    def evaluate(self, model, dataset, ctx) -> dict[str, float]:
        batch = dataset.get_batch(None)
        metrics = masked_metrics(model(batch["x"], batch["edge_index"]), batch["y"], batch["mask"])
        # set once every seed has trained, so only the engine's final evaluation (the run's metrics
        # and the weight card) carries the summary
        if ctx is not None and "seed_summary" in ctx.extra:
            metrics.update(ctx.extra["seed_summary"])
        return metrics

    def fit(self, model, data: Data, ctx) -> dict:
        """The engine's loop once per seed; the train.seed run's weights are the ones kept."""
        info = ctx.trainer.fit(model, data)
        seeds = ctx.recipe["data"]["seeds"]
        if seeds == 1:
            return info
        first = ctx.recipe["train"]["seed"]
        kept = copy.deepcopy(model.state_dict())
        runs = [self._test_metrics(model, data, ctx)]
        total = info["train_seconds"]
        for seed in range(first + 1, first + seeds):
            recipe = copy.deepcopy(ctx.recipe)
            recipe["train"]["seed"] = seed
            sub_dir = ctx.run_dir / "seeds" / f"seed{seed}" if ctx.run_dir else None
            if sub_dir is not None:
                sub_dir.mkdir(parents=True, exist_ok=True)
            sub = dataclasses.replace(ctx, recipe=recipe, run_dir=sub_dir, extra={})
            sub.trainer = Trainer(sub)
            seed_everything(seed, recipe["train"]["deterministic"])
            model.reset_parameters()
            total += sub.trainer.fit(model, data)["train_seconds"]
            runs.append(self._test_metrics(model, data, sub))
        for seed, m in zip(range(first, first + seeds), runs):
            ctx.trainer.log({"split": "seeds", "seed": seed, **{f"test_{k}": v for k, v in m.items()}})
        accs = [m["accuracy"] for m in runs]
        ctx.extra["seed_summary"] = {"accuracy_mean": statistics.mean(accs), "accuracy_std": statistics.stdev(accs),
                                     "accuracy_min": min(accs), "accuracy_max": max(accs), "seeds": float(seeds)}
        model.load_state_dict(kept)
        return {**info, "train_seconds_all_seeds": total}

    def _test_metrics(self, model, data: Data, ctx) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            out = self.evaluate(model, data.test if data.test is not None else data.val, ctx)
        model.train()
        return out

    # ----------------------------------------------------------------- use
    def _graph_for(self, model, inputs: str | None):
        """(graph, name) for predict: a Planetoid name ("Cora", read from ZOO_DATA) or a custom graph file/folder;
        without input the subgraph the weights folder ships (samples/graph.safetensors), else a generated graph."""
        spec = (getattr(model, "pretrained_cfg", None) or {}).get("input_spec", {})
        shipped = sample_dir(model)
        if inputs and str(inputs).lower() in {n.lower() for n in G.PLANETOID} and not Path(inputs).exists():
            name = G.planetoid_name(str(inputs))
            graph = G.planetoid(name)
        elif inputs:
            graph = G.read_graph(inputs, require_labels=False)
            name = str(inputs)
        elif shipped is not None and (shipped / "graph.safetensors").is_file():
            graph = G.read_graph(shipped / "graph.safetensors", require_labels=False)
            name = (f"{spec.get('dataset', 'graph')}: the subgraph shipped with the weights (its border nodes "
                    "miss neighbours: accuracy is below the card's full-graph figure)")
        else:
            graph, name = G.synthetic_graph(num_features=model.in_chans, seed=0), "a generated graph"
        if spec.get("normalize_features", True):
            G.normalize_features(graph)
        if graph.num_features != model.in_chans:
            raise ValueError(f"{name}: nodes have {graph.num_features} features, the model expects {model.in_chans}")
        return graph, name

    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None, method: str = "tsne") -> list[Path]:
        graph, name = self._graph_for(model, inputs)
        model.eval()
        with torch.no_grad():
            logits = model(graph.x, graph.edge_index)
            hidden = model.embed(graph.x, graph.edge_index)
        prob = logits.softmax(1)
        conf, pred = prob.max(1)
        labels = (getattr(model, "pretrained_cfg", None) or {}).get("labels")
        split = ["" for _ in range(graph.num_nodes)]
        for s in G.SPLITS:
            mask = getattr(graph, f"{s}_mask", None)
            for i in ([] if mask is None else mask.nonzero().flatten().tolist()):
                split[i] = s
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = out_dir / "predictions.csv"
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["node_id", "predicted", "predicted_name", "confidence", "label", "split"])
            for i, (p, c, y) in enumerate(zip(pred.tolist(), conf.tolist(), graph.y.tolist())):
                w.writerow([i, p, labels[p] if labels else "", f"{c:.4f}", y if y >= 0 else "", split[i]])
        png = draw_embedding(hidden, pred, graph.y, out_dir / "embedding.png", title=name, labels=labels,
                             test_mask=getattr(graph, "test_mask", None), method=method)
        return [csv_path, png]

    def sample_input(self, model) -> tuple:
        graph, _ = self._graph_for(model, None)
        return graph.x, graph.edge_index

    def draw_sample(self, model, out_path: Path) -> Path | None:
        graph, name = self._graph_for(model, None)
        model.eval()
        with torch.no_grad():
            pred, hidden = model(graph.x, graph.edge_index).argmax(1), model.embed(graph.x, graph.edge_index)
        labels = (getattr(model, "pretrained_cfg", None) or {}).get("labels")
        # PCA keeps the tour quick; `zoo predict` draws the t-SNE map
        return draw_embedding(hidden, pred, graph.y, Path(out_path), title=name, labels=labels,
                              test_mask=getattr(graph, "test_mask", None), method="pca")


def draw_embedding(hidden: torch.Tensor, pred: torch.Tensor, y: torch.Tensor, path: Path, *, title: str = "",
                   labels: list[str] | None = None, test_mask: torch.Tensor | None = None,
                   method: str = "tsne") -> Path:
    """A 2-D map of hidden node features, coloured by known class (left) and predicted class (right).

    method "tsne": PCA to at most 32 dimensions (t-SNE's usual preprocessing), then t-SNE (about
    20 s of CPU for Cora's 2,708 nodes); graphs of more than 5,000 nodes fall back to "pca", the
    first two principal components, which is instant.
    """
    plt = pyplot()
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    h = hidden.detach().float().cpu().numpy()
    n = len(h)
    h = PCA(n_components=min(32, h.shape[1], n), random_state=0).fit_transform(h) if h.shape[1] > 2 else h
    if method == "pca" or n > 5000 or n < 10:
        xy, method = (h[:, :2] if h.shape[1] >= 2 else np.c_[h, np.zeros(n)]), "PCA"
    else:
        xy, method = TSNE(2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=0).fit_transform(h), "t-SNE"
    pred, y = pred.cpu().numpy(), y.cpu().numpy()
    k = max(int(max(pred.max(), y.max())) + 1, len(labels or []))
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    size = 36 if n <= 500 else 5
    fig, axes = plt.subplots(1, 2, figsize=(13.5, 5.5))
    for ax, colour, what in ((axes[0], y, "known class"), (axes[1], pred, "predicted class")):
        known = colour >= 0
        ax.scatter(xy[~known, 0], xy[~known, 1], s=size, c="lightgrey")
        for c in range(k):
            sel = colour == c
            ax.scatter(xy[sel, 0], xy[sel, 1], s=size, color=cmap(c % cmap.N))
        ax.set_title(f"{what} ({method} of hidden features)")
        ax.set_xticks([])
        ax.set_yticks([])
    wrong = (y >= 0) & (pred != y)
    axes[1].scatter(xy[wrong, 0], xy[wrong, 1], s=size * 2.2, facecolors="none", edgecolors="black", linewidths=0.8)
    if test_mask is not None and test_mask.any() and (y >= 0).any():
        m = test_mask.cpu().numpy() & (y >= 0)
        axes[1].set_title(f"predicted class ({method}); test accuracy {(pred[m] == y[m]).mean():.3f}")
    from matplotlib.lines import Line2D

    dot = dict(marker="o", linestyle="", markersize=7)
    handles = [Line2D([], [], color=cmap(c % cmap.N), label=labels[c] if labels else f"class {c}", **dot)
               for c in range(k)]
    handles += [Line2D([], [], color="lightgrey", label="unlabelled", **dot)] if (y < 0).any() else []
    handles += [Line2D([], [], markerfacecolor="none", markeredgecolor="black", color="black",
                       label="wrong prediction", **dot)] if wrong.any() else []
    fig.legend(handles=handles, loc="center right", fontsize=9, frameon=False)
    fig.suptitle(f"{title}: {n} nodes")
    return save(fig, path, dpi=90, rect=(0, 0, 0.82, 1))


TASK = NodeClassificationTask()

"""The gcn family: graph readers and their errors, the models, the node-classification task,
fine-tuning on a generated CSV graph, and the published cards re-checked on real Cora/CiteSeer."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import zoo
from tests.conftest import data_or_skip
from zoo.engine import train
from zoo.engine.run import make_context, resolve_recipe
from zoo.families.gcn import data as G
from zoo.families.gcn.model import feature_dropout
from zoo.tasks import get_task

TASK = get_task("node_classification")


@pytest.fixture(scope="module")
def small_graph():
    """A 120-node, 3-class block model with a fixed 60/20/20 split."""
    graph = G.synthetic_graph(120, 3, 16, p_in=0.1, p_out=0.01, seed=1)
    G.random_split(graph, [0.6, 0.2, 0.2], seed=0)
    return graph


@pytest.fixture
def csv_dir(tmp_path, small_graph):
    return G.write_csv_graph(small_graph, tmp_path / "graph", class_names=["ai", "db", "ml"])


def _rewrite(path, row: int, cells: list):
    """Replace row `row` (1 = header) of a CSV file."""
    rows = list(csv.reader(open(path, newline="")))
    rows[row - 1] = cells
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


# --------------------------------------------------------------------------- readers


def test_csv_round_trip(csv_dir, small_graph):
    graph = G.read_graph(csv_dir)
    assert torch.equal(graph.x, small_graph.x) and torch.equal(graph.y, small_graph.y)
    assert G.class_names(graph) == ["ai", "db", "ml"]
    same = {tuple(e) for e in graph.edge_index.t().tolist()} == {tuple(e) for e in small_graph.edge_index.t().tolist()}
    assert same, "edges.csv lists each undirected edge once; reading adds the reverse"
    for split in G.SPLITS:
        assert torch.equal(graph[f"{split}_mask"], small_graph[f"{split}_mask"])


@pytest.mark.parametrize("file, row, cells, message", [
    ("edges.csv", 3, ["0", "500"], r"edges.csv: row 3: node id 500 out of range 0..119"),
    ("edges.csv", 2, ["0", "x"], r"edges.csv: row 2: node id 'x' is not an integer"),
    ("features.csv", 4, ["2", "1", "0"], r"features.csv: row 4 has 3 values, the header has 17 \(feature width"),
    ("features.csv", 5, ["3"] + ["0"] * 15 + ["high"], r"features.csv: row 5: feature value 'high' is not a number"),
    ("features.csv", 3, ["0"] + ["0"] * 16, r"features.csv: row 3: node id 0 appears twice"),
    ("features.csv", 1, ["id", "a"], r"features.csv: row 1 must be the header node_id"),
    ("labels.csv", 2, ["0", ""], r"labels.csv: row 2: node 0 has an empty label"),
    ("splits.csv", 2, ["0", "holdout"], r"splits.csv: row 2: split 'holdout' is not one of train, val, test"),
])
def test_csv_errors_name_file_and_row(csv_dir, file, row, cells, message):
    _rewrite(csv_dir / file, row, cells)
    with pytest.raises(ValueError, match=message):
        G.read_graph(csv_dir)


def test_labels_missing(csv_dir):
    rows = list(csv.reader(open(csv_dir / "splits.csv")))
    node = rows[1][0]
    labels = [r for r in csv.reader(open(csv_dir / "labels.csv")) if r[0] != node]
    with open(csv_dir / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(labels)
    with pytest.raises(ValueError, match=rf"splits.csv: row 2: labels missing: node {node} is in 'train'"):
        G.read_graph(csv_dir)
    (csv_dir / "labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match="labels.csv: missing"):
        G.read_graph(csv_dir)
    assert (G.read_graph(csv_dir, require_labels=False).y == -1).all()  # predict accepts unlabelled graphs


def test_data_file(tmp_path, small_graph):
    path = tmp_path / "graph.pt"
    torch.save(small_graph, path)
    graph = G.read_graph(path)
    assert torch.equal(graph.x, small_graph.x) and torch.equal(graph.val_mask, small_graph.val_mask)
    torch.save({"x": small_graph.x, "edge_index": small_graph.edge_index, "y": small_graph.y}, path)
    assert G.read_graph(path).num_nodes == 120
    bad = small_graph.clone()
    bad.edge_index = bad.edge_index.clone()
    bad.edge_index[1, 5] = 999
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"graph.pt: edge 5 \(.* -> 999\) has a node id outside 0..119"):
        G.read_graph(path)
    torch.save({"x": small_graph.x, "edge_index": small_graph.edge_index}, path)
    with pytest.raises(ValueError, match=r"graph.pt: the graph has no 'y'"):
        G.read_graph(path)
    torch.save({"x": small_graph.x, "edge_index": small_graph.edge_index, "y": small_graph.y,
                "extra": torch.nn.Linear(2, 2)}, path)  # an arbitrary class: weights_only refuses to unpickle it
    with pytest.raises(ValueError, match=r"cannot load it as a saved PyG Data with torch.load\(weights_only=True\)"):
        G.read_graph(path)


def test_safetensors_graph_file(tmp_path, small_graph):
    from safetensors.torch import save_file

    path = tmp_path / "graph.safetensors"
    save_file({"x": small_graph.x, "edge_index": small_graph.edge_index, "y": small_graph.y,
               "val_mask": small_graph.val_mask}, str(path))
    graph = G.read_graph(path)
    assert torch.equal(graph.x, small_graph.x) and torch.equal(graph.val_mask, small_graph.val_mask)
    save_file({"x": small_graph.x, "edge_index": small_graph.edge_index}, str(path))
    with pytest.raises(ValueError, match=r"graph.safetensors: the graph has no 'y'"):
        G.read_graph(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"graph.safetensors: not a readable safetensors file"):
        G.read_graph(path)


def test_random_split_and_sparse_features(small_graph):
    graph = small_graph.clone()
    G.random_split(graph, [0.5, 0.25, 0.25], seed=3)
    sizes = [int(graph[f"{s}_mask"].sum()) for s in G.SPLITS]
    assert sizes == [60, 30, 30] and not (graph.train_mask & graph.val_mask).any()
    with pytest.raises(ValueError, match=r"data.split: expected three fractions"):
        G.random_split(graph, [0.9, 0.9], seed=0)
    dense = graph.x.clone()
    graph.x = torch.zeros_like(dense)
    graph.x[:, 0] = 1.0
    assert G.sparsify_features(graph) and graph.x.layout == torch.sparse_csr
    small_graph_copy = small_graph.clone()
    assert not G.sparsify_features(small_graph_copy)  # 14% non-zeros stays dense
    G.normalize_features(small_graph_copy)
    sums = small_graph_copy.x.sum(1)
    assert torch.allclose(sums[sums > 0], torch.tensor(1.0)) and torch.equal(small_graph_copy.y, small_graph.y)


def test_planetoid_offline_in_a_cache():
    data_or_skip("planetoid", "Cora", "raw")
    graph = G.planetoid("cora")
    assert (graph.num_nodes, graph.num_features) == (2708, 1433)
    assert [int(graph[f"{s}_mask"].sum()) for s in G.SPLITS] == [140, 500, 1000]
    assert not (data_or_skip("planetoid", "Cora") / "processed").exists(), "the shared data folder was written"
    with pytest.raises(ValueError, match="unknown Planetoid data set 'Coraa'"):
        G.planetoid("Coraa")


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name, args", [("gcn", {}), ("gcn", {"num_layers": 3}), ("gcn", {"num_layers": 1}),
                                        ("dagnn", {"K": 3})])
def test_models_dense_and_sparse_agree(name, args):
    torch.manual_seed(0)
    model = zoo.create(name, in_chans=16, num_classes=5, **args)
    x, edge_index = model.example_inputs(3)
    x = x * (torch.rand_like(x) < 0.1)
    out = model(x, edge_index)
    assert out.shape == (24, 5)
    assert torch.allclose(out, model(x.to_sparse_csr(), edge_index), atol=1e-5)
    assert torch.allclose(out, model(x.to_sparse(), edge_index), atol=1e-5)
    assert model.embed(x, edge_index).shape[0] == 24
    with pytest.raises(ValueError, match=r"expects edge_index values in 0..23 \(x has 24 nodes\), got node id 30"):
        model(x, torch.tensor([[0, 30], [30, 0]]))
    with pytest.raises(ValueError, match=r"expects x of shape \(N, 16\)"):
        model(x[:, :8], edge_index)


def test_sparse_dropout_matches_dense_statistics():
    torch.manual_seed(0)
    x = (torch.rand(400, 300) < 0.05).float()
    out = feature_dropout(x.to_sparse_csr(), 0.5, True)
    assert out.layout == torch.sparse_csr and out.values().numel() == int(x.sum())
    kept = (out.values() > 0).float().mean()
    assert abs(float(kept) - 0.5) < 0.03 and torch.all((out.values() == 0) | (out.values() == 2.0))
    assert feature_dropout(x, 0.5, False) is x


# --------------------------------------------------------------------------- task


def _context(tmp_path, root, **data):
    raw = {"task": "node_classification", "model": {"name": "gcn"},
           "data": {"root": str(root), **data}, "train": {"threads": 1, "batch_size": 1}}
    recipe, task = resolve_recipe(raw)
    return make_context(recipe, task, run_dir=tmp_path / "run", device="cpu", resume=False)


def test_task_data_evaluate_predict(tmp_path, csv_dir):
    ctx = _context(tmp_path, csv_dir)
    data = TASK.build_data(ctx.recipe["data"], ctx)
    assert len(data.train) == 1 and data.info["num_classes"] == 3 and data.info["labels"] == ["ai", "db", "ml"]
    batch = data.train.get_batch(torch.tensor([0]))
    assert batch["x"].shape == (120, 16) and int(batch["mask"].sum()) == 72
    model = zoo.create("gcn", **TASK.model_args(data))
    loss, _ = TASK.train_step(model.train(), batch, ctx)
    assert math.isfinite(float(loss))
    metrics = TASK.evaluate(model.eval(), data.test, ctx)
    assert set(metrics) == {"accuracy", "loss"} and 0 <= metrics["accuracy"] <= 1
    model.pretrained_cfg["labels"] = data.info["labels"]
    model.pretrained_cfg["input_spec"] = data.info["input_spec"]
    csv_path, png = TASK.predict(model, str(csv_dir), tmp_path / "out")
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 120 and rows[0]["predicted_name"] in {"ai", "db", "ml"}
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert png.stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"nodes have 16 features, the model expects 1433"):
        TASK.predict(zoo.create("gcn"), str(csv_dir), tmp_path / "out")


def test_build_data_checks_before_training(tmp_path, csv_dir):
    ctx = _context(tmp_path, csv_dir, seeds=3)
    ctx.recipe["model"]["pretrained"] = "gcn.cora"
    with pytest.raises(ValueError, match=r"data.seeds > 1 re-initialises the model"):
        TASK.build_data(ctx.recipe["data"], ctx)
    (csv_dir / "splits.csv").write_text("node_id,split\n0,train\n")
    ctx = _context(tmp_path, csv_dir)
    with pytest.raises(ValueError, match=r"the split has 1 training and 0 validation nodes"):
        TASK.build_data(ctx.recipe["data"], ctx)


def test_seeds_summary_and_kept_weights(tmp_path, csv_dir):
    """data.seeds=3: mean/std in the metrics, the weights are the train.seed run's, resume is exact."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"# zoo train r.yaml\ntask: node_classification\nmodel: {{name: gcn}}\n"
                      f"data: {{root: {csv_dir}, seeds: 3}}\noptim: {{name: adam, lr: 0.01}}\n"
                      "train: {epochs: 15, batch_size: 1, threads: 1, log_every: 5}\n")
    run_dir, result = train(str(recipe), runs_root=tmp_path / "runs")
    m = result["metrics"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seeds = [r for r in records if r.get("split") == "seeds"]
    assert [r["seed"] for r in seeds] == [0, 1, 2] and m["seeds"] == 3
    accs = [r["test_accuracy"] for r in seeds]
    assert m["accuracy"] == pytest.approx(accs[0]) and m["accuracy_mean"] == pytest.approx(sum(accs) / 3)
    assert (run_dir / "seeds" / "seed2" / "checkpoints" / "last.pt").is_file()
    _, again = train(None, resume=str(run_dir))
    assert again["metrics"] == m


def test_finetune_on_generated_csv(tmp_path, csv_dir, caplog):
    """`zoo finetune gcn --data DIR`: other feature width and classes adapt the first layer and the head."""
    from zoo.cli import main

    (csv_dir / "splits.csv").unlink()  # exercise the random split by data.split
    rc = main(["finetune", "gcn", "--data", str(csv_dir), "train.max_steps=2", "--runs", str(tmp_path / "runs")])
    assert rc == 0
    run_dir = next((tmp_path / "runs").iterdir())
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["model_args"]["in_chans"] == 16 and config["model_args"]["num_classes"] == 3
    assert config["labels"] == ["ai", "db", "ml"] and "accuracy" in config["metrics"]
    assert "re-initialised for 3 classes" in caplog.text


# --------------------------------------------------------------------------- published cards


@pytest.mark.parametrize("tag, dataset", [("gcn.cora", "Cora"), ("gcn.citeseer", "CiteSeer"),
                                          ("dagnn.cora", "Cora")])
def test_card_metric_rechecked(tag, dataset, capsys):
    """`zoo eval TAG --json` on the real data equals the card's test accuracy."""
    from zoo.cli import main

    data_or_skip("planetoid", dataset, "raw")
    card = zoo.model_info(tag)
    assert card["metrics"][card["expect"]["metric"]] >= card["expect"]["value"], "the card meets its claim"
    assert main(["eval", tag, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert measured["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=1e-6)

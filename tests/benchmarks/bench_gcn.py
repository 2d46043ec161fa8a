"""Time per epoch and total training time of GCN on Cora: zoo's engine vs plain PyG loops, same run.

    python tests/benchmarks/bench_gcn.py            # 200 epochs per run, 5 interleaved rounds
    python tests/benchmarks/bench_gcn.py --quick    # 50 epochs, 2 rounds, no dense-feature loop
(ZOO_DATA must hold planetoid/Cora/raw; progress bars go to stderr: add 2>/dev/null for the figures)

Every loop does what a PyG user's training script does each epoch: one full-batch step (dropout,
forward, masked cross-entropy, backward, Adam), then a no-grad evaluation of the validation nodes,
keeping the weights with the lowest validation loss. The loops:
  pyg-dense   a plain two-layer PyG GCN (GCNConv x 2, as in PyG's examples/gcn.py) on dense features;
  pyg-sparse  the same model and loop on the same sparse CSR features zoo trains on;
  zoo-model   the same loop around zoo's `gcn` model (one shared adjacency normalisation per forward);
  zoo-engine  `zoo train recipes/gcn/cora.yaml data.seeds=1`: the engine's loop (seeded epoch order,
              checkpoints every 50 epochs but at most one per 30 s - for a run of seconds only the final
              one, with the best weights -, metrics.jsonl, progress bar).
zoo-engine vs zoo-model is the engine's overhead (identical model and tensors); vs pyg-sparse it is
what a user sees switching from their own loop. Rounds are interleaved and the median is reported,
because the machine may be shared (say so when quoting the numbers).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pyg_gcn(in_chans: int, num_classes: int):
    """The two-layer GCN of PyG's examples/gcn.py."""
    import torch
    import torch.nn.functional as F
    from torch_geometric.nn import GCNConv

    class GCN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = GCNConv(in_chans, 16)
            self.conv2 = GCNConv(16, num_classes)

        def forward(self, x, edge_index):
            if x.layout == torch.sparse_csr and self.training:  # dropout on the stored values only
                x = torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), F.dropout(x.values(), 0.5),
                                            x.shape, check_invariants=False)
            elif self.training:
                x = F.dropout(x, 0.5)
            x = F.relu(self.conv1(x, edge_index))
            x = F.dropout(x, 0.5, self.training)
            return self.conv2(x, edge_index)

    return GCN()


def plain_loop(model, graph, epochs: int) -> float:
    """Seconds for `epochs` epochs of train step + validation + best-weights copy."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    x, ei, y = graph.x, graph.edge_index, graph.y
    best, best_state = float("inf"), None
    t = time.perf_counter()
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(x, ei)[graph.train_mask], y[graph.train_mask])
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            out = model(x, ei)[graph.val_mask]
            val_loss = float(F.cross_entropy(out, y[graph.val_mask]))
            float((out.argmax(1) == y[graph.val_mask]).float().mean())
        if val_loss < best:
            best, best_state = val_loss, copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - t
    model.load_state_dict(best_state)
    return seconds


def engine_run(epochs: int, root: Path) -> tuple[float, float, float]:
    """(train seconds as the engine measures them, wall seconds of zoo.engine.train, test accuracy)."""
    from zoo.engine import train

    t = time.perf_counter()
    _, result = train(ROOT / "recipes" / "gcn" / "cora.yaml", ["data.seeds=1", f"train.epochs={epochs}"],
                      runs_root=root)
    return result["fit"]["train_seconds"], time.perf_counter() - t, result["metrics"]["accuracy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="50 epochs, 2 rounds, no dense-feature loop")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--rounds", type=int, default=None)
    a = p.parse_args()
    import torch

    import zoo
    from zoo.families.gcn import data as G

    torch.set_num_threads(1)
    epochs = a.epochs or (50 if a.quick else 200)
    rounds = a.rounds or (2 if a.quick else 5)
    dense = G.planetoid("Cora")
    G.normalize_features(dense)
    sparse = dense.clone()
    G.sparsify_features(sparse)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores visible, 1 torch thread; Cora "
          f"{dense.num_nodes} nodes, {dense.num_edges} directed edges; {epochs} epochs x {rounds} rounds")
    loops = {
        "pyg-sparse": lambda: plain_loop(pyg_gcn(1433, 7), sparse, epochs),
        "zoo-model": lambda: plain_loop(zoo.create("gcn"), sparse, epochs),
    }
    if not a.quick:
        loops = {"pyg-dense": lambda: plain_loop(pyg_gcn(1433, 7), dense, epochs), **loops}
    times: dict[str, list[float]] = {k: [] for k in [*loops, "zoo-engine"]}
    walls, accs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, fn in loops.items():
                torch.manual_seed(r)
                times[name].append(fn())
            fit, wall, acc = engine_run(epochs, Path(tmp))
            times["zoo-engine"].append(fit)
            walls.append(wall)
            accs.append(acc)
    base = statistics.median(times["zoo-model"])
    print(f"\n{'loop':<12} {'ms/epoch':>9} {'total s':>8}  {'vs zoo-model':>12}  (median of {rounds}; min..max total)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<12} {1000 * med / epochs:9.2f} {med:8.2f}  {100 * (med / base - 1):+11.1f}%  "
              f"({min(ts):.2f}..{max(ts):.2f})")
    print(f"zoo-engine whole command (data, model, {epochs} epochs, test evaluation, saving): "
          f"median {statistics.median(walls):.2f} s; test accuracy {statistics.median(accs):.3f}")


if __name__ == "__main__":
    main()

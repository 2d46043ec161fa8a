"""Graph convolutional networks for node classification, on PyTorch Geometric.

    import zoo
    model = zoo.create("gcn", pretrained=True)         # Kipf & Welling GCN trained on Cora (gcn.cora)
    logits = model(x, edge_index)                      # (N, F) features, (2, E) edges -> (N, num_classes)
    hidden = model.embed(x, edge_index)                # the node features the classifier reads

Two architectures:
  gcn     Kipf & Welling 2017, "Semi-Supervised Classification with Graph Convolutional Networks":
          H' = ReLU(D^-1/2 (A + I) D^-1/2 H W), two layers, 16 hidden units, dropout 0.5 before each.
  dagnn   Liu, Gao & Ji 2020, "Towards Deeper Graph Neural Networks": an MLP predicts per node, then
          K = 10 propagation steps (APPNP-style predict-then-propagate) whose hops each node weighs
          with a learned score. It reaches 10 hops with two weight matrices to fit, which lifts it
          about 3 points above GCN on Cora.

The file reads top to bottom: shared helpers (sparse-aware input dropout, the normalised adjacency),
the two models, their registered builders. torch_geometric is imported inside the constructors, so
`import zoo` stays light. Features may be dense or a sparse CSR/COO tensor: bag-of-words features
(Cora: 1.3% non-zeros) are much faster sparse, and the models keep them sparse through the first layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.deps import import_pyg
from zoo.registry import register_model
from zoo.utils import check_tensor

# Cora's size, so that zoo.create("gcn") without arguments builds the published architecture
CORA_FEATURES, CORA_CLASSES = 1433, 7


def feature_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout that keeps sparse features sparse.

    Only the stored values are dropped and rescaled; zeros stay zero either way, so the result has
    the distribution of dense dropout (Kipf & Welling's sparse_dropout) at a fraction of the cost.
    """
    if not training or p == 0.0:
        return x
    # the index structure comes from a valid tensor: skipping the invariant checks is safe (and silent)
    if x.layout == torch.sparse_csr:
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), F.dropout(x.values(), p, True), x.shape,
                                       check_invariants=False)
    if x.layout == torch.sparse_coo:
        x = x.coalesce()
        return torch.sparse_coo_tensor(x.indices(), F.dropout(x.values(), p, True), x.shape, is_coalesced=True,
                                       check_invariants=False)
    return F.dropout(x, p, True)


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype):
    """(edge_index with self-loops, edge weights 1/sqrt(d_i d_j)): Â = D^-1/2 (A + I) D^-1/2.

    Computed once per forward and shared by every layer (PyG's layers would each recompute it).
    """
    import_pyg()
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    return gcn_norm(edge_index, None, num_nodes, improved=False, add_self_loops=True, dtype=dtype)


def check_graph_inputs(x: torch.Tensor, edge_index: torch.Tensor, in_chans: int, owner: str,
                       like=None) -> torch.Tensor:
    """ValueError naming the expected layout of node features and edges, and edges out of range."""
    x = check_tensor(x, "x", ("N", in_chans), owner=owner, like=like)
    check_tensor(edge_index, "edge_index", (2, "E"), dtype="int", owner=owner)
    # a value check, not a shape check: an exported graph (torch.export, ONNX) cannot hold it
    if not torch.compiler.is_exporting() and edge_index.numel() and int(edge_index.max()) >= x.shape[0]:
        raise ValueError(f"{owner} expects edge_index values in 0..{x.shape[0] - 1} (x has {x.shape[0]} nodes), "
                         f"got node id {int(edge_index.max())}")
    return x


def example_graph(num_nodes: int, in_chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A ring with chords: features (num_nodes, in_chans), edges (2, 4 * num_nodes), both directions."""
    src = torch.arange(num_nodes)
    dst = torch.cat([(src + 1) % num_nodes, (src + 3) % num_nodes])
    src = torch.cat([src, src])
    edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    return torch.rand(num_nodes, in_chans), edge_index


class GCN(nn.Module):
    r"""Kipf & Welling's graph convolutional network.

    Each layer is PyG's GCNConv, :math:`H' = \hat{A} H W + b` with
    :math:`\hat{A} = D^{-1/2}(A + I)D^{-1/2}`; ReLU between layers and dropout before every layer
    (the input features included), as in the paper.

    Args:
        in_chans: node feature width F.
        num_classes: output classes C.
        hidden: width of the hidden layers (16 in the paper).
        num_layers: graph convolutions (2 in the paper; deeper GCNs over-smooth).
        dropout: dropout probability before each layer (0.5 in the paper).

    Shapes:
        x: (N, F) float, dense or sparse CSR/COO; edge_index: (2, E) int64, both directions of an
        undirected edge listed -> logits (N, C).
    """

    def __init__(self, in_chans: int, num_classes: int, hidden: int = 16, num_layers: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        import_pyg()
        from torch_geometric.nn import GCNConv

        if num_layers < 1:
            raise ValueError(f"gcn: num_layers must be at least 1, got {num_layers}")
        self.in_chans, self.num_classes, self.dropout = in_chans, num_classes, dropout
        dims = [in_chans] + [hidden] * (num_layers - 1) + [num_classes]
        # normalize=False: the layers take the shared normalised adjacency from forward()
        self.convs = nn.ModuleList(GCNConv(a, b, normalize=False) for a, b in zip(dims[:-1], dims[1:]))
        self.first_conv = "convs.0.lin"  # state-dict prefixes zoo.create adapts (in_chans / num_classes)
        self.classifier = f"convs.{num_layers - 1}"

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()

    def _hidden(self, x: torch.Tensor, edge_index: torch.Tensor):
        x = check_graph_inputs(x, edge_index, self.in_chans, "gcn", like=self)
        edges, weight = normalized_adjacency(edge_index, x.shape[0], self.convs[0].lin.weight.dtype)
        h = x
        for conv in self.convs[:-1]:
            h = F.relu(conv(feature_dropout(h, self.dropout, self.training), edges, weight))
        return h, edges, weight

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's node features, (N, hidden) ((N, F) for a one-layer GCN)."""
        return self._hidden(x, edge_index)[0]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h, edges, weight = self._hidden(x, edge_index)
        return self.convs[-1](feature_dropout(h, self.dropout, self.training), edges, weight)

    def example_inputs(self, batch_size: int = 2) -> tuple:
        """(x, edge_index) of a small graph with 8 * batch_size nodes."""
        return example_graph(8 * batch_size, self.in_chans)


class DAGNN(nn.Module):
    r"""DAGNN (Liu, Gao & Ji 2020, "Towards Deeper Graph Neural Networks"): predict, propagate, then
    let every node choose how far to look.

    An MLP predicts class scores per node, :math:`H = \mathrm{MLP}(X)`; K propagation steps give
    :math:`H_k = \hat{A}^k H` for k = 0..K (PyG's SimpleConv with the normalised edge weights); a
    shared projection scores each hop per node, :math:`s_k = \sigma(H_k w + b)`, and the output is
    :math:`\sum_k s_k H_k`. Separating the transformation from the propagation lets it reach K hops
    without over-smoothing: 10 hops on Cora where a GCN stops at 2.

    Args:
        in_chans: node feature width F.
        num_classes: output classes C.
        hidden: the MLP's hidden width (64 in the paper).
        K: propagation steps (10 for Cora in the paper).
        dropout: dropout before each MLP layer (0.8 for Cora in the paper).

    Shapes:
        x: (N, F) float, dense or sparse CSR/COO; edge_index: (2, E) int64 -> logits (N, C).
    """

    def __init__(self, in_chans: int, num_classes: int, hidden: int = 64, K: int = 10, dropout: float = 0.8):
        super().__init__()
        import_pyg()
        from torch_geometric.nn import SimpleConv

        if K < 0:
            raise ValueError(f"dagnn: K must be at least 0, got {K}")
        self.in_chans, self.num_classes, self.K, self.dropout = in_chans, num_classes, K, dropout
        self.lin1 = nn.Linear(in_chans, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)
        self.score = nn.Linear(num_classes, 1)  # retention score of a hop, from its class scores
        self.propagate = SimpleConv(aggr="sum")  # sum_j w_ij h_j: one step of Â with the weights given
        self.first_conv, self.classifier = "lin1", ("lin2", "score")

    def reset_parameters(self) -> None:
        for lin in (self.lin1, self.lin2, self.score):
            lin.reset_parameters()

    def _hops(self, h: torch.Tensor, edges: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(N, K + 1, D): h, Âh, ..., Â^K h."""
        hops = [h]
        for _ in range(self.K):
            hops.append(self.propagate(hops[-1], edges, weight))
        return torch.stack(hops, 1)

    def _forward(self, x: torch.Tensor, edge_index: torch.Tensor):
        x = check_graph_inputs(x, edge_index, self.in_chans, "dagnn", like=self)
        edges, weight = normalized_adjacency(edge_index, x.shape[0], self.lin1.weight.dtype)
        hidden = F.relu(self.lin1(feature_dropout(x, self.dropout, self.training)))
        hops = self._hops(self.lin2(F.dropout(hidden, self.dropout, self.training)), edges, weight)
        retain = torch.sigmoid(self.score(hops))  # (N, K + 1, 1)
        return (retain * hops).sum(1), retain, hidden, edges, weight

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The MLP's hidden features propagated and mixed with each node's hop scores, (N, hidden)."""
        _, retain, hidden, edges, weight = self._forward(x, edge_index)
        return (retain * self._hops(hidden, edges, weight)).sum(1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self._forward(x, edge_index)[0]

    def example_inputs(self, batch_size: int = 2) -> tuple:
        """(x, edge_index) of a small graph with 8 * batch_size nodes."""
        return example_graph(8 * batch_size, self.in_chans)


# --------------------------------------------------------------------------- registered builders

INPUT_SPEC = {"features": CORA_FEATURES, "dataset": "Cora", "normalize_features": True}


CORA = {"in_chans": CORA_FEATURES, "num_classes": CORA_CLASSES}  # the builders' defaults: Cora's shape
register_model("gcn", task="node_classification", default_tag="gcn.cora", input_spec=INPUT_SPEC, model_args=CORA,
               description="Kipf & Welling GCN (2 GCNConv layers, 16 hidden, dropout 0.5) for node "
                           "classification.")(GCN)
register_model("dagnn", task="node_classification", default_tag="dagnn.cora", input_spec=INPUT_SPEC, model_args=CORA,
               description="DAGNN (MLP, 10 propagation steps, per-node adaptive hop weights): the stronger "
                           "variant.")(DAGNN)

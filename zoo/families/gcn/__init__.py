"""Node classification on graphs: GCN and DAGNN.

Parts:
  model.py    GCN, DAGNN and their builders
  task.py     node_classification (TASK): full-graph training, masked accuracy
  data.py     Planetoid graphs, read_graph (PyG Data, safetensors or CSV folders), synthetic_graph

Shared pieces it uses: zoo.blocks.

Recipes: recipes/gcn/ (citeseer, cora, dagnn_cora, finetune); `zoo recipes` lists them,
docs/models/gcn.md describes the family and its published weights.
"""

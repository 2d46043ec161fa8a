"""Anomaly detection: PatchCore (a memory bank of pretrained patch features).

Parts:
  model.py    PatchCore and its builder
  task.py     anomaly_detection (TASK): the memory-bank fit, image/pixel AUROC, heat maps
  data.py     the MVTec AD layout, the offline texture benchmark, Fashion-MNIST one-class
  heldout.py  a second, independent defect generator for held-out evaluation

Shared pieces it uses: zoo.data.images (Fashion-MNIST).

Recipes: recipes/patchcore/ (brick, fashion_mnist_oneclass, finetune, grass, gravel); `zoo recipes`
lists them, docs/models/patchcore.md describes the family and its published weights.
"""

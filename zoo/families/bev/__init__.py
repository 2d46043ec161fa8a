"""Multi-camera bird's-eye-view perception: a BEVFormer-style transformer (bev) and a Lift-Splat variant (bev_lss).

Parts:
  model.py    the BEV models and their builders (bev, bev_lss)
  task.py     bev_segmentation (TASK): rig batches, the loss, IoU, the pictures
  data.py     the procedural driving world, the JSON rig layout, the nuScenes adapter
  augment.py  RigAugment: BEV-space rotation/flip/scale of extrinsics, points and labels

Shared pieces it uses: zoo.blocks (attention, conv), zoo.augment.color and zoo.augment.rng.

Recipes: recipes/bev/ (finetune, lss_synthetic, synthetic); `zoo recipes` lists them,
docs/models/bev.md describes the family and its published weights.
"""

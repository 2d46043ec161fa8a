"""3D segmentation of volumes: a residual 3D U-Net with sliding-window inference.

Parts:
  model.py    UNet3D, sliding_window_segment, the unet3d builder
  task.py     volume_segmentation (TASK): patches, Dice + cross-entropy, sliding-window Dice
  data.py     MNI152 / Colin27 templates, the procedural volumes, read_pairs, NIfTI helpers

Shared pieces it uses: zoo.augment.volume (VolumeAugment3D), zoo.blocks.

Recipes: recipes/unet3d/ (finetune, mni152_tissue, synthetic); `zoo recipes` lists them,
docs/models/unet3d.md describes the family and its published weights.
"""
